"""One model of ECS facts, read by the projection, the recovery, audit and analytics alike.

Each rule lives here once: which job a task belongs to, whether it is a GPU task, whether it failed,
where it is in ECS's lifecycle, what its stop says about the GPU, and what a job's ranks add up to.
Pure: no I/O, no clock.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from consumers.core.xid_catalog import classify_xid
from events_schema.aws import ContainerInstanceDetail, TaskDetail

# Every StopTask recovery sends carries this reason, so its UserInitiated stops are told from a user's.
RECOVERY_STOP_REASON = "gpu-recovery: stopping the ranks of an interrupted job"
RECOVERY_STOP_PREFIX = "gpu-recovery:"

# ECS's task lifecycle, in order; a task only moves forward, so a later stage always wins.
STAGES = ("PROVISIONING", "PENDING", "ACTIVATING", "RUNNING", "DEACTIVATING", "STOPPING", "DEPROVISIONING",
          "STOPPED")
RUNNING = STAGES.index("RUNNING")
STOPPED = STAGES.index("STOPPED")

IdentitySource = Literal["group", "tag", "startedBy"]
IdentityKind = Literal["group", "tag", "startedBy", "task", "pending", "service", "check"]


def stage(last_status: str | None) -> int:
    """The lifecycle stage's index; an unknown status counts as the first stage."""
    try:
        return STAGES.index(last_status or "")
    except ValueError:
        return 0


def task_id(task_arn: str) -> str:
    """``arn:...:task/cluster/abc`` -> ``abc``."""
    return task_arn.rsplit("/", 1)[-1]


# --- which job -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class IdentityRules:
    """How people launch training on ECS: an explicit group, a tag, or startedBy (in this order by default)."""

    order: tuple[IdentitySource, ...] = ("group", "tag", "startedBy")
    tag_key: str = "gpu-recovery:job"
    services_are_jobs: bool = False
    health_check_family: str | None = None
    gpu_task_families: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True)
class Identity:
    job_id: str | None
    kind: IdentityKind

    @property
    def pending(self) -> bool:
        """The job depends on the task's tags, which are not known yet."""
        return self.kind == "pending"


def explicit_group(group: str | None) -> str | None:
    """ECS sets ``family:NAME`` (RunTask without --group) or ``service:NAME`` on every task: not identities."""
    if not group or group.startswith(("family:", "service:")):
        return None
    return group


def is_service_task(detail: TaskDetail) -> bool:
    return bool((detail.group or "").startswith("service:") or (detail.startedBy or "").startswith("ecs-svc/"))


def job_identity(detail: TaskDetail, tags: Sequence[dict[str, str]] | None, rules: IdentityRules) -> Identity:
    """The job a task belongs to; ``tags`` is None while they are unknown (task events do not carry them)."""
    if rules.health_check_family and detail.task_definition_family == rules.health_check_family:
        return Identity(None, "check")
    if is_service_task(detail) and not rules.services_are_jobs:
        return Identity(None, "service")
    for source in rules.order:
        if source == "group" and explicit_group(detail.group):
            return Identity(explicit_group(detail.group), "group")
        if source == "tag":
            if tags is None:
                return Identity(None, "pending")
            value = tag_value(tags, rules.tag_key)
            if value:
                return Identity(value, "tag")
        if source == "startedBy" and detail.startedBy:
            return Identity(detail.startedBy, "startedBy")
    # No identity: the task is a job of its own, so two runs of one family are two jobs.
    return Identity(f"task:{task_id(detail.taskArn)}", "task")


def tag_value(tags: Iterable[dict[str, str]], key: str) -> str | None:
    return next((str(t.get("value")) for t in tags if t.get("key") == key and t.get("value")), None)


def is_gpu_task(detail: TaskDetail, families: frozenset[str]) -> bool:
    """Its containers hold GPUs, or its family is listed; read on every event (an unplaced task has none yet)."""
    return bool(detail.gpu_ids) or detail.task_definition_family in families


