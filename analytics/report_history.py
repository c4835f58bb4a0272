"""A history of stream events, indexed for the report: our events by incident and the ECS tasks by job.

Built in one pass, in any order, holding summaries rather than events. Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from analytics.report_model import ReportConfig
from consumers.core.facts import is_failure, job_identity
from events_schema.aws import TaskStateChange
from events_schema.decode import StreamEvent
from events_schema.envelope import OurEvent
from events_schema.events import (
    HealthCheckReported,
    IncidentClosed,
    IncidentOpened,
    JobStateChanged,
    NodeStateChanged,
    NotificationSent,
)


@dataclass(slots=True)
class _Task:
    """What the report needs of one task: when it was first seen, when it first stopped, its GPUs."""

    first_seen: datetime
    stopped_at: datetime | None = None
    gpus: int = 0


@dataclass
class History:
    """Our events by incident and a summary of the ECS tasks by job.

    Built in one pass, in any order, holding summaries rather than events; every update is idempotent
    and order-free (earliest time wins), so duplicated or shuffled deliveries give the same history.
    """

    opened: dict[str, tuple[datetime, IncidentOpened]] = field(default_factory=dict)
    closed: dict[str, tuple[datetime, IncidentClosed]] = field(default_factory=dict)
    reports: dict[str, list[tuple[datetime, HealthCheckReported]]] = field(default_factory=lambda: defaultdict(list))
    node_states: dict[str, list[tuple[datetime, NodeStateChanged]]] = field(
        default_factory=lambda: defaultdict(list))
    running: dict[tuple[str, str], datetime] = field(default_factory=dict)
    escalated: set[str] = field(default_factory=set)
    tasks: dict[str, dict[str, _Task]] = field(default_factory=lambda: defaultdict(dict))  # job -> task ARN -> task
    job_failures: dict[str, set[datetime]] = field(default_factory=lambda: defaultdict(set))
    last_time: datetime | None = None
    events: int = 0
    joins: dict[str, dict[str, datetime]] = field(default_factory=lambda: defaultdict(dict))  # incident -> job -> at
    _openings: dict[str, list[datetime]] | None = field(default=None, repr=False)

    def failures(self, job_id: str, after: datetime | None, up_to: datetime) -> list[datetime]:
        return sorted(t for t in self.job_failures.get(job_id, ()) if (after is None or t > after) and t <= up_to)

    def gpus_at(self, job_id: str, moment: datetime) -> int:
        """GPUs of the job's tasks alive at ``moment``: seen by then, not stopped before it."""
        return sum(
            task.gpus for task in self.tasks.get(job_id, {}).values()
            if task.first_seen <= moment and (task.stopped_at is None or task.stopped_at >= moment)
        )

    def jobs_of(self, incident_id: str) -> list[str]:
        """The incident's jobs: those it opened with, then those that joined it, in joining order."""
        _, opened = self.opened[incident_id]
        joined = self.joins.get(incident_id, {})
        later = sorted((at, job) for job, at in joined.items() if job not in opened.job_ids)
        return [*opened.job_ids, *(job for _, job in later)]

    def joined_at(self, incident_id: str, job_id: str) -> datetime:
        return self.joins.get(incident_id, {}).get(job_id) or self.opened[incident_id][0]

    def openings_of(self, job_id: str) -> list[datetime]:
        """When this job joined an incident (opened with it, or joined it), in order; built once."""
        if self._openings is None:
            by_job: dict[str, list[datetime]] = defaultdict(list)
            for incident_id in self.opened:
                for job in self.jobs_of(incident_id):
                    by_job[job].append(self.joined_at(incident_id, job))
            self._openings = {job: sorted(times) for job, times in by_job.items()}
        return self._openings.get(job_id, [])


def _earliest(table: dict[Any, tuple[datetime, Any]], key: Any, when: datetime, value: Any) -> None:
    if key not in table or when < table[key][0]:
        table[key] = (when, value)


def index_history(events: Iterable[StreamEvent], *, until: datetime | None, config: ReportConfig) -> History:
    history = History()
    for event in events:
        if until is not None and event.time > until:
            continue
        history.events += 1
        if history.last_time is None or event.time > history.last_time:
            history.last_time = event.time
        if isinstance(event, OurEvent):
            _index_ours(history, event, config)
        elif isinstance(event, TaskStateChange):
            _index_task(history, event, config)
    return history


def _join(history: History, incident_id: str, job_id: str, when: datetime) -> None:
    joined = history.joins[incident_id]
    if job_id not in joined or when < joined[job_id]:
        joined[job_id] = when


def _index_ours(history: History, event: OurEvent, config: ReportConfig) -> None:
    data, when = event.data, event.time
    if isinstance(data, JobStateChanged) and data.incident_id:
        _join(history, data.incident_id, data.job_id, when)  # a job that joins an incident says so
    if isinstance(data, IncidentOpened):
        _earliest(history.opened, data.incident_id, when, data)
        for job in data.job_ids:
            _join(history, data.incident_id, job, when)
    elif isinstance(data, IncidentClosed):
        _earliest(history.closed, data.incident_id, when, data)
    elif isinstance(data, HealthCheckReported) and data.incident_id:
        history.reports[data.incident_id].append((when, data))
    elif isinstance(data, NodeStateChanged) and data.incident_id:
        history.node_states[data.incident_id].append((when, data))
    elif isinstance(data, JobStateChanged) and data.state == "RUNNING" and data.incident_id:
        key = (data.incident_id, data.job_id)
        if key not in history.running or when < history.running[key]:
            history.running[key] = when
    elif isinstance(data, NotificationSent) and data.incident_id and data.kind in config.escalation_kinds:
        history.escalated.add(data.incident_id)


def _index_task(history: History, event: TaskStateChange, config: ReportConfig) -> None:
    detail = event.detail
    job_id = job_identity(detail, None, config.projection.identity).job_id
    if job_id is None:
        return  # not a job's task (the health check, for one)
    failed = is_failure(detail)
    stopped_at = (detail.stoppedAt or event.time) if detail.lastStatus == "STOPPED" else None
    task = history.tasks[job_id].setdefault(detail.taskArn, _Task(event.time))
    task.first_seen = min(task.first_seen, event.time)
    task.gpus = max(task.gpus, len(detail.gpu_ids))
    if stopped_at is not None:
        task.stopped_at = stopped_at if task.stopped_at is None else min(task.stopped_at, stopped_at)
        if failed:
            history.job_failures[job_id].add(stopped_at)
