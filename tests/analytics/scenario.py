"""A small, fully known fleet history for the report tests: ECS task events and our envelopes, explicit times.

Day 0 = 2026-11-27 (T0 09:00Z), day 1 = the next day. Four incidents open in the range [T0, T0 + 2 days]:

A  node 1, alpha (2 tasks x 8 GPUs)  hardware, reboot, back     detect 30  diagnose 60  repair 330  restart 60
D  node 3, delta (1 task x 8 GPUs)   hardware, reboot never ends, escalated: the job never comes back
B  node 3, beta  (2 tasks x 4 GPUs)  hardware, quarantined, back detect 10  diagnose 90  repair 30   restart 270
C  node 5, gamma (1 task x 8 GPUs)   application, no repair, back detect 5  diagnose 60  repair 0    restart 30

Plus noise the report must ignore: an incident opened before the range, a duplicated record, and a
RUNNING for delta that arrives after the range end.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from events_schema.envelope import Envelope, EventData, Subject
from events_schema.events import (
    HealthCheckReported,
    IncidentClosed,
    IncidentOpened,
    JobStateChanged,
    NodeStateChanged,
    Notice,
    NotificationSent,
    XidCount,
)
from tests.factories import T0, at, node_arn, ours, task_event

DAY = 86_400.0
SINCE = T0
UNTIL = T0 + timedelta(days=2)
ALPHA, BETA, GAMMA, DELTA, OLD = "job:alpha", "job:beta", "job:gamma", "job:delta", "job:old"


def _ours(data: EventData, seconds: float, *, node: int | None = None, job: str | None = None,
          incident: str | None = None) -> Envelope:
    subject = Subject(node=node_arn(node) if node else None, job=job, incident=incident)
    return ours(data, when=at(seconds), subject=subject, event_id=f"{data.TYPE}-{incident or job}-{seconds:g}")


def _task(task: int, node: int, job: str, seconds: float, status: str, *, version: int, gpus: int,
          exit_code: int | None = None, stop_code: str | None = None, delivered_after: float = 0.0) -> dict[str, Any]:
    event = task_event(task, node=node, group=job, when=at(seconds), status=status, version=version, gpus=gpus,
                       exit_code=exit_code, stop_code=stop_code)
    if delivered_after:  # EventBridge's time comes after the task's own stoppedAt
        event["time"] = at(seconds + delivered_after).strftime("%Y-%m-%dT%H:%M:%SZ")
    return event


def _report(incident: str, node: int, seconds: float, verdict: str, action: str, xids: dict[int, int],
            level: int = 2) -> Envelope:
    data = HealthCheckReported(
        node_arn=node_arn(node), incident_id=incident, level=level, verdict=verdict,  # type: ignore[arg-type]
        recommended_action=action,  # type: ignore[arg-type]
        xids=[XidCount(xid=x, count=n) for x, n in xids.items()],
    )
    return _ours(data, seconds, node=node, incident=incident)


def _opened(incident: str, node: int, seconds: float, jobs: list[str]) -> Envelope:
    data = IncidentOpened(incident_id=incident, node_arn=node_arn(node), job_ids=jobs, reason="task failed")
    return _ours(data, seconds, node=node, incident=incident)


def _closed(incident: str, node: int, seconds: float, outcome: str) -> Envelope:
    data = IncidentClosed(incident_id=incident, node_arn=node_arn(node), outcome=outcome)  # type: ignore[arg-type]
    return _ours(data, seconds, node=node, incident=incident)


def _node_state(incident: str, node: int, seconds: float, state: str) -> Envelope:
    data = NodeStateChanged(node_arn=node_arn(node), state=state, incident_id=incident)  # type: ignore[arg-type]
    return _ours(data, seconds, node=node, incident=incident)


def _job_running(incident: str, job: str, seconds: float) -> Envelope:
    return _ours(JobStateChanged(job_id=job, state="RUNNING", incident_id=incident), seconds, job=job,
                 incident=incident)


def history() -> list[dict[str, Any] | Envelope]:
    """The whole history, in no particular order (the report sorts by time)."""
    d1 = DAY
    events: list[dict[str, Any] | Envelope] = [
        # --- before the range: an old incident (out of range) on node 2 ---------------------------
        _task(90, 2, OLD, -7200, "RUNNING", version=1, gpus=8),
        _task(90, 2, OLD, -3700, "STOPPED", version=2, gpus=8, exit_code=1),
        _opened("inc-Z", 2, -3600, [OLD]),
        # --- A: node 1, alpha, reboot -------------------------------------------------------------
        _task(1, 1, ALPHA, 0, "RUNNING", version=1, gpus=8),
        _task(2, 2, ALPHA, 0, "RUNNING", version=1, gpus=8),
        _task(1, 1, ALPHA, 100, "STOPPED", version=2, gpus=8, exit_code=1, stop_code="EssentialContainerExited"),
        _opened("inc-A", 1, 130, [ALPHA]),
        _task(2, 2, ALPHA, 140, "STOPPED", version=2, gpus=8, exit_code=137, stop_code="UserInitiated"),
        _report("inc-A", 1, 190, "hardware_fault", "reboot", {48: 3}),
        _node_state("inc-A", 1, 200, "REBOOTING"),
        _report("inc-A", 1, 500, "healthy", "none", {48: 1}, level=1),
        _node_state("inc-A", 1, 520, "HEALTHY"),
        _task(3, 1, ALPHA, 560, "RUNNING", version=1, gpus=8),
        _task(4, 2, ALPHA, 560, "RUNNING", version=1, gpus=8),
        _job_running("inc-A", ALPHA, 580),
        _closed("inc-A", 1, 600, "recovered"),
        # --- D: node 3, delta, the reboot never ends; escalated; delta never comes back ----------
        _task(31, 3, DELTA, 2000, "RUNNING", version=1, gpus=8),
        _task(31, 3, DELTA, 3000, "STOPPED", version=2, gpus=8, exit_code=1),
        _opened("inc-D", 3, 3020, [DELTA]),
        _report("inc-D", 3, 3100, "hardware_fault", "reboot", {48: 1}),
        _node_state("inc-D", 3, 3110, "REBOOTING"),
        _ours(NotificationSent(kind="deadline_expired", subject="node not back after reboot", incident_id="inc-D",
                               message=Notice(kind="deadline_expired", cluster="gpu-training",
                                              summary="node not back after reboot")),
              4100, node=3, incident="inc-D"),
        _closed("inc-D", 3, 4110, "escalated"),
        # --- B: node 3 again, beta, quarantined ----------------------------------------------------
        _task(11, 3, BETA, d1, "RUNNING", version=1, gpus=4),
        _task(12, 4, BETA, d1, "RUNNING", version=1, gpus=4),
        _task(11, 3, BETA, d1 + 1000, "STOPPED", version=2, gpus=4, exit_code=1, delivered_after=2),
        _opened("inc-B", 3, d1 + 1010, [BETA]),
        _report("inc-B", 3, d1 + 1100, "hardware_fault", "quarantine", {79: 1, 48: 2}),
        _node_state("inc-B", 3, d1 + 1130, "QUARANTINED"),
        _job_running("inc-B", BETA, d1 + 1400),
        _closed("inc-B", 3, d1 + 1410, "quarantined"),
        # --- C: node 5, gamma, application fault ---------------------------------------------------
        _task(21, 5, GAMMA, d1, "RUNNING", version=1, gpus=8),
        _task(21, 5, GAMMA, d1 + 2000, "STOPPED", version=2, gpus=8, exit_code=1),
        _opened("inc-C", 5, d1 + 2005, [GAMMA]),
        _report("inc-C", 5, d1 + 2065, "application_fault", "none", {13: 2}),
        _job_running("inc-C", GAMMA, d1 + 2095),
        _closed("inc-C", 5, d1 + 2100, "application_fault"),
        # --- after the range: delta's RUNNING must not count -------------------------------------
        _job_running("inc-D", DELTA, 2 * DAY + 3600),
    ]
    events.append(_opened("inc-A", 1, 130, [ALPHA]))  # delivered twice (at-least-once)
    return events


def at_day(day: int, seconds: float) -> datetime:
    return at(day * DAY + seconds)
