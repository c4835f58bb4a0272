"""The recovery consumer on in-memory adapters, with a small fake AWS that answers its commands as AWS would.

``FakeAws`` implements the Actuator port (a plain class, no mock): it records every call, answers it, and
queues the ECS events that follow (a stopped rank, a started task, the check task's signed report, the
agent's disconnect and reconnect after a reboot). ``Rig`` puts those events, and the consumer's own events,
on shards (by partition key) and hands them to one consumer per shard, all sharing one store, ledger and
writer, as processes sharing tables would.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from consumers.adapters.kinesis import envelope_bytes
from consumers.adapters.ledger import InMemoryLedger
from consumers.adapters.memory import InMemoryParkingLot, InMemoryStreamWriter
from consumers.adapters.recovery_store import InMemoryRecoveryStore
from consumers.core.facts import IdentityRules
from consumers.core.ports import ActionResult, BatchContext, RecoveryStore, StreamRecord
from consumers.core.recovery.config import PolicyConfig
from consumers.recovery import InjectedStop, RecoveryConsumer, no_fault
from events_schema.commands import (
    CommandModel,
    ListTagsForResource,
    RebootInstances,
    StartTask,
    StopTask,
    UpdateContainerInstancesState,
)
from events_schema.envelope import Envelope, Subject, make_envelope
from events_schema.events import HealthCheckReported
from events_schema.proof import check_secret, report_proof
from tests.factories import CLUSTER, T0, node_arn, node_event, task_arn, task_event

CHECK_FAMILY = "gpu-recovery-healthcheck"
Verdict = tuple[str, str, list[int]]  # (verdict, recommended action, XIDs) a node's check reports
HEALTHY: Verdict = ("healthy", "none", [])


def policy(**overrides: Any) -> PolicyConfig:
    base: dict[str, Any] = dict(cluster_arn=CLUSTER, restart_backoff=timedelta(0), notice_window=timedelta(0),
                                identity=IdentityRules(health_check_family=CHECK_FAMILY),
                                health_check_family=CHECK_FAMILY)
    return PolicyConfig(**{**base, **overrides})


class Clock:
    """The wall clock every consumer and the fake AWS read; tests move it."""

    def __init__(self, start: datetime = T0) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class Call:
    type: str
    target: str
    key: str
    command: CommandModel


@dataclass
class _Task:
    arn: str
    node: int
    group: str | None
    family: str
    version: int
    tags: list[dict[str, str]]
    created: datetime
    key: str | None = None  # the idempotency key of the StartTask that started it
    status: str = "RUNNING"


class FakeAws:
    """The Actuator port, answered as AWS would (``answers`` overrides the answer to a command type)."""

    def __init__(self, clock: Clock, check_key: Callable[[], bytes], *, cluster_arn: str = CLUSTER) -> None:
        self._clock = clock
        self._check_key = check_key
        self.cluster_arn = cluster_arn
        # Node n is node_arn(n) running instance i-{n:017x}, unless named otherwise (e.g. a node in moto).
        self.node_arns: dict[int, str] = {}
        self.instance_ids: dict[int, str] = {}
        self.calls: list[Call] = []
        self.events: list[tuple[bytes, str]] = []  # records that follow the calls: (data, partition key)
        self.tasks: dict[str, _Task] = {}
        self.node_versions: Counter[int] = Counter()
        self.verdicts: dict[int, list[Verdict]] = {}  # node -> what its checks report, in order
        self.booted: dict[int, datetime] = {}
        self.answers: dict[str, list[ActionResult]] = {}  # command type -> answers to give first
        self.hold: set[int] = set()  # nodes whose check tasks run but have not finished yet
        self.held: list[tuple[_Task, StartTask, str]] = []  # those checks (release() finishes them)
        self.lookups = 0
        self._serial = 0

    # --- the port ---------------------------------------------------------------------------------

    def execute(self, command: Any, key: str) -> ActionResult:
        self.calls.append(Call(command.type, command.target, key, command))
        queued = self.answers.get(command.type)
        if queued:
            return queued.pop(0)
        detail = self._effect(command, key)
        return ActionResult("succeeded", detail)

    def find_done(self, command: Any, key: str) -> dict[str, Any] | None:
        self.lookups += 1
        if not isinstance(command, StartTask):
            return None
        found = next((t for t in self.tasks.values() if t.key == key), None)
        return {"task_arn": found.arn, "found_after_restart": True} if found else None

    # --- the world --------------------------------------------------------------------------------

    def launch(self, job: str, ranks: Iterable[tuple[int, int]], *, gpus: int = 8) -> None:
        """Ranks (task number, node number) of a job, RUNNING."""
        for number, node in ranks:
            task = _Task(task_arn(number), node, job, "llm-train", 1, [], self._clock())
            self.tasks[task.arn] = task
            self._task_event(task, "RUNNING")

    def nodes(self, count: int) -> None:
        for n in range(1, count + 1):
            self.node_event(n)

    def node_arn(self, n: int) -> str:
        return self.node_arns.get(n) or node_arn(n)

    def node_number(self, arn_or_instance: str) -> int:
        named = {**{v: k for k, v in self.node_arns.items()}, **{v: k for k, v in self.instance_ids.items()}}
        if arn_or_instance in named:
            return named[arn_or_instance]
        tail = arn_or_instance[2:] if arn_or_instance.startswith("i-") else arn_or_instance[-4:]
        base = 16 if arn_or_instance.startswith("i-") else 10
        if tail.isalnum() and all(c in "0123456789abcdef"[:base] for c in tail):
            return int(tail, base)
        return 10_000 + int(hashlib.sha256(arn_or_instance.encode()).hexdigest()[:6], 16)  # a node of a sample

    def node_event(self, n: int, **kwargs: Any) -> None:
        self.node_versions[n] += 1
        event = node_event(n, version=self.node_versions[n], when=self._clock(), **kwargs)
        event["detail"].update(clusterArn=self.cluster_arn, containerInstanceArn=self.node_arn(n))
        if n in self.instance_ids:
            event["detail"]["ec2InstanceId"] = self.instance_ids[n]
        event["resources"] = [self.node_arn(n)]
        self.events.append((json.dumps(event).encode(), self.node_arn(n)))

    def fail(self, arn: str, *, exit_code: int = 1, reason: str = "XID 48") -> None:
        task = self.tasks[arn]
        self._task_event(task, "STOPPED", exit_code=exit_code, stop_code="EssentialContainerExited",
                         container_reason=reason)

    def _task_event(self, task: _Task, status: str, *, exit_code: int | None = None, stop_code: str | None = None,
                    stopped_reason: str | None = None, container_reason: str | None = None) -> None:
        task.version += 1
        task.status = status
        number = int(hashlib.sha256(task.arn.encode()).hexdigest()[:8], 16)
        event = task_event(number, node=task.node, version=task.version, status=status, exit_code=exit_code,
                           stop_code=stop_code, group=task.group, when=self._clock(), family=task.family,
                           created=task.created)
        event["detail"].update(taskArn=task.arn, clusterArn=self.cluster_arn,
                               containerInstanceArn=self.node_arn(task.node))
        event["resources"] = [task.arn]
        event["id"] = f"{task.arn}/{task.version}"
        if stopped_reason is not None:
            event["detail"]["stoppedReason"] = stopped_reason
        if container_reason is not None:
            event["detail"]["containers"][0]["reason"] = container_reason
        self.events.append((json.dumps(event).encode(), task.group or task.arn))

    def _effect(self, command: CommandModel, key: str) -> dict[str, Any]:
        if isinstance(command, StopTask):
            task = self.tasks.get(command.target)
            if task is not None and task.status != "STOPPED":
                self._task_event(task, "STOPPED", exit_code=137, stop_code="UserInitiated",
                                 stopped_reason=command.reason)
        elif isinstance(command, StartTask):
            return {"task_arn": self._start(command, key)}
        elif isinstance(command, ListTagsForResource):
            task = self.tasks.get(command.target)
            return {"tags": task.tags if task else []}
        elif isinstance(command, RebootInstances):
            node = self.node_number(command.target)
            self.booted[node] = self._clock() + timedelta(seconds=1)
            self.node_event(node, connected=False)
            self.node_event(node, connected=True)
        elif isinstance(command, UpdateContainerInstancesState):
            pass  # the node's status is not what recovery waits on
        return {}

    def _start(self, command: StartTask, key: str) -> str:
        self._serial += 1
        arn = f"arn:aws:ecs:us-west-2:123456789012:task/gpu-training/started{self._serial:05d}"
        node = self.node_number(command.target)
        family = CHECK_FAMILY if command.purpose == "check" else command.task_definition.rsplit("/", 1)[-1]
        task = _Task(arn, node, command.group, family.split(":")[0], 0, list(command.tags), self._clock(), key)
        self.tasks[arn] = task
        self._task_event(task, "RUNNING")
        if command.purpose == "check":
            if node in self.hold:
                self.held.append((task, command, key))
            else:
                self._finish(task, command, key)
        return arn

    def _finish(self, task: _Task, command: StartTask, key: str) -> None:
        self._report(task, command, key)
        self._task_event(task, "STOPPED", exit_code=0, stop_code="EssentialContainerExited")

    def release(self) -> None:
        """The held checks finish now: their signed reports and their tasks' stops follow, dated now."""
        for held in self.held:
            self._finish(*held)
        self.held.clear()
        self.hold.clear()

    def _report(self, task: _Task, command: StartTask, key: str) -> None:
        env = {e["name"]: e["value"] for c in command.overrides.get("containerOverrides", [])
               for e in c.get("environment", [])}
        queue = self.verdicts.get(task.node) or [HEALTHY]
        verdict, action, xids = queue.pop(0) if len(queue) > 1 else queue[0]
        data = HealthCheckReported(
            node_arn=command.target, check_task_arn=task.arn, incident_id=env.get("GPU_RECOVERY_INCIDENT_ID"),
            level=int(env.get("GPU_RECOVERY_CHECK_LEVEL", "2")), verdict=verdict,
            recommended_action=action, reason="fake dcgm", xids=[{"xid": x, "count": 1} for x in xids],
            check_key=key, boot_time=self.booted.get(task.node, T0 - timedelta(days=1)),
        ).model_dump(mode="json")
        data["proof"] = report_proof(check_secret(self._check_key(), key), data)
        self.events.append((report_bytes(data, self._clock()), command.target))

    # --- what happened --------------------------------------------------------------------------

    def of(self, kind: str, purpose: str | None = None) -> list[Call]:
        return [c for c in self.calls if c.type == kind
                and (purpose is None or getattr(c.command, "purpose", None) == purpose)]


