"""Findings -> exactly one verdict. Pure: no I/O, no clock.

Precedence (first that applies):
1. ``hardware_fault`` when any probe shows a hardware fault; the action is the strongest one found
   (quarantine > reboot). Hardware evidence counts even when another probe was inconclusive.
2. ``inconclusive`` when any probe could not tell (dcgmi missing, crashed, timed out, unparsable or
   reporting a runtime error; NVML not loadable; kernel log unreadable; fewer GPUs than expected).
   Inconclusive is never healthy.
3. ``application_fault`` when the only findings are application-class XIDs (DCGM passed).
4. ``healthy``.

Which XID means what comes from ``consumers.core.xid_catalog`` (the one table). DCGM: a failed test with
ISOLATE severity -> quarantine, any other failed test -> reboot. NVML: a lost GPU is treated like XID 79,
a GPU with fewer active NVLinks than its peers like XID 74; row-remap failure or 60+ retired pages ->
quarantine (the GPU has run out of spare memory); pending remap/retirement or uncorrectable ECC -> reboot.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from consumers.core.xid_catalog import RepairAction, classify_xid, worst_action
from healthcheck.findings import (
    SEVERITY_ISOLATE,
    DiagReport,
    Findings,
    GpuNvml,
    HealthReport,
    Inconclusive,
    NvmlReport,
    XidReport,
)

VerdictName = Literal["healthy", "application_fault", "hardware_fault", "inconclusive"]
GpuStatus = Literal["pass", "fail", "warn", "skip"]

# DCGM's own page-retirement limit (DCGM_FR_RETIRED_PAGES_LIMIT): past it, NVIDIA says replace the board.
RETIRED_PAGES_LIMIT = 60
NVLINK_XID, FELL_OFF_BUS_XID = 74, 79

EXIT_CODES: dict[VerdictName, int] = {
    # The exit code says what the node needs, so it stays a usable signal if the event is lost:
    # 0 node usable as is, 1 node needs repair, 2 could not tell.
    "healthy": 0, "application_fault": 0, "hardware_fault": 1, "inconclusive": 2,
}
_RANK: dict[GpuStatus, int] = {"skip": 0, "pass": 1, "warn": 2, "fail": 3}


@dataclass(frozen=True, slots=True)
class Fault:
    action: RepairAction
    reason: str
    gpu: int | None = None


@dataclass(frozen=True, slots=True)
class GpuVerdict:
    index: int
    uuid: str | None
    status: GpuStatus
    errors: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Verdict:
    verdict: VerdictName
    action: RepairAction
    reason: str
    hardware: tuple[Fault, ...] = ()
    inconclusive: tuple[str, ...] = ()
    application_xids: tuple[int, ...] = ()
    gpus: tuple[GpuVerdict, ...] = ()

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.verdict]


@dataclass
class _Tally:
    faults: list[Fault] = field(default_factory=list)
    unknowns: list[str] = field(default_factory=list)
    app_xids: list[int] = field(default_factory=list)
    status: dict[int, GpuStatus] = field(default_factory=dict)
    notes: dict[int, list[str]] = field(default_factory=dict)
    uuids: dict[int, str] = field(default_factory=dict)

    def gpu(self, index: int, status: GpuStatus, note: str | None = None) -> None:
        current = self.status.get(index, "skip")
        self.status[index] = status if _RANK[status] > _RANK[current] else current
        if note:
            self.notes.setdefault(index, []).append(note)

    def fault(self, action: RepairAction, reason: str, gpu: int | None = None) -> None:
        self.faults.append(Fault(action, reason, gpu))
        if gpu is not None:
            self.gpu(gpu, "fail", reason)


def decide(findings: Findings) -> Verdict:
    tally = _Tally()
    _diag(findings.diag, findings.expected_gpus, tally)
    if findings.health is not None:
        _health(findings.health, tally)
    _nvml(findings.nvml, findings.expected_gpus, tally)
    _xids(findings.xids, findings.nvml, tally)
    return _conclude(tally)


def _conclude(t: _Tally) -> Verdict:
    name, action, reason = _headline(t)
    gpus = tuple(
        GpuVerdict(i, t.uuids.get(i), t.status[i], tuple(t.notes.get(i, ()))) for i in sorted(t.status)
    )
    return Verdict(name, action, reason, hardware=tuple(t.faults), inconclusive=tuple(t.unknowns),
                   application_xids=tuple(sorted(set(t.app_xids))), gpus=gpus)


def _headline(t: _Tally) -> tuple[VerdictName, RepairAction, str]:
    if t.faults:
        action = worst_action(f.action for f in t.faults)
        return "hardware_fault", action, _join(f.reason for f in t.faults if f.action == action)
    if t.unknowns:
        return "inconclusive", "none", _join(t.unknowns)
    if t.app_xids:
        xids = ", ".join(str(x) for x in sorted(set(t.app_xids)))
        return "application_fault", "none", f"application XID(s) {xids}; DCGM passed"
    return "healthy", "none", "all checks passed"


def _diag(diag: DiagReport | Inconclusive, expected: int | None, t: _Tally) -> None:
    if isinstance(diag, Inconclusive):
        t.unknowns.append(f"{diag.source}: {diag.reason}")
        return
    if expected is not None and len(diag.gpu_ids) < expected:
        t.unknowns.append(f"dcgm_diag: DCGM ran on {len(diag.gpu_ids)} GPU(s), expected {expected}")
    for gpu in diag.gpu_ids:
        t.gpu(gpu, "pass")
    for result in diag.results:
        detail = "; ".join(f"error {e.error_id} ({e.severity_name}) {e.message}".strip() for e in result.errors)
        where = f"GPU {result.gpu}" if result.gpu is not None else "the node"
        if result.status == "fail":
            isolate = any(e.severity == SEVERITY_ISOLATE for e in result.errors)
            reason = f"dcgm {result.test} failed on {where}" + (f": {detail}" if detail else "")
            t.fault("quarantine" if isolate else "reboot", reason, result.gpu)
        elif result.gpu is not None:
            note = f"dcgm {result.test} warned: {detail}" if result.status == "warn" else None
            t.gpu(result.gpu, result.status, note)


def _health(health: HealthReport | Inconclusive, t: _Tally) -> None:
    if isinstance(health, Inconclusive):
        t.unknowns.append(f"{health.source}: {health.reason}")
        return
    for incident in health.incidents:
        where = f"GPU {incident.gpu}" if incident.gpu is not None else "the node"
        text = f"dcgm health {incident.system} {incident.health} on {where}: {incident.message}".rstrip(": ")
        if incident.health == "fail":
            t.fault("reboot", text, incident.gpu)
        elif incident.gpu is not None:
            t.gpu(incident.gpu, "warn", text)
    if health.overall == "fail" and not any(i.health == "fail" for i in health.incidents):
        t.fault("reboot", "dcgm health reports Failure")


def _nvml(nvml: NvmlReport | Inconclusive, expected: int | None, t: _Tally) -> None:
    if isinstance(nvml, Inconclusive):
        t.unknowns.append(f"{nvml.source}: {nvml.reason}")
        return
    if expected is not None and nvml.device_count < expected:
        t.unknowns.append(f"nvml: {nvml.device_count} GPU(s) visible, expected {expected}")
    most_links = max((g.nvlink_active for g in nvml.gpus if g.nvlink_active is not None), default=None)
    for gpu in nvml.gpus:
        _nvml_gpu(gpu, most_links, t)


def _nvml_gpu(gpu: GpuNvml, most_links: int | None, t: _Tally) -> None:
    i = gpu.index
    if gpu.uuid:
        t.uuids[i] = gpu.uuid
    t.gpu(i, "pass")
    if gpu.lost:
        t.fault(classify_xid(FELL_OFF_BUS_XID).action, f"GPU {i} is lost (NVML)", i)
    elif gpu.uuid is None and gpu.call_errors:
        t.unknowns.append(f"nvml: GPU {i} could not be opened: {'; '.join(gpu.call_errors)}")
    if gpu.row_remap_failed:
        t.fault("quarantine", f"GPU {i} row remapping failed (no spare rows left)", i)
    elif gpu.row_remap_pending:
        t.fault("reboot", f"GPU {i} has a row remap pending (applied by a GPU reset)", i)
    if gpu.uncorrectable_ecc_volatile:
        t.fault("reboot", f"GPU {i} has {gpu.uncorrectable_ecc_volatile} uncorrectable ECC error(s)", i)
    if gpu.retired_pages is not None and gpu.retired_pages >= RETIRED_PAGES_LIMIT:
        t.fault("quarantine", f"GPU {i} has {gpu.retired_pages} retired pages (limit {RETIRED_PAGES_LIMIT})", i)
    elif gpu.retired_pages_pending:
        t.fault("reboot", f"GPU {i} has a page retirement pending", i)
    if gpu.nvlink_active is not None and most_links is not None and gpu.nvlink_active < most_links:
        down = ",".join(str(link) for link in gpu.nvlink_down)
        t.fault(classify_xid(NVLINK_XID).action,
                f"GPU {i} has {gpu.nvlink_active} NVLinks up, its peers {most_links} (down: {down})", i)
    if not gpu.lost and gpu.uuid is not None:
        for error in gpu.call_errors:  # one unreadable counter is a warning; DCGM covers the same ground
            t.gpu(i, "warn", f"nvml {error}")


def _xids(xids: XidReport | Inconclusive, nvml: NvmlReport | Inconclusive, t: _Tally) -> None:
    if isinstance(xids, Inconclusive):
        t.unknowns.append(f"{xids.source}: {xids.reason}")
        return
    by_bus = {_bus(g.pci_bus_id): g.index for g in nvml.gpus if g.pci_bus_id} \
        if isinstance(nvml, NvmlReport) else {}
    for xid, count in xids.counts.items():
        advice = classify_xid(xid)
        devices = xids.devices.get(xid, ())
        gpus = sorted({by_bus[b] for b in map(_bus, devices) if b in by_bus})
        where = f" on GPU {','.join(map(str, gpus))}" if gpus else (f" on {','.join(devices)}" if devices else "")
        text = f"XID {xid} x{count}{where}: {advice.meaning}"
        if advice.cls == "application":
            t.app_xids.append(xid)
            for gpu in gpus:
                t.gpu(gpu, "warn", text)
        else:
            single = gpus[0] if len(gpus) == 1 else None
            t.fault(advice.action, text, single)
            for gpu in gpus if single is None else ():
                t.gpu(gpu, "fail", text)


def _bus(pci_bus_id: str) -> str:
    """'00000000:3B:00.0' (NVML) and '0000:3b:00' (XID line) -> '3b:00'."""
    parts = pci_bus_id.lower().split(".")[0].split(":")
    return ":".join(parts[-2:])


def _join(reasons: Iterable[str]) -> str:
    items = list(dict.fromkeys(reasons))
    shown = "; ".join(items[:3])
    return shown + (f" (+{len(items) - 3} more)" if len(items) > 3 else "")
