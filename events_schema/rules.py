"""The EventBridge rules that feed the stream: the only place an event pattern is defined.

The CDK stack deploys exactly these rules and the local bridge applies exactly these rules, so what
reaches the stream locally is what reaches it in AWS.

ECS patterns match the cluster ARN exactly (the old tool's prefix match took cluster ``gpu`` for
``gpu-2``); AWS Health and EC2 patterns match the cluster's account (and the EC2 one its region) exactly.
AWS does not document what a Kinesis target does when the partition key path is missing, so every
rule's path is always present: task events are split with an ``exists`` filter on ``group``.

Partitioning (DESIGN section 6): a job's ranks share a shard (task events keyed by the job's ECS
``group``), a node's ECS events share a shard (keyed by its container instance ARN).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from events_schema.aws import (
    AWS_HEALTH_EVENT,
    CONTAINER_INSTANCE_HEALTH_CHANGE,
    CONTAINER_INSTANCE_STATE_CHANGE,
    EC2_INSTANCE_STATE_CHANGE,
    EC2_SOURCE,
    EC2_STOPPED_STATES,
    ECS_SOURCE,
    HEALTH_SOURCE,
    TASK_STATE_CHANGE,
)

# Kinesis refuses a partition key longer than 256 characters (or empty).
MAX_PARTITION_KEY_CHARS = 256


@dataclass(frozen=True)
class IngestRule:
    name: str
    description: str
    event_pattern: dict[str, Any]
    partition_key_path: str

    def partition_key(self, event: dict[str, Any]) -> str:
        """Resolve ``$.a.b`` against an event; KeyError where the path is missing or no Kinesis key."""
        value: Any = event
        for part in self.partition_key_path.removeprefix("$.").split("."):
            if not isinstance(value, dict):
                raise KeyError(self.partition_key_path)
            value = value[part]
        if not isinstance(value, str) or not 0 < len(value) <= MAX_PARTITION_KEY_CHARS:
            raise KeyError(self.partition_key_path)
        return value


def ingest_rules(cluster_arn: str, *, account: str | None = None, region: str | None = None) -> list[IngestRule]:
    """The rules for one cluster. ``account`` and ``region`` default to the cluster ARN's own (EventBridge
    rules see only their own account and region, where the cluster lives) and must agree with it."""
    arn_region, arn_account = _cluster_arn_parts(cluster_arn)
    account = _agreeing("account", account, arn_account)
    region = _agreeing("region", region, arn_region)
    return [*_task_rules(cluster_arn), *_node_rules(cluster_arn), *_ec2_rules(account, region)]


def _task_rules(cluster_arn: str) -> list[IngestRule]:
    return [
        IngestRule(
            name="task-grouped",
            description="Task state changes of tasks with a group, keyed by it: a job's ranks share a shard",
            event_pattern=_ecs_pattern(TASK_STATE_CHANGE, cluster_arn, group=[{"exists": True}]),
            partition_key_path="$.detail.group",
        ),
        IngestRule(
            name="task-ungrouped",
            description="Task state changes of tasks without a group, keyed by task ARN",
            event_pattern=_ecs_pattern(TASK_STATE_CHANGE, cluster_arn, group=[{"exists": False}]),
            partition_key_path="$.detail.taskArn",
        ),
    ]


def _node_rules(cluster_arn: str) -> list[IngestRule]:
    return [
        IngestRule(
            name="container-instance",
            description="Container instance state changes (agent connection, status, attributes)",
            event_pattern=_ecs_pattern(CONTAINER_INSTANCE_STATE_CHANGE, cluster_arn),
            partition_key_path="$.detail.containerInstanceArn",
        ),
        IngestRule(
            name="container-instance-health",
            description="Container instance health changes reported by the ECS agent",
            event_pattern=_ecs_pattern(CONTAINER_INSTANCE_HEALTH_CHANGE, cluster_arn),
            partition_key_path="$.detail.containerInstanceArn",
        ),
    ]


def _ec2_rules(account: str, region: str) -> list[IngestRule]:
    # No pattern can name "the cluster's instances": they change with every scale-out and replacement.
    # These rules take the account's (and region's) instances; recovery ignores the ones it does not know.
    return [
        IngestRule(
            name="ec2-scheduled-change",
            description="AWS Health scheduled changes for EC2 (retirement, maintenance, stop) in this account, "
                        "keyed by the Health event; not only the cluster's instances (EventBridge cannot "
                        "tell them): recovery ignores instances it does not know",
            event_pattern={
                "source": [HEALTH_SOURCE], "detail-type": [AWS_HEALTH_EVENT], "account": [account],
                "detail": {"service": ["EC2"], "eventTypeCategory": ["scheduledChange"]},
            },
            partition_key_path="$.detail.eventArn",
        ),
        IngestRule(
            name="ec2-instance-stopped",
            description="EC2 instances of this account and region stopping or terminating, keyed by "
                        "instance id; not only the cluster's instances (EventBridge cannot tell them): "
                        "recovery ignores instances it does not know",
            event_pattern={
                "source": [EC2_SOURCE], "detail-type": [EC2_INSTANCE_STATE_CHANGE], "account": [account],
                "region": [region], "detail": {"state": list(EC2_STOPPED_STATES)},
            },
            partition_key_path="$.detail.instance-id",
        ),
    ]


def task_definition_family_filter(account_region_prefix: str, family: str) -> dict[str, Any]:
    """Match every revision of exactly one family: ``family:*``, never ``family-2:*`` nor ``:1`` vs ``:10``."""
    return {"wildcard": f"{account_region_prefix}:task-definition/{family}:*"}


def _cluster_arn_parts(cluster_arn: str) -> tuple[str, str]:
    """``arn:PARTITION:ecs:REGION:ACCOUNT:cluster/NAME`` -> (REGION, ACCOUNT), or ValueError."""
    parts = cluster_arn.split(":", 5)
    if (len(parts) != 6 or parts[0] != "arn" or parts[2] != "ecs" or not parts[3] or not parts[4]
            or not parts[5].startswith("cluster/") or parts[5] == "cluster/"):
        raise ValueError(f"cluster must be a full cluster ARN (arn:...:ecs:REGION:ACCOUNT:cluster/NAME), "
                         f"got {cluster_arn!r}")
    return parts[3], parts[4]


def _agreeing(name: str, given: str | None, from_arn: str) -> str:
    if given is not None and given != from_arn:
        raise ValueError(f"{name} {given!r} is not the cluster ARN's ({from_arn!r}): "
                         f"EventBridge rules see only their own {name}, where the cluster must live")
    return from_arn


def _ecs_pattern(detail_type: str, cluster_arn: str, **detail: list[Any]) -> dict[str, Any]:
    return {
        "source": [ECS_SOURCE],
        "detail-type": [detail_type],
        "detail": {"clusterArn": [cluster_arn], **detail},
    }
