"""The recovery core's one entry point: ``decide(records, inputs, now) -> effects``. Pure.

Inputs are external facts (ECS's events, verified health reports, signals, people's requests) and the
consumer's own timers and the outcomes of its own calls; never its own events read back from the
stream (those are a record: replay folds them, live ignores them).

Each input is applied to the records it touches, then every record whose inputs changed is looked at
again (``reconcile``) until nothing moves; the effects are the events to record and the commands to run.
Changed plans are recorded as ``RecoveryRecorded`` with their new version, so replay folds to the same.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from consumers.core.clocktext import parse_iso
from consumers.core.recovery import fleet, incidents, jobs, nodes, notices
from consumers.core.recovery.apply import (
    apply_ec2_state,
    apply_health,
    apply_node,
    apply_scheduled,
    apply_tags,
    apply_task,
)
from consumers.core.recovery.config import PolicyConfig
from consumers.core.recovery.context import Ctx, Effects
from consumers.core.recovery.job_steps import cancel
from consumers.core.recovery.model import IN_RECOVERY, Timer
from consumers.core.recovery.record import record_changes
from consumers.core.recovery.restarts import on_rank_started
from consumers.core.recovery.view import FLEET_KEY, Key, View
from events_schema.aws import (
    AwsEventModel,
    ContainerInstanceHealthChange,
    ContainerInstanceStateChange,
    Ec2InstanceStateChange,
    TaskStateChange,
)
from events_schema.commands import ListTagsForResource
from events_schema.envelope import Subject
from events_schema.events import (
    ActionOutcome,
    DeadlineExpired,
    GpuHealthSignal,
    HealthCheckReported,
    OperatorRequested,
    TaskTagsCaptured,
)

SETTLE_LIMIT = 10_000


@dataclass(frozen=True)
class EcsInput:
    """An event AWS delivered: ECS's task, container instance and health events, AWS Health's scheduled
    changes, EC2's instance state changes."""

    event: AwsEventModel
    at: str


@dataclass(frozen=True)
class ReportInput:
    report: HealthCheckReported
    raw: dict[str, Any]
    at: str
    event_id: str | None = None


@dataclass(frozen=True)
class SignalInput:
    signal: GpuHealthSignal
    at: str
    event_id: str | None = None


@dataclass(frozen=True)
class OperatorInput:
    request: OperatorRequested
    at: str
    event_id: str | None = None


@dataclass(frozen=True)
class OutcomeInput:
    outcome: ActionOutcome
    at: str
    event_id: str | None = None


@dataclass(frozen=True)
class TimerInput:
    record: Key
    timer: Timer

    @property
    def at(self) -> str:
        return self.timer.due_at


Input = EcsInput | ReportInput | SignalInput | OperatorInput | OutcomeInput | TimerInput


def decide(view: View, config: PolicyConfig, inputs: Sequence[Input], now: str) -> Effects:
    ctx = Ctx(view, config, now)
    for item in inputs:
        ctx.cause = _input_id(item)
        _HANDLERS[type(item)](ctx, item)
    settle(ctx)
    record_changes(ctx)
    return ctx.effects


def settle(ctx: Ctx) -> None:
    for _ in range(SETTLE_LIMIT):
        if not ctx.dirty:
            return
        kind, name = ctx.dirty.pop(0)
        ctx.cause = ctx.causes.get((kind, name))
        reconcile = _RECONCILERS.get(kind)
        if reconcile is not None:
            reconcile(ctx, name)
    raise RuntimeError(f"recovery did not settle within {SETTLE_LIMIT} steps: {ctx.dirty[:5]}")


_RECONCILERS: dict[str, Callable[[Ctx, str], None]] = {
    "job": jobs.reconcile, "incident": incidents.reconcile, "node": nodes.reconcile,
    "fleet": lambda ctx, _: fleet.reconcile(ctx),
}


# --- inputs -----------------------------------------------------------------------------------------