# --- how it ended ----------------------------------------------------------------------------------


def is_failure(detail: TaskDetail) -> bool:
    """STOPPED with a non-zero exit or a failed start; a stop by a user or by recovery is not a failure."""
    if detail.lastStatus != "STOPPED" or detail.stopCode == "UserInitiated":
        return False
    if detail.stopCode == "TaskFailedToStart":
        return True
    codes = [c.exitCode for c in detail.containers if c.exitCode is not None]
    return any(code != 0 for code in codes) or (not codes and detail.stopCode != "ServiceSchedulerInitiated")


def first_nonzero_exit(detail: TaskDetail) -> int | None:
    return next((c.exitCode for c in detail.containers if c.exitCode not in (None, 0)), None)


def stopped_by_recovery(detail: TaskDetail) -> bool:
    return detail.stopCode == "UserInitiated" and (detail.stoppedReason or "").startswith(RECOVERY_STOP_PREFIX)


def stopped_by_user(detail: TaskDetail) -> bool:
    return detail.stopCode == "UserInitiated" and not stopped_by_recovery(detail)


_XIDS = re.compile(r"(?i)\bxids?\b\s*(?:\([^)]{0,64}\))?\s*[:=\[(]?\s*((?:\d{1,3}\s*,\s*){0,15}\d{1,3})")


def xids_in(text: str | None) -> list[int]:
    """XIDs named in a stop reason: ``NVRM: Xid (PCI:0000:3b:00): 79``, ``XID 48``, ``Xid [48, 62]``."""
    found: set[int] = set()
    for match in _XIDS.finditer((text or "")[:4096]):
        found.update(int(part) for part in match.group(1).split(","))
    return sorted(found)


def stop_xids(detail: TaskDetail) -> list[int]:
    texts = [detail.stoppedReason, *(c.reason for c in detail.containers)]
    return sorted({x for text in texts for x in xids_in(text)})


def gpu_fault_xids(xids: Iterable[int]) -> list[int]:
    """The XIDs that name a GPU fault (not the application's own): evidence against the node."""
    return sorted(x for x in set(xids) if classify_xid(x).cls != "application")


# --- what a job's ranks add up to -----------------------------------------------------------------


@dataclass(frozen=True)
class RankView:
    """What the job's state needs of one rank."""

    stage: int
    failed: bool
    user_stop: bool
    recovery_stop: bool


JobLifecycle = Literal["PENDING", "RUNNING", "INTERRUPTED", "COMPLETED", "STOPPED_BY_USER"]


def lifecycle(ranks: Iterable[RankView]) -> JobLifecycle:
    """The state ECS alone implies for a generation of ranks.

    Stopping stages (DEACTIVATING, STOPPING, DEPROVISIONING) are on their way to STOPPED: not PENDING.
    """
    count = stopped = 0
    starting = failed = user = False
    all_ours = True
    for rank in ranks:
        count += 1
        failed = failed or rank.failed
        if rank.stage == STOPPED:
            stopped += 1
            user = user or rank.user_stop
            all_ours = all_ours and rank.recovery_stop
        elif rank.stage < RUNNING:
            starting = True
    if count == 0:
        return "PENDING"
    if failed:
        return "INTERRUPTED"
    if stopped < count:
        return "PENDING" if starting else "RUNNING"
    if user:
        return "STOPPED_BY_USER"
    return "INTERRUPTED" if all_ours else "COMPLETED"


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


def remaining_gpus(detail: ContainerInstanceDetail) -> int | None:
    """GPUs ECS has not given to a task yet (``remainingResources``), when the event says."""
    extra = detail.model_extra or {}
    for resource in extra.get("remainingResources") or []:
        if isinstance(resource, dict) and resource.get("name") == "GPU":
            values = resource.get("stringSetValue")
            return len(values) if isinstance(values, list) else None
    return None
