"""One decoded stream event as a subscriber sees it: its type, time, who it is about, one line of text.

Pure: no I/O, no clock. ``tail`` filters and prints these; the docs' catalogue names the same types.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from consumers.core.facts import first_nonzero_exit, job_identity
from consumers.core.projection import ProjectionConfig
from events_schema.arn import short_arn
from events_schema.aws import (
    AwsEventModel,
    AwsHealthEvent,
    ContainerInstanceStateChange,
    Ec2InstanceStateChange,
    TaskStateChange,
    to_wire,
)
from events_schema.decode import StreamEvent
from events_schema.envelope import OurEvent
from events_schema.events import (
    HealthCheckReported,
    IncidentClosed,
    IncidentOpened,
    JobStateChanged,
    NodeStateChanged,
    NotificationSent,
    OperatorRequested,
)

# Short names people type for the AWS detail-types (the pydantic model names).
AWS_SHORT_NAMES = {
    "ECS Task State Change": "TaskStateChange",
    "ECS Container Instance State Change": "ContainerInstanceStateChange",
    "ECS Container Instance Health Change": "ContainerInstanceHealthChange",
    "AWS Health Event": "AwsHealthEvent",
    "EC2 Instance State-change Notification": "Ec2InstanceStateChange",
}


@dataclass(frozen=True, slots=True)
class EventView:
    """What a subscriber filters on and prints; ``names`` are every name ``--type`` accepts for it."""

    type: str
    names: frozenset[str]
    time: datetime
    node: str | None
    job: str | None
    incident: str | None
    summary: str
    body: dict[str, Any]
    nodes: frozenset[str] = frozenset()  # the node's ARN, its short id and its EC2 instance id
    jobs: frozenset[str] = frozenset()  # every job the event is about (an incident can span several)


def view_of(event: StreamEvent, config: ProjectionConfig | None = None) -> EventView:
    config = config or ProjectionConfig()
    if isinstance(event, OurEvent):
        return _our_view(event)
    return _aws_view(event, config)


def _ids(*values: str | None) -> frozenset[str]:
    """An ARN and its last path segment both identify a node or task on the command line."""
    out: set[str] = set()
    for value in values:
        if value:
            out.add(value)
            out.add(short_arn(value))
    return frozenset(out)


def _aws_view(event: AwsEventModel, config: ProjectionConfig) -> EventView:
    detail_type = event.detail_type
    names = frozenset({detail_type, AWS_SHORT_NAMES[detail_type]})
    body = to_wire(event)
    if isinstance(event, TaskStateChange):
        d = event.detail
        job = job_identity(d, None, config.identity).job_id  # None while it waits for its tags
        exit_code = first_nonzero_exit(d)
        parts = [f"task {short_arn(d.taskArn)}", d.lastStatus]
        if exit_code is not None:
            parts.append(f"exit={exit_code}")
        if d.stopCode:
            parts.append(f"stopCode={d.stopCode}")
        if d.gpu_ids:
            parts.append(f"gpus={len(d.gpu_ids)}")
        return EventView(AWS_SHORT_NAMES[detail_type], names, event.time, d.containerInstanceArn, job, None,
                         " ".join(parts), body, _ids(d.containerInstanceArn), frozenset({job} if job else set()))
    if isinstance(event, ContainerInstanceStateChange):
        c = event.detail
        agent = "connected" if c.agentConnected else "disconnected" if c.agentConnected is False else "agent ?"
        summary = f"{c.status or '?'} {agent} v{c.version}"
        return EventView(AWS_SHORT_NAMES[detail_type], names, event.time, c.containerInstanceArn, None, None,
                         summary, body, _ids(c.containerInstanceArn, c.ec2InstanceId))
    if isinstance(event, AwsHealthEvent | Ec2InstanceStateChange):
        return _ec2_view(event, names, body)
    h = event.detail
    failing = [f"{check.type}={check.status}" for check in h.healthChecks if check.status != "OK"]
    summary = f"overall={h.overallStatus or '?'}" + (f" {' '.join(failing)}" if failing else "")
    return EventView(AWS_SHORT_NAMES[detail_type], names, event.time, h.containerInstanceArn, None, None, summary,
                     body, _ids(h.containerInstanceArn, h.ec2InstanceId))


def _ec2_view(event: AwsHealthEvent | Ec2InstanceStateChange, names: frozenset[str], body: dict[str, Any]) -> EventView:
    """EC2 events name instances, not container instances: ``--node i-...`` finds them."""
    instances = event.instance_ids
    if isinstance(event, AwsHealthEvent):
        d = event.detail
        summary = f"{d.eventTypeCode} {d.statusCode or '?'} from {d.startTime}: {' '.join(instances) or '-'}"
    else:
        summary = f"{event.detail.instance_id} {event.detail.state}"
    return EventView(AWS_SHORT_NAMES[event.detail_type], names, event.time, instances[0] if instances else None,
                     None, None, summary, body, _ids(*instances))


def _our_view(event: OurEvent) -> EventView:
    data = event.data
    raw = data.model_dump(mode="json")
    subject = event.subject
    node = subject.node or raw.get("node_arn")
    jobs = sorted({j for j in (subject.job, raw.get("job_id"), *(raw.get("job_ids") or [])) if j})
    job = subject.job or raw.get("job_id") or (jobs[0] if jobs else None)
    incident = subject.incident or raw.get("incident_id")
    return EventView(event.type, frozenset({event.type}), event.time, node, job, incident, _our_summary(event),
                     event.envelope.model_dump(mode="json"), _ids(node, raw.get("ec2_instance_id")),
                     frozenset(jobs))


def _our_summary(event: OurEvent) -> str:
    data = event.data
    if isinstance(data, HealthCheckReported):
        xids = ",".join(f"{x.xid}x{x.count}" for x in data.xids)
        return f"level {data.level} {data.verdict} -> {data.recommended_action}" + (f" xids={xids}" if xids else "")
    if isinstance(data, IncidentOpened):
        return f"opened {data.incident_id} jobs={','.join(data.job_ids) or '-'} {data.reason}".rstrip()
    if isinstance(data, IncidentClosed):
        return f"closed {data.incident_id} {data.outcome} {data.reason}".rstrip()
    if isinstance(data, NodeStateChanged | JobStateChanged):
        return f"{data.state} {data.reason}".rstrip()
    if isinstance(data, NotificationSent):
        return f"{data.kind}: {data.subject}"
    if isinstance(data, OperatorRequested):
        return _request_summary(data)
    fields = data.model_dump(mode="json")
    for key in ("step", "status", "kind", "reason"):
        if fields.get(key):
            return f"{key}={fields[key]}"
    return ""


def _request_summary(data: OperatorRequested) -> str:
    """A person's request, readable: what, by whom, why."""
    if data.request == "release_node":
        what = f"release node {short_arn(data.node_arn or '?')} (through a check)"
    else:
        what = f"cancel the recovery of job {data.job_id or '?'}"
    return f"{what} asked by {data.requested_by or '?'}" + (f": {data.reason}" if data.reason else "")


@dataclass(frozen=True)
class EventFilter:
    """Every given criterion must match; within one criterion any value may match. Empty matches all."""

    types: frozenset[str] = frozenset()
    nodes: frozenset[str] = frozenset()
    jobs: frozenset[str] = frozenset()

    @classmethod
    def of(cls, types: Iterable[str] = (), nodes: Iterable[str] = (), jobs: Iterable[str] = ()) -> EventFilter:
        return cls(frozenset(t.lower() for t in types), frozenset(nodes), frozenset(jobs))

    def matches(self, view: EventView) -> bool:
        if self.types and not self.types & {name.lower() for name in view.names}:
            return False
        if self.nodes and not self.nodes & view.nodes:
            return False
        return not (self.jobs and not self.jobs & view.jobs)


def line_of(view: EventView) -> str:
    """The human line: time, type, node, job, incident, summary."""
    when = view.time.strftime("%Y-%m-%dT%H:%M:%SZ")
    who = f"node={short_arn(view.node)}" if view.node else ""
    job = f"job={view.job}" if view.job else ""
    incident = f"incident={view.incident}" if view.incident else ""
    fields = [when, f"{view.type:<30}", who, job, incident, view.summary]
    return " ".join(part for part in fields if part).rstrip()