def _input_id(item: Input) -> str | None:
    if isinstance(item, EcsInput):
        return str(item.event.id)
    return None if isinstance(item, TimerInput) else item.event_id  # a timer's cause is its DeadlineExpired


def _ecs(ctx: Ctx, item: EcsInput) -> None:
    event = item.event
    if isinstance(event, TaskStateChange):
        seen = apply_task(ctx.view, event, ctx.config.identity)
        jobs.on_task(ctx, seen)
        if seen.check and seen.code & 7 == 7 and seen.task.node_arn:
            _check_task_stopped(ctx, seen.task.node_arn, seen.task.task_arn, seen.failed_to_start, seen.stop_reason)
    elif isinstance(event, ContainerInstanceStateChange):
        node_seen = apply_node(ctx.view, event)
        if node_seen is not None:
            ctx.mark(("node", node_seen.node.arn))
            if node_seen.freed:
                ctx.mark(FLEET_KEY)
    elif isinstance(event, ContainerInstanceHealthChange):
        node = apply_health(ctx.view, event)
        if node is not None:
            ctx.mark(("node", node.arn))
    else:
        changed = apply_ec2_state(ctx.view, event) if isinstance(event, Ec2InstanceStateChange) else \
            apply_scheduled(ctx.view, event)
        for node in changed:
            ctx.mark(("node", node.arn))


def _check_task_stopped(ctx: Ctx, node_arn: str, task_arn: str, failed_to_start: bool, reason: str) -> None:
    node = ctx.view.node(node_arn)
    incident = ctx.view.incident(node.plan.incident_id) if node and node.plan.incident_id else None
    if incident is None or incident.closed or incident.check_task_arn != task_arn \
            or incident.phase not in ("CHECKING", "VERIFYING") or incident.check_stopped:
        return  # not the check we wait for (a stray one, or an earlier attempt)
    incidents.on_check_task_stopped(ctx, incident, failed_to_start=failed_to_start, reason=reason)


def _report(ctx: Ctx, item: ReportInput) -> None:
    incidents.accept_report(ctx, item.report, item.raw)
    if item.report.incident_id:
        ctx.mark(("incident", item.report.incident_id))


def _signal(ctx: Ctx, item: SignalInput) -> None:
    signal = item.signal
    if signal.severity != "fail":
        return
    node = ctx.view.node(signal.node_arn) if signal.node_arn else (
        ctx.view.node_for_instance(signal.ec2_instance_id) if signal.ec2_instance_id else None)
    if node is None:
        ctx.reject(f"GPU health signal for a node recovery does not know ({signal.node_arn or signal.ec2_instance_id})")
        return
    what = f"{signal.kind}" + (f" XID {signal.xids}" if signal.xids else "") + (
        f": {signal.detail[:80]}" if signal.detail else "")
    nodes.signal(ctx, node, what, item.at, xids=signal.xids)


def _operator(ctx: Ctx, item: OperatorInput) -> None:
    request = item.request
    who = request.requested_by or "an operator"
    if request.request == "release_node" and request.node_arn:
        node = ctx.view.node(request.node_arn)
        if node is None:
            ctx.reject(f"release of unknown node {request.node_arn}")
            return
        nodes.release(ctx, node, who, request.reason or "")
    elif request.request == "cancel_job" and request.job_id:
        job = ctx.view.job(request.job_id)
        if job is None or job.phase not in IN_RECOVERY:
            ctx.reject(f"cancel of job {request.job_id}: not in recovery")
            return
        cancel(ctx, job, f"cancelled by {who}: {request.reason}" if request.reason else f"cancelled by {who}")


