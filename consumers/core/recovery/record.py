"""Recovery's state as a fold of the stream.

Live: every decision that changes a record's plan records the new plan as ``RecoveryRecorded`` with the
next version (``record_changes``). Replay: ECS's own events merge into the facts (the same ``apply``
functions live uses) and ``RecoveryRecorded`` sets each plan, the highest version winning
(``fold_event``). Both give the same records; ``summary`` is what people compare.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from consumers.core.clocktext import parse_iso
from consumers.core.ports import RecordWrite
from consumers.core.recovery.apply import (
    apply_ec2_state,
    apply_health,
    apply_node,
    apply_scheduled,
    apply_tags,
    apply_task,
)
from consumers.core.recovery.context import Ctx
from consumers.core.recovery.model import Fleet, Incident, Job, JobPlan, Node, NodePlan, Timer
from consumers.core.recovery.view import FLEET_KEY, Key, View
from events_schema.aws import (
    AwsHealthEvent,
    ContainerInstanceHealthChange,
    ContainerInstanceStateChange,
    Ec2InstanceStateChange,
    TaskStateChange,
)
from events_schema.decode import StreamEvent
from events_schema.envelope import OurEvent, Subject
from events_schema.events import RecoveryRecorded, TaskTagsCaptured

RECORDED_KINDS = ("job", "node", "incident", "fleet")


def record_changes(ctx: Ctx) -> None:
    view = ctx.view
    for key, parts in sorted(view.changed.items()):
        if "plan" not in parts or key[0] not in RECORDED_KINDS:
            continue
        record = view.record(key)
        if record is None:
            continue
        version, body, partition = _bump(key, record)
        ctx.emit(RecoveryRecorded(kind=key[0], key=key[1], version=version, record=body), _subject(key, record),
                 f"recorded:{key[0]}:{key[1]}:{version}", partition_key=partition)
    for key, tombstone in sorted(view.retired.items()):
        version = int(tombstone.get("version", 1))
        ctx.emit(RecoveryRecorded(kind=key[0], key=key[1], version=version, record=tombstone), Subject(),
                 f"recorded:{key[0]}:{key[1]}:{version}", partition_key=key[1])


def _bump(key: Key, record: Any) -> tuple[int, dict[str, Any], str]:
    if isinstance(record, Job):
        record.plan.version += 1
        return record.plan.version, record.plan.model_dump(mode="json"), record.facts.partition_key or record.job_id
    if isinstance(record, Node):
        record.plan.version += 1
        return record.plan.version, record.plan.model_dump(mode="json"), record.arn
    if isinstance(record, Incident):
        record.version += 1
        return record.version, record.model_dump(mode="json"), record.node_arn
    assert isinstance(record, Fleet)
    record.version += 1
    return record.version, record.model_dump(mode="json"), "fleet"


def _subject(key: Key, record: Any) -> Subject:
    if isinstance(record, Job):
        return Subject(job=record.job_id)
    if isinstance(record, Node):
        return Subject(node=record.arn)
    if isinstance(record, Incident):
        return Subject(node=record.node_arn, incident=record.incident_id)
    return Subject()


# --- replay -----------------------------------------------------------------------------------------


def fold_event(view: View, event: StreamEvent, rules: Any) -> None:
    """Fold one stream event into recovery's records, as replay does (nothing is decided)."""
    if isinstance(event, TaskStateChange):
        apply_task(view, event, rules)
    elif isinstance(event, ContainerInstanceStateChange):
        apply_node(view, event)
    elif isinstance(event, ContainerInstanceHealthChange):
        apply_health(view, event)
    elif isinstance(event, Ec2InstanceStateChange):
        apply_ec2_state(view, event)
    elif isinstance(event, AwsHealthEvent):
        apply_scheduled(view, event)
    elif isinstance(event, OurEvent) and isinstance(event.data, RecoveryRecorded):
        fold_recorded(view, event.data)
    elif isinstance(event, OurEvent) and isinstance(event.data, TaskTagsCaptured):
        task = view.task(event.data.task_arn)
        if task is not None:
            apply_tags(view, task, list(event.data.tags), rules)


