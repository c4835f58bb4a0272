"""pydantic models of the AWS events EventBridge delivers to the stream, mirroring the AWS wire names.

Every model keeps unknown fields (``extra="allow"``): AWS adds fields over time and replay must not
lose them. Only the fields recovery reads are declared, each within the bounds of events_schema.bounds.
An event decoded from a record keeps that record's bytes: ``to_wire`` and ``decode.encode`` give them
back unchanged.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from events_schema.bounds import BoundedInt, BoundedJson, BoundedTime, Group, Identifier, Version, check_time

TASK_STATE_CHANGE = "ECS Task State Change"
CONTAINER_INSTANCE_STATE_CHANGE = "ECS Container Instance State Change"
CONTAINER_INSTANCE_HEALTH_CHANGE = "ECS Container Instance Health Change"
AWS_HEALTH_EVENT = "AWS Health Event"
EC2_INSTANCE_STATE_CHANGE = "EC2 Instance State-change Notification"
ECS_SOURCE = "aws.ecs"
HEALTH_SOURCE = "aws.health"
EC2_SOURCE = "aws.ec2"

Ec2InstanceState = Literal["pending", "running", "stopping", "stopped", "shutting-down", "terminated"]
# The states in which an instance stops running its tasks; the EC2 rule routes only these.
EC2_STOPPED_STATES: tuple[Ec2InstanceState, ...] = ("stopping", "stopped", "shutting-down", "terminated")
_INSTANCE_ID = re.compile(r"i-[0-9a-f]{8,17}")


class AwsModel(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True, frozen=True)


class Attribute(AwsModel):
    name: str
    value: str | None = None


class _Kept(AwsModel):
    """A part kept to act on later (stored, replayed to AWS): its unknown fields are bounded too."""

    __pydantic_extra__: dict[str, BoundedJson] = Field(init=False)


class KeyValue(_Kept):
    name: str | None = None
    value: str | None = None


class Container(AwsModel):
    containerArn: str | None = None
    name: str | None = None
    lastStatus: str | None = None
    exitCode: BoundedInt | None = None
    reason: str | None = None
    gpuIds: list[str] = Field(default_factory=list)
    taskArn: str | None = None


class ContainerOverride(_Kept):
    name: str | None = None
    command: list[str] | None = None
    environment: list[KeyValue] | None = None


class TaskOverrides(_Kept):
    containerOverrides: list[ContainerOverride] = Field(default_factory=list)


class TaskDetail(AwsModel):
    taskArn: Identifier
    clusterArn: Identifier
    containerInstanceArn: Identifier | None = None
    taskDefinitionArn: Identifier
    lastStatus: str
    desiredStatus: str | None = None
    version: Version
    containers: list[Container] = Field(default_factory=list)
    overrides: TaskOverrides | None = None
    group: Group | None = None
    startedBy: Identifier | None = None
    stopCode: str | None = None
    stoppedReason: str | None = None
    launchType: str | None = None
    capacityProviderName: str | None = None
    attributes: list[Attribute] = Field(default_factory=list)
    createdAt: BoundedTime | None = None
    startedAt: BoundedTime | None = None
    stoppingAt: BoundedTime | None = None
    stoppedAt: BoundedTime | None = None
    updatedAt: BoundedTime | None = None

    @property
    def gpu_ids(self) -> list[str]:
        return [gpu for container in self.containers for gpu in container.gpuIds]

    @property
    def task_definition_family(self) -> str:
        return family_of(self.taskDefinitionArn)


class Resource(AwsModel):
    name: str
    type: str | None = None
    integerValue: BoundedInt | None = None
    stringSetValue: list[str] | None = None


class ContainerInstanceDetail(AwsModel):
    containerInstanceArn: Identifier
    clusterArn: Identifier
    ec2InstanceId: Identifier | None = None
    agentConnected: bool | None = None
    status: str | None = None
    statusReason: str | None = None
    version: Version
    attributes: list[Attribute] = Field(default_factory=list)
    registeredResources: list[Resource] = Field(default_factory=list)
    registeredAt: BoundedTime | None = None
    updatedAt: BoundedTime | None = None

    @property
    def gpu_ids(self) -> list[str]:
        for resource in self.registeredResources:
            if resource.name == "GPU" and resource.stringSetValue:
                return list(resource.stringSetValue)
        return []


class HealthCheckResult(_Kept):
    type: str | None = None
    status: str | None = None
    lastUpdated: BoundedTime | None = None
    lastStatusChange: BoundedTime | None = None


class ContainerInstanceHealthDetail(AwsModel):
    containerInstanceArn: Identifier
    clusterArn: Identifier
    ec2InstanceId: Identifier | None = None
    overallStatus: str | None = None
    healthChecks: list[HealthCheckResult] = Field(default_factory=list)


# --- AWS Health -----------------------------------------------------------------------------------


def parse_health_time(text: str) -> datetime:
    """AWS Health's times: ``Thu, 27 Aug 2026 13:19:03 GMT`` (RFC 1123, as the schema documents), or ISO 8601,
    as an aware time (UTC where the text gives no zone). ValueError outside events_schema.bounds' range."""
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"time {text[:40]!r} is neither RFC 1123 nor ISO 8601") from None
    return check_time(moment)


