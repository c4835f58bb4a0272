"""pydantic models of the ECS events EventBridge delivers, mirroring the AWS wire names.

Every model keeps unknown fields (``extra="allow"``): AWS adds fields over time and replay must not
lose them. Only the fields recovery reads are declared.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

TASK_STATE_CHANGE = "ECS Task State Change"
CONTAINER_INSTANCE_STATE_CHANGE = "ECS Container Instance State Change"
CONTAINER_INSTANCE_HEALTH_CHANGE = "ECS Container Instance Health Change"
ECS_SOURCE = "aws.ecs"


class AwsModel(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True, frozen=True)


class Attribute(AwsModel):
    name: str
    value: str | None = None


class KeyValue(AwsModel):
    name: str | None = None
    value: str | None = None


class Container(AwsModel):
    containerArn: str | None = None
    name: str | None = None
    lastStatus: str | None = None
    exitCode: int | None = None
    reason: str | None = None
    gpuIds: list[str] = Field(default_factory=list)
    taskArn: str | None = None


class ContainerOverride(AwsModel):
    name: str | None = None
    command: list[str] | None = None
    environment: list[KeyValue] | None = None


class TaskOverrides(AwsModel):
    containerOverrides: list[ContainerOverride] = Field(default_factory=list)


class TaskDetail(AwsModel):
    taskArn: str
    clusterArn: str
    containerInstanceArn: str | None = None
    taskDefinitionArn: str
    lastStatus: str
    desiredStatus: str | None = None
    version: int
    containers: list[Container] = Field(default_factory=list)
    overrides: TaskOverrides | None = None
    group: str | None = None
    startedBy: str | None = None
    stopCode: str | None = None
    stoppedReason: str | None = None
    launchType: str | None = None
    capacityProviderName: str | None = None
    attributes: list[Attribute] = Field(default_factory=list)
    createdAt: datetime | None = None
    startedAt: datetime | None = None
    stoppingAt: datetime | None = None
    stoppedAt: datetime | None = None
    updatedAt: datetime | None = None

    @property
    def gpu_ids(self) -> list[str]:
        return [gpu for container in self.containers for gpu in container.gpuIds]

    @property
    def task_definition_family(self) -> str:
        return family_of(self.taskDefinitionArn)


class Resource(AwsModel):
    name: str
    type: str | None = None
    integerValue: int | None = None
    stringSetValue: list[str] | None = None


class ContainerInstanceDetail(AwsModel):
    containerInstanceArn: str
    clusterArn: str
    ec2InstanceId: str | None = None
    agentConnected: bool | None = None
    status: str | None = None
    statusReason: str | None = None
    version: int
    attributes: list[Attribute] = Field(default_factory=list)
    registeredResources: list[Resource] = Field(default_factory=list)
    registeredAt: datetime | None = None
    updatedAt: datetime | None = None

    @property
    def gpu_ids(self) -> list[str]:
        for resource in self.registeredResources:
            if resource.name == "GPU" and resource.stringSetValue:
                return list(resource.stringSetValue)
        return []


class HealthCheckResult(AwsModel):
    type: str | None = None
    status: str | None = None
    lastUpdated: datetime | None = None
    lastStatusChange: datetime | None = None


class ContainerInstanceHealthDetail(AwsModel):
    containerInstanceArn: str
    clusterArn: str
    ec2InstanceId: str | None = None
    overallStatus: str | None = None
    healthChecks: list[HealthCheckResult] = Field(default_factory=list)


class _EventBridgeEnvelope(AwsModel):
    version: str = "0"
    id: str
    source: str
    account: str
    time: datetime
    region: str
    resources: list[str] = Field(default_factory=list)


class TaskStateChange(_EventBridgeEnvelope):
    detail_type: Literal["ECS Task State Change"] = Field(alias="detail-type")
    detail: TaskDetail


class ContainerInstanceStateChange(_EventBridgeEnvelope):
    detail_type: Literal["ECS Container Instance State Change"] = Field(alias="detail-type")
    detail: ContainerInstanceDetail


class ContainerInstanceHealthChange(_EventBridgeEnvelope):
    detail_type: Literal["ECS Container Instance Health Change"] = Field(alias="detail-type")
    detail: ContainerInstanceHealthDetail


AwsEvent = Annotated[
    TaskStateChange | ContainerInstanceStateChange | ContainerInstanceHealthChange,
    Field(discriminator="detail_type"),
]


def family_of(task_definition_arn: str) -> str:
    """``arn:...:task-definition/llm-train:7`` -> ``llm-train`` (exact family, never a prefix)."""
    name = task_definition_arn.rsplit("/", 1)[-1]
    return name.rsplit(":", 1)[0] if ":" in name else name


def to_wire(event: BaseModel) -> dict[str, Any]:
    """The event as AWS delivered it, unknown fields included."""
    return event.model_dump(mode="json", by_alias=True, exclude_unset=True)
