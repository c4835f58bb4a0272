"""What each probe found, as plain frozen values: the input of the pure ``verdict.decide``.

A probe returns either its report or an ``Inconclusive`` saying why it could not tell. Nothing here does
I/O, so the verdict can be tested with plain objects.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

# "not_run": the document names the test but it did not run on that GPU (or at all, for a test-wide result).
ResultStatus = Literal["pass", "fail", "warn", "skip", "not_run"]

# dcgmErrorSeverity_t in DCGM 4's dcgm_errors.h.
SEVERITY_NONE, SEVERITY_MONITOR, SEVERITY_ISOLATE = 0, 1, 2
SEVERITY_UNKNOWN, SEVERITY_TRIAGE, SEVERITY_CONFIG, SEVERITY_RESET = 3, 4, 5, 6
SEVERITY_NAMES = {
    SEVERITY_NONE: "NONE", SEVERITY_MONITOR: "MONITOR", SEVERITY_ISOLATE: "ISOLATE",
    SEVERITY_UNKNOWN: "UNKNOWN", SEVERITY_TRIAGE: "TRIAGE", SEVERITY_CONFIG: "CONFIG", SEVERITY_RESET: "RESET",
}


@dataclass(frozen=True, slots=True)
class Inconclusive:
    """A probe that could not tell: missing binary, crash, timeout, unparsable output, no library."""

    source: str
    reason: str


@dataclass(frozen=True, slots=True)
class DiagError:
    error_id: int | None
    severity: int | None
    category: int | None
    message: str

    @property
    def severity_name(self) -> str:
        if self.severity is None:
            return "UNSPECIFIED"
        return SEVERITY_NAMES.get(self.severity, f"SEVERITY_{self.severity}")


@dataclass(frozen=True, slots=True)
class DiagResult:
    """One test's result on one GPU; ``gpu`` is None for a test-wide (summary) result."""

    test: str
    category: str
    gpu: int | None
    status: ResultStatus
    errors: tuple[DiagError, ...] = ()
    # DCGM 3's deployment checks ("Persistence Mode", ...) all count as the test "software"; this keeps the name.
    subtest: str | None = None


DiagFormat = Literal["dcgm4", "dcgm3"]


@dataclass(frozen=True, slots=True)
class DiagReport:
    dcgm_version: str | None
    driver_version: str | None
    gpu_ids: tuple[int, ...]
    results: tuple[DiagResult, ...]
    gpu_serials: dict[int, str] = field(default_factory=dict)
    # Which document family it was read from: "DCGM Diagnostic" (4.x) or "DCGM GPU Diagnostic" (3.x and older).
    format: DiagFormat = "dcgm4"


@dataclass(frozen=True, slots=True)
class HealthIncident:
    gpu: int | None
    system: str
    health: Literal["warn", "fail"]
    message: str


@dataclass(frozen=True, slots=True)
class HealthReport:
    overall: Literal["pass", "warn", "fail"]
    incidents: tuple[HealthIncident, ...] = ()


@dataclass(frozen=True, slots=True)
class GpuNvml:
    """NVML's view of one GPU. None means "could not be read" (unsupported on this GPU, or the call failed)."""

    index: int
    uuid: str | None = None
    pci_bus_id: str | None = None
    uncorrectable_ecc_volatile: int | None = None
    row_remap_pending: bool | None = None
    row_remap_failed: bool | None = None
    retired_pages: int | None = None
    retired_pages_pending: bool | None = None
    nvlink_active: int | None = None
    nvlink_down: tuple[int, ...] = ()
    lost: bool = False
    call_errors: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class NvmlReport:
    driver_version: str | None
    device_count: int
    gpus: tuple[GpuNvml, ...]


KernelEventKind = Literal["xid", "sxid", "fell_off_bus", "rm_init_failed"]


@dataclass(frozen=True, slots=True)
class KernelEvent:
    """One driver message from the kernel log, as the driver wrote it.

    ``device`` is the PCI address ('0000:3b:00'); ``gpu_instance`` the MIG GPU instance (``GPU-I:05``);
    ``registers`` the seven NVLink error registers an XID 74 line carries; ``fatal`` an SXid's class.
    """

    kind: KernelEventKind
    code: int | None = None
    device: str | None = None
    gpu_instance: int | None = None
    link: int | None = None
    registers: tuple[int, ...] = ()
    fatal: bool | None = None
    text: str = ""


@dataclass(frozen=True, slots=True)
class XidReport:
    """XIDs seen in the kernel log since the fault time: xid -> count, and which PCI devices raised them.

    ``events`` holds every driver message found (XIDs with their details, NVSwitch SXids, a GPU that fell
    off the bus or failed to initialise without an XID); ``counts`` and ``devices`` summarise the XIDs.
    """

    counts: dict[int, int]
    source: str
    devices: dict[int, tuple[str, ...]] = field(default_factory=dict)
    events: tuple[KernelEvent, ...] = ()


DiagOutcome = DiagReport | Inconclusive
HealthOutcome = HealthReport | Inconclusive
NvmlOutcome = NvmlReport | Inconclusive
XidOutcome = XidReport | Inconclusive


@dataclass(frozen=True, slots=True)
class Findings:
    level: int
    expected_gpus: int | None
    diag: DiagOutcome
    health: HealthOutcome | None  # None: not run (switched off)
    nvml: NvmlOutcome
    xids: XidOutcome
