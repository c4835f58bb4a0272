"""Our own event types: health reports, recovery decisions and outcomes, deadlines, parked records.

Each payload model has a TYPE and a VERSION. A change that readers cannot absorb as an optional field
bumps VERSION and registers an upcaster from the previous version in ``REGISTRY``.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from events_schema.commands import Command, Step, command_from_v1
from events_schema.envelope import EventData, Registry
from events_schema.notices import NOTICE_SEVERITY, Notice, Seen, Severity

NodeRepairState = Literal[
    "HEALTHY", "SUSPECT", "CHECKING", "REBOOTING", "VERIFYING", "QUARANTINED", "REPLACED", "MISCONFIGURED"
]
IncidentOutcome = Literal[
    "recovered", "healthy", "application_fault", "quarantined", "replaced", "misconfigured", "escalated",
    "released", "failed",
]
OutcomeStatus = Literal["succeeded", "failed", "unknown"]
# Why a call failed: "refused" is AWS's answer (a 4xx); the others leave it unknown whether it took effect.
ErrorKind = Literal["refused", "throttled", "unavailable", "timeout", "unknown"]
JobState = Literal[
    "RUNNING", "INTERRUPTED", "RECOVERING", "RESTARTING", "WAITING_CAPACITY", "COMPLETED", "FAILED",
    "STOPPED_BY_USER",
]
Verdict = Literal["healthy", "application_fault", "hardware_fault", "misconfigured", "inconclusive"]
# "reconfigure": a configuration fault (DCGM severity CONFIG); a reboot would not change it.
RepairAction = Literal["none", "reboot", "quarantine", "reconfigure"]
SignalKind = Literal[
    "xid", "ecc", "row_remap_failure", "thermal", "power", "gpu_count_drop", "fell_off_bus", "health_check",
]


class _Part(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class GpuResult(_Part):
    index: int
    uuid: str | None = None
    status: Literal["pass", "fail", "warn", "skip"] = "pass"
    errors: list[str] = Field(default_factory=list)


class XidCount(_Part):
    xid: int
    count: int = Field(ge=1)


class HealthCheckReported(EventData):
    """The DCGM agent's verdict on one node, written by the agent itself (or the simulator).

    Recovery acts on a report only when ``proof`` verifies: an HMAC over the payload keyed by the secret it
    passed to the check task it started (``events_schema.proof``). Anything else is a signal at most.
    """

    TYPE: ClassVar[str] = "HealthCheckReported"
    VERSION: ClassVar[int] = 3
    node_arn: str
    ec2_instance_id: str | None = None
    check_task_arn: str | None = None
    incident_id: str | None = None
    level: int = Field(ge=1, le=4)
    verdict: Verdict
    recommended_action: RepairAction = "none"
    reason: str = ""
    gpus: list[GpuResult] = Field(default_factory=list)
    xids: list[XidCount] = Field(default_factory=list)
    dcgm_version: str | None = None
    expected_gpus: int | None = None
    found_gpus: int | None = None
    durations_s: dict[str, float] = Field(default_factory=dict)
    # v3: which check attempt this answers, its proof, the host's boot time (reboot proof), and what did not run.
    check_key: str | None = Field(None, description="The check attempt this report answers (the idempotency key "
                                  "of the StartTask that launched the check).")
    proof: str | None = Field(None, description="HMAC-SHA256 of this payload (without `proof`) keyed by the secret "
                              "recovery gave this check task; recovery acts only on a report whose proof verifies.")
    boot_time: datetime | None = Field(None, description="When the host last booted: a reboot counts only when "
                                       "this is after the reboot request.")
    fix: str = Field("", description="For `misconfigured`: what to change on the node.")
    untested: list[str] = Field(default_factory=list, description="Tests or GPUs that did not run or were skipped; "
                                "any makes the verdict inconclusive.")


def health_check_v2_to_v3(data: dict[str, Any]) -> dict[str, Any]:
    """v3 only adds optional fields."""
    return dict(data)


def health_check_v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    """v1 had ``result`` (pass/fail/error) and a flat list of XIDs; v2 has a verdict and counts."""
    out = {k: v for k, v in data.items() if k not in ("result", "xids")}
    result = data.get("result")
    out["verdict"] = {"pass": "healthy", "fail": "hardware_fault"}.get(str(result), "inconclusive")
    out["recommended_action"] = "reboot" if result == "fail" else "none"
    out["reason"] = data.get("reason") or f"upcast from v1 result={result!r}"
    counts = Counter(int(x) for x in data.get("xids") or [])
    out["xids"] = [{"xid": xid, "count": n} for xid, n in sorted(counts.items())]
    return out


class IncidentOpened(EventData):
    TYPE: ClassVar[str] = "IncidentOpened"
    incident_id: str
    node_arn: str
    ec2_instance_id: str | None = None
    job_ids: list[str] = Field(default_factory=list)
    trigger_task_arn: str | None = None
    reason: str = ""


class IncidentClosed(EventData):
    TYPE: ClassVar[str] = "IncidentClosed"
    incident_id: str
    node_arn: str
    outcome: IncidentOutcome
    reason: str = ""


class DecisionRecorded(EventData):
    """Appended before the AWS call it names; the idempotency key makes the call happen once."""

    TYPE: ClassVar[str] = "DecisionRecorded"
    VERSION: ClassVar[int] = 2
    idempotency_key: str
    action: Command
    incident_id: str | None = None
    job_id: str | None = None
    step: Step = Field(description="The step of recovery the call belongs to: `stop_ranks`, `health_check`, "
                       "`reboot`, `restart`, `notify`, ...; its outcome is routed by it.")
    reason: str = ""


class ActionOutcome(EventData):
    TYPE: ClassVar[str] = "ActionOutcome"
    VERSION: ClassVar[int] = 2
    idempotency_key: str
    action: Command
    incident_id: str | None = None
    job_id: str | None = None
    step: Step | None = Field(None, description="The step of recovery the call belonged to.")
    # "unknown": it is not known whether the call took effect (throttled, 5xx, timeout, or the consumer
    # stopped between claiming it and recording its result); it is checked again, never read as "failed".
    status: OutcomeStatus
    detail: dict[str, Any] = Field(default_factory=dict)
    error: str | None = None
    error_kind: ErrorKind | None = Field(None, description="Why it failed or is unknown: `refused` (AWS said no), "
                                         "`throttled`, `unavailable` (5xx), `timeout`, `unknown`.")


_V1_STEPS = {"stop_siblings": "stop_ranks"}


def decision_v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    """v1 carried ``action: {type, target, params}`` and a free-text step."""
    out = dict(data)
    out["action"] = command_from_v1(dict(data.get("action") or {}))
    if "step" in data:
        out["step"] = _V1_STEPS.get(str(data["step"]), data["step"])
    return out


class NodeStateChanged(EventData):
    TYPE: ClassVar[str] = "NodeStateChanged"
    node_arn: str
    state: NodeRepairState
    reason: str = ""
    incident_id: str | None = None
    ec2_instance_id: str | None = None
    order: int | None = Field(None, description="Where this change falls among the node's changes (the higher, "
                              "the later), whatever the event times say.")


class JobStateChanged(EventData):
    TYPE: ClassVar[str] = "JobStateChanged"
    job_id: str
    state: JobState
    reason: str = ""
    incident_id: str | None = None
    restart_count: int = 0
    order: int | None = Field(None, description="Where this change falls among the job's changes (the higher, "
                              "the later), whatever the event times say.")


class DeadlineExpired(EventData):
    """Time as an event: the live consumer noticed a deadline pass; decisions read only this."""

    TYPE: ClassVar[str] = "DeadlineExpired"
    deadline_id: str
    kind: str
    due_at: datetime
    incident_id: str | None = None
    job_id: str | None = None
    node_arn: str | None = None


class NotificationSent(EventData):
    TYPE: ClassVar[str] = "NotificationSent"
    VERSION: ClassVar[int] = 2
    kind: str
    severity: Severity = Field("action_needed", description="`info`, `action_needed` or `page` (an SNS message "
                               "attribute, for subscription filter policies).")
    subject: str
    message: Notice
    incident_id: str | None = None
    job_id: str | None = None
    node_arn: str | None = None




def notification_v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    """v1's message was a free dict (kind, cluster, summary, next_step, ids, seen, done, at)."""
    out = dict(data)
    kind = str(data.get("kind", ""))
    message = dict(data.get("message") or {})
    message.setdefault("kind", kind)
    message.setdefault("cluster", "")
    message.setdefault("summary", data.get("subject", ""))
    message.setdefault("title", data.get("subject", ""))
    severity = NOTICE_SEVERITY.get(kind, "action_needed")
    message.setdefault("severity", severity)
    if message.get("node_arn") and not message.get("node_arns"):
        message["node_arns"] = [message["node_arn"]]
    out["severity"] = severity
    out["message"] = message
    return out