def _health_time(text: str) -> str:
    parse_health_time(text)
    return text


# Kept as the string AWS sent (its format is not ISO 8601); parse_health_time reads it.
HealthTime = Annotated[str, AfterValidator(_health_time)]


class AffectedEntity(AwsModel):
    entityValue: Identifier
    lastUpdatedTime: HealthTime | None = None
    status: str | None = None


class HealthEventDescription(AwsModel):
    language: str | None = None
    latestDescription: str | None = None


class AwsHealthDetail(AwsModel):
    eventArn: Identifier
    service: str
    eventTypeCode: str
    eventTypeCategory: str
    eventScopeCode: str | None = None
    communicationId: str | None = None
    startTime: HealthTime
    endTime: HealthTime | None = None
    lastUpdatedTime: HealthTime | None = None
    statusCode: str | None = None
    eventRegion: str | None = None
    eventDescription: list[HealthEventDescription] = Field(default_factory=list)
    affectedEntities: list[AffectedEntity] = Field(default_factory=list)
    affectedAccount: str | None = None

    @property
    def start_time(self) -> datetime:
        return parse_health_time(self.startTime)

    @property
    def end_time(self) -> datetime | None:
        return parse_health_time(self.endTime) if self.endTime is not None else None


# --- EC2 ------------------------------------------------------------------------------------------


class Ec2InstanceStateDetail(AwsModel):
    instance_id: Identifier = Field(alias="instance-id")
    state: Ec2InstanceState


# --- the EventBridge envelope ----------------------------------------------------------------------


class _EventBridgeEnvelope(AwsModel):
    version: str = "0"
    id: Identifier
    source: str
    account: str
    time: BoundedTime
    region: str
    resources: list[str] = Field(default_factory=list)

    def __eq__(self, other: object) -> bool:
        """Equal when the fields are: the same event from bytes or from a dict is the same event."""
        if not isinstance(other, BaseModel):
            return NotImplemented
        return (type(self) is type(other) and self.__dict__ == other.__dict__
                and self.__pydantic_extra__ == other.__pydantic_extra__)

    __hash__ = None  # type: ignore[assignment]  # lists inside: never hashable

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Any:
        """A changed copy no longer is the record it came from, so it forgets the record's bytes."""
        copy = super().model_copy(update=update, deep=deep)
        if update:
            object.__setattr__(copy, _RAW_SLOT, None)
        return copy


class TaskStateChange(_EventBridgeEnvelope):
    detail_type: Literal["ECS Task State Change"] = Field(alias="detail-type")
    detail: TaskDetail


class ContainerInstanceStateChange(_EventBridgeEnvelope):
    detail_type: Literal["ECS Container Instance State Change"] = Field(alias="detail-type")
    detail: ContainerInstanceDetail


