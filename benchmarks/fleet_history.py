"""Months of a GPU fleet's stream with new task ids at every launch, for replay's memory over time.

``nodes`` nodes in slots of ``ranks`` (one task per node). Each slot runs jobs back to back: a job
launches ``ranks`` tasks (PROVISIONING, PENDING, RUNNING, each with the node's container-instance
event as the task takes its resources), runs 2 to 22 hours, and either completes (every rank STOPPED
with exit 0, resources freed) or, one time in five, loses a rank: the recovery's events follow (job
RECOVERING, node SUSPECT, a StopTask decision and outcome per sibling, a health report, node HEALTHY,
job RESTARTING), the siblings stop, and the job restarts with new task ids under the same job id. A
new job id starts 5 minutes after a job completes. On 1,000 nodes in slots of 8: about 250 launches
and 2,000 new task ids a day.

Records come in time order across the fleet, as ``RawRecord`` with stream positions: shard
``node % shards``, as the ingest rules partition by container instance. Built lazily (one pending
event per slot), so the generator itself holds almost nothing while a replay folds its output.
"""

from __future__ import annotations

import heapq
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from replay.sources import RawRecord

REGION = "us-east-1"
ACCOUNT = "123456789012"
CLUSTER = f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/gpu-training"
DEFINITION = f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/llm-train:7"
T0 = datetime(2026, 1, 5, tzinfo=UTC)
HOUR = 3_600.0
DAY = 86_400.0
FAILURE_CHANCE = 0.2
SEED = 20261130


_DATES: dict[int, str] = {}


