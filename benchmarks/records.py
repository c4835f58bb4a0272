"""Stream records for the projector benchmark: ECS events as EventBridge delivers them (the shapes of
``tests/factories.py``), for a fixed set of entities, each updated a fixed number of times per batch."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from consumers.core.ports import StreamRecord

REGION = "us-west-2"
ACCOUNT = "123456789012"
CLUSTER = f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/gpu-training"
T0 = datetime(2026, 11, 27, 9, 0, 0, tzinfo=UTC)
STATUSES = ("PROVISIONING", "PENDING", "ACTIVATING", "RUNNING")


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def node_arn(n: int) -> str:
    return f"arn:aws:ecs:{REGION}:{ACCOUNT}:container-instance/gpu-training/node{n:04d}"


def task_arn(n: int) -> str:
    return f"arn:aws:ecs:{REGION}:{ACCOUNT}:task/gpu-training/task{n:05d}"


def task_event(task: int, node: int, job: int, version: int, rank: int) -> dict[str, Any]:
    moment = T0 + timedelta(seconds=version)
    status = STATUSES[min(version - 1, len(STATUSES) - 1)]
    detail: dict[str, Any] = {
        "clusterArn": CLUSTER, "taskArn": task_arn(task), "containerInstanceArn": node_arn(node),
        "taskDefinitionArn": f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/llm-train:7",
        "lastStatus": status, "desiredStatus": "RUNNING", "version": version,
        "containers": [{"containerArn": f"{task_arn(task)}/c", "name": "trainer", "lastStatus": status,
                        "gpuIds": [str(g) for g in range(8)]}],
        "overrides": {"containerOverrides": [{"name": "trainer", "environment": [
            {"name": "RANK", "value": str(rank)}]}]},
        "group": f"job:{job:04d}", "startedBy": "launcher", "launchType": "EC2",
        "createdAt": _iso(T0), "updatedAt": _iso(moment),
    }
    if status == "RUNNING":
        detail["startedAt"] = _iso(T0 + timedelta(seconds=4))
    return _aws("ECS Task State Change", task_arn(task), detail, moment, version)


def node_event(node: int, version: int) -> dict[str, Any]:
    moment = T0 + timedelta(seconds=version)
    detail = {
        "clusterArn": CLUSTER, "containerInstanceArn": node_arn(node), "ec2InstanceId": f"i-{node:017x}",
        "agentConnected": version % 7 != 0, "status": "ACTIVE", "version": version,
        "attributes": [{"name": "ecs.instance-type", "value": "p4d.24xlarge"}],
        "registeredResources": [{"name": "GPU", "type": "STRINGSET",
                                 "stringSetValue": [f"GPU-{g}" for g in range(8)]}],
        "updatedAt": _iso(moment),
    }
    return _aws("ECS Container Instance State Change", node_arn(node), detail, moment, version)


def _aws(detail_type: str, resource: str, detail: dict[str, Any], moment: datetime, version: int) -> dict[str, Any]:
    return {
        "version": "0", "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{resource}/{version}")),
        "detail-type": detail_type, "source": "aws.ecs", "account": ACCOUNT,
        "time": _iso(moment), "region": REGION, "resources": [resource], "detail": detail,
    }


def entity_batches(
    batches: int, tasks: int = 40, ranks: int = 10, nodes: int = 10, updates: int = 10
) -> list[list[StreamRecord]]:
    """``batches`` batches over the same entities: each task (``ranks`` to a job, on its own node)
    and each extra node gets ``updates`` new versions per batch, interleaved as a shard delivers them."""
    out: list[list[StreamRecord]] = []
    sequence = 0
    for b in range(batches):
        events: list[dict[str, Any]] = []
        for u in range(updates):
            version = b * updates + u + 1
            events += [task_event(t, t, t // ranks, version, t % ranks) for t in range(tasks)]
            events += [node_event(tasks + n, version) for n in range(nodes)]
        batch = []
        for event in events:
            sequence += 1
            batch.append(StreamRecord(shard_id="shardId-000000000000", sequence_number=f"{sequence:056d}",
                                      partition_key=event["resources"][0],
                                      data=json.dumps(event, separators=(",", ":")).encode(), arrival=None))
        out.append(batch)
    return out