class GpuHealthSignal(EventData):
    """Something on a node degraded (the node watcher, or another agent): a reason to check, never to repair."""

    TYPE: ClassVar[str] = "GpuHealthSignal"
    node_arn: str | None = None
    ec2_instance_id: str | None = None
    kind: SignalKind = Field(description="What degraded: `xid`, `ecc`, `row_remap_failure`, `thermal`, `power`, "
                             "`gpu_count_drop`, `fell_off_bus`, `health_check`.")
    severity: Literal["warn", "fail"] = Field("fail", description="`fail`: worth a check; `warn`: recorded only.")
    xids: list[int] = Field(default_factory=list, description="XIDs seen, if any.")
    gpus: list[int] = Field(default_factory=list, description="GPU indexes concerned, if known.")
    detail: str = Field("", description="What the watcher saw, in words.")
    source: str = Field("node-watcher", description="Who sent it.")


class RecordParked(EventData):
    TYPE: ClassVar[str] = "RecordParked"
    consumer: str
    shard_id: str
    sequence_number: str
    reason: str
    size_bytes: int = 0


REGISTRY = Registry()
REGISTRY.register(HealthCheckReported, {1: health_check_v1_to_v2, 2: health_check_v2_to_v3})
REGISTRY.register(NotificationSent, {1: notification_v1_to_v2})
REGISTRY.register(DecisionRecorded, {1: decision_v1_to_v2})
REGISTRY.register(ActionOutcome, {1: decision_v1_to_v2})
for _model in (
    IncidentOpened, IncidentClosed, NodeStateChanged, JobStateChanged,
    DeadlineExpired, RecordParked, GpuHealthSignal,
):
    REGISTRY.register(_model)


