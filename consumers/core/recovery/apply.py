"""ECS facts into records: the part of the fold live and replay share for AWS's own events.

Facts merge the same way in any order and any number of times (a stage only moves forward, flags only
get set, ECS versions and ordering keys decide the rest), so duplicates and interleaving change nothing.
Each function returns what changed, for the decisions that follow.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from consumers.core.clocktext import iso
from consumers.core.facts import (
    IdentityRules,
    gpu_fault_xids,
    is_failure,
    is_gpu_task,
    job_identity,
    launch_spec,
    remaining_gpus,
    stage,
    stop_xids,
    stopped_by_recovery,
    stopped_by_user,
)
from consumers.core.recovery.model import (
    FAILED_BIT,
    TERMINAL,
    FailureMark,
    HealthRegister,
    Job,
    Node,
    ScheduledChange,
    TaskRecord,
    merge_codes,
    rank_code,
)
from consumers.core.recovery.view import View
from events_schema.aws import (
    AwsHealthEvent,
    ContainerInstanceHealthChange,
    ContainerInstanceStateChange,
    Ec2InstanceStateChange,
    TaskDetail,
    TaskStateChange,
)


@dataclass(frozen=True)
class TaskSeen:
    task: TaskRecord
    job_id: str | None
    code: int
    created_at: str
    at: str
    first_sight: bool = False
    placed_now: bool = False
    rank: bool = False
    new_rank: bool = False
    old_generation: bool = False
    new_run: bool = False
    late: bool = False
    pending: bool = False
    check: bool = False
    failed_to_start: bool = False
    stop_reason: str = ""


def apply_task(view: View, event: TaskStateChange, rules: IdentityRules) -> TaskSeen:
    detail, at = event.detail, iso(event.time)
    created = iso(detail.createdAt) if detail.createdAt else at
    task, first, placed = _task_record(view, detail, created, at)
    code = rank_code(stage(detail.lastStatus), failed=is_failure(detail), user_stop=stopped_by_user(detail),
                     recovery_stop=stopped_by_recovery(detail))
    identity = job_identity(detail, task.tags, rules)
    if task.job_id != identity.job_id or task.identity != identity.kind:
        task.job_id, task.identity = identity.job_id, identity.kind
        view.touch(("task", task.task_arn), "facts")
    failed_to_start = detail.lastStatus == "STOPPED" and (detail.stopCode == "TaskFailedToStart"
                                                          or not detail.startedAt)
    seen = TaskSeen(task, identity.job_id, code, created, at, first_sight=first, placed_now=placed,
                    failed_to_start=failed_to_start, stop_reason=(detail.stoppedReason or detail.stopCode or "")[:200])
    if identity.pending:
        task.pending_code = code if task.pending_code is None else merge_codes(task.pending_code, code)
        view.touch(("task", task.task_arn), "facts")
        return _with(seen, pending=True)
    if identity.job_id is None:
        return _with(seen, check=identity.kind == "check")
    return apply_rank(view, seen, detail, rules)


def _task_record(view: View, detail: TaskDetail, created: str, at: str) -> tuple[TaskRecord, bool, bool]:
    key = ("task", detail.taskArn)
    task = view.task(detail.taskArn)
    first = task is None
    if task is None:
        task = TaskRecord(task_arn=detail.taskArn, family=detail.task_definition_family, created_at=created,
                          spec=launch_spec(detail))
        view.add(key, task)
    placed = bool(detail.containerInstanceArn) and task.node_arn is None
    if placed:
        task.node_arn = detail.containerInstanceArn
        view.touch(key, "facts")
    if len(detail.gpu_ids) > task.gpus:
        task.gpus = len(detail.gpu_ids)
        view.touch(key, "facts")
    if detail.lastStatus == "STOPPED" and not task.stopped_at:
        task.stopped_at = iso(detail.stoppedAt) if detail.stoppedAt else at
        view.touch(key, "facts")
    return task, first, placed


def apply_rank(view: View, seen: TaskSeen, detail: TaskDetail | None, rules: IdentityRules) -> TaskSeen:
    """Merge a task's status into its job's current generation (when it belongs to it)."""
    assert seen.job_id is not None
    job = view.job(seen.job_id) or _new_job(view, seen, detail)
    if job is None:
        return _with(seen, late=True)
    plan, facts = job.plan, job.facts
    if plan.phase in TERMINAL:
        if not plan.finished_at or seen.created_at <= plan.finished_at:
            return _with(seen, late=True)
        if facts.since != plan.finished_at:  # the first task of a new run of a finished job
            facts.reset()
            facts.since = plan.finished_at
    elif seen.created_at < plan.generation_at:
        return _with(seen, old_generation=True)
    key = ("job", job.job_id)
    added = facts.ranks.position(seen.task.task_arn) is None
    changed = facts.ranks.put(seen.task.task_arn, seen.code)
    gpu = bool(detail and is_gpu_task(detail, rules.gpu_task_families)) or seen.task.gpus > 0
    if gpu and not facts.gpu:
        facts.gpu = changed = True
    if seen.task.gpus > facts.gpus_per_rank:
        facts.gpus_per_rank, changed = seen.task.gpus, True
    if seen.code & FAILED_BIT and _first_failure(job, seen, detail):
        changed = True
    if changed:
        facts.last_seen_at = max(facts.last_seen_at, seen.at)
        view.touch(key, "facts")
    return _with(seen, rank=True, new_rank=added, new_run=plan.phase in TERMINAL)


def _new_job(view: View, seen: TaskSeen, detail: TaskDetail | None) -> Job | None:
    assert seen.job_id is not None
    tombstone = view.tombstone(("job", seen.job_id))
    if tombstone and seen.created_at <= str(tombstone.get("finished_at") or ""):
        return None  # a late duplicate of a run that finished and left
    job = Job(job_id=seen.job_id)
    if tombstone:
        job.plan.generation = int(tombstone.get("generation", 0)) + 1
        job.plan.generation_at = seen.created_at
    # Our own events about the job share the shard of its task events (the rule keys them by group).
    group = detail.group if detail else seen.task.spec.get("group")
    job.facts.partition_key = group or seen.task.task_arn
    job.facts.cluster_arn = detail.clusterArn if detail else None
    view.add(("job", seen.job_id), job)
    return job


def _first_failure(job: Job, seen: TaskSeen, detail: TaskDetail | None) -> bool:
    changed = False
    node = seen.task.node_arn
    when = iso(detail.stoppedAt) if detail and detail.stoppedAt else seen.at
    mark = job.facts.first_failure
    if mark is None or (when, seen.task.task_arn) < (mark.at, mark.task_arn):
        exit_code = next((c.exitCode for c in detail.containers if c.exitCode not in (None, 0)), None) if detail \
            else None
        reason = (detail.stoppedReason or "") if detail else ""
        job.facts.first_failure = FailureMark(at=when, task_arn=seen.task.task_arn, node_arn=node,
                                              exit_code=exit_code, reason=reason[:200])
        changed = True
    xids = gpu_fault_xids(stop_xids(detail)) if detail else []
    if node and xids:
        known = job.facts.evidence.get(node, [])
        merged = sorted(set(known) | set(xids))
        if merged != known:
            job.facts.evidence[node] = merged
            changed = True
    return changed


def apply_tags(view: View, task: TaskRecord, tags: list[dict[str, str]], rules: IdentityRules) -> TaskSeen | None:
    """A task's tags arrived (our capture): its job may now be known; merge what it did meanwhile."""
    if task.tags is not None:
        return None
    task.tags = list(tags)
    view.touch(("task", task.task_arn), "facts")
    if task.pending_code is None:
        return None
    detail = _detail_from_record(task)
    identity = job_identity(detail, task.tags, rules)
    task.job_id, task.identity, code = identity.job_id, identity.kind, task.pending_code
    task.pending_code = None
    if identity.job_id is None:
        return None
    seen = TaskSeen(task, identity.job_id, code, task.created_at, task.created_at)
    return apply_rank(view, seen, None, rules)


