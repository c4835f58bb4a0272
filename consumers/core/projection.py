"""The projection of the stream into the ``ecs_task``, ``ecs_job`` and ``ecs_node`` tables.

Every field group of an item is a last-writer-wins register keyed by a total order:
ECS's ``detail.version`` for ECS entities, and ``(event time, event id)`` for our own events (the
Firehose archive keeps no sequence numbers, and replay must give what live gave). Derived fields are
recomputed from the registers. So folding is idempotent and commutative across entities: any
duplication and any interleaving of per-entity-ordered histories gives the same items.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from consumers.core.clocktext import epoch_seconds, iso, parse_iso
from events_schema.aws import (
    Container,
    ContainerInstanceHealthChange,
    ContainerInstanceStateChange,
    TaskDetail,
    TaskStateChange,
)
from events_schema.decode import StreamEvent
from events_schema.envelope import OurEvent
from events_schema.events import (
    DecisionRecorded,
    HealthCheckReported,
    JobStateChanged,
    NodeStateChanged,
)

TASK = "ecs_task"
JOB = "ecs_job"
NODE = "ecs_node"
TABLES = (TASK, JOB, NODE)
KEY_ATTRIBUTE = {TASK: "task_arn", JOB: "job_id", NODE: "container_instance_arn"}

EntityKey = tuple[str, str]
Item = dict[str, Any]

ACTIVE_RECOVERY_STATES = frozenset({"RECOVERING", "RESTARTING", "WAITING_CAPACITY"})
TERMINAL_JOB_STATES = frozenset({"COMPLETED", "FAILED", "STOPPED_BY_USER"})
RECOVERY_STOP_ACTION = "StopTask"


@dataclass(frozen=True)
class ProjectionConfig:
    """How tasks map to jobs, and which tasks count as GPU tasks (DESIGN section 5)."""

    job_id_source: str = "group"  # "group" or "startedBy"
    gpu_task_families: frozenset[str] = frozenset()
    health_check_family: str | None = None
    ttl_days: int = 30


@dataclass
class ProjectionState:
    items: dict[EntityKey, Item] = field(default_factory=dict)
    dirty: set[EntityKey] = field(default_factory=set)

    def get(self, key: EntityKey) -> Item | None:
        return self.items.get(key)

    def put(self, key: EntityKey, item: Item) -> None:
        self.items[key] = item
        self.dirty.add(key)

    def table(self, name: str) -> list[Item]:
        rows = [item for (table, _), item in self.items.items() if table == name]
        return sorted(rows, key=lambda item: str(item[KEY_ATTRIBUTE[name]]))


def fold(state: ProjectionState, event: StreamEvent, config: ProjectionConfig) -> ProjectionState:
    """Apply one event. Stale and repeated events leave the state as it was."""
    if isinstance(event, TaskStateChange):
        _apply_task(state, event, config)
    elif isinstance(event, ContainerInstanceStateChange):
        _apply_container_instance(state, event)
    elif isinstance(event, ContainerInstanceHealthChange):
        _apply_instance_health(state, event)
    elif isinstance(event, OurEvent):
        _apply_ours(state, event, config)
    return state


def fold_all(events: Iterable[StreamEvent], config: ProjectionConfig) -> ProjectionState:
    state = ProjectionState()
    for event in events:
        fold(state, event, config)
    return state


def touched_keys(event: StreamEvent, config: ProjectionConfig) -> list[EntityKey]:
    """The items an event may change, so an adapter can load them in one round trip."""
    if isinstance(event, TaskStateChange):
        keys: list[EntityKey] = [(TASK, event.detail.taskArn)]
        job_id = job_id_of(event.detail, config)
        if job_id is not None:
            keys.append((JOB, job_id))
        return keys
    if isinstance(event, ContainerInstanceStateChange | ContainerInstanceHealthChange):
        return [(NODE, event.detail.containerInstanceArn)]
    if isinstance(event, OurEvent):
        return _our_keys(event)
    return []


def job_id_of(detail: TaskDetail, config: ProjectionConfig) -> str | None:
    if config.health_check_family and detail.task_definition_family == config.health_check_family:
        return None
    if config.job_id_source == "startedBy":
        return detail.startedBy or detail.group
    return detail.group or detail.startedBy


def is_gpu_task(detail: TaskDetail, config: ProjectionConfig) -> bool:
    return bool(detail.gpu_ids) or detail.task_definition_family in config.gpu_task_families


def is_failure(detail: TaskDetail) -> bool:
    """STOPPED with a non-zero exit or a failed start; a user stop is not a failure."""
    if detail.lastStatus != "STOPPED" or detail.stopCode == "UserInitiated":
        return False
    if detail.stopCode == "TaskFailedToStart":
        return True
    codes = [c.exitCode for c in detail.containers if c.exitCode is not None]
    return any(code != 0 for code in codes) or (not codes and detail.stopCode != "ServiceSchedulerInitiated")


def first_nonzero_exit(detail: TaskDetail) -> int | None:
    return next((c.exitCode for c in detail.containers if c.exitCode not in (None, 0)), None)


# --- tasks and jobs -------------------------------------------------------------------------------


def _apply_task(state: ProjectionState, event: TaskStateChange, config: ProjectionConfig) -> None:
    detail = event.detail
    key: EntityKey = (TASK, detail.taskArn)
    current = state.get(key)
    item = _task_item(event, config, current)
    if current is None or current.get("version", -1) < detail.version:
        state.put(key, item)
    # The job's entry has its own version: a write lost between the task's and the job's put heals
    # when the batch is delivered again.
    if item["job_id"] is not None:
        _apply_task_to_job(state, item, config)


def _task_item(event: TaskStateChange, config: ProjectionConfig, current: Item | None) -> Item:
    detail = event.detail
    at = iso(event.time)
    stopped_at = iso(detail.stoppedAt) if detail.stoppedAt else (at if detail.lastStatus == "STOPPED" else None)
    gpu_ids, family = detail.gpu_ids, detail.task_definition_family  # both derived: read once
    item: Item = {
        "task_arn": detail.taskArn,
        "cluster_arn": detail.clusterArn,
        "job_id": job_id_of(detail, config),
        "container_instance_arn": detail.containerInstanceArn,
        "task_definition_arn": detail.taskDefinitionArn,
        "family": family,
        "last_status": detail.lastStatus,
        "desired_status": detail.desiredStatus,
        "version": detail.version,
        "is_gpu": bool(gpu_ids) or family in config.gpu_task_families,  # is_gpu_task, inlined
        "gpu_ids": gpu_ids,
        "group": detail.group,
        "started_by": detail.startedBy,
        "launch_type": detail.launchType,
        "stop_code": detail.stopCode,
        "stopped_reason": detail.stoppedReason,
        "exit_code": first_nonzero_exit(detail),
        "failed": is_failure(detail),
        "containers": [_container(c) for c in detail.containers],
        "launch_spec": launch_spec(detail),
        "created_at": iso(detail.createdAt) if detail.createdAt else at,
        "started_at": iso(detail.startedAt) if detail.startedAt else None,
        "stopped_at": stopped_at,
        "updated_at": at,
        "stop_requested_by_recovery": bool(current and current.get("stop_requested_by_recovery")),
        "expires_at": _expiry(stopped_at, config) if stopped_at else None,
    }
    return item


def _container(container: Container) -> dict[str, Any]:
    # Read the fields, not a model_dump of the whole container (a tenth of the cost).
    return {
        "name": container.name,
        "last_status": container.lastStatus,
        "exit_code": container.exitCode,
        "reason": container.reason,
        "gpu_ids": list(container.gpuIds),
    }


def launch_spec(detail: TaskDetail) -> dict[str, Any]:
    """What StartTask needs to launch this task again, exactly as it was (ECS forgets stopped tasks)."""
    overrides = detail.overrides.model_dump(mode="json", exclude_none=True) if detail.overrides else {}
    return {
        "task_definition_arn": detail.taskDefinitionArn,
        "overrides": overrides,
        "group": detail.group,
        "started_by": detail.startedBy,
        "launch_type": detail.launchType,
        "capacity_provider": detail.capacityProviderName,
    }


def _expiry(stopped_at: str, config: ProjectionConfig) -> int:
    return epoch_seconds(parse_iso(stopped_at) + timedelta(days=config.ttl_days))


def _apply_task_to_job(state: ProjectionState, task: Item, config: ProjectionConfig) -> None:
    key: EntityKey = (JOB, task["job_id"])
    job = dict(state.get(key) or _new_job(task))
    for constant in ("cluster_arn", "group", "started_by"):  # the same for every task of a job
        job[constant] = job.get(constant) or task[constant]
    tasks = dict(job["tasks"])
    known = tasks.get(task["task_arn"])
    if known is not None and known["version"] >= task["version"]:
        return
    tasks[task["task_arn"]] = {
        "version": task["version"],
        "last_status": task["last_status"],
        "container_instance_arn": task["container_instance_arn"],
        "failed": task["failed"],
        "stop_code": task["stop_code"],
        "exit_code": task["exit_code"],
        "created_at": task["created_at"],
        "task_definition_arn": task["task_definition_arn"],
        "at": task["updated_at"],
        "is_gpu": task["is_gpu"],
        "recovery_stop": bool(
            task["stop_requested_by_recovery"]
            or (known and known.get("recovery_stop"))
            or task["task_arn"] in job.get("recovery_stops", ())
        ),
    }
    job["tasks"] = tasks
    state.put(key, _derive_job(job, config))


def _new_job(task: Item) -> Item:
    return {
        **_job_stub(task["job_id"]),
        "cluster_arn": task["cluster_arn"],
        "group": task["group"],
        "started_by": task["started_by"],
        "task_definition_arn": task["task_definition_arn"],
    }


def _derive_job(job: Item, config: ProjectionConfig) -> Item:
    current = _current_generation(job)
    derived, derived_at, last_failure_at, running, failed, newest = _summarize(current)
    recovery = job.get("recovery")
    state = derived
    if recovery is not None:
        state = _merge_job_state(derived, derived_at, last_failure_at, recovery)
    job["state"] = state
    tasks: dict[str, Item] = job["tasks"]
    # One loop over the job's tasks (and one over its current generation, in _summarize): the fold
    # runs this for every task event, and a job keeps the tasks of all its generations.
    is_gpu, updated_at = False, recovery["at"] if recovery else None
    for arn, task in tasks.items():
        is_gpu = is_gpu or bool(task["is_gpu"])
        if updated_at is None or task["at"] > updated_at:
            updated_at = task["at"]
        if not current and (newest is None or (task["created_at"], arn) > newest):
            newest = (task["created_at"], arn)
    if newest is not None:  # the latest task of the current generation, else of any
        job["task_definition_arn"] = tasks[newest[1]]["task_definition_arn"]
    job["is_gpu"] = is_gpu
    job["task_count"] = len(current)
    job["running_count"] = running
    job["failed_task_arns"] = sorted(failed)
    job["restart_count"] = recovery["restart_count"] if recovery else 0
    job["incident_id"] = recovery["incident_id"] if recovery else None
    job["state_reason"] = recovery["reason"] if recovery and state == recovery["state"] else ""
    job["updated_at"] = updated_at
    job["expires_at"] = (
        epoch_seconds(parse_iso(updated_at) + timedelta(days=config.ttl_days))
        if state in TERMINAL_JOB_STATES and updated_at
        else None
    )
    return job


def _current_generation(job: Item) -> dict[str, Item]:
    since = job.get("generation_at")
    tasks: dict[str, Item] = job["tasks"]
    if since is None:
        return tasks
    return {arn: t for arn, t in tasks.items() if t["created_at"] >= since}


def _failed(task: Item) -> bool:
    # Our own stops end as UserInitiated, which is never a failure; recovery_stop only tells them from a user's.
    return bool(task["failed"])


Summary = tuple[str, str, str, int, list[str], tuple[str, str] | None]


def _summarize(tasks: dict[str, Item]) -> Summary:
    """In one loop over a generation's tasks: the job state ECS alone implies, when it became so, the
    last failure time, how many run, which failed, and the (created_at, arn) of the newest."""
    at = last_failure_at = ""
    running, failed, newest = 0, [], None
    user_stopped = False
    stopped = 0
    live_all_running = stops_all_ours = True
    for arn, t in tasks.items():
        if t["at"] > at:
            at = t["at"]
        if newest is None or (t["created_at"], arn) > newest:
            newest = (t["created_at"], arn)
        if _failed(t):
            failed.append(arn)
            last_failure_at = max(last_failure_at, t["at"])
        if t["last_status"] == "STOPPED":
            stopped += 1
            user_stopped = user_stopped or (t["stop_code"] == "UserInitiated" and not t["recovery_stop"])
            stops_all_ours = stops_all_ours and bool(t["recovery_stop"])
        elif t["last_status"] == "RUNNING":
            running += 1
        else:
            live_all_running = False
    if not tasks:
        state = "PENDING"
    elif failed:
        state = "INTERRUPTED"
    elif stopped < len(tasks):
        state = "RUNNING" if live_all_running else "PENDING"
    elif user_stopped:
        state = "STOPPED_BY_USER"
    else:
        state = "INTERRUPTED" if stops_all_ours else "COMPLETED"
    return state, at, last_failure_at if failed else "", running, failed, newest


def _merge_job_state(derived: str, derived_at: str, last_failure_at: str, recovery: Item) -> str:
    """Recovery's word stands until ECS shows something newer that recovery has not seen."""
    if derived == "INTERRUPTED":
        return "INTERRUPTED" if last_failure_at > recovery["at"] else str(recovery["state"])
    if recovery["state"] in ACTIVE_RECOVERY_STATES and derived == "PENDING":
        return str(recovery["state"])
    return derived if derived_at > recovery["at"] else str(recovery["state"])


