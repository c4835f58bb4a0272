"""What a fleet simulation shows (``gpu-recovery simulate``): pure figures from what happened in it.

The recorder is told, as the run goes: each ECS task status change (ground truth: which ranks run),
each interruption the simulator injected, each event recovery recorded, the calls it made, and the size
of its state. ``summarize`` turns that into the report. Definitions:

* A job is **up** while all of its ranks are RUNNING. **ETTR** (effective training time ratio) of a job =
  up time minus the work lost since the last checkpoint at each time it goes down (``checkpoint_s``;
  0: none counted), over the time from its launch to the end of the simulated days.
* An **interruption** hits a job when the job goes down within ``HIT_WINDOW_S`` after it was injected
  (else it is *absorbed*: its node ran no rank by then). It ends when the job is up again. Its time lost,
  from the injection to that moment, splits at three milestones, each clipped to lie between the one
  before and the end: *detect* until recovery first acts on it (the job leaves RUNNING or an incident
  opens); *diagnose* until the last of its incidents has a verdict (its node leaves SUSPECT/CHECKING);
  *repair* until the last of them is repaired (the node is HEALTHY, QUARANTINED, REPLACED or
  MISCONFIGURED); *restart* until the job is up. Without an incident, diagnose and repair are zero.
* An **escalation** is a notification a person must act on (severity ``page`` or ``action_needed``). An
  interruption is *escalated* when one about its job or incidents was sent before the job ran again, other
  than a node's repair ticket (``node_quarantined``, ``node_misconfigured``: the job was restarted elsewhere).
* A node **out of service** went QUARANTINED, REPLACED or MISCONFIGURED; it is a **false** out of service
  when the last cause injected on it (before then) was not a hardware one, or none was.
* An **action** is a changing AWS call recovery made; one idempotency key acting twice is listed.
* The **state** is recovery's records as its table holds them (keys and JSON bodies, records past their
  TTL gone), sampled at every virtual day.

Why one module (about 500 lines): every figure is defined above and computed below from the same recorded
run; the charts live apart (``analytics/simulation_html.py``).
"""

from __future__ import annotations

import hashlib
import itertools
import statistics
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

HIT_WINDOW_S = 300.0
OUT_OF_SERVICE = frozenset({"QUARANTINED", "REPLACED", "MISCONFIGURED"})
REPAIRED = OUT_OF_SERVICE | {"HEALTHY"}
UNDIAGNOSED = frozenset({"SUSPECT", "CHECKING"})
ESCALATING = frozenset({"page", "action_needed"})
# A ticket to repair a node a person must act on, but not for the job: recovery restarted it elsewhere.
NODE_TICKETS = frozenset({"node_quarantined", "node_misconfigured"})
PHASES = ("detect", "diagnose", "repair", "restart")
KEPT_TYPES = frozenset({"JobStateChanged", "IncidentOpened", "IncidentClosed", "NodeStateChanged",
                        "NotificationSent"})


@dataclass(frozen=True)
class Injected:
    """An interruption the simulator put on the fleet: when it hit, where, why."""

    index: int
    at: datetime
    cause: str
    category: str
    hardware: bool
    looks: str
    node_arn: str | None
    node: str | None
    job_id: str | None
    deferred_s: float = 0.0


@dataclass
class _Job:
    ranks: int
    launched_at: datetime
    running: set[str] = field(default_factory=set)
    up_since: datetime | None = None
    downs: list[datetime] = field(default_factory=list)
    ups: list[datetime] = field(default_factory=list)
    up_s: float = 0.0
    lost_work_s: float = 0.0