def report_bytes(data: dict[str, Any], when: datetime, *, event_id: str | None = None) -> bytes:
    """A HealthCheckReported record whose payload is ``data`` exactly as given (signed or not)."""
    report = HealthCheckReported.model_validate(data)
    envelope = make_envelope(report, event_id=event_id or hashlib.sha256(json.dumps(data, sort_keys=True).encode())
                             .hexdigest()[:32], time=when, source="gpu-recovery/healthcheck",
                             subject=Subject(node=report.node_arn))
    return envelope_bytes(envelope.model_copy(update={"data": data}))


@dataclass
class Shard:
    records: list[StreamRecord] = field(default_factory=list)
    seq: int = 0


class Rig:
    """One consumer per shard over one shared store, ledger, writer and fake AWS."""

    def __init__(self, *, shards: int = 1, store: RecoveryStore | None = None, config: PolicyConfig | None = None,
                 clock: Clock | None = None, ledger: Any = None,
                 fault: Callable[[str, str | None], None] = no_fault, read_back: bool = True,
                 restart_on_stop: bool = False) -> None:
        self.clock = clock or Clock()
        self.store: Any = store if store is not None else InMemoryRecoveryStore(wall=lambda: self.clock().timestamp())
        self.config = config or policy()
        self.ledger: Any = ledger if ledger is not None else InMemoryLedger()
        self.writer = InMemoryStreamWriter()
        self.parking = InMemoryParkingLot()
        self.aws = FakeAws(self.clock, self.store.check_key, cluster_arn=self.config.cluster_arn)
        self.shard_ids = [f"shardId-{n:012d}" for n in range(shards)]
        self.shards = {s: Shard() for s in self.shard_ids}
        self.read_back = read_back
        self._written = 0
        self._fault = fault
        self.restart_on_stop = restart_on_stop  # as the KCL daemon: a stopped processor is started again
        self.restarts = 0
        self.assign: Callable[[str], str] | None = None  # partition key -> shard, instead of Kinesis's hash
        self.consumers = {s: self._start(s) for s in self.shard_ids}

    def _start(self, shard: str) -> RecoveryConsumer:
        for _ in range(10):
            try:
                return self.consumer(shard, self._fault)
            except InjectedStop:
                if not self.restart_on_stop:
                    raise
                self.restarts += 1
        raise AssertionError("the consumer never started")

    def consumer(self, shard: str, fault: Callable[[str, str | None], None] = no_fault,
                 actuator: Any = None) -> RecoveryConsumer:
        consumer = RecoveryConsumer(self.config, self.store, self.writer, actuator or self.aws, self.ledger,
                                    self.parking, clock=self.clock, fault=fault)
        consumer.initialize(shard)
        return consumer

    # --- the stream -------------------------------------------------------------------------------

    def shard_of(self, partition_key: str) -> str:
        if self.assign is not None:
            return self.assign(partition_key)
        digest = int(hashlib.md5(partition_key.encode()).hexdigest(), 16)  # Kinesis hashes keys with MD5
        return self.shard_ids[digest % len(self.shard_ids)]

    def put(self, data: bytes, partition_key: str, shard: str | None = None) -> StreamRecord:
        shard_id = shard or self.shard_of(partition_key)
        target = self.shards[shard_id]
        target.seq += 1
        record = StreamRecord(shard_id, f"{target.seq:020d}", partition_key, data, self.clock())
        target.records.append(record)
        return record

    def put_event(self, event: dict[str, Any], partition_key: str | None = None) -> StreamRecord:
        key = partition_key or str(event.get("detail", {}).get("group") or event.get("resources", ["-"])[0])
        return self.put(json.dumps(event).encode(), key)

    def put_envelope(self, envelope: Envelope, partition_key: str) -> StreamRecord:
        return self.put(envelope_bytes(envelope), partition_key)

    def collect(self) -> None:
        """What AWS emitted after the calls, and (read_back) the consumers' own events, onto the shards."""
        for data, key in self.aws.events:
            self.put(data, key)
        self.aws.events.clear()
        fresh = self.writer.envelopes[self._written:]
        keys = self.writer.partition_keys[self._written:]
        self._written = len(self.writer.envelopes)
        if self.read_back:
            for envelope, partition_key in zip(fresh, keys, strict=True):
                self.put_envelope(envelope, partition_key or "own")

    def pending(self) -> int:
        return sum(len(s.records) for s in self.shards.values())

    def deliver(self, shard: str, limit: int = 1000, consumer: RecoveryConsumer | None = None) -> int:
        """One batch of a shard to its consumer; ``millisBehindLatest`` is > 0 while records stay behind."""
        queue = self.shards[shard].records
        batch, queue[:] = queue[:limit], queue[limit:]
        behind = 60_000 if queue else 0
        try:
            (consumer or self.consumers[shard]).handle_batch(batch, BatchContext(shard, behind))
        except InjectedStop:
            queue[:0] = batch  # not checkpointed: delivered again, to the processor that takes the shard
            if not self.restart_on_stop:
                raise
            self.restarts += 1
            self.consumers[shard] = self._start(shard)
            return 0
        return len(batch)

    def drain(self, rounds: int = 500) -> None:
        """Deliver until no shard has records left (each batch's calls add the events that follow)."""
        for _ in range(rounds):
            self.collect()
            if not self.pending():
                return
            for shard in self.shard_ids:
                if self.shards[shard].records:
                    self.deliver(shard)
        raise AssertionError("the stream did not settle")

    def advance(self, seconds: float) -> None:
        """Time passes: each deadline due by then fires (every consumer, caught up, ticks), in order."""
        until = self.clock() + timedelta(seconds=seconds)
        for _ in range(200):
            self.drain()
            due = self.store.due("9999", 1)
            moment = datetime.fromisoformat(due[0][1]["due_at"].replace("Z", "+00:00")) if due else None
            if moment is None or moment > until:
                break
            self.clock.now = max(self.clock.now, moment)
            for shard in self.shard_ids:
                self.deliver(shard)
        self.clock.now = max(self.clock.now, until)
        self.drain()
        for shard in self.shard_ids:
            self.deliver(shard)
        self.drain()

    # --- what the store holds ---------------------------------------------------------------------

    def records(self, kind: str | None = None) -> dict[tuple[str, str], dict[str, Any]]:
        return {k: v for k, v in self.store.bodies().items() if kind is None or k[0] == kind}

    def snapshot(self) -> dict[str, Any]:
        """Records, timers and outboxes (the state decisions change); shard positions left out."""
        items = self.store.items
        snapshot: dict[str, Any] = json.loads(json.dumps(
            {f"{pk}|{sk}": v for (pk, sk), v in items.items() if pk != "clock"}, sort_keys=True, default=repr))
        return snapshot

    def job(self, job_id: str) -> dict[str, Any]:
        return self.records("job")[("job", job_id)]

    def incidents(self) -> list[dict[str, Any]]:
        return list(self.records("incident").values())

    def node(self, n: int) -> dict[str, Any]:
        return self.records("node")[("node", node_arn(n))]