# --- nodes ----------------------------------------------------------------------------------------


def _new_node(arn: str, cluster_arn: str | None) -> Item:
    return {
        "container_instance_arn": arn,
        "cluster_arn": cluster_arn,
        "ec2_instance_id": None,
        "is_external": False,
        "status": None,
        "status_reason": None,
        "agent_connected": None,
        "gpu_ids": [],
        "gpu_count": 0,
        "attributes": {},
        "ecs_version": -1,
        "ecs_at": None,
        "health_status": None,
        "health_checks": [],
        "health_order": "",
        "repair_state": "HEALTHY",
        "repair_reason": "",
        "incident_id": None,
        "repair_order": "",
        "last_health_report": None,
        "report_order": "",
    }


def _apply_container_instance(state: ProjectionState, event: ContainerInstanceStateChange) -> None:
    detail = event.detail
    key: EntityKey = (NODE, detail.containerInstanceArn)
    node = dict(state.get(key) or _new_node(detail.containerInstanceArn, detail.clusterArn))
    if node["ecs_version"] >= detail.version:
        return
    instance_id = detail.ec2InstanceId
    node.update(
        cluster_arn=detail.clusterArn,
        ec2_instance_id=instance_id,
        is_external=bool(instance_id and instance_id.startswith("mi-")),
        status=detail.status,
        status_reason=detail.statusReason,
        agent_connected=detail.agentConnected,
        gpu_ids=detail.gpu_ids,
        gpu_count=len(detail.gpu_ids),
        attributes={a.name: a.value for a in detail.attributes},
        ecs_version=detail.version,
        ecs_at=iso(event.time),
        registered_at=iso(detail.registeredAt) if detail.registeredAt else None,
    )
    state.put(key, node)


