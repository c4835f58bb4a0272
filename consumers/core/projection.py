"""The projection of the stream into the ``ecs_task``, ``ecs_job`` and ``ecs_node`` tables.

Every field group of an item is a register that merges the same way in any order: last-writer-wins on a
total order (ECS's ``detail.version`` for ECS entities, ``(event time, event id)`` or the record's own
``order`` for our own events; the Firehose archive keeps no sequence numbers, and replay must give what
live gave), set-once flags, and the lowest-ordered capture of a task's tags. Derived fields are recomputed
from the registers. So folding is idempotent and commutative across entities: any duplication and any
interleaving of per-entity-ordered histories gives the same items.

The ECS rules (which job a task belongs to, GPU task, failure, lifecycle) are the recovery's own, from
``consumers/core/facts.py``: the tables and recovery never disagree about what a job is.

Why one module (about 750 lines): the three tables are one fold whose entities feed each other in the same
step (a task's event changes its job; recovery's own events change jobs, nodes and tasks); split by table,
each part would import the others' registers back. The per-rank encoding of the job item lives apart, in
``consumers/core/job_ranks.py``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import timedelta
from functools import lru_cache
from typing import Any

from consumers.core.clocktext import epoch_seconds, iso, parse_iso
from consumers.core.facts import (
    RUNNING,
    IdentityRules,
    JobLifecycle,
    RankView,
    first_nonzero_exit,
    is_failure,
    is_gpu_task,
    job_identity,
    launch_spec,
    lifecycle,
    stage,
    stopped_by_recovery,
)
from consumers.core.job_ranks import (
    AT_WIDTH,
    Rank,
    at_text,
    code_failed,
    decode,
    encode,
    iso_of_ms,
    ms_of_at_text,
    ms_of_iso,
    rank_key,
    task_arn_of,
    view_code,
)
from events_schema.aws import (
    Container,
    ContainerInstanceHealthChange,
    ContainerInstanceStateChange,
    HealthCheckResult,
    TaskDetail,
    TaskStateChange,
)
from events_schema.commands import StartTask
from events_schema.decode import StreamEvent
from events_schema.envelope import OurEvent
from events_schema.events import (
    ActionOutcome,
    DecisionRecorded,
    HealthCheckReported,
    JobStateChanged,
    NodeStateChanged,
    TaskTagsCaptured,
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
ECS_EVENTS = (TaskStateChange, ContainerInstanceStateChange, ContainerInstanceHealthChange)
# ECS's own rule for a container instance's overallStatus: the most severe check wins, in this order
# (developerguide/container-instance-health.html). A status ECS adds later counts as missing data.
HEALTH_SEVERITY = {"IMPAIRED": 0, "INSUFFICIENT_DATA": 1, "INITIALIZING": 2, "OK": 3}


@dataclass(frozen=True)
class ProjectionConfig:
    """Which job a task belongs to and which tasks are GPU tasks (the rules recovery uses, built from the same
    settings by ``gpu_recovery.apps.identity_rules``), which cluster is ours, how long finished items stay."""

    identity: IdentityRules = field(default_factory=IdentityRules)
    cluster_arn: str | None = None  # None: fold every cluster's events (tools reading any stream, tests)
    ttl_days: int = 30


@dataclass
class ProjectionState:
    """Items by key. ``known``: the keys an adapter looked up (None: every item there is, is here); a key the
    fold reads outside it lands in ``missing``, so the adapter loads it and folds again."""

    items: dict[EntityKey, Item] = field(default_factory=dict)
    dirty: set[EntityKey] = field(default_factory=set)
    known: set[EntityKey] | None = None
    missing: set[EntityKey] = field(default_factory=set)

    def get(self, key: EntityKey) -> Item | None:
        item = self.items.get(key)
        if item is None and self.known is not None and key not in self.known:
            self.missing.add(key)
        return item

    def put(self, key: EntityKey, item: Item) -> None:
        self.items[key] = item
        self.dirty.add(key)

    def table(self, name: str) -> list[Item]:
        rows = [item for (table, _), item in self.items.items() if table == name]
        return sorted(rows, key=lambda item: str(item[KEY_ATTRIBUTE[name]]))


def fold(state: ProjectionState, event: StreamEvent, config: ProjectionConfig) -> ProjectionState:
    """Apply one event. Stale and repeated events leave the state as it was.

    AWS Health and EC2 instance state events change no table: recovery acts on them, the tables keep ECS's view.
    Other clusters' events are the caller's to leave out (``foreign_cluster``): the projector parks them.
    """
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


def foreign_cluster(event: StreamEvent, config: ProjectionConfig) -> str | None:
    """The cluster of an ECS event from a cluster that is not ours; None for ours (our own events and AWS
    Health / EC2 events name no cluster: the rules match them to the cluster's instances)."""
    if config.cluster_arn is None or not isinstance(event, ECS_EVENTS):
        return None
    cluster = event.detail.clusterArn
    return None if cluster == config.cluster_arn else cluster


def touched_keys(event: StreamEvent, config: ProjectionConfig) -> list[EntityKey]:
    """The items an event is expected to change, so an adapter can load them in one round trip. The fold
    names any other item it reads (``ProjectionState.missing``): the job a task's stored tags name."""
    if isinstance(event, TaskStateChange):
        keys: list[EntityKey] = [(TASK, event.detail.taskArn)]
        job_id = job_identity(event.detail, None, config.identity).job_id
        return [*keys, (JOB, job_id)] if job_id is not None else keys
    if isinstance(event, ContainerInstanceStateChange | ContainerInstanceHealthChange):
        return [(NODE, event.detail.containerInstanceArn)]
    if isinstance(event, OurEvent):
        return _our_keys(event)
    return []


# --- tasks ----------------------------------------------------------------------------------------


def _task_stub(task_arn: str) -> Item:
    """A task known only from our own events so far (its tags, recovery's stop); its ECS facts come later."""
    return {"task_arn": task_arn, "version": -1, "job_id": None, "identity": None, "is_gpu": False,
            "tags": None, "tags_order": "", "stop_requested_by_recovery": False}


def _apply_task(state: ProjectionState, event: TaskStateChange, config: ProjectionConfig) -> None:
    detail = event.detail
    key: EntityKey = (TASK, detail.taskArn)
    current = state.get(key)
    if current is None or current.get("version", -1) < detail.version:
        item = _task_item(event, config, current or _task_stub(detail.taskArn))
    elif not current.get("is_gpu") and is_gpu_task(detail, config.identity.gpu_task_families):
        item = {**current, "is_gpu": True}  # a GPU task whatever its newest event shows: never fixed at first sight
    else:
        item = current
    if item is not current:
        state.put(key, item)
    # The job's entry has its own version: a write lost between the task's and the job's put heals
    # when the batch is delivered again.
    _join_job(state, item, current.get("job_id") if current else None, config)


def _task_item(event: TaskStateChange, config: ProjectionConfig, base: Item) -> Item:
    detail = event.detail
    at = iso(event.time)
    stopped_at = iso(detail.stoppedAt) if detail.stoppedAt else (at if detail.lastStatus == "STOPPED" else None)
    gpu_ids = detail.gpu_ids  # a derived list: read once (is_gpu_task reads it too, when it is empty)
    tags = base.get("tags")
    job_id, identity = _identity(detail, base, config)
    return {
        "task_arn": detail.taskArn,
        "cluster_arn": detail.clusterArn,
        "job_id": job_id,
        "identity": identity,
        "container_instance_arn": detail.containerInstanceArn,
        "task_definition_arn": detail.taskDefinitionArn,
        "family": detail.task_definition_family,
        "last_status": detail.lastStatus,
        "desired_status": detail.desiredStatus,
        "version": detail.version,
        "is_gpu": bool(gpu_ids) or bool(base.get("is_gpu")) or is_gpu_task(detail, config.identity.gpu_task_families),
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
        "tags": tags,
        "tags_order": base.get("tags_order", ""),
        # Set once: recovery recorded its StopTask, or the stop's reason is recovery's own mark.
        "stop_requested_by_recovery": bool(base.get("stop_requested_by_recovery")) or stopped_by_recovery(detail),
        "expires_at": _expiry(stopped_at, config) if stopped_at else None,
    }


def _identity(detail: TaskDetail, base: Item, config: ProjectionConfig) -> tuple[str | None, str | None]:
    """The task's job by the recovery's rule; what it reads (group, startedBy, task definition, tags) does not
    change from one event of a task to the next, so the item's answer stands while they are the same."""
    if base.get("identity") is not None and (base.get("group"), base.get("started_by"),
                                             base.get("task_definition_arn")) == (
            detail.group, detail.startedBy, detail.taskDefinitionArn):
        return base["job_id"], base["identity"]
    identity = job_identity(detail, base.get("tags"), config.identity)
    return identity.job_id, identity.kind


def _container(container: Container) -> dict[str, Any]:
    # Read the fields, not a model_dump of the whole container (a tenth of the cost).
    return {
        "name": container.name,
        "last_status": container.lastStatus,
        "exit_code": container.exitCode,
        "reason": container.reason,
        "gpu_ids": list(container.gpuIds),
    }


def _expiry(stopped_at: str, config: ProjectionConfig) -> int:
    return epoch_seconds(parse_iso(stopped_at) + timedelta(days=config.ttl_days))


def _apply_tags(state: ProjectionState, task_arn: str, tags: list[dict[str, str]], order: str,
                config: ProjectionConfig) -> None:
    """A task's tags (task events carry none): its job may be known now. The first capture wins."""
    key: EntityKey = (TASK, task_arn)
    current = state.get(key)
    item = current or _task_stub(task_arn)
    if item.get("tags") is None or order < item.get("tags_order", ""):
        item = _identified({**item, "tags": [dict(t) for t in tags], "tags_order": order}, config)
        state.put(key, item)
    _join_job(state, item, current.get("job_id") if current else None, config)


def _identified(item: Item, config: ProjectionConfig) -> Item:
    """The task's job by the recovery's rule, from what its item keeps (a stub has no facts to go by yet)."""
    if item.get("version", -1) < 0:
        return item
    # Only what identity reads; built without validation (the item's values were validated when they came).
    detail = TaskDetail.model_construct(
        taskArn=item["task_arn"], clusterArn=item.get("cluster_arn") or "", lastStatus=item["last_status"],
        version=item["version"], taskDefinitionArn=item["task_definition_arn"], containers=[],
        group=item.get("group"), startedBy=item.get("started_by"))
    identity = job_identity(detail, item.get("tags"), config.identity)
    return {**item, "job_id": identity.job_id, "identity": identity.kind}


# --- jobs -----------------------------------------------------------------------------------------

# A fabric failure fails every rank: the job item names a few (the ecs_task items have them all).
FAILED_ARNS_SHOWN = 16
EPOCH = "1970-01-01T00:00:00.000000Z"  # an older item's entry that kept no times


def job_ranks(job: Item) -> dict[str, Rank]:
    """The ranks of a job item's current generation, by task ARN (readers: the CLI, tests, verify)."""
    cluster = job.get("cluster_arn")
    return {task_arn_of(key, cluster): decode(value) for key, value in _upgraded(job)["ranks"].items()}


def _job_of(state: ProjectionState, key: EntityKey) -> Item | None:
    job = state.get(key)
    return _upgraded(job) if job is not None else None


def _join_job(state: ProjectionState, task: Item, previous_job: str | None, config: ProjectionConfig) -> None:
    """Put the task's rank in its job; leave the job it was counted in before, if that changed (an item
    written under the older rule, or tags that name another job)."""
    if previous_job is not None and previous_job != task.get("job_id"):
        _leave_job(state, previous_job, task, config)
    if task.get("job_id") is not None and task.get("version", -1) >= 0:  # a stub has no facts to enter yet
        _apply_task_to_job(state, task, config)


def _leave_job(state: ProjectionState, job_id: str, task: Item, config: ProjectionConfig) -> None:
    key: EntityKey = (JOB, job_id)
    job = _job_of(state, key)
    name = rank_key(task["task_arn"])
    if job is None or name not in job["ranks"]:
        return
    ranks = {other: value for other, value in job["ranks"].items() if other != name}
    left = _derive_job(_summarized({**job, "ranks": ranks}), config)
    if not ranks and left.get("recovery") is None and task.get("updated_at"):
        left["expires_at"] = _expiry(task["updated_at"], config)  # every task left it: it goes after the TTL
    state.put(key, left)


def _apply_task_to_job(state: ProjectionState, task: Item, config: ProjectionConfig) -> None:
    key: EntityKey = (JOB, task["job_id"])
    base = _job_of(state, key) or _new_job(task)
    job = _with_task_registers(base, task)
    rank = _rank(task)
    since = job.get("generation_at")
    if since is None or rank.created_at >= since:  # a rank of an older generation changes only the registers
        name = rank_key(task["task_arn"])
        known = decode(job["ranks"][name]) if name in job["ranks"] else None
        if known is None or known.version < rank.version:
            job = _with_rank(job, name, encode(rank))
        elif known.version == rank.version and rank.recovery_stop and not known.recovery_stop:
            job = _with_rank(job, name, encode(replace(known, recovery_stop=True)))  # a set-once flag
    if job != base:
        state.put(key, _derive_job(job, config))


def _rank(task: Item) -> Rank:
    created_ms = ms_of_iso(task["created_at"])
    return Rank(version=task["version"], stage=stage(task["last_status"]), failed=bool(task["failed"]),
                user_initiated=task["stop_code"] == "UserInitiated",
                recovery_stop=bool(task.get("stop_requested_by_recovery")),
                created_ms=created_ms, at_ms=ms_of_iso(task["updated_at"]))


def _with_task_registers(base: Item, task: Item) -> Item:
    """The job's fields any of its tasks, of any generation, adds to: each merges the same way in any order."""
    job = dict(base)
    for constant in ("cluster_arn", "group", "started_by"):  # the same for every rank; else the least, in any order
        known_value, value = base.get(constant), task.get(constant)
        if value != known_value and value is not None:
            job[constant] = value if known_value is None else min(value, known_value)
    job["is_gpu"] = bool(base.get("is_gpu")) or bool(task["is_gpu"])
    newest = f"{task['created_at']}|{task['task_arn']}"
    if base.get("newest_task") is None or newest > base["newest_task"]:  # the newest task names the definition
        job["newest_task"], job["task_definition_arn"] = newest, task["task_definition_arn"]
    if base.get("tasks_at") is None or task["updated_at"] > base["tasks_at"]:
        job["tasks_at"] = task["updated_at"]
    return job


def _new_job(task: Item) -> Item:
    return {
        **_job_stub(task["job_id"]),
        "cluster_arn": task["cluster_arn"],
        "group": task["group"],
        "started_by": task["started_by"],
        "task_definition_arn": task["task_definition_arn"],
    }


@dataclass(frozen=True)
class _Ranks:
    """What a generation's ranks add up to."""

    state: JobLifecycle
    at: str  # the newest rank event's time
    last_failure_at: str
    running: int
    failed: int


@lru_cache(maxsize=256)
def _view(code: str) -> RankView:
    rank = decode(code + "0" * AT_WIDTH + ".0.0")  # only the view's two characters count
    return RankView(stage=rank.stage, failed=rank.failed, user_stop=rank.user_initiated and not rank.recovery_stop,
                    recovery_stop=rank.recovery_stop)


# A generation's summary lives in the job item next to its ranks (one item: written together or not at all):
# ``rank_views`` counts the ranks by view (a rank string's first two characters), ``ranks_at`` and
# ``failure_at`` are the newest rank event and the newest failure (time slices of the strings),
# ``failed_task_arns`` the first failed ARNs. A rank's event updates them in a few steps, not a loop over a
# 2,048-rank job at each of its ranks' events; only when a rank leaves, goes back in time or stops counting as
# failed are they counted again. Either way they are a function of the ranks: the same in any order.


def _summarized(job: Item) -> Item:
    ranks: dict[str, str] = job["ranks"]
    views = Counter(map(view_code, ranks.values()))
    failed = [name for name, value in ranks.items() if code_failed(view_code(value))] if any(
        map(code_failed, views)) else []
    job["rank_views"] = dict(sorted(views.items()))
    job["ranks_at"] = max(map(at_text, ranks.values()), default="")
    job["failure_at"] = max((at_text(ranks[name]) for name in failed), default="")
    job["failed_task_arns"] = sorted(task_arn_of(name, job.get("cluster_arn")) for name in failed)[:FAILED_ARNS_SHOWN]
    return job


def _with_rank(job: Item, name: str, value: str) -> Item:
    old = job["ranks"].get(name)
    job["ranks"] = {**job["ranks"], name: value}
    code = view_code(value)
    no_longer_failed = old is not None and code_failed(view_code(old)) and not code_failed(code)
    if old is not None and (at_text(value) < at_text(old) or no_longer_failed):
        return _summarized(job)  # a maximum or a failed rank may have gone: count again
    views = dict(job["rank_views"])
    if old is not None:
        views[view_code(old)] -= 1
        if not views[view_code(old)]:
            del views[view_code(old)]
    views[code] = views.get(code, 0) + 1
    job["rank_views"] = dict(sorted(views.items()))
    job["ranks_at"] = max(job["ranks_at"], at_text(value))
    if code_failed(code):
        job["failure_at"] = max(job["failure_at"], at_text(value))
        arn = task_arn_of(name, job.get("cluster_arn"))
        if arn not in job["failed_task_arns"]:  # a failed rank past the first ones sorts after them: trimmed
            job["failed_task_arns"] = sorted([*job["failed_task_arns"], arn])[:FAILED_ARNS_SHOWN]
    return job


def _summary(job: Item) -> _Ranks:
    """``facts.lifecycle`` reads the set of views, not how many ranks share one: one view per kind gives it."""
    views: dict[str, int] = job["rank_views"]
    running = sum(int(n) for code, n in views.items() if _view(code).stage == RUNNING)
    failed = sum(int(n) for code, n in views.items() if code_failed(code))
    return _Ranks(lifecycle(_view(code) for code in views), _iso_of_at(job["ranks_at"]),
                  _iso_of_at(job["failure_at"]), running, failed)


def _iso_of_at(text: str) -> str:
    return iso_of_ms(ms_of_at_text(text)) if text else ""


def _derive_job(job: Item, config: ProjectionConfig) -> Item:
    """The job's derived fields."""
    ranks = _summary(job)
    recovery = job.get("recovery")
    state: str = ranks.state if recovery is None else _merge_job_state(ranks, recovery)
    job["state"] = state
    updated_at = max((at for at in (job.get("tasks_at"), recovery["at"] if recovery else None) if at), default=None)
    job["task_count"] = len(job["ranks"])
    job["running_count"] = ranks.running
    job["failed_count"] = ranks.failed
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


def _merge_job_state(ranks: _Ranks, recovery: Item) -> str:
    """Recovery's word stands until ECS shows something newer that recovery has not seen."""
    if ranks.state == "INTERRUPTED":
        return "INTERRUPTED" if ranks.last_failure_at > recovery["at"] else str(recovery["state"])
    if recovery["state"] in ACTIVE_RECOVERY_STATES and ranks.state == "PENDING":
        return str(recovery["state"])
    return ranks.state if ranks.at > recovery["at"] else str(recovery["state"])


def _upgraded(job: Item) -> Item:
    """A job item the projector wrote before ranks were kept short (``tasks``: a map entry per rank of every
    generation) in today's shape: the same registers, read from its entries."""
    if "tasks" not in job:
        return job
    old: dict[str, Item] = job["tasks"]
    stops = set(job.get("recovery_stops") or ())
    item = {key: value for key, value in job.items() if key not in ("tasks", "recovery_stops")}
    ranks: dict[str, str] = {}
    for arn, entry in old.items():
        created = str(entry.get("created_at") or entry.get("at") or EPOCH)
        rank = Rank(version=int(entry.get("version", 0)), stage=stage(entry.get("last_status")),
                    failed=bool(entry.get("failed")), user_initiated=entry.get("stop_code") == "UserInitiated",
                    recovery_stop=bool(entry.get("recovery_stop")) or arn in stops,
                    created_ms=ms_of_iso(created), at_ms=ms_of_iso(str(entry.get("at") or created)))
        ranks[rank_key(arn)] = encode(rank)
        item["is_gpu"] = bool(item.get("is_gpu")) or bool(entry.get("is_gpu"))
        if entry.get("at") and (item.get("tasks_at") is None or entry["at"] > item["tasks_at"]):
            item["tasks_at"] = entry["at"]
        newest = f"{created}|{arn}"
        if item.get("newest_task") is None or newest > item["newest_task"]:
            item["newest_task"] = newest
    item["ranks"] = ranks
    return _summarized(item)


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
        "health_checks": {},
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
        ec2_instance_id=instance_id or node["ec2_instance_id"],
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
    """One register per health check: an event about one check leaves the others as they are, and two
    events in the same second both land (each check keeps its newest result, by its own time)."""
    detail = event.detail
    key: EntityKey = (NODE, detail.containerInstanceArn)
    current = state.get(key)
    node = dict(current or _new_node(detail.containerInstanceArn, detail.clusterArn))
    checks = _health_registers(node)
    for check in detail.healthChecks:
        name = check.type or "UNKNOWN"
        register = _health_register(check, event)
        known = checks.get(name)
        if known is None or known["order"] < register["order"]:
            checks[name] = register
    node["health_checks"] = checks
    node["health_status"] = overall_health(checks)
    node.pop("health_order", None)  # the single register items written before per-check registers kept
    node["cluster_arn"] = node["cluster_arn"] or detail.clusterArn
    node["ec2_instance_id"] = node["ec2_instance_id"] or detail.ec2InstanceId
    if node != current:
        state.put(key, node)


def _health_registers(node: Item) -> dict[str, Item]:
    checks = node.get("health_checks")
    return dict(checks) if isinstance(checks, dict) else {}  # an older item's list is one event's, not registers


def _health_register(check: HealthCheckResult, event: ContainerInstanceHealthChange) -> Item:
    # The same order as recovery's register (consumers/core/recovery/apply.py): the check's own time, then the
    # event id, so replay in any order keeps the same result.
    reason = (check.model_extra or {}).get("statusReason")
    return {
        "status": check.status or "UNKNOWN",
        "since": iso(check.lastStatusChange or check.lastUpdated or event.time),
        "reason": str(reason) if reason is not None else "",
        "order": f"{iso(check.lastUpdated or event.time)}|{event.id}",
    }


def overall_health(checks: dict[str, Item]) -> str | None:
    """The node's health as ECS computes ``overallStatus``: the most severe of its checks."""
    statuses = [str(c["status"]) for c in checks.values()]
    return min(statuses, key=lambda s: (HEALTH_SEVERITY.get(s, 1), s), default=None)


# --- our own events -------------------------------------------------------------------------------


def _order(event: OurEvent) -> str:
    """Our events order by their record's own order when they carry one (several changes can share a time),
    else by time and id."""
    order = getattr(event.data, "order", None)
    if isinstance(order, int):
        return f"~{order:020d}|{event.event_id}"
    return f"{iso(event.time)}|{event.event_id}"


def _started_rank(data: ActionOutcome) -> tuple[str, list[dict[str, str]]] | None:
    """A rank recovery started, and the tags it started it with (recovery reads no tags of its own starts)."""
    command = data.action
    if data.status != "succeeded" or not isinstance(command, StartTask) or command.purpose != "rank":
        return None
    arn = data.detail.get("task_arn")
    return (arn, list(command.tags)) if isinstance(arn, str) and arn else None


def _our_keys(event: OurEvent) -> list[EntityKey]:
    data = event.data
    if isinstance(data, NodeStateChanged | HealthCheckReported):
        return [(NODE, data.node_arn)]
    if isinstance(data, JobStateChanged):
        return [(JOB, data.job_id)]
    task_arn: str | None = None
    if isinstance(data, DecisionRecorded) and data.action.type == RECOVERY_STOP_ACTION:
        task_arn = data.action.target
    elif isinstance(data, TaskTagsCaptured):
        task_arn = data.task_arn
    elif isinstance(data, ActionOutcome) and (started := _started_rank(data)) is not None:
        task_arn = started[0]
    if task_arn is None:
        return []
    # The job the event names is where the task goes, when the tables agree with recovery (they use one rule).
    job_id = getattr(data, "job_id", None)
    return [(TASK, task_arn), (JOB, job_id)] if job_id else [(TASK, task_arn)]


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
    elif isinstance(data, TaskTagsCaptured):
        _apply_tags(state, data.task_arn, data.tags, _order(event), config)
    elif isinstance(data, ActionOutcome) and (started := _started_rank(data)) is not None:
        _apply_tags(state, started[0], started[1], _order(event), config)


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
    job = dict(_job_of(state, key) or _job_stub(data.job_id))
    order = _order(event)
    at = iso(event.time)
    # The restart generation is a register of its own (the latest RESTARTING wins), so a newer
    # JobStateChanged folded first cannot hide an older restart.
    newer_generation = data.state == "RESTARTING" and (job.get("generation_at") or "") < at
    if newer_generation:  # the ranks of an older generation leave the item (their ecs_task items stay)
        job["generation_at"] = at
        job["ranks"] = {name: value for name, value in job["ranks"].items() if decode(value).created_at >= at}
        job = _summarized(job)
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
    task = state.get(task_key) or _task_stub(data.action.target)
    if not task.get("stop_requested_by_recovery"):
        task = {**task, "stop_requested_by_recovery": True}
        state.put(task_key, task)
    # The rank takes the flag from the task's item (set once), in whichever order the two come.
    _join_job(state, task, task.get("job_id"), config)


def _job_stub(job_id: str) -> Item:
    return {
        "job_id": job_id, "cluster_arn": None, "group": None, "started_by": None,
        "task_definition_arn": None, "ranks": {}, "recovery": None, "generation_at": None,
        "is_gpu": False, "newest_task": None, "tasks_at": None,
        "rank_views": {}, "ranks_at": "", "failure_at": "", "failed_task_arns": [],
    }