def fold_recorded(view: View, data: RecoveryRecorded) -> None:
    key: Key = (data.kind, data.key)
    if data.record.get("tombstone"):
        if _version(view, key) < data.version:
            view.retire(key, data.record)
        return
    if data.kind == "job":
        _fold_job(view, data)
    elif data.kind == "node":
        plan = NodePlan.model_validate(data.record)  # first: a record the fold cannot take changes nothing
        node = view.node(data.key) or _added(view, key, Node(arn=data.key))
        if data.version > node.plan.version:
            node.plan = plan
    elif data.kind == "incident":
        known = view.incident(data.key)
        if known is None or data.version > known.version:
            view.add(key, Incident.model_validate(data.record))
    else:
        if data.version > view.fleet().version:
            view.add(FLEET_KEY, Fleet.model_validate(data.record))


def _fold_job(view: View, data: RecoveryRecorded) -> None:
    plan = JobPlan.model_validate(data.record)  # first: a record the fold cannot take changes nothing
    job = view.job(data.key) or _added(view, ("job", data.key), Job(job_id=data.key))
    if data.version <= job.plan.version:
        return
    if plan.generation > job.plan.generation and plan.launched_by == "recovery":
        job.facts.reset()  # what live did when it decided the restart
    job.plan = plan


def _added(view: View, key: Key, record: Any) -> Any:
    view.add(key, record)
    return record


def _version(view: View, key: Key) -> int:
    record = view.record(key)
    if isinstance(record, Job | Node):
        return record.plan.version
    if isinstance(record, Incident | Fleet):
        return record.version
    tombstone = view.tombstone(key)
    return int(tombstone.get("version", 0)) if tombstone else 0


def record_write(key: Key, body: dict[str, Any], old: dict[str, Any] | None, rev: int,
                 retention: timedelta) -> RecordWrite:
    """A record written over ``old`` (revision ``rev``; 0: new), with the store's index items moved as
    they must: its deadline and, for a node, its instance id; a stopped task's record leaves after
    ``retention`` (DynamoDB TTL). The consumer and replay write the same way."""
    timer = None if body.get("tombstone") else _timer_json(key[0], body)
    old_timer = _timer_json(key[0], old) if old and not old.get("tombstone") else None
    instance = (body.get("facts") or {}).get("instance_id") if key[0] == "node" else None
    old_instance = ((old or {}).get("facts") or {}).get("instance_id")
    stopped = body.get("stopped_at") if key[0] == "task" else None
    return RecordWrite(key, body, rev, timer, old_timer, instance if instance and instance != old_instance else None,
                       int((parse_iso(str(stopped)) + retention).timestamp()) if stopped else None)


def _timer_json(kind: str, body: dict[str, Any]) -> dict[str, Any] | None:
    timer = timer_of(kind, body) if kind in ("job", "node", "incident", "fleet") else None
    return timer.model_dump(mode="json") if timer else None


def timer_of(kind: str, body: dict[str, Any]) -> Timer | None:
    """The armed timer of a stored record (for the store's deadline index)."""
    raw = body.get("timer") if kind in ("incident", "fleet") else (body.get("plan") or {}).get("timer")
    return Timer.model_validate(raw) if raw else None


# --- what people compare ---------------------------------------------------------------------------


def summary(records: dict[Key, Any]) -> dict[str, Any]:
    """The ``recovery`` section: incidents with their typed outcome, nodes' repair states, jobs' recovery."""
    incidents = [r for k, r in sorted(records.items()) if k[0] == "incident" and isinstance(r, Incident)]
    nodes = {k[1]: r for k, r in sorted(records.items()) if k[0] == "node" and isinstance(r, Node)}
    jobs = {k[1]: r for k, r in sorted(records.items()) if k[0] == "job" and isinstance(r, Job)}
    return {
        "incidents": [
            {"incident_id": i.incident_id, "node_arn": i.node_arn, "trigger": i.trigger, "phase": i.phase,
             "outcome": i.outcome, "jobs": list(i.jobs), "verdict": i.verdict, "xids": list(i.xids),
             "checks": i.check_attempt, "reboots": i.reboot_attempt, "opened_at": i.opened_at,
             "closed_at": i.closed_at}
            for i in sorted(incidents, key=lambda i: (i.opened_at, i.incident_id))
        ],
        "nodes": {arn: {"repair_state": n.plan.repair, "reason": n.plan.reason, "incident_id": n.plan.incident_id,
                        "faults": list(n.plan.fault_times)} for arn, n in nodes.items()},
        "jobs": {job_id: {"phase": j.plan.phase, "generation": j.plan.generation,
                          "restarts": j.plan.restart_total, "restart_times": list(j.plan.restarts),
                          "ranks": len(j.facts.ranks), "reason": j.plan.reason,
                          "history": [h.model_dump(mode="json") for h in j.plan.history]}
                 for job_id, j in jobs.items()},
    }
