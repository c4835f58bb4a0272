"""The EventBridge rules that feed the stream: the only place an event pattern is defined.

The CDK stack deploys exactly these rules and the local bridge applies exactly these rules, so what
reaches the stream locally is what reaches it in AWS.

Patterns match the cluster ARN exactly (the old tool's prefix match took cluster ``gpu`` for
``gpu-2``). AWS does not document what a Kinesis target does when the partition key path is missing,
so task events are split with an ``exists`` filter: each rule's path is always present.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from events_schema.aws import (
    CONTAINER_INSTANCE_HEALTH_CHANGE,
    CONTAINER_INSTANCE_STATE_CHANGE,
    ECS_SOURCE,
    TASK_STATE_CHANGE,
)


@dataclass(frozen=True)
class IngestRule:
    name: str
    description: str
    event_pattern: dict[str, Any]
    partition_key_path: str

    def partition_key(self, event: dict[str, Any]) -> str:
        """Resolve ``$.a.b`` against an event; raises KeyError where the path is missing."""
        value: Any = event
        for part in self.partition_key_path.removeprefix("$.").split("."):
            value = value[part]
        if not isinstance(value, str) or not value:
            raise KeyError(self.partition_key_path)
        return value


def ingest_rules(cluster_arn: str) -> list[IngestRule]:
    if not cluster_arn.startswith("arn:") or ":cluster/" not in cluster_arn:
        raise ValueError(f"cluster must be a full cluster ARN (arn:...:cluster/NAME), got {cluster_arn!r}")
    return [
        IngestRule(
            name="task-placed",
            description="Task state changes of placed tasks, keyed by their container instance",
            event_pattern=_pattern(TASK_STATE_CHANGE, cluster_arn, containerInstanceArn=[{"exists": True}]),
            partition_key_path="$.detail.containerInstanceArn",
        ),
        IngestRule(
            name="task-unplaced",
            description="Task state changes of tasks never placed on a node, keyed by task ARN",
            event_pattern=_pattern(TASK_STATE_CHANGE, cluster_arn, containerInstanceArn=[{"exists": False}]),
            partition_key_path="$.detail.taskArn",
        ),
        IngestRule(
            name="container-instance",
            description="Container instance state changes (agent connection, status, attributes)",
            event_pattern=_pattern(CONTAINER_INSTANCE_STATE_CHANGE, cluster_arn),
            partition_key_path="$.detail.containerInstanceArn",
        ),
        IngestRule(
            name="container-instance-health",
            description="Container instance health changes reported by the ECS agent",
            event_pattern=_pattern(CONTAINER_INSTANCE_HEALTH_CHANGE, cluster_arn),
            partition_key_path="$.detail.containerInstanceArn",
        ),
    ]


def task_definition_family_filter(account_region_prefix: str, family: str) -> dict[str, Any]:
    """Match every revision of exactly one family: ``family:*``, never ``family-2:*`` nor ``:1`` vs ``:10``."""
    return {"wildcard": f"{account_region_prefix}:task-definition/{family}:*"}


def _pattern(detail_type: str, cluster_arn: str, **detail: list[Any]) -> dict[str, Any]:
    return {
        "source": [ECS_SOURCE],
        "detail-type": [detail_type],
        "detail": {"clusterArn": [cluster_arn], **detail},
    }
