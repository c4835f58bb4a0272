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


# --- a live stream, as the fleet simulator and the recovery write it --------------------------------


def fleet_stream(n_records: int, *, nodes: int = 64, ranks: int = 8, seed: int = 20261129) -> list[bytes]:
    """``n_records`` records of a GPU cluster's stream, as ``local.fleet.FleetSimulator`` emits them and
    the local EventBridge puts them (compact JSON), with our own events where recovery acts.

    ``nodes // ranks`` jobs of ``ranks`` tasks, one per node. Jobs launch (PROVISIONING, PENDING,
    RUNNING per task, a container-instance event per task as its resources change), agents reconnect,
    jobs complete and are relaunched, and a rank fails now and then: the recovery's events (job and node
    states, a decision and an outcome per sibling stop, a health report) and the siblings' stops follow.
    """
    return _FleetStream(nodes, ranks, seed).records(n_records)


class _FleetStream:
    def __init__(self, nodes: int, ranks: int, seed: int) -> None:
        import random

        from local.clock import VirtualClock
        from local.fleet import FleetSimulator

        self.rng = random.Random(seed)
        self.out: list[bytes] = []
        self.clock = VirtualClock()
        self.fleet = FleetSimulator(None, None, self.clock, self._emit, cluster_name="gpu-training",
                                    account_id=ACCOUNT, region=REGION)
        self.nodes = [self._node(n) for n in range(nodes)]
        self.fleet.emit([self.fleet.node_event(node) for node in self.nodes])
        self.ranks = ranks
        self.jobs: dict[int, list[Any]] = {}
        self.job_ids: dict[int, str] = {}
        self.restarts: dict[int, int] = {}
        self.serial = 0

    def _emit(self, events: Any) -> None:
        self.out.extend(json.dumps(event, separators=(",", ":")).encode() for event in events)

    def _node(self, n: int) -> Any:
        from local.fleet import SimNode

        instance_id = f"i-{n:017x}"
        node = SimNode(
            name=f"gpu-node-{n + 1}", instance_id=instance_id,
            arn=f"arn:aws:ecs:{REGION}:{ACCOUNT}:container-instance/gpu-training/{uuid.UUID(int=n).hex}",
            gpu_ids=[f"GPU-{uuid.uuid5(uuid.NAMESPACE_URL, f'{instance_id}/{g}')}" for g in range(8)],
            instance_type="p5.48xlarge", registered_at="2026-11-27T08:00:00.000000Z",
            attributes={"ecs.instance-type": "p5.48xlarge", "ecs.os-type": "linux"},
        )
        self.fleet.nodes[node.arn] = node
        return node

    def records(self, n_records: int) -> list[bytes]:
        for job in range(len(self.nodes) // self.ranks):
            self._launch(job)
        while len(self.out) < n_records:
            self.clock.advance(self.rng.uniform(1, 120))
            roll = self.rng.random()
            job = self.rng.randrange(len(self.jobs))
            if roll < 0.5:
                node = self.rng.choice(self.nodes)  # the agent's hourly reconnect
                self.fleet.set_node(node, agent_connected=False)
                self.fleet.set_node(node, agent_connected=True)
            elif roll < 0.8 or self.restarts[job] >= 3:
                self._stop_all(job, exit_code=0)  # the job completes and a new one starts on its nodes
                self._launch(job)
            else:
                self._fail(job)
                self._launch(job, restart=True)  # the same job (ECS group) again
        return self.out[:n_records]

    def _job_nodes(self, job: int) -> list[Any]:
        return self.nodes[job * self.ranks:(job + 1) * self.ranks]

    def _launch(self, job: int, restart: bool = False) -> None:
        fleet, nodes = self.fleet, self._job_nodes(job)
        self.serial += 1
        if restart:
            self.restarts[job] += 1
        else:
            self.job_ids[job], self.restarts[job] = f"job:{self.serial:06d}", 0
        definition = f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/llm-train:7"
        tasks = [
            fleet.track_task(
                f"arn:aws:ecs:{REGION}:{ACCOUNT}:task/gpu-training/{uuid.UUID(int=self.serial * 4096 + r).hex}",
                node, definition, self.job_ids[job], "trainer-launcher",
                {"containerOverrides": [{"name": "trainer", "environment": [
                    {"name": "RANK", "value": str(r)}, {"name": "WORLD_SIZE", "value": str(len(nodes))}]}]},
                [{"key": "team", "value": "foundation-models"}],
            )
            for r, node in enumerate(nodes)
        ]
        fleet.emit([fleet.task_event(task) for task in tasks])
        self._resources_changed(nodes)  # resources taken
        fleet.run_to_running(tasks)
        self.jobs[job] = tasks

    def _stop_all(self, job: int, exit_code: int, **changes: Any) -> None:
        fleet = self.fleet
        fleet.emit([fleet.advance_task(task, "STOPPED", exit_code=exit_code, stop_code="EssentialContainerExited",
                                       **changes) for task in self.jobs[job]])
        self._resources_changed(self._job_nodes(job))  # resources freed

    def _fail(self, job: int) -> None:
        from events_schema.commands import StopTask
        from events_schema.events import (
            ActionOutcome,
            DecisionRecorded,
            HealthCheckReported,
            JobStateChanged,
            NodeStateChanged,
        )

        fleet, tasks = self.fleet, self.jobs[job]
        failed = self.rng.choice(tasks)
        node = fleet.nodes[failed.node_arn]
        job_id, incident = self.job_ids[job], f"inc-{self.serial:08d}"
        fleet.emit([fleet.advance_task(failed, "STOPPED", exit_code=1, stop_code="EssentialContainerExited")])
        ours: list[Any] = [JobStateChanged(job_id=job_id, state="RECOVERING", reason="rank exited 1",
                                           incident_id=incident, restart_count=0),
                           NodeStateChanged(node_arn=node.arn, state="SUSPECT", reason="rank exited 1",
                                            incident_id=incident, ec2_instance_id=node.instance_id)]
        for sibling in (t for t in tasks if t is not failed):
            action = StopTask(target=sibling.arn, reason="gpu-recovery: stopping the ranks of an interrupted job")
            key = f"{incident}:stop:{sibling.arn[-8:]}"
            ours += [DecisionRecorded(idempotency_key=key, action=action, incident_id=incident, job_id=job_id,
                                      step="stop_ranks", reason="sibling of failed rank"),
                     ActionOutcome(idempotency_key=key, action=action, incident_id=incident, job_id=job_id,
                                   step="stop_ranks", status="succeeded")]
        ours += [HealthCheckReported(node_arn=node.arn, ec2_instance_id=node.instance_id, incident_id=incident,
                                     level=2, verdict="healthy", reason="all checks passed"),
                 NodeStateChanged(node_arn=node.arn, state="HEALTHY", reason="DCGM healthy", incident_id=incident),
                 JobStateChanged(job_id=job_id, state="RESTARTING", reason="restart 1", incident_id=incident,
                                 restart_count=1)]
        self._ours(ours)
        fleet.emit([fleet.advance_task(t, "STOPPED", exit_code=143, stop_code="UserInitiated")
                    for t in tasks if t is not failed])
        self._resources_changed(self._job_nodes(job))

    def _resources_changed(self, nodes: list[Any]) -> None:
        """ECS emits a container-instance event, with a new version, when a task takes or frees resources."""
        for node in nodes:
            node.version += 1
        self.fleet.emit([self.fleet.node_event(node) for node in nodes])

    def _ours(self, payloads: list[Any]) -> None:
        from consumers.adapters.kinesis import envelope_bytes
        from events_schema.envelope import Subject, make_envelope

        for data in payloads:
            self.serial += 1
            envelope = make_envelope(data, event_id=str(uuid.UUID(int=self.serial)), time=self.clock.now(),
                                     source="gpu-recovery/recovery", subject=Subject(job=getattr(data, "job_id", None)))
            self.out.append(envelope_bytes(envelope))