def _iso(seconds: float) -> str:
    """``2026-01-05T01:02:03.456Z``, by hand: the generator writes millions of them."""
    day, rest = divmod(int(seconds * 1000), 86_400_000)
    date = _DATES.get(day)
    if date is None:
        date = _DATES[day] = (T0 + timedelta(days=day)).strftime("%Y-%m-%dT")
    hours, rest = divmod(rest, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    return f"{date}{hours:02d}:{minutes:02d}:{rest // 1000:02d}.{rest % 1000:03d}Z"


def node_arn(n: int) -> str:
    return f"arn:aws:ecs:{REGION}:{ACCOUNT}:container-instance/gpu-training/{n:032x}"


@dataclass(frozen=True)
class Timed:
    """One record and the moment (seconds after T0) it happened."""

    at: float
    node: int
    data: bytes


class FleetHistory:
    """``days`` of a fleet's stream (see the module docstring); iterate for ``(day, RawRecord)``."""

    def __init__(self, nodes: int = 1_000, days: int = 180, *, ranks: int = 8, shards: int = 4,
                 stagger_s: float = 2 * HOUR, seed: int = SEED) -> None:
        self.nodes, self.days, self.ranks, self.shards = nodes, days, ranks, shards
        self.stagger_s = stagger_s  # the slots' first launches spread over this long
        self.rng = random.Random(seed)
        self.serial = 0
        self.node_version = [0] * nodes
        self.launched_tasks = 0  # every task id ever launched: what a replay without TTL would hold
        self.launched_jobs = 0

    def __iter__(self) -> Iterator[tuple[float, RawRecord]]:
        slots = [self._slot(s) for s in range(self.nodes // self.ranks)]
        pending: list[tuple[float, int, int, Timed]] = []
        for index, slot in enumerate(slots):
            self._push(pending, index, slot)
        sequence = 0
        end = self.days * DAY
        while pending:
            _, _, index, timed = heapq.heappop(pending)
            if timed.at >= end:
                continue  # this slot is past the end: drop it
            sequence += 1
            yield timed.at / DAY, RawRecord(f"shardId-{timed.node % self.shards:012d}:{sequence:020d}", timed.data)
            self._push(pending, index, slots[index])

    def _push(self, pending: list[tuple[float, int, int, Timed]], index: int, slot: Iterator[Timed]) -> None:
        timed = next(slot, None)
        if timed is not None:
            self.serial += 1
            heapq.heappush(pending, (timed.at, self.serial, index, timed))

    def _slot(self, slot: int) -> Iterator[Timed]:
        """One slot's jobs, back to back, in time order, forever (the caller stops at the end)."""
        nodes = list(range(slot * self.ranks, (slot + 1) * self.ranks))
        clock = self.rng.uniform(0, self.stagger_s)  # slots do not all start at once
        while True:
            self.launched_jobs += 1
            job = f"job:{self.launched_jobs:07d}"
            restarts = 0
            while True:
                tasks = self._task_ids()
                yield from sorted(self._launch(job, tasks, nodes, clock), key=lambda t: t.at)
                clock += self.rng.uniform(2, 22) * HOUR
                if self.rng.random() >= FAILURE_CHANCE or restarts >= 3:
                    yield from sorted(self._complete(job, tasks, nodes, clock), key=lambda t: t.at)
                    clock += 300
                    break
                restarts += 1
                yield from sorted(self._fail(job, tasks, nodes, clock, restarts), key=lambda t: t.at)
                clock += 600

    def _task_ids(self) -> list[str]:
        ids = [f"arn:aws:ecs:{REGION}:{ACCOUNT}:task/gpu-training/{uuid.UUID(int=self.launched_tasks + r).hex}"
               for r in range(self.ranks)]
        self.launched_tasks += self.ranks
        return ids

    # --- ECS -------------------------------------------------------------------------------------

    def _launch(self, job: str, tasks: list[str], nodes: list[int], at: float) -> Iterator[Timed]:
        for rank, (task, node) in enumerate(zip(tasks, nodes, strict=True)):
            jitter = self.rng.uniform(0, 20)
            for version, (status, delay) in enumerate((("PROVISIONING", 0), ("PENDING", 30), ("RUNNING", 90)), 1):
                yield self._task(task, node, job, rank, at, at + delay + jitter, status, version)
            yield self._node(node, at + 1 + jitter)

    def _complete(self, job: str, tasks: list[str], nodes: list[int], at: float) -> Iterator[Timed]:
        created = at  # only the time of the STOPPED event matters for what follows
        for rank, (task, node) in enumerate(zip(tasks, nodes, strict=True)):
            stop = at + self.rng.uniform(0, 30)
            yield self._task(task, node, job, rank, created, stop, "STOPPED", 4, exit_code=0)
            yield self._node(node, stop + 1)

    def _fail(self, job: str, tasks: list[str], nodes: list[int], at: float, restarts: int) -> Iterator[Timed]:
        failed = self.rng.randrange(self.ranks)
        yield self._task(tasks[failed], nodes[failed], job, failed, at, at, "STOPPED", 4, exit_code=1)
        yield from self._recovery(job, tasks, nodes, failed, at + 2, restarts)
        for rank, (task, node) in enumerate(zip(tasks, nodes, strict=True)):
            stop = at + 10 + self.rng.uniform(0, 20)  # the recovery's StopTasks land within seconds
            if rank != failed:
                yield self._task(task, node, job, rank, at, stop, "STOPPED", 4, exit_code=143,
                                 stop_code="UserInitiated")
            yield self._node(node, stop + 1)

    def _task(self, task: str, node: int, job: str, rank: int, created: float, at: float, status: str,
              version: int, *, exit_code: int | None = None, stop_code: str = "EssentialContainerExited") -> Timed:
        """An ECS Task State Change as EventBridge delivers it (compact JSON, written from a template)."""
        stopped = status == "STOPPED"
        container_end = f',"exitCode":{exit_code}' if stopped and exit_code is not None else ""
        detail_end = f',"startedAt":"{_iso(created + 90)}"' if status in ("RUNNING", "STOPPED") else ""
        if stopped:
            detail_end += f',"stoppedAt":"{_iso(at)}","stopCode":"{stop_code}","stoppedReason":"{stop_code}"'
        gpus = ",".join(f'"{g}"' for g in range(8))
        detail = (
            f'{{"clusterArn":"{CLUSTER}","taskArn":"{task}","containerInstanceArn":"{node_arn(node)}",'
            f'"taskDefinitionArn":"{DEFINITION}","lastStatus":"{status}",'
            f'"desiredStatus":"{"STOPPED" if stopped else "RUNNING"}","version":{version},'
            f'"containers":[{{"containerArn":"{task}/trainer","name":"trainer","lastStatus":"{status}",'
            f'"gpuIds":[{gpus}]{container_end}}}],"group":"{job}","startedBy":"trainer-launcher",'
            f'"launchType":"EC2","createdAt":"{_iso(created)}","updatedAt":"{_iso(at)}",'
            f'"overrides":{{"containerOverrides":[{{"name":"trainer","environment":[{{"name":"RANK","value":"{rank}"}},'
            f'{{"name":"WORLD_SIZE","value":"{self.ranks}"}}]}}]}}{detail_end}}}'
        )
        return Timed(at, node, self._aws("ECS Task State Change", task, detail, at))

    def _node(self, node: int, at: float) -> Timed:
        """An ECS Container Instance State Change (a task took or freed the node's resources)."""
        self.node_version[node] += 1
        gpus = ",".join(f'"GPU-{node:04x}-{g}"' for g in range(8))
        detail = (
            f'{{"clusterArn":"{CLUSTER}","containerInstanceArn":"{node_arn(node)}","ec2InstanceId":"i-{node:017x}",'
            f'"agentConnected":true,"status":"ACTIVE","version":{self.node_version[node]},"updatedAt":"{_iso(at)}",'
            f'"attributes":[{{"name":"ecs.instance-type","value":"p5.48xlarge"}}],'
            f'"registeredResources":[{{"name":"GPU","type":"STRINGSET","stringSetValue":[{gpus}]}}]}}'
        )
        return Timed(at, node, self._aws("ECS Container Instance State Change", node_arn(node), detail, at))

    def _aws(self, detail_type: str, resource: str, detail: str, at: float) -> bytes:
        self.serial += 1
        return (
            f'{{"version":"0","id":"{uuid.UUID(int=self.serial)}","detail-type":"{detail_type}",'
            f'"source":"aws.ecs","account":"{ACCOUNT}","time":"{_iso(at)[:19]}Z","region":"{REGION}",'
            f'"resources":["{resource}"],"detail":{detail}}}'
        ).encode()

    # --- the recovery's own events ---------------------------------------------------------------

    def _recovery(self, job: str, tasks: list[str], nodes: list[int], failed: int, at: float,
                  restarts: int) -> Iterator[Timed]:
        from consumers.core.facts import RECOVERY_STOP_REASON
        from events_schema.commands import StopTask
        from events_schema.events import (
            ActionOutcome,
            DecisionRecorded,
            JobStateChanged,
            NodeStateChanged,
        )

        node = node_arn(nodes[failed])
        incident = f"inc-{self.serial:09d}"
        steps: list[object] = [
            JobStateChanged(job_id=job, state="RECOVERING", reason="rank exited 1", incident_id=incident,
                            restart_count=restarts - 1),
            NodeStateChanged(node_arn=node, state="SUSPECT", reason="rank exited 1", incident_id=incident),
        ]
        for rank, task in enumerate(tasks):
            if rank != failed:
                action, key = StopTask(target=task, reason=RECOVERY_STOP_REASON), f"{incident}:stop:{rank}"
                steps += [DecisionRecorded(idempotency_key=key, action=action, incident_id=incident, job_id=job,
                                           step="stop_ranks", reason="sibling of failed rank"),
                          ActionOutcome(idempotency_key=key, action=action, incident_id=incident, job_id=job,
                                        step="stop_ranks", status="succeeded")]
        steps += [NodeStateChanged(node_arn=node, state="HEALTHY", reason="DCGM healthy", incident_id=incident),
                  JobStateChanged(job_id=job, state="RESTARTING", reason=f"restart {restarts}",
                                  incident_id=incident, restart_count=restarts)]
        for offset, data in enumerate(steps):  # the recovery records its steps milliseconds apart
            yield Timed(at + offset * 0.005, nodes[failed], self._ours(data, at + offset * 0.005, job))

    def _ours(self, data: object, at: float, job: str) -> bytes:
        from consumers.adapters.kinesis import envelope_bytes
        from events_schema.envelope import Subject, make_envelope

        self.serial += 1
        envelope = make_envelope(data, event_id=str(uuid.UUID(int=self.serial)),  # type: ignore[arg-type]
                                 time=T0 + timedelta(seconds=at), source="gpu-recovery/recovery",
                                 subject=Subject(job=job))
        return envelope_bytes(envelope)