def _detail_from_record(task: TaskRecord) -> TaskDetail:
    spec = task.spec
    # Only what identity reads; built without validation (the record's values were validated when they came).
    return TaskDetail.model_construct(taskArn=task.task_arn, clusterArn="-", lastStatus="PROVISIONING", version=0,
                                      taskDefinitionArn=str(spec.get("task_definition_arn")), containers=[],
                                      group=spec.get("group"), startedBy=spec.get("started_by"))


def _with(seen: TaskSeen, **changes: bool) -> TaskSeen:
    return replace(seen, **changes)  # type: ignore[arg-type]


# --- nodes ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeSeen:
    node: Node
    first_sight: bool
    was_gpu_node: bool
    disconnected: bool
    reconnected: bool
    attributes_changed: bool
    freed: bool = False


def apply_node(view: View, event: ContainerInstanceStateChange) -> NodeSeen | None:
    detail, at = event.detail, iso(event.time)
    node = view.node(detail.containerInstanceArn)
    first = node is None
    if node is None:
        node = Node(arn=detail.containerInstanceArn)
        view.add(("node", node.arn), node)
    facts = node.facts
    if facts.ecs_version >= detail.version:
        return None  # a duplicate or a stale event
    was_gpu, was_connected, old_attributes = facts.gpu_node, facts.agent_connected, dict(facts.attributes)
    was_remaining, was_status = facts.gpus_remaining, facts.status
    facts.ecs_version = detail.version
    facts.cluster_arn = detail.clusterArn
    facts.instance_id = detail.ec2InstanceId or facts.instance_id
    facts.status = detail.status
    facts.gpus_total = len(detail.gpu_ids)
    facts.gpus_remaining = remaining_gpus(detail)
    facts.attributes = {a.name: a.value or "" for a in detail.attributes}
    facts.attributes_at = at
    disconnected = detail.agentConnected is False and was_connected is not False
    reconnected = bool(detail.agentConnected) and was_connected is False
    if disconnected:
        facts.last_disconnect_at = at
    if reconnected:
        facts.last_connect_at = at
    facts.agent_connected = detail.agentConnected
    view.touch(("node", node.arn), "facts")
    # ECS releases a stopped task's GPUs in a later container-instance event than the task's own: that
    # event, not the task's, is when a waiting job can have them.
    freed = (facts.gpus_remaining or 0) > (was_remaining or 0) or (facts.status == "ACTIVE" != was_status) \
        or reconnected
    return NodeSeen(node, first, was_gpu, disconnected, reconnected, facts.attributes != old_attributes, freed)


