"""The fleet reliability report: pure figures from a history of stream events over a time range.

No I/O and no clock: the caller reads the events (stream, archive or file) and names the range.

Definitions (the recovery consumer writes our events with ``subject`` filled):

Duplicated and out-of-order deliveries give the same figures (only the count of events read differs).

* An incident runs from ``IncidentOpened`` to ``IncidentClosed``; it is in the report when it opened
  inside the range. Events after ``until`` are not looked at; events before ``since`` only explain
  incidents in the range (the task failure that led to one).
* detect: the earliest failing ECS task event of the incident's jobs (STOPPED, non-zero exit or failed
  start, not a user stop; ``detail.stoppedAt``, else the event time) after the job's previous incident,
  up to ``IncidentOpened``.
* diagnose: ``IncidentOpened`` -> the incident's first ``HealthCheckReported``.
* repair: that report -> the node's ``NodeStateChanged`` to HEALTHY, QUARANTINED or REPLACED for the
  incident; zero when the verdict needed no repair (``healthy``, ``application_fault``).
* restart: the repair's end (or the report) -> the last of the incident's jobs back to RUNNING
  (``JobStateChanged`` RUNNING for the incident).
* time to recovery = detect + diagnose + repair + restart. Means and p90s are over the incidents where
  all four are known, so the phase means add up to the mean time to recovery. p90 is interpolated
  between the closest ranks (``statistics.quantiles``, inclusive method).
* automatic: every job back to RUNNING and no ``NotificationSent`` of kind escalation, deadline_expired
  or job_failed for the incident. The rate is over every incident in the range.
* XIDs: per incident, every XID its health reports name, counted once per report kind (the highest
  count any of its reports gives, so a post-reboot check does not double the diagnosis).
* goodput lost per job interruption: (the job's RUNNING time for the incident, else the range end)
  minus the job's first failure, times the GPUs of the job's tasks alive at that failure.
"""

from __future__ import annotations

import statistics
from bisect import bisect_left
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime, timedelta
from typing import Literal

from analytics.report_history import History, index_history
from analytics.report_model import (
    PHASES,
    DayFaults,
    IncidentFigures,
    Interruption,
    NodeFigures,
    Report,
    ReportConfig,
    Stat,
    XidFigures,
)
from consumers.core.xid_catalog import classify_xid
from events_schema.decode import StreamEvent
from events_schema.events import HealthCheckReported

__all__ = ["PHASES", "History", "IncidentFigures", "Report", "ReportConfig", "Stat", "build_report", "p90", "stat"]

REPAIR_ENDS = frozenset({"HEALTHY", "QUARANTINED", "REPLACED"})
NO_REPAIR_VERDICTS = frozenset({"healthy", "application_fault"})
HARDWARE_OUTCOMES = frozenset({"quarantined", "replaced"})


# --- statistics ---------------------------------------------------------------------------------


def p90(values: Sequence[float]) -> float | None:
    """Interpolated between the closest ranks (``statistics.quantiles``, inclusive: numpy's default)."""
    if len(values) < 2:
        return values[0] if values else None  # quantiles needs two points before Python 3.13
    return statistics.quantiles(values, n=10, method="inclusive")[-1]


def stat(values: Sequence[float]) -> Stat:
    return Stat(count=len(values), mean_s=statistics.fmean(values) if values else None, p90_s=p90(values))


# --- one incident -----------------------------------------------------------------------------------


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return max(0.0, (end - start).total_seconds())


def _previous_opening(history: History, job_id: str, before: datetime) -> datetime | None:
    openings = history.openings_of(job_id)
    index = bisect_left(openings, before)
    return openings[index - 1] if index else None


def job_first_failure(history: History, incident_id: str, job_id: str) -> datetime | None:
    """The job's first task failure since its previous incident, up to when it joined this one."""
    joined_at = history.joined_at(incident_id, job_id)
    failures = history.failures(job_id, _previous_opening(history, job_id, joined_at), joined_at)
    return failures[0] if failures else None