__all__ = ["NOTICE_SEVERITY", "Notice", "Seen", "Severity"]


RecordKind = Literal["job", "node", "incident", "fleet"]


class RecoveryRecorded(EventData):
    """The recovery's decided state of one record after a decision: replay folds these (and ECS's own
    events) into the recovery's state; live never reads them back."""

    TYPE: ClassVar[str] = "RecoveryRecorded"
    kind: RecordKind = Field(description="Which record: `job`, `node`, `incident` or `fleet`.")
    key: str = Field(description="The record's key: job id, container instance ARN, incident id, or `fleet`.")
    version: int = Field(ge=1, description="The record's decision version: the highest wins, so order and "
                         "duplicates do not matter.")
    record: dict[str, Any] = Field(default_factory=dict, description="The decided part of the record.")


class TaskTagsCaptured(EventData):
    """A task's tags, read once (ECS forgets stopped tasks; task events carry no tags)."""

    TYPE: ClassVar[str] = "TaskTagsCaptured"
    task_arn: str = Field(description="The task whose tags these are.")
    tags: list[dict[str, str]] = Field(default_factory=list, max_length=50,
                                       description="The task's tags as ECS returned them (ECS allows 50).")
    job_id: str | None = None

    @field_validator("tags")
    @classmethod
    def _ecs_tag_limits(cls, tags: list[dict[str, str]]) -> list[dict[str, str]]:
        # ECS's own limits (keys 128 characters, values 256): anything longer was not written by ECS.
        for tag in tags:
            if len(tag.get("key", "")) > 128 or len(tag.get("value", "")) > 256:
                raise ValueError("a tag longer than ECS allows (key 128, value 256 characters)")
        return tags


class OperatorRequested(EventData):
    """A person asked for something: return a node to service (through a check), or cancel a job's recovery."""

    TYPE: ClassVar[str] = "OperatorRequested"
    request: Literal["release_node", "cancel_job"] = Field(description="`release_node` or `cancel_job`.")
    node_arn: str | None = Field(None, description="The node to release (`release_node`).")
    job_id: str | None = Field(None, description="The job to cancel (`cancel_job`).")
    requested_by: str = Field("", description="Who asked (the CLI records the caller's identity when known).")
    reason: str = ""


REGISTRY.register(RecoveryRecorded)
REGISTRY.register(TaskTagsCaptured)
REGISTRY.register(OperatorRequested)
