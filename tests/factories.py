"""Factories for AWS-shaped ECS events and our envelopes, for tests that need many variants."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from events_schema.envelope import Envelope, EventData, Subject, make_envelope

REGION = "us-west-2"
ACCOUNT = "123456789012"
CLUSTER = f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/gpu-training"
T0 = datetime(2026, 11, 27, 9, 0, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def node_arn(n: int) -> str:
    return f"arn:aws:ecs:{REGION}:{ACCOUNT}:container-instance/gpu-training/node{n:04d}"


def task_arn(n: int) -> str:
    return f"arn:aws:ecs:{REGION}:{ACCOUNT}:task/gpu-training/task{n:05d}"


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def task_event(
    task: int,
    *,
    node: int | None = 1,
    version: int = 1,
    status: str = "RUNNING",
    exit_code: int | None = None,
    stop_code: str | None = None,
    group: str | None = "job:alpha",
    gpus: int = 8,
    when: datetime | None = None,
    family: str = "llm-train",
    created: datetime | None = None,
    cluster: str = CLUSTER,
) -> dict[str, Any]:
    moment = when or at(version)
    container: dict[str, Any] = {
        "containerArn": f"{task_arn(task)}/c", "name": "trainer", "lastStatus": status,
        "gpuIds": [str(g) for g in range(gpus)],
    }
    if exit_code is not None:
        container["exitCode"] = exit_code
    detail: dict[str, Any] = {
        "clusterArn": cluster,
        "taskArn": task_arn(task),
        "taskDefinitionArn": f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/{family}:7",
        "lastStatus": status,
        "desiredStatus": "STOPPED" if status == "STOPPED" else "RUNNING",
        "version": version,
        "containers": [container],
        "overrides": {"containerOverrides": [{"name": "trainer", "environment": [{"name": "RANK", "value": "0"}]}]},
        "startedBy": "launcher",
        "launchType": "EC2",
        "createdAt": _iso(created or T0),
        "updatedAt": _iso(moment),
    }
    if group is not None:
        detail["group"] = group
    if node is not None:
        detail["containerInstanceArn"] = node_arn(node)
    if stop_code is not None:
        detail["stopCode"] = stop_code
        detail["stoppedReason"] = stop_code
    if status == "STOPPED":
        detail["stoppedAt"] = _iso(moment)
    if status in ("RUNNING", "STOPPED") and stop_code != "TaskFailedToStart":
        detail["startedAt"] = _iso(created or T0)
    return _aws("ECS Task State Change", task_arn(task), detail, moment, version)


def node_event(
    node: int, *, version: int = 1, connected: bool = True, status: str = "ACTIVE",
    when: datetime | None = None, gpus: int = 8, instance_id: str | None = None, remaining: int | None = None,
) -> dict[str, Any]:
    moment = when or at(version)
    detail = {
        "clusterArn": CLUSTER,
        "containerInstanceArn": node_arn(node),
        "ec2InstanceId": instance_id or f"i-{node:017x}",
        "agentConnected": connected,
        "status": status,
        "version": version,
        "attributes": [{"name": "ecs.instance-type", "value": "p4d.24xlarge"}],
        "registeredResources": [
            {"name": "GPU", "type": "STRINGSET", "stringSetValue": [f"GPU-{g}" for g in range(gpus)]}
        ],
        "updatedAt": _iso(moment),
    }
    if remaining is not None:  # ECS's remainingResources: the GPUs no task holds
        detail["remainingResources"] = [
            {"name": "GPU", "type": "STRINGSET", "stringSetValue": [f"GPU-{g}" for g in range(gpus - remaining, gpus)]}
        ]
    return _aws("ECS Container Instance State Change", node_arn(node), detail, moment, version)


def _aws(detail_type: str, resource: str, detail: dict[str, Any], moment: datetime, version: int) -> dict[str, Any]:
    return {
        "version": "0",
        "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{resource}/{version}/{detail.get('lastStatus', '')}")),
        "detail-type": detail_type,
        "source": "aws.ecs",
        "account": ACCOUNT,
        "time": moment.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": REGION,
        "resources": [resource],
        "detail": detail,
    }


def ours(data: EventData, *, when: datetime, subject: Subject | None = None, event_id: str | None = None) -> Envelope:
    return make_envelope(
        data,
        event_id=event_id or str(uuid.uuid5(uuid.NAMESPACE_URL, f"{data.TYPE}/{when.isoformat()}/{data!r}")),
        time=when,
        source="gpu-recovery/test",
        subject=subject or Subject(),
    )


def scheduled_change_event(node: int, code: str, *, start: datetime, end: datetime | None = None,
                           when: datetime | None = None, serial: int = 1) -> dict[str, Any]:
    """An AWS Health scheduled change for the node's instance, shaped as the AWS Health docs show it."""
    def health_time(moment: datetime) -> str:
        return moment.strftime("%a, %d %b %Y %H:%M:%S GMT")

    moment = when or at(0)
    instance = f"i-{node:017x}"
    detail: dict[str, Any] = {
        "eventArn": f"arn:aws:health:{REGION}::event/EC2/{code}/{code}_{node:04d}{serial:04d}",
        "service": "EC2", "eventTypeCode": code, "eventTypeCategory": "scheduledChange",
        "eventScopeCode": "ACCOUNT_SPECIFIC", "startTime": health_time(start), "statusCode": "upcoming",
        "lastUpdatedTime": health_time(moment), "eventRegion": REGION,
        "affectedEntities": [{"entityValue": instance, "status": "PENDING"}], "affectedAccount": ACCOUNT,
    }
    if end is not None:
        detail["endTime"] = health_time(end)
    return {"version": "0", "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"health/{node}/{serial}")),
            "detail-type": "AWS Health Event", "source": "aws.health", "account": ACCOUNT,
            "time": moment.strftime("%Y-%m-%dT%H:%M:%SZ"), "region": REGION, "resources": [instance], "detail": detail}


def instance_state_event(node: int, state: str, *, when: datetime | None = None) -> dict[str, Any]:
    """An EC2 Instance State-change Notification for the node's instance."""
    moment = when or at(0)
    instance = f"i-{node:017x}"
    return {"version": "0", "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"ec2/{node}/{state}/{moment}")),
            "detail-type": "EC2 Instance State-change Notification", "source": "aws.ec2", "account": ACCOUNT,
            "time": moment.strftime("%Y-%m-%dT%H:%M:%SZ"), "region": REGION,
            "resources": [f"arn:aws:ec2:{REGION}:{ACCOUNT}:instance/{instance}"],
            "detail": {"instance-id": instance, "state": state}}
