"""Plain stand-ins for the node: an NVML with N healthy H100s whose counters a test can spoil."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from healthcheck.nvml import NvmlCallError, NvmlUnavailable

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "dcgm"
KERNEL = FIXTURES / "kernel"
FAKE_DCGMI_DIR = Path(__file__).resolve().parent / "fake_dcgmi"
# The PCI buses of a p5.48xlarge's eight GPUs, as NVML and the XID lines name them.
BUSES = ("53", "64", "75", "86", "97", "a8", "b9", "ca")
NODE_ARN = "arn:aws:ecs:us-east-1:123456789012:container-instance/gpu-training/0f1e2d3c4b5a69788796a5b4c3d2e1f0"
TASK_ARN = "arn:aws:ecs:us-east-1:123456789012:task/gpu-training/5d4c3b2a19080706050403020100ffee"
NOW = datetime(2026, 11, 28, 10, 10, tzinfo=UTC)


@dataclass
class FakeDevice:
    index: int
    ecc: int = 0
    remap: tuple[bool, bool] = (False, False)
    retired: tuple[int, bool] | None = None  # None: unsupported (Ampere and newer remap rows instead)
    links: dict[int, bool] | None = field(default_factory=lambda: dict.fromkeys(range(18), True))
    lost: bool = False
    broken: set[str] = field(default_factory=set)  # counters whose call fails with a plain NVML error

    def _check(self, name: str) -> None:
        if self.lost:
            raise NvmlCallError("gpu_lost", "GPU is lost")
        if name in self.broken:
            raise NvmlCallError("other", "Insufficient Permissions")

    def uuid(self) -> str:
        self._check("uuid")
        return f"GPU-{self.index:08d}-1f0b-4a53-9e7f-2f4c7a6d1e0b"

    def pci_bus_id(self) -> str:
        self._check("pci")
        return f"00000000:{BUSES[self.index].upper()}:00.0"

    def uncorrectable_ecc_volatile(self) -> int:
        self._check("ecc")
        return self.ecc

    def remapped_rows(self) -> tuple[bool, bool]:
        self._check("remap")
        return self.remap

    def retired_pages(self) -> tuple[int, bool]:
        self._check("retired")
        if self.retired is None:
            raise NvmlCallError("not_supported", "Not Supported")
        return self.retired

    def nvlink_states(self) -> dict[int, bool]:
        self._check("nvlink")
        if self.links is None:
            raise NvmlCallError("not_supported", "no NVLink on this GPU")
        return self.links


@dataclass
class FakeNvml:
    devices: list[FakeDevice] = field(default_factory=lambda: [FakeDevice(i) for i in range(8)])
    missing_library: bool = False
    initialised: bool = False
    shut_down: bool = False

    def init(self) -> None:
        if self.missing_library:
            raise NvmlUnavailable("NVML Shared Library Not Found")
        self.initialised = True

    def shutdown(self) -> None:
        self.shut_down = True

    def driver_version(self) -> str:
        return "570.172.08"

    def device_count(self) -> int:
        return len(self.devices)

    def device(self, index: int) -> FakeDevice:
        if self.devices[index].lost:
            raise NvmlCallError("gpu_lost", "GPU is lost")
        return self.devices[index]


def nvml_with(count: int = 8, **spoil: FakeDevice) -> FakeNvml:
    """``nvml_with(gpu3=FakeDevice(3, ecc=2))`` replaces GPU 3."""
    devices = [FakeDevice(i) for i in range(count)]
    for name, device in spoil.items():
        devices[int(name.removeprefix("gpu"))] = device
    return FakeNvml(devices)
