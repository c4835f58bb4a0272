"""A scenario on the recovery core alone: no moto, no HTTP, for fleets and months that moto cannot carry.

The same fleet simulator (``local.reactive_fleet``) answers the same way, on an in-process model of the
AWS APIs (``local.memory_aws``); the recovery consumer is the real one (``RecoveryConsumer``: decide,
commit, record, act, outcomes, deadlines on the stream's clock) on in-memory adapters: an indexed store,
an in-memory ledger and parking lot, its own events kept by a writer instead of put on Kinesis. ECS's
events reach it through the same EventBridge rules (``local.bridge``) as bytes on one shard, in batches
of at most 1,000 records as GetRecords returns them. Not run: the projector (recovery does not read its
tables) and the reading back of recovery's own events (the live consumer ignores them).

The loop is ``ScenarioRun``'s: deliver what is on the stream, let the fleet answer the calls, then move
the virtual clock to the next thing due (the fleet's or a deadline).
"""

from __future__ import annotations

import functools
import json
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Protocol

from consumers.adapters.actuators import AwsActuator
from consumers.adapters.kinesis import envelope_bytes
from consumers.adapters.ledger import InMemoryLedger
from consumers.adapters.memory import InMemoryParkingLot
from consumers.core.errors import ConfigError
from consumers.core.ports import BatchContext, StreamRecord
from consumers.core.recovery.config import PolicyConfig
from consumers.recovery import RecoveryConsumer
from events_schema.envelope import Envelope
from events_schema.rules import ingest_rules
from gpu_recovery.settings import Settings
from local.bridge import EventBridgeBridge
from local.call_log import Call, CallLog, RecordingActuator
from local.clock import VirtualClock
from local.indexed_store import IndexedRecoveryStore
from local.memory_aws import MemoryAws
from local.reactive_fleet import ReactiveFleet
from local.scenario import EventSpec, Scenario

SHARD = "shardId-000000000000"
BATCH = 1000  # GetRecords' most records per call
MAX_STEPS = 50_000
Say = Callable[[str], None]


class CoreWiring(Protocol):
    """What the composition root gives: the policy from the settings, and where notices go."""

    def policy_config(self, settings: Settings) -> PolicyConfig: ...

    def topic_arn(self, settings: Settings) -> str: ...


class _Shard:
    """One stream shard in memory: the bridge's and the health check's puts, read in order."""

    def __init__(self, clock: VirtualClock) -> None:
        self._clock = clock
        self._records: list[StreamRecord] = []
        self._sequence = 0
        self.put = 0

    def put_raw(self, records: Sequence[tuple[bytes, str]]) -> list[str]:
        numbers = []
        for data, key in records:
            self._sequence += 1
            number = f"{self._sequence:056d}"
            self._records.append(StreamRecord(SHARD, number, key, data, self._clock.now()))
            numbers.append(number)
        self.put += len(numbers)
        return numbers

    def append(self, envelopes: Sequence[Envelope], partition_keys: Sequence[str] | None = None) -> list[str]:
        keys = list(partition_keys) if partition_keys is not None else ["report"] * len(envelopes)
        return self.put_raw([(envelope_bytes(e), k) for e, k in zip(envelopes, keys, strict=True)])

    def take(self) -> list[StreamRecord]:
        batch, self._records = self._records[:BATCH], self._records[BATCH:]
        return batch


class _DrainingLog(CallLog):
    """The call log, emptied as it is read: months of calls are handed to ``on_calls``, not kept."""

    def unread(self) -> list[Call]:
        fresh, self.calls = self.calls, []
        return fresh


class _Recorded:
    """Recovery's stream writer: keeps no copy, tells the observers (its events are a record only)."""

    def __init__(self, observers: list[Callable[[Envelope], None]]) -> None:
        self._observers = observers
        self.appended = 0

    def append(self, envelopes: Sequence[Envelope], partition_keys: Sequence[str] | None = None) -> list[str]:
        for envelope in envelopes:
            for observe in self._observers:
                observe(envelope)
        self.appended += len(envelopes)
        return [str(self.appended - len(envelopes) + n) for n in range(len(envelopes))]


@dataclass
class CoreResult:
    scenario: str
    seconds: float
    virtual_seconds: float
    records: int
    actions: dict[str, int]
    refused: list[tuple[str, str]]
    parked: int