def _outcome(ctx: Ctx, item: OutcomeInput) -> None:
    outcome = item.outcome
    if outcome.step == "mirror_state":
        nodes.mirrored(ctx, outcome, item.at)
    if outcome.step == "capture_tags":
        _tags(ctx, outcome)
    elif outcome.step == "restart" and outcome.job_id:
        job = ctx.view.job(outcome.job_id)
        if job is not None:
            on_rank_started(ctx, job, outcome, item.at)
            ctx.mark(("job", job.job_id))
    elif outcome.step == "replace" and not outcome.incident_id:
        node = ctx.view.node_for_instance(outcome.action.target)
        if node is not None and node.plan.replacing:
            nodes.maintenance_replaced(ctx, node, outcome)
    elif outcome.incident_id:
        incident = ctx.view.incident(outcome.incident_id)
        if incident is not None:
            incidents.on_outcome(ctx, incident, outcome, item.at)
            ctx.mark(("incident", incident.incident_id))


def _tags(ctx: Ctx, outcome: ActionOutcome) -> None:
    if not isinstance(outcome.action, ListTagsForResource) or outcome.status == "unknown":
        return
    task = ctx.view.task(outcome.action.target)
    if task is None or task.tags is not None:
        return
    # A failed read (the task is gone) means no tags to go by: the job falls back to startedBy or the task.
    tags = [{"key": str(t.get("key")), "value": str(t.get("value"))} for t in outcome.detail.get("tags", [])] \
        if outcome.status == "succeeded" else []
    seen = apply_tags(ctx.view, task, tags, ctx.config.identity)
    # On the shard of the task's own events (the ingest rules key them by group, else by task ARN): a replay
    # reading shards in any order then always folds the task before its tags.
    ctx.emit(TaskTagsCaptured(task_arn=task.task_arn, tags=tags, job_id=task.job_id),
             Subject(task=task.task_arn, job=task.job_id), f"tags:{task.task_arn}",
             partition_key=str(task.spec.get("group") or task.task_arn))
    if seen is not None:
        jobs.on_task(ctx, seen)


def _timer(ctx: Ctx, item: TimerInput) -> None:
    kind, name = item.record
    holder = _holder(ctx, item.record)
    armed = getattr(holder, "timer", None) if holder is not None else None
    if armed is None or armed.token != item.timer.token or armed.due_at > ctx.now:
        return  # met in time, re-armed, or already handled
    _disarm(holder)
    ctx.changed(item.record)
    ctx.emit(DeadlineExpired(deadline_id=armed.token, kind=armed.kind, due_at=parse_iso(armed.due_at),
                             job_id=name if kind == "job" else None,
                             incident_id=name if kind == "incident" else None,
                             node_arn=name if kind == "node" else None),
             Subject(job=name if kind == "job" else None, incident=name if kind == "incident" else None,
                     node=name if kind == "node" else None), f"deadline:{kind}:{name}:{armed.token}:{armed.due_at}")
    ctx.cause = ctx.effects.emits[-1].event_id
    ctx.causes[item.record] = ctx.cause
    if kind == "job":
        job = ctx.view.job(name)
        if job is not None:
            jobs.timer_due(ctx, job, armed.kind)
    elif kind == "incident":
        incident = ctx.view.incident(name)
        if incident is not None:
            incidents.timer_due(ctx, incident, armed.kind)
    elif kind == "node":
        node = ctx.view.node(name)
        if node is not None:
            nodes.timer_due(ctx, node, armed.kind)
    elif kind == "fleet":
        notices.flush(ctx)


def _holder(ctx: Ctx, record: Key) -> Any:
    kind, name = record
    if kind == "fleet":
        return ctx.view.fleet()
    if kind == "incident":
        return ctx.view.incident(name)
    found = ctx.view.job(name) if kind == "job" else ctx.view.node(name)
    return found.plan if found is not None else None


def _disarm(holder: Any) -> None:
    holder.timer = None


_HANDLERS: dict[type, Callable[[Ctx, Any], None]] = {
    EcsInput: _ecs, ReportInput: _report, SignalInput: _signal, OperatorInput: _operator, OutcomeInput: _outcome,
    TimerInput: _timer,
}