class SimulationRecorder:
    def __init__(self, jobs: Mapping[str, int], launched_at: datetime, *, checkpoint_s: float = 0.0) -> None:
        self.jobs = {job: _Job(ranks, launched_at) for job, ranks in jobs.items()}
        self.checkpoint_s = checkpoint_s
        self.injected: list[Injected] = []
        self.events: list[tuple[datetime, str, dict[str, Any]]] = []
        self.state: list[tuple[float, int, int]] = []  # (virtual day, bytes, records)
        self.actions: Counter[str] = Counter()
        self.failed_actions: Counter[str] = Counter()
        self.twice: list[str] = []
        self.action_targets: Counter[tuple[str, str | None]] = Counter()
        self.person_actions: Counter[str] = Counter()
        self.deferred = 0
        self._keys: set[int] = set()
        self.node_names: dict[str, str] = {}

    # --- told as the run goes --------------------------------------------------------------------

    def task(self, at: datetime, job_id: str | None, task_arn: str, status: str) -> None:
        job = self.jobs.get(job_id or "")
        if job is None:
            return
        if status == "RUNNING":
            job.running.add(task_arn)
        else:
            job.running.discard(task_arn)
        self._settle(job, at)

    def _settle(self, job: _Job, at: datetime) -> None:
        up = len(job.running) >= job.ranks
        if up and job.up_since is None:
            job.up_since = at
            job.ups.append(at)
        elif not up and job.up_since is not None:
            span = (at - job.up_since).total_seconds()
            job.up_s += span
            job.lost_work_s += span % self.checkpoint_s if self.checkpoint_s > 0 else 0.0
            job.up_since = None
            job.downs.append(at)

    def inject(self, injected: Injected) -> None:
        self.injected.append(injected)
        if injected.node_arn and injected.node:
            self.node_names[injected.node_arn] = injected.node

    def ours(self, at: datetime, kind: str, data: Mapping[str, Any]) -> None:
        if kind in KEPT_TYPES:
            self.events.append((at, kind, dict(data)))

    def call(self, operation: str, ok: bool, key: str | None, node: str | None) -> None:
        """One of recovery's changing AWS calls, on which node (None: not a node's)."""
        if not ok:
            self.failed_actions[operation] += 1
            return
        self.actions[operation] += 1
        self.action_targets[(operation, node)] += 1
        if key is None:
            return
        digest = int.from_bytes(hashlib.blake2b(f"{operation}|{key}".encode(), digest_size=8).digest(), "big")
        if digest in self._keys:
            self.twice.append(f"{operation} {key}")
        self._keys.add(digest)

    def sample_state(self, day: float, size: tuple[int, int]) -> None:
        self.state.append((day, size[0], size[1]))

    def node_name(self, arn: str, name: str) -> None:
        self.node_names[arn] = name


# --- the report, as it goes out (--json) -----------------------------------------------------------


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class Spread(_Out):
    count: int
    mean: float | None
    p50: float | None
    p90: float | None
    max: float | None


class JobFigures(_Out):
    job_id: str
    ranks: int
    ettr: float
    up_s: float
    lost_work_s: float
    interruptions: int
    up_at_end: bool
    phase_at_end: str | None


class InterruptionFigures(_Out):
    index: int
    at: datetime
    cause: str
    category: str
    hardware: bool
    looks: str
    node: str | None
    job_id: str | None
    outcome: str  # recovered, escalated, absorbed, open
    deferred_s: float
    lost_s: float | None
    detect_s: float | None
    diagnose_s: float | None
    repair_s: float | None
    restart_s: float | None
    incidents: list[str]


class SimulationReport(_Out):
    engine: str
    nodes: int
    gpus_per_node: int
    spares: int
    days: float
    seed: int
    fault_mix: dict[str, Any]
    settings: dict[str, Any]
    checkpoint_s: float
    ettr: float | None  # over every job, weighted by its ranks
    headline: dict[str, Any]
    jobs: list[JobFigures]
    interruptions: dict[str, Any]
    lost_s: dict[str, Spread]
    escalations: dict[str, Any]
    out_of_service: dict[str, Any]
    actions: dict[str, Any]
    incidents: dict[str, Any]
    state: dict[str, Any]
    timing: dict[str, Any]
    interruption_list: list[InterruptionFigures]


@dataclass(frozen=True)
class RunFacts:
    """What the caller knows about the run besides what the recorder was told."""

    engine: str
    nodes: int
    gpus_per_node: int
    spares: int
    days: float
    seed: int
    started: datetime
    fault_mix: dict[str, Any]
    settings: dict[str, Any]
    timing: dict[str, Any]


def spread(values: Sequence[float]) -> Spread:
    if not values:
        return Spread(count=0, mean=None, p50=None, p90=None, max=None)
    ordered = sorted(values)
    return Spread(count=len(values), mean=round(statistics.fmean(values), 3), p50=round(_rank(ordered, 50), 3),
                  p90=round(_rank(ordered, 90), 3), max=round(ordered[-1], 3))


