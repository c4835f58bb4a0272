"""Our own event types: health reports, recovery decisions and outcomes, deadlines, parked records.

Each payload model has a TYPE and a VERSION. A change that readers cannot absorb as an optional field
bumps VERSION and registers an upcaster from the previous version in ``REGISTRY``.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from events_schema.envelope import EventData, Registry

NodeRepairState = Literal[
    "HEALTHY", "SUSPECT", "CHECKING", "REBOOTING", "VERIFYING", "QUARANTINED", "REPLACED"
]
JobState = Literal[
    "RUNNING", "INTERRUPTED", "RECOVERING", "RESTARTING", "WAITING_CAPACITY", "COMPLETED", "FAILED",
    "STOPPED_BY_USER",
]
Verdict = Literal["healthy", "application_fault", "hardware_fault", "inconclusive"]
RepairAction = Literal["none", "reboot", "quarantine"]


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
    """The DCGM agent's verdict on one node, written by the agent itself (or the simulator)."""

    TYPE: ClassVar[str] = "HealthCheckReported"
    VERSION: ClassVar[int] = 2
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


class Action(_Part):
    """One AWS side effect the recovery policy asks for."""

    type: str
    target: str
    params: dict[str, Any] = Field(default_factory=dict)


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
    outcome: Literal["recovered", "application_fault", "quarantined", "replaced", "escalated", "failed"]
    reason: str = ""


class DecisionRecorded(EventData):
    """Appended before the AWS call it names; the idempotency key makes the call happen once."""

    TYPE: ClassVar[str] = "DecisionRecorded"
    idempotency_key: str
    action: Action
    incident_id: str | None = None
    job_id: str | None = None
    step: str
    reason: str = ""


class ActionOutcome(EventData):
    TYPE: ClassVar[str] = "ActionOutcome"
    idempotency_key: str
    action: Action
    incident_id: str | None = None
    job_id: str | None = None
    # "unknown": the consumer stopped between claiming a non-repeatable call and recording its result.
    status: Literal["succeeded", "failed", "unknown"]
    detail: dict[str, Any] = Field(default_factory=dict)
    error: str | None = None


class NodeStateChanged(EventData):
    TYPE: ClassVar[str] = "NodeStateChanged"
    node_arn: str
    state: NodeRepairState
    reason: str = ""
    incident_id: str | None = None
    ec2_instance_id: str | None = None


class JobStateChanged(EventData):
    TYPE: ClassVar[str] = "JobStateChanged"
    job_id: str
    state: JobState
    reason: str = ""
    incident_id: str | None = None
    restart_count: int = 0


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
    kind: str
    subject: str
    message: dict[str, Any] = Field(default_factory=dict)
    incident_id: str | None = None
    job_id: str | None = None
    node_arn: str | None = None


class RecordParked(EventData):
    TYPE: ClassVar[str] = "RecordParked"
    consumer: str
    shard_id: str
    sequence_number: str
    reason: str
    size_bytes: int = 0


REGISTRY = Registry()
REGISTRY.register(HealthCheckReported, {1: health_check_v1_to_v2})
for _model in (
    IncidentOpened, IncidentClosed, DecisionRecorded, ActionOutcome, NodeStateChanged, JobStateChanged,
    DeadlineExpired, NotificationSent, RecordParked,
):
    REGISTRY.register(_model)
