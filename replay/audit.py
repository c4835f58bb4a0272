"""The audit timeline of a job, a node or an incident: what ECS said, what the health check found,
what was decided and why, what was done, and what came of it.

Two passes over the source, both streaming: the first finds what the subject is linked to (a job's
incidents; an incident's node, jobs and triggering task; a node's incidents), the second collects
every event about the subject or its links. Only matching events are kept, de-duplicated by id.
A cheap byte search skips records that cannot match before anything is decoded.

Why one module (about 440 lines): the two passes, the links they follow and the timeline's rows share one
idea of "about this subject"; the rendering of rows is the short tail of the file.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from consumers.core.clocktext import iso
from consumers.core.facts import job_identity
from consumers.core.projection import ProjectionConfig
from events_schema.arn import short_arn
from events_schema.aws import (
    AwsHealthEvent,
    ContainerInstanceHealthChange,
    ContainerInstanceStateChange,
    Ec2InstanceStateChange,
    TaskStateChange,
)
from events_schema.decode import MalformedRecord, StreamEvent, decode
from events_schema.envelope import OurEvent
from events_schema.events import (
    ActionOutcome,
    DeadlineExpired,
    DecisionRecorded,
    HealthCheckReported,
    IncidentClosed,
    IncidentOpened,
    JobStateChanged,
    NodeStateChanged,
    NotificationSent,
    OperatorRequested,
)
from replay.rebuild import TimeWindow, aware
from replay.sources import RawRecord

SubjectKind = Literal["job", "node", "incident"]
Category = Literal["ecs", "health", "request", "decision", "action", "outcome", "other"]
# A person's request sorts before what recovery decided on it at the same instant.
CATEGORY_ORDER: dict[str, int] = {"ecs": 0, "health": 1, "request": 2, "decision": 3, "action": 4, "outcome": 5,
                                  "other": 6}
CATEGORY_TITLE = {
    "ecs": "ECS said", "health": "health check found", "request": "people asked", "decision": "decided",
    "action": "done", "outcome": "came of it", "other": "other",
}


@dataclass(frozen=True)
class AuditSubject:
    kind: SubjectKind
    id: str


@dataclass
class Facts:
    """The identifiers an event mentions, whatever its shape."""

    nodes: set[str] = field(default_factory=set)
    instance_ids: set[str] = field(default_factory=set)
    jobs: set[str] = field(default_factory=set)
    tasks: set[str] = field(default_factory=set)
    incidents: set[str] = field(default_factory=set)


@dataclass
class Links:
    nodes: set[str] = field(default_factory=set)
    jobs: set[str] = field(default_factory=set)
    tasks: set[str] = field(default_factory=set)
    incidents: set[str] = field(default_factory=set)
    first: datetime | None = None  # the span of the subject's own events (incident window)
    last: datetime | None = None

    def ids(self) -> set[str]:
        return self.nodes | self.jobs | self.tasks | self.incidents

    def widen(self, moment: datetime) -> None:
        moment = aware(moment)
        self.first = moment if self.first is None or moment < self.first else self.first
        self.last = moment if self.last is None or moment > self.last else self.last

    def as_json(self) -> dict[str, Any]:
        return {"nodes": sorted(self.nodes), "jobs": sorted(self.jobs), "tasks": sorted(self.tasks),
                "incidents": sorted(self.incidents)}


@dataclass(frozen=True)
class Row:
    time: str
    category: Category
    event_type: str
    subject: str
    what: str
    why: str
    event_id: str
    incident_id: str | None
    node: str | None
    detail: dict[str, Any]

    def sort_key(self) -> tuple[str, int, str]:
        return (self.time, CATEGORY_ORDER[self.category], self.event_id)

    def as_json(self) -> dict[str, Any]:
        return {
            "time": self.time, "category": self.category, "event_type": self.event_type,
            "subject": self.subject, "what": self.what, "why": self.why, "event_id": self.event_id,
            "incident_id": self.incident_id, "node": self.node, "detail": self.detail,
        }


@dataclass
class Timeline:
    subject: AuditSubject
    links: Links
    rows: list[Row]
    records_read: int = 0
    malformed: int = 0

    def node_health(self) -> dict[str, list[dict[str, str]]]:
        """Repair state per node over time, from NodeStateChanged."""
        series: dict[str, list[dict[str, str]]] = {}
        for row in self.rows:
            if row.event_type == "NodeStateChanged" and row.node:
                series.setdefault(row.node, []).append(
                    {"time": row.time, "state": str(row.detail["state"]), "reason": row.why}
                )
        return series

    def health_checks(self) -> dict[str, list[dict[str, str]]]:
        marks: dict[str, list[dict[str, str]]] = {}
        for row in self.rows:
            if row.event_type == "HealthCheckReported" and row.node:
                marks.setdefault(row.node, []).append({"time": row.time, "verdict": str(row.detail["verdict"])})
        return marks

    def as_json(self) -> dict[str, Any]:
        return {
            "subject": {"kind": self.subject.kind, "id": self.subject.id},
            "links": self.links.as_json(),
            "rows": [row.as_json() for row in self.rows],
            "node_health": self.node_health(),
            "health_checks": self.health_checks(),
            "records_read": self.records_read,
            "malformed": self.malformed,
        }


# --- what an event mentions -----------------------------------------------------------------------


def facts_of(event: StreamEvent, config: ProjectionConfig) -> Facts:
    facts = Facts()
    if isinstance(event, TaskStateChange):
        detail = event.detail
        facts.tasks.add(detail.taskArn)
        _add(facts.nodes, detail.containerInstanceArn)
        _add(facts.jobs, job_identity(detail, None, config.identity).job_id)
    elif isinstance(event, ContainerInstanceStateChange | ContainerInstanceHealthChange):
        facts.nodes.add(event.detail.containerInstanceArn)
        _add(facts.instance_ids, event.detail.ec2InstanceId)
    elif isinstance(event, AwsHealthEvent | Ec2InstanceStateChange):
        facts.instance_ids.update(event.instance_ids)
    elif isinstance(event, OurEvent):
        _our_facts(event, facts)
    return facts


def _our_facts(event: OurEvent, facts: Facts) -> None:
    subject = event.subject
    _add(facts.nodes, subject.node)
    _add(facts.jobs, subject.job)
    _add(facts.tasks, subject.task)
    _add(facts.incidents, subject.incident)
    data = event.data
    for name, bucket in (("node_arn", facts.nodes), ("job_id", facts.jobs), ("incident_id", facts.incidents),
                         ("trigger_task_arn", facts.tasks), ("check_task_arn", facts.tasks),
                         ("ec2_instance_id", facts.instance_ids)):
        _add(bucket, getattr(data, name, None))
    if isinstance(data, IncidentOpened):
        facts.jobs.update(data.job_ids)
    if isinstance(data, DecisionRecorded | ActionOutcome):
        _classify_target(data.action.target, facts)


def _classify_target(target: str, facts: Facts) -> None:
    if ":task/" in target:
        facts.tasks.add(target)
    elif ":container-instance/" in target:
        facts.nodes.add(target)
    elif target.startswith(("i-", "mi-")):
        facts.instance_ids.add(target)


def _add(bucket: set[str], value: object) -> None:
    if isinstance(value, str) and value:
        bucket.add(value)


def node_matches(wanted: str, facts: Facts) -> bool:
    """A node by container instance ARN, its id (the ARN's last part), or its EC2 / managed instance id."""
    return wanted in facts.instance_ids or any(n == wanted or n.endswith("/" + wanted) for n in facts.nodes)


def matches_subject(subject: AuditSubject, facts: Facts) -> bool:
    if subject.kind == "node":
        return node_matches(subject.id, facts)
    if subject.kind == "job":
        return subject.id in facts.jobs
    return subject.id in facts.incidents


# --- the two passes -------------------------------------------------------------------------------


Records = Callable[[], Iterable[RawRecord]]


def find_links(records: Iterable[RawRecord], subject: AuditSubject, config: ProjectionConfig) -> Links:
    links = Links()
    needles = _needles({subject.id})
    for record in records:
        if not any(n in record.data for n in needles):
            continue
        event = _decode(record)
        if event is None:
            continue
        facts = facts_of(event, config)
        if not matches_subject(subject, facts):
            continue
        links.widen(event.time)
        links.incidents |= facts.incidents
        if subject.kind == "node":
            links.nodes |= _same_node(subject.id, facts)
        elif subject.kind == "job":
            links.tasks |= facts.tasks
        else:
            links.nodes |= facts.nodes
            links.jobs |= facts.jobs
            links.tasks |= facts.tasks
    return links


def collect(
    records: Iterable[RawRecord],
    subject: AuditSubject,
    links: Links,
    config: ProjectionConfig,
    *,
    margin: timedelta,
    window: TimeWindow | None = None,
) -> Timeline:
    needles = _needles(links.ids() | {subject.id})
    rows: dict[str, Row] = {}
    timeline = Timeline(subject, links, [])
    for record in records:
        timeline.records_read += 1
        if not any(n in record.data for n in needles):
            continue
        event = _decode(record)
        if event is None:
            timeline.malformed += 1
            continue
        if window is not None and not window.contains(event.time):
            continue
        if _related(event, facts_of(event, config), subject, links, margin):
            row = to_row(event, config)
            rows.setdefault(row.event_id, row)  # a redelivered event is one row
    timeline.rows = sorted(rows.values(), key=Row.sort_key)
    return timeline


def _needles(ids: set[str]) -> list[bytes]:
    """What an id looks like inside a record's bytes: as is, and JSON-escaped (non-ASCII, quotes)."""
    found = {i.encode() for i in ids} | {json.dumps(i)[1:-1].encode() for i in ids}
    return sorted(found)


def audit(
    records: Records,
    subject: AuditSubject,
    config: ProjectionConfig,
    *,
    margin: timedelta = timedelta(minutes=30),
    window: TimeWindow | None = None,
) -> Timeline:
    links = find_links(records(), subject, config)
    return collect(records(), subject, links, config, margin=margin, window=window)


def _same_node(wanted: str, facts: Facts) -> set[str]:
    """The node ARNs of an event that name the wanted node (all of them when it matched by instance id)."""
    if wanted in facts.instance_ids:
        return set(facts.nodes)
    return {n for n in facts.nodes if n == wanted or n.endswith("/" + wanted)}


def _related(event: StreamEvent, facts: Facts, subject: AuditSubject, links: Links, margin: timedelta) -> bool:
    if matches_subject(subject, facts) or facts.incidents & links.incidents:
        return True
    if subject.kind == "node":
        return bool(facts.nodes & links.nodes)
    if subject.kind == "job":
        return bool(facts.tasks & links.tasks)
    if links.first is None or links.last is None:
        return False
    # An incident's node, jobs and tasks, around the incident: the failure that opened it, the reboot.
    near = links.first - margin <= aware(event.time) <= links.last + margin
    return near and bool(facts.nodes & links.nodes or facts.jobs & links.jobs or facts.tasks & links.tasks)


def _decode(record: RawRecord) -> StreamEvent | None:
    try:
        return decode(record.data)
    except (MalformedRecord, RecursionError, ArithmeticError, ValueError):  # a bad record is no event
        return None


# --- rows -----------------------------------------------------------------------------------------


def to_row(event: StreamEvent, config: ProjectionConfig) -> Row:
    if isinstance(event, OurEvent):
        return _our_row(event)
    at = iso(event.time)
    if isinstance(event, TaskStateChange):
        return _task_row(event, at, config)
    if isinstance(event, ContainerInstanceStateChange):
        d = event.detail
        agent = "connected" if d.agentConnected else "disconnected" if d.agentConnected is False else "unknown"
        return Row(at, "ecs", event.detail_type, f"node {short_arn(d.containerInstanceArn)}",
                   f"instance {d.status}, agent {agent} (version {d.version})", d.statusReason or "",
                   event.id, None, d.containerInstanceArn,
                   {"status": d.status, "agent_connected": d.agentConnected, "version": d.version})
    if isinstance(event, AwsHealthEvent | Ec2InstanceStateChange):
        return _ec2_row(event, at)
    d2 = event.detail
    failing = [f"{c.type}={c.status}" for c in d2.healthChecks if c.status and c.status != "OK"]
    return Row(at, "ecs", event.detail_type, f"node {short_arn(d2.containerInstanceArn)}",
               f"instance health {d2.overallStatus}", ", ".join(failing), event.id, None,
               d2.containerInstanceArn, {"overall_status": d2.overallStatus})


def _ec2_row(event: AwsHealthEvent | Ec2InstanceStateChange, at: str) -> Row:
    instances = event.instance_ids
    if isinstance(event, AwsHealthEvent):
        d = event.detail
        return Row(at, "ecs", event.detail_type, f"instances {' '.join(instances) or '-'}",
                   f"{d.eventTypeCode} ({d.statusCode or '?'})", f"from {d.startTime} to {d.endTime or '?'}",
                   event.id, None, None, {"event_type_code": d.eventTypeCode, "instance_ids": instances})
    return Row(at, "ecs", event.detail_type, f"instance {event.detail.instance_id}",
               f"instance {event.detail.state}", "", event.id, None, None, {"instance_ids": instances})


def _task_row(event: TaskStateChange, at: str, config: ProjectionConfig) -> Row:
    d = event.detail
    exits = [c.exitCode for c in d.containers if c.exitCode is not None]
    what = f"task {short_arn(d.taskArn)} {d.lastStatus}"
    if d.containerInstanceArn:
        what += f" on node {short_arn(d.containerInstanceArn)}"
    if exits:
        what += f", exit {'/'.join(str(e) for e in exits)}"
    if d.stopCode:
        what += f", {d.stopCode}"
    job = job_identity(d, None, config.identity).job_id  # None while it waits for its tags
    return Row(at, "ecs", event.detail_type, f"job {job}" if job else f"task {short_arn(d.taskArn)}", what,
               d.stoppedReason or "", event.id, None, d.containerInstanceArn,
               {"task_arn": d.taskArn, "last_status": d.lastStatus, "version": d.version,
                "exit_codes": exits, "stop_code": d.stopCode, "job_id": job})


def _our_row(event: OurEvent) -> Row:
    data = event.data
    category, what, why, detail = _describe(data)
    subject = event.subject
    node = getattr(data, "node_arn", None) or subject.node
    incident = getattr(data, "incident_id", None) or subject.incident
    label = (f"incident {incident}" if incident else f"job {subject.job}" if subject.job
             else f"node {short_arn(node)}" if node else "")
    return Row(iso(event.time), category, event.type, label, what, why, event.event_id, incident, node, detail)


def _describe(data: Any) -> tuple[Category, str, str, dict[str, Any]]:
    if isinstance(data, HealthCheckReported):
        xids = ", ".join(f"XID {x.xid} x{x.count}" for x in data.xids)
        what = (f"DCGM level {data.level} on {short_arn(data.node_arn)}: {data.verdict}, "
                f"recommends {data.recommended_action}")
        return "health", what + (f" ({xids})" if xids else ""), data.reason, {
            "verdict": data.verdict, "recommended_action": data.recommended_action, "level": data.level,
            "xids": [x.xid for x in data.xids]}
    if isinstance(data, IncidentOpened):
        jobs = ", ".join(data.job_ids) or "no job"
        return "decision", f"opened incident {data.incident_id} on node {short_arn(data.node_arn)} ({jobs})", \
            data.reason, {"incident_id": data.incident_id, "job_ids": data.job_ids}
    if isinstance(data, DecisionRecorded):
        return "decision", f"decided {data.action.type} -> {short_arn(data.action.target)} (step {data.step})", \
            data.reason, {"action": data.action.model_dump(mode="json"), "step": data.step,
                          "idempotency_key": data.idempotency_key}
    if isinstance(data, ActionOutcome):
        return "action", f"{data.action.type} -> {short_arn(data.action.target)}: {data.status}", \
            data.error or "", {"action": data.action.model_dump(mode="json"), "status": data.status,
                               "idempotency_key": data.idempotency_key}
    if isinstance(data, OperatorRequested):
        return _request(data)
    return _outcome(data)


def _request(data: OperatorRequested) -> tuple[Category, str, str, dict[str, Any]]:
    """A person's request: who asked for what, and why (the decision it led to follows as its own row)."""
    who = data.requested_by or "someone (no name given)"
    if data.request == "release_node":
        what = f"{who} asked to release node {short_arn(data.node_arn or '?')} (back to service, through a check)"
    else:
        what = f"{who} asked to cancel the recovery of job {data.job_id or '?'}"
    return "request", what, data.reason or "(no reason given)", {
        "request": data.request, "requested_by": data.requested_by, "reason": data.reason,
        "node_arn": data.node_arn, "job_id": data.job_id}


def _outcome(data: Any) -> tuple[Category, str, str, dict[str, Any]]:
    if isinstance(data, NodeStateChanged):
        return "outcome", f"node {short_arn(data.node_arn)} -> {data.state}", data.reason, {"state": data.state}
    if isinstance(data, JobStateChanged):
        return "outcome", f"job {data.job_id} -> {data.state} (restarts {data.restart_count})", data.reason, {
            "state": data.state, "restart_count": data.restart_count}
    if isinstance(data, IncidentClosed):
        return "outcome", f"incident {data.incident_id} closed: {data.outcome}", data.reason, {
            "outcome": data.outcome}
    if isinstance(data, NotificationSent):
        return "outcome", f"notified ({data.kind}): {data.subject}", "", {"kind": data.kind}
    if isinstance(data, DeadlineExpired):
        return "outcome", f"deadline {data.kind} expired (due {iso(data.due_at)})", "", {"kind": data.kind}
    return "other", type(data).__name__, "", {}