def _rank(ordered: Sequence[float], q: float) -> float:
    """Interpolated between the closest ranks (numpy's default)."""
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summarize(recorder: SimulationRecorder, facts: RunFacts, end: datetime) -> SimulationReport:
    horizon = end
    for job in recorder.jobs.values():
        if job.up_since is not None:  # count the last stretch up to the horizon
            job.up_s += max(0.0, (horizon - job.up_since).total_seconds())
    index = _Index(recorder.events)
    interruptions = [_interruption(i, recorder, index) for i in recorder.injected]
    jobs = [_job_figures(job_id, job, interruptions, index, horizon) for job_id, job in recorder.jobs.items()]
    ranks = sum(j.ranks for j in jobs)
    hit = [i for i in interruptions if i.outcome in ("recovered", "escalated") and i.category != "planned"]
    out_of_service = _out_of_service(index, recorder)
    ettr = round(sum(j.ettr * j.ranks for j in jobs) / ranks, 6) if ranks else None
    return SimulationReport(
        engine=facts.engine, nodes=facts.nodes, gpus_per_node=facts.gpus_per_node, spares=facts.spares,
        days=facts.days, seed=facts.seed, fault_mix=facts.fault_mix, settings=facts.settings,
        checkpoint_s=recorder.checkpoint_s,
        ettr=ettr, headline=_headline(interruptions, ettr, out_of_service), jobs=jobs,
        interruptions=_interruption_counts(interruptions, recorder),
        lost_s={phase: spread([getattr(i, f"{phase}_s") for i in hit if getattr(i, f"{phase}_s") is not None])
                for phase in (*PHASES, "lost")},
        escalations=_escalations(index, recorder),
        out_of_service=out_of_service,
        actions={"total": sum(recorder.actions.values()), "by_type": dict(sorted(recorder.actions.items())),
                 "failed": dict(sorted(recorder.failed_actions.items())), "twice": recorder.twice[:100],
                 "twice_count": len(recorder.twice)},
        incidents=_incidents(index),
        state=_state(recorder),
        timing=facts.timing,
        interruption_list=interruptions,
    )


class _Index:
    """Recovery's events, by what the figures look up."""

    def __init__(self, events: list[tuple[datetime, str, dict[str, Any]]]) -> None:
        self.events = events
        self.job_changes: dict[str, list[tuple[datetime, str]]] = defaultdict(list)
        self.opened: dict[str, tuple[datetime, dict[str, Any]]] = {}
        self.closed: dict[str, tuple[datetime, str]] = {}
        self.node_changes: dict[str, list[tuple[datetime, str]]] = defaultdict(list)  # by incident
        self.out_of_service: dict[str, tuple[datetime, str]] = {}  # node -> first time out of service
        self.node_state: dict[str, str] = {}
        self.notices: list[tuple[datetime, dict[str, Any]]] = []
        for at, kind, data in events:
            self._add(at, kind, data)
        self.opened_by_job: dict[str, list[tuple[datetime, str]]] = defaultdict(list)
        for incident_id, (at, data) in self.opened.items():
            for job in data.get("job_ids") or []:
                self.opened_by_job[str(job)].append((at, incident_id))

    def _add(self, at: datetime, kind: str, data: dict[str, Any]) -> None:
        if kind == "JobStateChanged":
            self.job_changes[str(data["job_id"])].append((at, str(data["state"])))
        elif kind == "IncidentOpened":
            self.opened.setdefault(str(data["incident_id"]), (at, data))
        elif kind == "IncidentClosed":
            self.closed.setdefault(str(data["incident_id"]), (at, str(data.get("outcome"))))
        elif kind == "NodeStateChanged":
            state, node = str(data["state"]), str(data["node_arn"])
            self.node_state[node] = state
            if data.get("incident_id"):
                self.node_changes[str(data["incident_id"])].append((at, state))
            if state in OUT_OF_SERVICE:
                self.out_of_service.setdefault(node, (at, state))
        elif kind == "NotificationSent":
            self.notices.append((at, data))


def _interruption(injected: Injected, recorder: SimulationRecorder, index: _Index) -> InterruptionFigures:
    job = recorder.jobs.get(injected.job_id or "")
    base: dict[str, Any] = {
        "index": injected.index, "at": injected.at, "cause": injected.cause, "category": injected.category,
        "hardware": injected.hardware, "looks": injected.looks, "node": injected.node, "job_id": injected.job_id,
        "deferred_s": injected.deferred_s, "lost_s": None, "detect_s": None, "diagnose_s": None, "repair_s": None,
        "restart_s": None, "incidents": []}
    down = _first(job.downs, injected.at, HIT_WINDOW_S) if job else None
    if job is None or down is None:
        return InterruptionFigures(**{**base, "outcome": "absorbed"})
    up = next((u for u in job.ups if u >= down), None)
    incidents = [iid for at, iid in index.opened_by_job.get(injected.job_id or "", [])
                 if injected.at <= at and (up is None or at <= up)]
    escalated = any(_notice_about(n, injected.job_id, incidents) for at, n in index.notices
                    if n.get("severity") in ESCALATING and n.get("kind") not in NODE_TICKETS
                    and injected.at <= at and (up is None or at <= up))
    if up is None:
        return InterruptionFigures(**{**base, "outcome": "open", "incidents": incidents})
    milestones = _milestones(injected, index, incidents, up)
    phases = [max(0.0, (b - a).total_seconds()) for a, b in itertools.pairwise(milestones)]
    return InterruptionFigures(**{
        **base, "outcome": "escalated" if escalated else "recovered", "incidents": incidents,
        "lost_s": round((up - injected.at).total_seconds(), 3),
        **{f"{phase}_s": round(value, 3) for phase, value in zip(PHASES, phases, strict=True)}})


