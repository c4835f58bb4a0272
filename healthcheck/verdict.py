"""Findings -> exactly one verdict. Pure: no I/O, no clock.

Precedence (first that applies):
1. ``hardware_fault`` when any probe shows a hardware fault; the action is the strongest one found
   (quarantine > reboot). Hardware evidence counts even when another probe was inconclusive.
2. ``misconfigured`` (action ``reconfigure``, with the ``fix``) when a DCGM error of severity CONFIG is the
   worst finding: a reboot does not change a setting, so this never reboots.
3. ``inconclusive`` when any probe could not tell (dcgmi missing, crashed, timed out, unparsable; NVML not
   loadable; kernel log unreadable; fewer GPUs than expected) or any test of the level did not run, was
   skipped, or left a GPU out (``untested``). Inconclusive is never healthy.
4. ``application_fault`` when the only findings are application-class XIDs (DCGM passed).
5. ``healthy``: every test of the level ran and passed on every expected GPU, and nothing else was found.

DCGM errors are judged by ``healthcheck.severity`` (the severity table); which XID means what comes from
``consumers.core.xid_catalog``, except XID 74 with its NVLink registers (``healthcheck.nvlink``). NVML: a
lost GPU is treated like XID 79, a GPU with fewer active NVLinks than its peers like XID 74; row-remap
failure or 60+ retired pages -> quarantine; pending remap/retirement or uncorrectable ECC -> reboot.
Kernel messages without an XID: a GPU that fell off the bus is XID 79; ``RmInitAdapter failed`` and a
fatal NVSwitch SXid ask for a reboot.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from consumers.core.xid_catalog import classify_xid
from events_schema.events import RepairAction
from events_schema.events import Verdict as VerdictName
from healthcheck import coverage, nvlink, severity
from healthcheck.findings import (
    DiagReport,
    DiagResult,
    Findings,
    GpuNvml,
    HealthReport,
    Inconclusive,
    KernelEvent,
    NvmlReport,
    XidReport,
)

GpuStatus = Literal["pass", "fail", "warn", "skip"]

# DCGM's own page-retirement limit (DCGM_FR_RETIRED_PAGES_LIMIT): past it, NVIDIA says replace the board.
RETIRED_PAGES_LIMIT = 60
NVLINK_XID, FELL_OFF_BUS_XID = 74, 79

EXIT_CODES: dict[VerdictName, int] = {
    # The exit code says what the node needs, so it stays a usable signal if the event is lost:
    # 0 node usable as is, 1 node needs repair, 2 could not tell, 3 node needs a configuration change
    # (never 1: a reader of the exit code alone must not reboot for a setting).
    "healthy": 0, "application_fault": 0, "hardware_fault": 1, "inconclusive": 2, "misconfigured": 3,
}
_RANK: dict[GpuStatus, int] = {"pass": 1, "skip": 2, "warn": 3, "fail": 4}
_ACTION_RANK: dict[RepairAction, int] = {"none": 0, "reconfigure": 1, "reboot": 2, "quarantine": 3}


@dataclass(frozen=True, slots=True)
class Fault:
    action: RepairAction
    reason: str
    gpu: int | None = None
    fix: str = ""


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
    configuration: tuple[Fault, ...] = ()
    untested: tuple[str, ...] = ()
    fix: str = ""

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.verdict]


@dataclass
class _Tally:
    faults: list[Fault] = field(default_factory=list)
    config: list[Fault] = field(default_factory=list)
    unknowns: list[str] = field(default_factory=list)
    untested: list[str] = field(default_factory=list)
    app_xids: list[int] = field(default_factory=list)
    status: dict[int, GpuStatus] = field(default_factory=dict)
    notes: dict[int, list[str]] = field(default_factory=dict)
    uuids: dict[int, str] = field(default_factory=dict)

    def gpu(self, index: int, status: GpuStatus, note: str | None = None) -> None:
        current = self.status.get(index)
        self.status[index] = status if current is None or _RANK[status] > _RANK[current] else current
        if note:
            self.notes.setdefault(index, []).append(note)

    def fault(self, action: RepairAction, reason: str, gpu: int | None = None) -> None:
        self.faults.append(Fault(action, reason, gpu))
        if gpu is not None:
            self.gpu(gpu, "fail", reason)

    def misconfigured(self, reason: str, fix: str, gpu: int | None = None) -> None:
        self.config.append(Fault("reconfigure", reason, gpu, fix))
        if gpu is not None:
            self.gpu(gpu, "fail", reason)


def decide(findings: Findings) -> Verdict:
    tally = _Tally()
    _diag(findings, tally)
    if findings.health is not None:
        _health(findings.health, tally)
    _nvml(findings.nvml, findings.expected_gpus, tally)
    _xids(findings.xids, findings.nvml, tally)
    return _conclude(tally)


def expected_gpus(findings: Findings) -> set[int]:
    """Every GPU the node should have: the expected count, and every GPU DCGM or NVML saw."""
    gpus = set(range(findings.expected_gpus or 0))
    if isinstance(findings.diag, DiagReport):
        gpus |= set(findings.diag.gpu_ids)
    if isinstance(findings.nvml, NvmlReport):
        gpus |= {g.index for g in findings.nvml.gpus}
    return gpus


def _conclude(t: _Tally) -> Verdict:
    name, action, reason = _headline(t)
    gpus = tuple(
        GpuVerdict(i, t.uuids.get(i), t.status[i], tuple(dict.fromkeys(t.notes.get(i, ())))) for i in sorted(t.status)
    )
    fix = _join(f.fix for f in t.config) if name == "misconfigured" else ""
    return Verdict(name, action, reason, hardware=tuple(t.faults), inconclusive=tuple(t.unknowns),
                   application_xids=tuple(sorted(set(t.app_xids))), gpus=gpus, configuration=tuple(t.config),
                   untested=tuple(t.untested), fix=fix)


def _headline(t: _Tally) -> tuple[VerdictName, RepairAction, str]:
    if t.faults:
        action = max((f.action for f in t.faults), key=_ACTION_RANK.__getitem__)
        return "hardware_fault", action, _join(f.reason for f in t.faults if f.action == action)
    if t.config:
        return "misconfigured", "reconfigure", _join(f.reason for f in t.config)
    if t.unknowns or t.untested:
        return "inconclusive", "none", _join([*t.unknowns, *(f"untested: {u}" for u in t.untested)])
    if t.app_xids:
        xids = ", ".join(str(x) for x in sorted(set(t.app_xids)))
        return "application_fault", "none", f"application XID(s) {xids}; DCGM passed"
    return "healthy", "none", "every test of the level ran and passed on every GPU; nothing else found"


# ---- DCGM diag --------------------------------------------------------------------------------------------
def _diag(findings: Findings, t: _Tally) -> None:
    diag = findings.diag
    if isinstance(diag, Inconclusive):
        t.unknowns.append(f"{diag.source}: {diag.reason}")
        return
    for gpu in diag.gpu_ids:
        t.gpu(gpu, "pass")
    for result in diag.results:
        _diag_result(result, t)
    for gap in coverage.gaps(diag, findings.level, expected_gpus(findings)):
        t.untested.append(f"dcgm {gap.text}")
        for gpu in gap.gpus:
            t.gpu(gpu, "skip", f"dcgm {gap.text}")


def _diag_result(result: DiagResult, t: _Tally) -> None:
    if result.status not in ("fail", "warn"):
        return
    judged = severity.judge_failure(result.errors)
    if result.status == "warn" and judged.outcome in ("quarantine", "reboot"):
        judged = severity.Judgement("warn", "DCGM reported a warning")
    text = _diag_text(result, "failed" if result.status == "fail" else "warned")
    if judged.outcome == "quarantine":
        t.fault("quarantine", text, result.gpu)
    elif judged.outcome == "reboot":
        t.fault("reboot", text, result.gpu)
    elif judged.outcome == "reconfigure":
        t.misconfigured(text, judged.fix, result.gpu)
    elif judged.outcome == "inconclusive":
        t.unknowns.append(f"{text} ({judged.why})")
    elif judged.outcome == "untested":
        t.untested.append(f"{text} ({judged.why})")
    elif result.gpu is not None:
        t.gpu(result.gpu, "warn", text)


def _diag_text(result: DiagResult, verb: str) -> str:
    where = f"GPU {result.gpu}" if result.gpu is not None else "the node"
    name = f"{result.test} ({result.subtest})" if result.subtest else result.test
    detail = "; ".join(
        f"{severity.error_name(e.error_id)} ({e.severity_name}) {e.message}".strip() for e in result.errors
    )
    return f"dcgm {name} {verb} on {where}" + (f": {detail}" if detail else "")


# ---- DCGM health, NVML ------------------------------------------------------------------------------------
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


# ---- kernel log -------------------------------------------------------------------------------------------
def _xids(xids: XidReport | Inconclusive, nvml: NvmlReport | Inconclusive, t: _Tally) -> None:
    if isinstance(xids, Inconclusive):
        t.unknowns.append(f"{xids.source}: {xids.reason}")
        return
    by_bus = {_bus(g.pci_bus_id): g.index for g in nvml.gpus if g.pci_bus_id} \
        if isinstance(nvml, NvmlReport) else {}
    others = any(e.kind == "sxid" or (e.kind == "xid" and e.code != NVLINK_XID) for e in xids.events)
    link_advice = nvlink.advise(xids.events, other_errors=others)
    for xid, count in xids.counts.items():
        devices = xids.devices.get(xid, ())
        gpus = sorted({by_bus[b] for b in map(_bus, devices) if b in by_bus})
        where = f" on GPU {','.join(map(str, gpus))}" if gpus else (f" on {','.join(devices)}" if devices else "")
        if xid == NVLINK_XID and link_advice is not None:
            _link_fault(link_advice, f"XID 74 x{count}{where}", gpus, t)
        else:
            _xid_fault(xid, f"XID {xid} x{count}{where}", gpus, t)
    _without_xid(xids, by_bus, t)


def _xid_fault(xid: int, where: str, gpus: list[int], t: _Tally) -> None:
    advice = classify_xid(xid)
    text = f"{where}: {advice.meaning}"
    if advice.cls == "application":
        t.app_xids.append(xid)
        for gpu in gpus:
            t.gpu(gpu, "warn", text)
        return
    _on_gpus(advice.action, text, gpus, t)


def _link_fault(advice: nvlink.LinkAdvice, where: str, gpus: list[int], t: _Tally) -> None:
    text = f"{where}: {advice.reason}"
    if advice.action == "none":
        for gpu in gpus:
            t.gpu(gpu, "warn", text)
        return
    _on_gpus(advice.action, text, gpus, t)


def _on_gpus(action: RepairAction, text: str, gpus: list[int], t: _Tally) -> None:
    single = gpus[0] if len(gpus) == 1 else None
    t.fault(action, text, single)
    for gpu in gpus if single is None else ():
        t.gpu(gpu, "fail", text)


def _without_xid(xids: XidReport, by_bus: dict[str, int], t: _Tally) -> None:
    """Driver messages that carry no XID: a GPU off the bus, a GPU the driver could not start, an SXid."""
    off_bus_xid = {_bus(d) for d in xids.devices.get(FELL_OFF_BUS_XID, ())}
    for event in _unique(xids.events):
        gpu = by_bus.get(_bus(event.device)) if event.device else None
        where = f"GPU {gpu}" if gpu is not None else (event.device or "a GPU")
        if event.kind == "fell_off_bus" and (event.device is None or _bus(event.device) not in off_bus_xid):
            t.fault(classify_xid(FELL_OFF_BUS_XID).action, f"{where} fell off the bus (no XID logged): "
                    f"{event.text}", gpu)
        elif event.kind == "rm_init_failed":
            t.fault("reboot", f"the driver could not initialise {where}: {event.text}", gpu)
        elif event.kind == "sxid" and event.fatal is not False:
            t.fault("reboot", f"NVSwitch SXid {event.code} on {event.device} (fatal: the fabric needs a reset): "
                    f"{event.text}")


def _unique(events: Iterable[KernelEvent]) -> list[KernelEvent]:
    """One per kind, device and code: a message logged each second is one finding."""
    return list({(e.kind, e.device, e.code): e for e in events if e.kind != "xid"}.values())


def _bus(pci_bus_id: str) -> str:
    """'00000000:3B:00.0' (NVML) and '0000:3b:00' (XID line) -> '3b:00'."""
    parts = pci_bus_id.lower().split(".")[0].split(":")
    return ":".join(parts[-2:])


def _join(reasons: Iterable[str]) -> str:
    items = list(dict.fromkeys(r for r in reasons if r))
    shown = "; ".join(items[:3])
    return shown + (f" (+{len(items) - 3} more)" if len(items) > 3 else "")