def apply_health(view: View, event: ContainerInstanceHealthChange) -> Node | None:
    """One register per health check: two events in the same second both land, in any order."""
    detail = event.detail
    node = view.node(detail.containerInstanceArn)
    if node is None:
        node = Node(arn=detail.containerInstanceArn)
        node.facts.cluster_arn = detail.clusterArn
        view.add(("node", node.arn), node)
    if detail.ec2InstanceId and not node.facts.instance_id:
        node.facts.instance_id = detail.ec2InstanceId
    changed = False
    for check in detail.healthChecks:
        name = check.type or "UNKNOWN"
        since = iso(check.lastStatusChange or check.lastUpdated or event.time)
        order = f"{iso(check.lastUpdated or event.time)}|{event.id}"
        known = node.facts.health.get(name)
        if known is None or known.order < order:
            node.facts.health[name] = HealthRegister(status=check.status or "UNKNOWN", since=since, order=order)
            changed = True
    if changed:
        view.touch(("node", node.arn), "facts")
    return node if changed else None


# --- AWS's own events about instances -----------------------------------------------------------


def apply_ec2_state(view: View, event: Ec2InstanceStateChange) -> list[Node]:
    """An instance stopped or terminated: the node knows (the rule routes no other state)."""
    changed = []
    at = iso(event.time)
    for instance_id in event.instance_ids:
        node = view.node_for_instance(instance_id)
        if node is None or node.facts.ec2_state_at >= at:
            continue  # not ours, or an older change
        node.facts.ec2_state, node.facts.ec2_state_at = event.detail.state, at
        view.touch(("node", node.arn), "facts")
        changed.append(node)
    return changed


def apply_scheduled(view: View, event: AwsHealthEvent) -> list[Node]:
    """AWS scheduled a change on an instance (retirement, reboot maintenance, stop): the node knows."""
    detail = event.detail
    if detail.eventTypeCategory != "scheduledChange" or detail.statusCode == "closed":
        return []
    end = detail.end_time
    change = ScheduledChange(code=detail.eventTypeCode, start=iso(detail.start_time), end=iso(end) if end else None,
                             event_arn=detail.eventArn)
    changed = []
    for instance_id in event.instance_ids:
        node = view.node_for_instance(instance_id)
        if node is None or node.facts.maintenance.get(detail.eventArn) == change:
            continue
        node.facts.maintenance[detail.eventArn] = change
        view.touch(("node", node.arn), "facts")
        changed.append(node)
    return changed