class ContainerInstanceHealthChange(_EventBridgeEnvelope):
    detail_type: Literal["ECS Container Instance Health Change"] = Field(alias="detail-type")
    detail: ContainerInstanceHealthDetail


class AwsHealthEvent(_EventBridgeEnvelope):
    """An AWS Health event; the ingest rule routes only EC2 scheduled changes (retirement, maintenance, stop)."""

    detail_type: Literal["AWS Health Event"] = Field(alias="detail-type")
    detail: AwsHealthDetail

    @property
    def instance_ids(self) -> list[str]:
        """EC2 instance ids the event names (``entityValue`` as an id or an instance ARN, then ``resources``),
        each once, in order; empty for other services. Recovery acts only on instances it knows."""
        if self.detail.service != "EC2":
            return []
        names = [entity.entityValue for entity in self.detail.affectedEntities] + list(self.resources)
        return list(dict.fromkeys(i for i in map(_instance_id, names) if i))


class Ec2InstanceStateChange(_EventBridgeEnvelope):
    """An EC2 instance changed state; the ingest rule routes only stopping, stopped, shutting-down, terminated."""

    detail_type: Literal["EC2 Instance State-change Notification"] = Field(alias="detail-type")
    detail: Ec2InstanceStateDetail

    @property
    def instance_ids(self) -> list[str]:
        return [self.detail.instance_id]


AwsEventModel = (TaskStateChange | ContainerInstanceStateChange | ContainerInstanceHealthChange
                 | AwsHealthEvent | Ec2InstanceStateChange)
AwsEvent = Annotated[AwsEventModel, Field(discriminator="detail_type")]
AWS_MODELS: dict[str, type[AwsEventModel]] = {
    TASK_STATE_CHANGE: TaskStateChange,
    CONTAINER_INSTANCE_STATE_CHANGE: ContainerInstanceStateChange,
    CONTAINER_INSTANCE_HEALTH_CHANGE: ContainerInstanceHealthChange,
    AWS_HEALTH_EVENT: AwsHealthEvent,
    EC2_INSTANCE_STATE_CHANGE: Ec2InstanceStateChange,
}


def _instance_id(name: str) -> str | None:
    """``i-0abc...`` or ``arn:aws:ec2:REGION:ACCOUNT:instance/i-0abc...`` -> ``i-0abc...``; None otherwise."""
    candidate = name.rsplit(":instance/", 1)[-1] if name.startswith("arn:") else name
    return candidate if _INSTANCE_ID.fullmatch(candidate) else None


def family_of(task_definition_arn: str) -> str:
    """``arn:...:task-definition/llm-train:7`` -> ``llm-train`` (exact family, never a prefix)."""
    name = task_definition_arn.rsplit("/", 1)[-1]
    return name.rsplit(":", 1)[0] if ":" in name else name


# The record an event was decoded from rides in pydantic's slot for private attributes, which these models
# leave empty: a declared PrivateAttr would cost a Python call on every validation (about 15% of decoding
# an ECS event). pydantic copies the slot with the model and never serializes it.
_RAW_SLOT = "__pydantic_private__"


def keep_raw(event: AwsEventModel, record: bytes) -> AwsEventModel:
    """Remember the record ``event`` was decoded from (events_schema.decode calls this)."""
    object.__setattr__(event, _RAW_SLOT, {"raw": record})
    return event


def raw_bytes(event: BaseModel) -> bytes | None:
    """The record an AWS event was decoded from, unchanged; None for one built or changed in code."""
    if not isinstance(event, _EventBridgeEnvelope):
        return None
    kept = object.__getattribute__(event, _RAW_SLOT)
    raw: bytes | None = kept.get("raw") if kept else None
    return raw


def to_wire(event: BaseModel) -> dict[str, Any]:
    """The event as AWS delivered it, unknown fields included (its very values, when decoded from a record)."""
    raw = raw_bytes(event)
    if raw is not None:
        parsed: dict[str, Any] = json.loads(raw)
        return parsed
    return event.model_dump(mode="json", by_alias=True, exclude_unset=True)