def _apply_instance_health(state: ProjectionState, event: ContainerInstanceHealthChange) -> None:
    detail = event.detail
    key: EntityKey = (NODE, detail.containerInstanceArn)
    node = dict(state.get(key) or _new_node(detail.containerInstanceArn, detail.clusterArn))
    order = f"{iso(event.time)}|{event.id}"
    if node["health_order"] >= order:
        return
    node.update(
        health_status=detail.overallStatus,
        health_checks=[c.model_dump(mode="json", exclude_none=True) for c in detail.healthChecks],
        health_order=order,
    )
    if detail.ec2InstanceId and not node["ec2_instance_id"]:
        node["ec2_instance_id"] = detail.ec2InstanceId
    state.put(key, node)


# --- our own events -------------------------------------------------------------------------------


def _order(event: OurEvent) -> str:
    """Our events order by their record's own order when they carry one (several changes can share a time),
    else by time and id."""
    order = getattr(event.data, "order", None)
    if isinstance(order, int):
        return f"~{order:020d}|{event.event_id}"
    return f"{iso(event.time)}|{event.event_id}"


def _our_keys(event: OurEvent) -> list[EntityKey]:
    data = event.data
    if isinstance(data, NodeStateChanged | HealthCheckReported):
        return [(NODE, data.node_arn)]
    if isinstance(data, JobStateChanged):
        return [(JOB, data.job_id)]
    if isinstance(data, DecisionRecorded) and data.action.type == RECOVERY_STOP_ACTION:
        keys: list[EntityKey] = [(TASK, data.action.target)]
        return [*keys, (JOB, data.job_id)] if data.job_id else keys
    return []


