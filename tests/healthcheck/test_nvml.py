"""NVML: every call guarded; no library -> inconclusive; the pynvml adapter translates NVML's errors."""

from __future__ import annotations

import sys
import types
from typing import Any

import pytest

from healthcheck.findings import Inconclusive, NvmlReport
from healthcheck.nvml import PynvmlApi, collect
from tests.healthcheck.fakes import FakeDevice, FakeNvml


def test_healthy_node_reads_every_counter() -> None:
    # GIVEN eight healthy GPUs with 18 NVLinks each
    api = FakeNvml()
    # WHEN collected
    report = collect(api)
    # THEN count, ids and counters are there, and NVML was shut down again
    assert isinstance(report, NvmlReport)
    assert report.device_count == 8 and report.driver_version == "570.172.08"
    gpu = report.gpus[5]
    assert gpu.uuid and gpu.pci_bus_id == "00000000:A8:00.0"
    assert (gpu.uncorrectable_ecc_volatile, gpu.row_remap_pending, gpu.row_remap_failed) == (0, False, False)
    assert (gpu.retired_pages, gpu.nvlink_active, gpu.nvlink_down) == (None, 18, ())  # no page retirement on H100
    assert api.shut_down


def test_missing_library_is_inconclusive() -> None:
    outcome = collect(FakeNvml(missing_library=True))
    assert isinstance(outcome, Inconclusive) and "Shared Library Not Found" in outcome.reason


def test_real_library_absent_here_is_inconclusive() -> None:
    # GIVEN this machine (no NVIDIA driver): the real adapter
    outcome = collect(PynvmlApi())
    # THEN inconclusive, never an exception
    assert isinstance(outcome, Inconclusive)
    assert outcome.source == "nvml"


def test_lost_gpu_and_failing_calls_are_recorded_not_raised() -> None:
    # GIVEN GPU 2 lost, GPU 4 refusing one counter, GPU 6 with two NVLinks down
    links = dict.fromkeys(range(18), True) | {4: False, 9: False}
    api = FakeNvml([FakeDevice(0), FakeDevice(1), FakeDevice(2, lost=True), FakeDevice(3),
                    FakeDevice(4, broken={"ecc"}), FakeDevice(5), FakeDevice(6, links=links), FakeDevice(7)])
    report = collect(api)
    assert isinstance(report, NvmlReport)
    assert report.gpus[2].lost and report.gpus[2].uuid is None
    assert report.gpus[4].uncorrectable_ecc_volatile is None
    assert report.gpus[4].call_errors == ("ecc: Insufficient Permissions",)
    assert (report.gpus[6].nvlink_active, report.gpus[6].nvlink_down) == (16, (4, 9))


class _FakePynvml(types.ModuleType):
    """Just enough of nvidia-ml-py's surface: constants, NVMLError with .value, the calls we make."""

    NVML_ERROR_INVALID_ARGUMENT, NVML_ERROR_NOT_SUPPORTED, NVML_ERROR_GPU_IS_LOST = 2, 3, 15
    NVML_MEMORY_ERROR_TYPE_UNCORRECTED, NVML_VOLATILE_ECC = 1, 0
    NVML_PAGE_RETIREMENT_CAUSE_MULTIPLE_SINGLE_BIT_ECC_ERRORS = 0
    NVML_PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR = 1
    NVML_NVLINK_MAX_LINKS, NVML_FEATURE_ENABLED = 6, 1

    class NVMLError(Exception):
        def __init__(self, value: int) -> None:
            super().__init__({2: "Invalid Argument", 3: "Not Supported", 15: "GPU is lost"}.get(value, "Unknown"))
            self.value = value

    def __init__(self) -> None:
        super().__init__("pynvml")
        self.calls: list[str] = []

    def nvmlInit(self) -> None: self.calls.append("init")
    def nvmlShutdown(self) -> None: self.calls.append("shutdown")
    def nvmlSystemGetDriverVersion(self) -> bytes: return b"570.172.08"
    def nvmlDeviceGetCount(self) -> int: return 2

    def nvmlDeviceGetHandleByIndex(self, i: int) -> int:
        if i == 1:
            raise self.NVMLError(self.NVML_ERROR_GPU_IS_LOST)
        return 100 + i

    def nvmlDeviceGetUUID(self, h: int) -> str: return "GPU-abc"
    def nvmlDeviceGetPciInfo(self, h: int) -> Any: return types.SimpleNamespace(busId=b"00000000:53:00.0")
    def nvmlDeviceGetTotalEccErrors(self, h: int, kind: int, counter: int) -> int: return 2
    def nvmlDeviceGetRemappedRows(self, h: int) -> tuple[int, int, int, int]: return (0, 1, 1, 0)

    def nvmlDeviceGetRetiredPages(self, h: int, cause: int) -> list[int]:
        raise self.NVMLError(self.NVML_ERROR_NOT_SUPPORTED)

    def nvmlDeviceGetRetiredPagesPendingStatus(self, h: int) -> int: return 0

    def nvmlDeviceGetNvLinkState(self, h: int, link: int) -> int:
        if link >= 4:
            raise self.NVMLError(self.NVML_ERROR_INVALID_ARGUMENT)
        return 0 if link == 2 else 1


def test_pynvml_adapter_translates_values_and_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN nvidia-ml-py answering for two GPUs, the second one lost
    fake = _FakePynvml()
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    # WHEN collected through the real adapter
    report = collect(PynvmlApi())
    # THEN bytes are decoded, unsupported counters are None, links past the GPU's count are skipped,
    # the lost GPU is marked lost, and NVML was shut down
    assert isinstance(report, NvmlReport)
    first, second = report.gpus
    assert (first.uuid, first.pci_bus_id, first.uncorrectable_ecc_volatile) == ("GPU-abc", "00000000:53:00.0", 2)
    assert (first.row_remap_pending, first.row_remap_failed, first.retired_pages) == (True, False, None)
    assert (first.nvlink_active, first.nvlink_down) == (3, (2,))
    assert second.lost and report.driver_version == "570.172.08"
    assert fake.calls == ["init", "shutdown"]