def incident_figures(history: History, incident_id: str) -> IncidentFigures:
    opened_at, opened = history.opened[incident_id]
    jobs = history.jobs_of(incident_id)
    failures = [f for job in jobs if (f := job_first_failure(history, incident_id, job)) is not None]
    first_failure = min(failures) if failures else None
    # Ties in time are broken by content, so the figures do not depend on delivery order.
    reports = sorted(history.reports.get(incident_id, []), key=lambda r: (r[0], r[1].model_dump_json()))
    report_at, report = reports[0] if reports else (None, None)
    repair_end = _repair_end(history, incident_id, opened.node_arn, report_at, report)
    running = [history.running.get((incident_id, job)) for job in jobs]
    all_running = all(r is not None for r in running)
    restart_end = max((r for r in running if r is not None), default=repair_end) if all_running else None
    phases = {
        "detect": _seconds(first_failure, opened_at),
        "diagnose": _seconds(opened_at, report_at),
        "repair": _seconds(report_at, repair_end),
        "restart": _seconds(repair_end, restart_end),
    }
    known = [v for v in phases.values() if v is not None]
    closed = history.closed.get(incident_id)
    outcome = closed[1].outcome if closed else "open"
    xids = _incident_xids(reports)
    return IncidentFigures(
        incident_id=incident_id, node_arn=opened.node_arn, opened_at=opened_at,
        closed_at=closed[0] if closed else None, outcome=outcome,
        verdict=report.verdict if report else None,
        hardware_fault=(report is not None and report.verdict == "hardware_fault") or outcome in HARDWARE_OUTCOMES,
        jobs=jobs, first_failure_at=first_failure,
        detect_s=phases["detect"], diagnose_s=phases["diagnose"], repair_s=phases["repair"],
        restart_s=phases["restart"],
        time_to_recovery_s=sum(known) if len(known) == len(PHASES) else None,
        automatic=all_running and incident_id not in history.escalated,
        xids=xids,
    )


def _repair_end(history: History, incident_id: str, node_arn: str, report_at: datetime | None,
                report: HealthCheckReported | None) -> datetime | None:
    if report_at is None or report is None:
        return None
    if report.verdict in NO_REPAIR_VERDICTS:
        return report_at
    for when, change in sorted(history.node_states.get(incident_id, []), key=lambda s: (s[0], s[1].state)):
        if when >= report_at and change.node_arn == node_arn and change.state in REPAIR_ENDS:
            return when
    return None


def _incident_xids(reports: list[tuple[datetime, HealthCheckReported]]) -> dict[int, int]:
    counts: dict[int, int] = {}
    for _, report in reports:
        for found in report.xids:
            counts[found.xid] = max(counts.get(found.xid, 0), found.count)
    return dict(sorted(counts.items()))


def _reboots(history: History, incident_id: str) -> int:
    # A redelivered REBOOTING has the same time: count distinct ones.
    return len({when for when, change in history.node_states.get(incident_id, []) if change.state == "REBOOTING"})


# --- the whole report -------------------------------------------------------------------------------


def build_report(
    events: Iterable[StreamEvent],
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    config: ReportConfig | None = None,
    unreadable: Mapping[str, int] | None = None,
) -> Report:
    """``events`` may be a one-pass iterator; ``unreadable`` (e.g. a Counter the decoder fills while the
    events are read) is read after them."""
    config = config or ReportConfig()
    history = index_history(events, until=until, config=config)
    in_range = sorted(
        (iid for iid, (when, _) in history.opened.items() if since is None or when >= since),
        key=lambda iid: (history.opened[iid][0], iid),
    )
    incidents = [incident_figures(history, iid) for iid in in_range]
    range_end = until or history.last_time
    complete = [i for i in incidents if i.time_to_recovery_s is not None]
    automatic = sum(1 for i in incidents if i.automatic)
    interruptions = _interruptions(history, in_range, range_end)
    return Report(
        since=since, until=until, range_end=range_end, events=history.events,
        unreadable=dict(sorted((unreadable or {}).items())),
        incidents=len(incidents), incidents_complete=len(complete),
        outcomes=dict(sorted(Counter(i.outcome for i in incidents).items())),
        automatic_recoveries=automatic,
        automatic_recovery_rate=automatic / len(incidents) if incidents else None,
        time_to_recovery=stat([i.time_to_recovery_s for i in complete if i.time_to_recovery_s is not None]),
        phases={phase: stat([_phase(i, phase) for i in complete]) for phase in PHASES},
        xids=_xid_figures(incidents),
        nodes=_node_figures(history, incidents, config),
        lemon_threshold=config.lemon_threshold,
        interruptions=interruptions,
        gpu_hours_lost=sum(i.gpu_hours_lost for i in interruptions),
        faults_by_day=_faults_by_day(incidents),
        node_day=_node_day(incidents),
        incident_list=incidents,
    )