def _apply_ours(state: ProjectionState, event: OurEvent, config: ProjectionConfig) -> None:
    data = event.data
    if isinstance(data, NodeStateChanged):
        _apply_node_state(state, event, data)
    elif isinstance(data, HealthCheckReported):
        _apply_health_report(state, event, data)
    elif isinstance(data, JobStateChanged):
        _apply_job_state(state, event, data, config)
    elif isinstance(data, DecisionRecorded) and data.action.type == RECOVERY_STOP_ACTION:
        _mark_recovery_stop(state, data, config)


def _apply_node_state(state: ProjectionState, event: OurEvent, data: NodeStateChanged) -> None:
    key: EntityKey = (NODE, data.node_arn)
    node = dict(state.get(key) or _new_node(data.node_arn, None))
    order = _order(event)
    if node["repair_order"] >= order:
        return
    node.update(
        repair_state=data.state,
        repair_reason=data.reason,
        incident_id=data.incident_id,
        repair_order=order,
    )
    if data.ec2_instance_id and not node["ec2_instance_id"]:
        node["ec2_instance_id"] = data.ec2_instance_id
    state.put(key, node)


def _apply_health_report(state: ProjectionState, event: OurEvent, data: HealthCheckReported) -> None:
    key: EntityKey = (NODE, data.node_arn)
    node = dict(state.get(key) or _new_node(data.node_arn, None))
    order = _order(event)
    if node["report_order"] >= order:
        return
    node["last_health_report"] = {
        "verdict": data.verdict,
        "recommended_action": data.recommended_action,
        "level": data.level,
        "reason": data.reason,
        "xids": [x.xid for x in data.xids],
        "check_task_arn": data.check_task_arn,
        "incident_id": data.incident_id,
        "at": iso(event.time),
    }
    node["report_order"] = order
    state.put(key, node)