def _first(moments: list[datetime], after: datetime, window: float) -> datetime | None:
    for moment in moments:
        if moment >= after:
            return moment if (moment - after).total_seconds() <= window else None
    return None


def _notice_about(notice: dict[str, Any], job_id: str | None, incidents: list[str]) -> bool:
    message = notice.get("message") or {}
    return (notice.get("job_id") == job_id or job_id in (message.get("job_ids") or [])
            or notice.get("incident_id") in incidents or bool(set(message.get("incident_ids") or []) & set(incidents)))


def _milestones(injected: Injected, index: _Index, incidents: list[str], up: datetime) -> list[datetime]:
    start = injected.at
    changes = [at for at, state in index.job_changes.get(injected.job_id or "", [])
               if at >= start and state != "RUNNING"]
    opened = [index.opened[i][0] for i in incidents]
    detected = min([*changes[:1], *opened], default=up)
    verdicts = [next((at for at, s in index.node_changes.get(i, []) if s not in UNDIAGNOSED), None) for i in incidents]
    repaired = [next((at for at, s in index.node_changes.get(i, []) if s in REPAIRED), None) for i in incidents]
    diagnosed = max((v for v in verdicts if v is not None), default=detected)
    repair_end = max([*(r for r in repaired if r is not None), *(index.closed[i][0] for i in incidents
                                                                if i in index.closed)], default=diagnosed)
    points = [start]
    for moment in (detected, diagnosed, repair_end):
        points.append(min(max(moment, points[-1]), up))
    points.append(up)
    return points


def _job_figures(job_id: str, job: _Job, interruptions: list[InterruptionFigures], index: _Index,
                 horizon: datetime) -> JobFigures:
    span = max((horizon - job.launched_at).total_seconds(), 1e-9)
    effective = max(0.0, job.up_s - job.lost_work_s)
    changes = index.job_changes.get(job_id, [])
    return JobFigures(job_id=job_id, ranks=job.ranks, ettr=round(min(1.0, effective / span), 6),
                      up_s=round(job.up_s, 3), lost_work_s=round(job.lost_work_s, 3),
                      interruptions=sum(1 for i in interruptions if i.job_id == job_id and i.outcome != "absorbed"),
                      up_at_end=job.up_since is not None, phase_at_end=changes[-1][1] if changes else None)


def _headline(interruptions: list[InterruptionFigures], ettr: float | None,
              out_of_service: dict[str, Any]) -> dict[str, Any]:
    """The five figures to compare with Meta's: unexpected interruptions that hit a job, how many of them
    ended without a person, how many needed one, the effective training time, and irreversible actions
    taken for the wrong reason (a node out of service for a cause that was not its hardware)."""
    unexpected = [i for i in interruptions if i.category != "planned" and i.outcome != "absorbed"]
    return {"interruptions": len(unexpected),
            "recovered_automatically": sum(1 for i in unexpected if i.outcome == "recovered"),
            "escalated_to_humans": sum(1 for i in unexpected if i.outcome == "escalated"),
            "open_at_end": sum(1 for i in unexpected if i.outcome == "open"),
            "effective_training_time": ettr,
            "wrong_irreversible_actions": out_of_service["false"],
            "node_repair_tickets": out_of_service["nodes"]}


def _interruption_counts(interruptions: list[InterruptionFigures], recorder: SimulationRecorder) -> dict[str, Any]:
    return {
        "injected": len(interruptions),
        "unexpected": sum(1 for i in interruptions if i.category != "planned"),
        "planned": sum(1 for i in interruptions if i.category == "planned"),
        "by_outcome": dict(sorted(Counter(i.outcome for i in interruptions).items())),
        "by_cause": dict(sorted(Counter(i.cause for i in interruptions).items())),
        "deferred": recorder.deferred,
    }