def _phase(incident: IncidentFigures, phase: str) -> float:
    value = getattr(incident, f"{phase}_s")
    return float(value)


def _xid_figures(incidents: list[IncidentFigures]) -> list[XidFigures]:
    incident_counts: Counter[int] = Counter()
    occurrences: Counter[int] = Counter()
    for incident in incidents:
        for xid, count in incident.xids.items():
            incident_counts[xid] += 1
            occurrences[xid] += count
    out = []
    for xid in sorted(incident_counts, key=lambda x: (-incident_counts[x], -occurrences[x], x)):
        advice = classify_xid(xid)
        out.append(XidFigures(xid=xid, meaning=advice.meaning, cls=advice.cls, incidents=incident_counts[xid],
                              occurrences=occurrences[xid]))
    return out


def _node_figures(history: History, incidents: list[IncidentFigures], config: ReportConfig) -> list[NodeFigures]:
    by_node: dict[str, list[IncidentFigures]] = defaultdict(list)
    for incident in incidents:
        by_node[incident.node_arn].append(incident)
    nodes = []
    for node, mine in by_node.items():
        hardware = sum(1 for i in mine if i.hardware_fault)
        nodes.append(NodeFigures(
            node_arn=node, incidents=len(mine), hardware_faults=hardware,
            application_faults=sum(1 for i in mine if i.verdict == "application_fault"),
            reboots=sum(_reboots(history, i.incident_id) for i in mine),
            quarantined=any(i.outcome in HARDWARE_OUTCOMES for i in mine),
            xids=sorted({x for i in mine for x in i.xids}),
            lemon=hardware >= config.lemon_threshold,
        ))
    return sorted(nodes, key=lambda n: (-n.hardware_faults, -n.incidents, n.node_arn))


def _interruptions(history: History, incident_ids: list[str], range_end: datetime | None) -> list[Interruption]:
    out = []
    for incident_id in incident_ids:
        for job in history.jobs_of(incident_id):
            failed_at = job_first_failure(history, incident_id, job) or history.joined_at(incident_id, job)
            running_at = history.running.get((incident_id, job))
            end = running_at or range_end or failed_at
            duration = max(0.0, (end - failed_at).total_seconds())
            gpus = history.gpus_at(job, failed_at)
            out.append(Interruption(
                incident_id=incident_id, job_id=job, failed_at=failed_at, running_at=running_at,
                duration_s=duration, gpus=gpus, gpu_hours_lost=duration / 3600 * gpus,
                recovered=running_at is not None,
            ))
    return out


def _category(incident: IncidentFigures) -> Literal["hardware", "application", "other"]:
    if incident.hardware_fault:
        return "hardware"
    return "application" if incident.verdict == "application_fault" else "other"


def _faults_by_day(incidents: list[IncidentFigures]) -> list[DayFaults]:
    if not incidents:
        return []
    counts: dict[date, Counter[str]] = defaultdict(Counter)
    for incident in incidents:
        counts[incident.opened_at.date()][_category(incident)] += 1
    first, last = min(counts), max(counts)
    days = [first + timedelta(days=n) for n in range((last - first).days + 1)]  # quiet days show as zero
    return [DayFaults(day=d, hardware=counts[d]["hardware"], application=counts[d]["application"],
                      other=counts[d]["other"]) for d in days]


def _node_day(incidents: list[IncidentFigures]) -> dict[str, dict[str, int]]:
    grid: dict[str, Counter[str]] = defaultdict(Counter)
    for incident in incidents:
        grid[incident.node_arn][incident.opened_at.date().isoformat()] += 1
    return {node: dict(sorted(days.items())) for node, days in sorted(grid.items())}