class CoreRun:
    def __init__(self, scenario: Scenario, settings: Settings, say: Say, *, wiring: CoreWiring) -> None:
        self.scenario = scenario
        self.say = say
        try:
            self.settings = Settings(**{**settings.model_dump(), **scenario.settings})
        except Exception as exc:
            raise ConfigError(f"scenario {scenario.name} has invalid settings: {exc}") from exc
        if scenario.errors or scenario.delivery.duplicate or scenario.delivery.shuffle:
            raise ConfigError(f"scenario {scenario.name} injects AWS errors or reorders delivery: the core engine "
                              "plays neither\nfix: run it on the embedded stack (gpu-recovery demo)")
        self.clock = VirtualClock()
        self.started_virtual = self.clock.now()
        self.calls: CallLog = _DrainingLog()
        self.store = IndexedRecoveryStore()
        self.on_ready: Callable[[CoreRun], None] | None = None
        self.on_step: Callable[[datetime], None] | None = None
        self.observers: list[Callable[[Envelope], None]] = []
        self.on_calls: Callable[[list[Call]], None] | None = None
        self.max_steps = MAX_STEPS
        self.steps = 0
        self.actions: Counter[str] = Counter()
        self._wiring = wiring

    # --- set-up ------------------------------------------------------------------------------------

    def _setup(self) -> None:
        settings = self.settings
        self.shard = _Shard(self.clock)
        self.bridge = EventBridgeBridge(ingest_rules(settings.cluster_arn), self.shard)
        fleet_ref: list[ReactiveFleet] = []
        self.aws = MemoryAws(
            region=settings.region, account_id=settings.account_id, cluster_name=settings.cluster_name,
            calls=self.calls, free_gpus=lambda arn: fleet_ref[0].free_gpus(arn),
            family_gpus=lambda family: fleet_ref[0].gpus_of(family),
            in_auto_scaling_group=lambda instance: fleet_ref[0].in_auto_scaling_group(instance))
        self.fleet = ReactiveFleet(
            self.aws.client("ecs"), self.aws.client("ec2"), self.clock, self.bridge.publish,
            cluster_name=settings.cluster_name, account_id=settings.account_id, region=settings.region,
            reports=self.shard, health_check_family=settings.health_check_task)  # type: ignore[arg-type]
        fleet_ref.append(self.fleet)
        self.aws.client("ecs").register_task_definition(family=settings.health_check_task)
        self.writer = _Recorded(self.observers)
        config = self._wiring.policy_config(settings)
        # Passes the real actuator's results through; typed loosely as ScenarioRun's wrap_actuator takes it.
        actuator: Any = RecordingActuator(AwsActuator(self.aws.recording(), cluster=settings.cluster_name,
                                                      topic_arn=self._wiring.topic_arn(settings),
                                                      check_key=self.store.check_key()), self.calls)
        self.recovery = RecoveryConsumer(
            replace(config, secret_key=self.store.check_key()), self.store, self.writer, actuator,
            InMemoryLedger(), InMemoryParkingLot(), clock=self.clock.now, owner="local", dry_run=settings.dry_run)

    # --- the run -----------------------------------------------------------------------------------

    def run(self) -> CoreResult:
        started = time.monotonic()
        self._setup()
        fleet = self.fleet
        spec = self.scenario.fleet
        nodes = fleet.add_nodes(spec.nodes, gpus=spec.gpus, external=frozenset(spec.external))
        if spec.auto_scaling_group:
            fleet.join_auto_scaling_group(self.aws.client("autoscaling"), nodes)
        for job in self.scenario.jobs:
            self._launch(job.id, job.nodes, job.family, job.tags, job.gpus or spec.gpus)
        for fault in self.scenario.faults:
            fleet.at(fault.at, functools.partial(fleet.inject_fault, fault), f"fault on {fault.node}")
        for event in self.scenario.events:
            fleet.at(event.at, functools.partial(self._scripted, event), event.type)
        if self.on_ready is not None:
            self.on_ready(self)
        self._loop()
        while self._pump():
            pass
        self.recovery.on_idle()
        return CoreResult(self.scenario.name, time.monotonic() - started,
                          (self.clock.now() - self.started_virtual).total_seconds(), self.shard.put,
                          dict(self.actions), list(self.aws.refused), self.recovery.parked)

    def _launch(self, job_id: str, node_names: list[str], family: str, tags: list[dict[str, str]],
                gpus: int) -> None:
        tasks = self.fleet.launch_job(job_id, [self.fleet.node_by_name(n) for n in node_names], family, tags, gpus)
        self.say(f"job {job_id}: {len(tasks)} ranks RUNNING")

    def _scripted(self, event: EventSpec) -> None:
        """As ``ScenarioRun`` plays a scenario's events (a raw record is put as it is, placeholders filled)."""
        fleet = self.fleet
        if event.type == "agent_reconnect" and event.node:
            fleet.agent_reconnect(fleet.node_by_name(event.node))
        elif event.type == "user_stop" and event.job:
            fleet.user_stop(event.job)
        elif event.type == "stray_check_task" and event.node:
            fleet.stray_check_task(fleet.node_by_name(event.node))
        elif event.type == "raw" and event.record is not None:
            text = json.dumps(event.record)
            for name, value in (("region", self.settings.region), ("account", self.settings.account_id),
                                ("cluster", self.settings.cluster_name)):
                text = text.replace("${" + name + "}", value)
            self.shard.put_raw([(text.encode(), event.partition_key or "raw")])
        else:
            fleet.scripted(event)

    def _loop(self) -> None:
        end = self.started_virtual.timestamp() + self.scenario.run_for
        for _ in range(self.max_steps):
            if self._pump():
                continue
            upcoming = [t for t in (self.fleet.next_due(), self.recovery.next_deadline()) if t is not None]
            if not upcoming or min(upcoming).timestamp() > end:
                return
            self.clock.advance_to(min(upcoming))
            self.steps += 1
            if self.on_step is not None:
                self.on_step(self.clock.now())
            self.fleet.run_due()
            self.recovery.on_idle()
        raise RuntimeError(f"scenario {self.scenario.name} did not settle in {self.max_steps} steps")

    def _pump(self) -> int:
        moved = 0
        batch = self.shard.take()
        if batch:
            self.recovery.handle_batch(batch, BatchContext(SHARD, 0))
            moved += len(batch)
        calls = self.calls.unread()
        for call in calls:
            self.fleet.react(call)
            self.actions[call.operation] += call.ok
        if calls and self.on_calls is not None:
            self.on_calls(calls)
        return moved + len(calls)

    def state_bytes(self) -> tuple[int, int]:
        """(bytes, records) of recovery's live state, after the TTL deletions due by now."""
        self.store.expire(self.clock.now().timestamp())
        return self.store.state_bytes()