def _apply_job_state(
    state: ProjectionState, event: OurEvent, data: JobStateChanged, config: ProjectionConfig
) -> None:
    key: EntityKey = (JOB, data.job_id)
    job = dict(state.get(key) or _job_stub(data.job_id))
    order = _order(event)
    at = iso(event.time)
    # The restart generation is a register of its own (the latest RESTARTING wins), so a newer
    # JobStateChanged folded first cannot hide an older restart.
    newer_generation = data.state == "RESTARTING" and (job.get("generation_at") or "") < at
    if newer_generation:
        job["generation_at"] = at
    recovery = job.get("recovery")
    if recovery is not None and recovery["order"] >= order:
        if newer_generation:
            state.put(key, _derive_job(job, config))
        return
    job["recovery"] = {
        "state": data.state,
        "reason": data.reason,
        "incident_id": data.incident_id,
        "restart_count": data.restart_count,
        "at": at,
        "order": order,
    }
    state.put(key, _derive_job(job, config))


def _mark_recovery_stop(state: ProjectionState, data: DecisionRecorded, config: ProjectionConfig) -> None:
    """Flags are set-once, so marking commutes with the task's own events (a stub keeps it)."""
    task_key: EntityKey = (TASK, data.action.target)
    task = state.get(task_key) or {"task_arn": data.action.target, "version": -1, "job_id": data.job_id}
    if not task.get("stop_requested_by_recovery"):
        state.put(task_key, {**task, "stop_requested_by_recovery": True})
    if not data.job_id:
        return
    job_key: EntityKey = (JOB, data.job_id)
    job = state.get(job_key)
    pending = set(job.get("recovery_stops", [])) if job else set()
    if data.action.target in pending:
        return
    job = dict(job or _job_stub(data.job_id))
    job["recovery_stops"] = sorted(pending | {data.action.target})
    entry = job["tasks"].get(data.action.target)
    if entry is not None:
        job["tasks"] = {**job["tasks"], data.action.target: {**entry, "recovery_stop": True}}
    state.put(job_key, _derive_job(job, config))


def _job_stub(job_id: str) -> Item:
    return {
        "job_id": job_id, "cluster_arn": None, "group": None, "started_by": None,
        "task_definition_arn": None, "tasks": {}, "recovery": None, "generation_at": None,
        "recovery_stops": [],
    }