def _escalations(index: _Index, recorder: SimulationRecorder) -> dict[str, Any]:
    escalating = [n for _, n in index.notices if n.get("severity") in ESCALATING]
    return {"count": len(escalating), "by_kind": dict(sorted(Counter(str(n.get("kind")) for n in escalating).items())),
            "notifications": len(index.notices),
            "all_by_kind": dict(sorted(Counter(str(n.get("kind")) for _, n in index.notices).items())),
            "person_actions": dict(sorted(recorder.person_actions.items()))}


def _out_of_service(index: _Index, recorder: SimulationRecorder) -> dict[str, Any]:
    by_node: dict[str, list[Injected]] = defaultdict(list)
    for injected in recorder.injected:
        if injected.node_arn:
            by_node[injected.node_arn].append(injected)
    false_nodes = []
    for node, (at, state) in sorted(index.out_of_service.items()):
        causes = [i for i in by_node.get(node, []) if i.at <= at]
        if not causes or not causes[-1].hardware:
            name = recorder.node_names.get(node, node.rsplit("/", 1)[-1])
            false_nodes.append({"node": name, "state": state, "at": at.isoformat(),
                                "cause": causes[-1].cause if causes else None})
    return {"nodes": len(index.out_of_service), "false": len(false_nodes), "false_nodes": false_nodes,
            "by_state": dict(sorted(Counter(s for _, s in index.out_of_service.values()).items())),
            "at_end": dict(sorted(Counter(index.node_state.values()).items()))}


def _incidents(index: _Index) -> dict[str, Any]:
    return {"opened": len(index.opened), "closed": len(index.closed),
            "open": sorted(set(index.opened) - set(index.closed))[:50],
            "by_outcome": dict(sorted(Counter(outcome for _, outcome in index.closed.values()).items()))}


def _state(recorder: SimulationRecorder) -> dict[str, Any]:
    samples = recorder.state
    by_day = [{"day": day, "bytes": size, "records": count} for day, size, count in samples]
    week = next((s for s in samples if s[0] >= 7), None)
    last = samples[-1] if samples else None
    growth = round(last[1] / week[1], 4) if week and last and week[1] and last[0] > week[0] else None
    return {"bytes": last[1] if last else None, "records": last[2] if last else None,
            "growth_over_day_7": growth, "by_day": by_day}


# --- the report, as people read it ---------------------------------------------------------------------


def report_lines(report: SimulationReport) -> list[str]:
    """The report as plain lines: the headline first, then where the time went and what recovery did."""
    head, mix = report.headline, report.fault_mix
    ettr = head["effective_training_time"]
    lines = [
        f"{mix.get('name')} on {report.nodes} nodes x {report.gpus_per_node} GPUs (+{report.spares} spares), "
        f"{report.days:g} days, seed {report.seed}, engine {report.engine}",
        f"  interruptions (unexpected, hit a job)  {head['interruptions']}",
        f"  recovered automatically                {head['recovered_automatically']}",
        f"  escalated to humans                    {head['escalated_to_humans']}",
        f"  still open at the end                  {head['open_at_end']}",
        f"  effective training time                {'-' if ettr is None else f'{ettr:.2%}'}",
        f"  wrong irreversible actions             {head['wrong_irreversible_actions']}",
        f"  injected {report.interruptions['injected']} ({report.interruptions['planned']} planned), "
        f"by outcome {report.interruptions['by_outcome']}",
        "time lost per interruption (s):      count    mean     p50     p90     max",
    ]
    for phase in (*PHASES, "lost"):
        values = report.lost_s[phase]
        lines.append(f"  {phase:32s} {values.count:6d} {_num(values.mean)} {_num(values.p50)} "
                     f"{_num(values.p90)} {_num(values.max)}")
    oos = report.out_of_service
    lines += [
        f"nodes out of service: {oos['nodes']} ({oos['false']} for a cause that was not their hardware)",
        f"escalations: {report.escalations['count']} {report.escalations['by_kind']}; "
        f"people: {report.escalations['person_actions']}",
        f"actions: {report.actions['total']} {report.actions['by_type']}; "
        f"same key twice: {report.actions['twice_count']}",
        f"recovery state: {report.state['bytes']} bytes in {report.state['records']} records "
        f"(day 7 -> end: {_growth(report.state['growth_over_day_7'])})",
        f"run: {report.timing.get('wall_s')} s wall, {report.timing.get('steps')} steps, "
        f"peak RSS {report.timing.get('peak_rss_mb')} MiB",
    ]
    return lines


def _growth(value: float | None) -> str:
    return "- (under 7 days)" if value is None else f"x{value}"


def _num(value: float | None) -> str:
    return f"{'-':>7s}" if value is None else f"{value:7.0f}"
