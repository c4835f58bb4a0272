"""The recovery consumer: records in -> decide -> commit -> record the decisions -> act -> record outcomes.

* Decide: the pure core (``consumers.core.recovery.decide``) on the records a batch needs, loaded from the
  store; records nobody loaded are asked for (``NeedMore``) and the batch is decided again.
* Commit: changed records are written only if nobody changed them meanwhile (per-record optimistic
  concurrency, no lock); on a conflict the batch is decided again from the fresh records. What the
  decisions produced (events to append, commands to run) is written in the same transactions, in an
  outbox of this processor's shard.
* Record, then act: the decisions are appended to the stream before their AWS call; each call is claimed
  in the idempotency ledger first; its outcome is appended after, and decided on at once.

Own events read back from the stream are a record and drive nothing. Deadlines fire against the stream's
clock: each shard publishes its position (its newest event time while behind, the wall clock once caught
up) and timers fire against the slowest. A record that cannot be read, or that makes the decision fail,
is parked and the batch goes on; only infrastructure errors are retried.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from consumers.adapters.metrics import Metrics, NullMetrics
from consumers.core.clocktext import iso, parse_iso
from consumers.core.errors import TransientError
from consumers.core.ports import (
    ActionResult,
    Actuator,
    BatchContext,
    Ledger,
    Loaded,
    OutboxEntry,
    Output,
    ParkedRecord,
    ParkingLot,
    RecordKey,
    RecordWrite,
    RecoveryStore,
    StateConflict,
    StreamRecord,
    StreamWriter,
)
from consumers.core.recovery.config import PolicyConfig
from consumers.core.recovery.context import Effects, Emit, Order, stable_id
from consumers.core.recovery.decide import (
    EcsInput,
    Input,
    OperatorInput,
    OutcomeInput,
    ReportInput,
    SignalInput,
    TimerInput,
    decide,
)
from consumers.core.recovery.model import Timer
from consumers.core.recovery.record import timer_of
from consumers.core.recovery.view import ALL_NODES, FLEET_KEY, NeedMore, View
from events_schema.aws import (
    AwsHealthEvent,
    ContainerInstanceHealthChange,
    ContainerInstanceStateChange,
    Ec2InstanceStateChange,
    TaskStateChange,
)
from events_schema.commands import REPEATABLE, CommandModel, ListTagsForResource, StartTask
from events_schema.decode import MalformedRecord, StreamEvent, decode
from events_schema.envelope import Envelope, OurEvent, Subject, make_envelope
from events_schema.events import (
    ActionOutcome,
    DecisionRecorded,
    GpuHealthSignal,
    HealthCheckReported,
    OperatorRequested,
    RecordParked,
)

log = logging.getLogger("gpu_recovery.recovery")
SOURCE = "gpu-recovery/recovery"
ROUNDS = 25  # loads and conflicts before a batch is retried as a whole (TransientError)
TIMERS_PER_TICK = 200
READ_ONLY = frozenset({"ListTagsForResource"})
ECS_EVENTS = (TaskStateChange, ContainerInstanceStateChange, ContainerInstanceHealthChange)


class InjectedStop(Exception):
    """Raised by a fault-injection hook: the consumer 'dies' here, as a SIGKILL would stop it."""


def no_fault(point: str, key: str | None) -> None:
    """Fault-injection hook: tests raise here to stop the consumer between two steps (key: the action)."""


@dataclass(frozen=True)
class _Item:
    record: StreamRecord
    input: Input


class RecoveryConsumer:
    name = "recovery"

    def __init__(
        self,
        config: PolicyConfig,
        store: RecoveryStore,
        writer: StreamWriter,
        actuator: Actuator,
        ledger: Ledger,
        parking: ParkingLot,
        *,
        clock: Callable[[], datetime],
        owner: str | None = None,
        dry_run: bool = False,
        fault: Callable[[str, str | None], None] = no_fault,
        metrics: Metrics | None = None,
    ) -> None:
        self._config = replace(config, secret_key=config.secret_key or store.check_key())
        self._store = store
        self._writer = writer
        self._actuator = actuator
        self._ledger = ledger
        self._parking = parking
        self._clock = clock
        self._dry_run = dry_run
        self._fault = fault
        self._metrics: Metrics = metrics or NullMetrics()
        # Under the KCL each shard's processor owns its outbox (the shard's id); an in-process reader that
        # reads every shard passes one owner.
        self._fixed_owner = owner is not None
        self.owner = owner or "unassigned"
        self._positions: dict[str, str] = {}
        self.actions = 0
        self.failed_actions = 0
        self.parked = 0
        self.conflicts = 0

    @property
    def config(self) -> PolicyConfig:
        return self._config

    # --- the runtime's calls -----------------------------------------------------------------------

    def initialize(self, shard_id: str) -> None:
        """A processor took a shard: finish what the previous owner committed but did not do."""
        if not self._fixed_owner:
            self.owner = shard_id
        self.resume()

    def resume(self) -> None:
        for entry in self._store.pending(self.owner):
            self._flush(entry)

    def handle_batch(self, records: Sequence[StreamRecord], context: BatchContext | None = None) -> None:
        items = self._read(records)
        if items:
            self._isolated(items, max(i.input.at for i in items))
        shard = context.shard_id if context else (records[0].shard_id if records else "")
        if shard:
            self._advance(shard, items, context.millis_behind_latest if context else 0)
        self.tick()
        self._metrics.flush()

    def on_idle(self, shards: Collection[str] | None = None) -> None:
        """Every shard this consumer reads is drained (the in-process reader's quiet poll): caught up.

        ``shards`` are the shards the reader reads; None means every shard of the stream, including those a
        processor before a restart published and this one has not read since (left as they were, they
        would hold the stream's clock, and every deadline, back for good)."""
        wall = iso(self._clock())
        every = set(self._positions) | set(self._store.positioned_shards() if shards is None else shards)
        for shard in sorted(every):
            self._positions[shard] = wall
            self._store.publish_position(shard, wall)
        self.tick()
        self._metrics.flush()

    def shard_ended(self, shard_id: str) -> None:
        self._store.drop_position(shard_id)

    def tick(self) -> None:
        """Fire the deadlines that passed on the stream's clock (never ahead of the wall clock)."""
        wall = iso(self._clock())
        now = min(self._store.clock() or wall, wall)
        for _ in range(ROUNDS):
            due = self._store.due(now, TIMERS_PER_TICK)
            if not due:
                return
            inputs: list[Input] = [TimerInput(key, Timer.model_validate(timer)) for key, timer in due]
            self._run(inputs, now)

    def next_deadline(self) -> datetime | None:
        due = self._store.due("9999", 1)
        return parse_iso(due[0][1]["due_at"]) if due else None

    # --- reading ------------------------------------------------------------------------------------

    def _read(self, records: Sequence[StreamRecord]) -> list[_Item]:
        items: list[_Item] = []
        for record in records:
            try:
                item = self._input(record, decode(record.data))
            except MalformedRecord as exc:
                self._park(record, exc.kind, exc.detail)
                continue
            if item is not None:
                items.append(item)
        return items

    def _input(self, record: StreamRecord, event: StreamEvent) -> _Item | None:
        if isinstance(event, AwsHealthEvent | Ec2InstanceStateChange):
            # Account-wide (no rule can name the cluster's instances): the core acts on instances it knows.
            return self._timely(record, event, EcsInput(event, iso(event.time)))
        if isinstance(event, ECS_EVENTS):
            if event.detail.clusterArn != self._config.cluster_arn:
                self._metrics.count("ForeignClusterEvents", 1)
                return None  # defence in depth: the rules already match the cluster exactly
            return self._timely(record, event, EcsInput(event, iso(event.time)))
        if not isinstance(event, OurEvent):
            return None
        data = event.data
        made: Input | None = None
        if isinstance(data, HealthCheckReported):
            made = ReportInput(data, dict(event.envelope.data), iso(event.time), event.envelope.event_id)
        elif isinstance(data, GpuHealthSignal):
            made = SignalInput(data, iso(event.time), event.envelope.event_id)
        elif isinstance(data, OperatorRequested):
            made = OperatorInput(data, iso(event.time), event.envelope.event_id)
        # Our own decisions, outcomes, deadlines read back: a record, never a command.
        return self._timely(record, event, made) if made is not None else None

    def _timely(self, record: StreamRecord, event: Any, made: Input) -> _Item | None:
        """An event dated beyond the allowed skew into the future is parked: it must not move time."""
        limit = iso(self._clock() + self._config.future_skew)
        if made.at > limit:
            self._park(record, "future_time", f"event time {made.at} is more than "
                       f"{self._config.future_skew} after the consumer's clock")
            return None
        return _Item(record, made)

    # --- deciding -----------------------------------------------------------------------------------

    def _isolated(self, items: list[_Item], now: str) -> None:
        """Decide a batch; when deciding fails, find the records that make it fail and park them."""
        try:
            self._run([i.input for i in items], now, items)
        except (TransientError, InjectedStop):
            raise
        except Exception as exc:  # a record the core cannot decide on: parked, never a stalled shard
            if len(items) == 1:
                log.exception("parking a record recovery cannot decide on")
                self._park(items[0].record, "undecidable", f"{type(exc).__name__}: {exc}")
                return
            half = len(items) // 2
            self._isolated(items[:half], now)
            self._isolated(items[half:], now)

    def _run(self, inputs: list[Input], now: str, items: list[_Item] | None = None) -> None:
        for entry in self._decide_commit(inputs, now, items):
            self._flush(entry)

    def _decide_commit(self, inputs: list[Input], now: str, items: list[_Item] | None = None) -> list[OutboxEntry]:
        loaded = self._load(_first_keys(inputs) | {FLEET_KEY})
        for _ in range(ROUNDS):
            view = View(loaded.bodies)
            try:
                effects = decide(view, self._config, inputs, now)
            except NeedMore as more:
                loaded = loaded.merge(self._load(more.keys - loaded.bodies.keys()))
                continue
            writes = _writes(view, loaded, self._config)
            outputs = self._outputs(effects, now)
            self._fault("after_decide", " ".join(o.key for o in effects.orders) or None)
            try:
                entries = self._store.commit(writes, outputs, self.owner)
            except StateConflict as conflict:
                self.conflicts += 1
                self._metrics.count("StateConflicts", 1)
                loaded = loaded.merge(self._store.load(conflict.keys))
                continue
            self._fault("after_commit", None)
            self._rejected(effects, items)
            return entries
        raise TransientError(f"records still contended after {ROUNDS} rounds")

    def _load(self, keys: Collection[RecordKey]) -> Loaded:
        loaded = self._store.load([k for k in keys if k != ALL_NODES])
        return loaded.merge(self._store.load_nodes()) if ALL_NODES in keys else loaded

    def _rejected(self, effects: Effects, items: list[_Item] | None) -> None:
        for reason in effects.rejected:
            record = items[0].record if items and len(items) == 1 else None
            if record is not None:
                self._park(record, "suspect", reason, notify=True)
            else:
                log.warning("rejected: %s", reason)

    # --- outputs ------------------------------------------------------------------------------------

    def _outputs(self, effects: Effects, now: str) -> list[Output]:
        outputs: list[Output] = []
        at = parse_iso(now)
        for emit in effects.emits:
            envelope = make_envelope(emit.data, event_id=emit.event_id, time=at, source=SOURCE, subject=emit.subject,
                                     causation_id=emit.cause)
            outputs.append(Output("event", _event_payload(envelope, emit.partition_key), _emit_owner(emit)))
        for order in effects.orders:
            decision = DecisionRecorded(idempotency_key=order.key, action=order.command, incident_id=order.incident_id,
                                        job_id=order.job_id, step=order.step, reason=order.reason)
            envelope = make_envelope(decision, event_id=stable_id(f"DecisionRecorded:{order.key}"), time=at,
                                     source=SOURCE, subject=order.subject, causation_id=order.cause)
            owner = _order_owner(order)
            outputs.append(Output("event", _event_payload(envelope, _partition(order.subject, order.key)), owner))
            outputs.append(Output("order", {"key": order.key, "command": order.command.model_dump(mode="json"),
                                            "step": order.step, "incident_id": order.incident_id,
                                            "job_id": order.job_id, "subject": order.subject.model_dump(mode="json"),
                                            "decision": envelope.event_id}, owner))
        return outputs

    def _flush(self, entry: OutboxEntry) -> None:
        """Record the decisions, then act, then record and decide on the outcomes."""
        events = [o.payload for o in entry.outputs if o.kind == "event"]
        self._append(events)
        orders = [o.payload for o in entry.outputs if o.kind == "order"]
        self._fault("after_record", " ".join(str(o["key"]) for o in orders) or None)
        outcomes: list[Input] = []
        for order in orders:
            outcome, at = self._execute(order)
            subject = Subject.model_validate(order["subject"])
            envelope = make_envelope(outcome, event_id=stable_id(f"outcome:{order['key']}"), time=parse_iso(at),
                                     source=SOURCE, subject=subject, causation_id=str(order["decision"]))
            self._append([_event_payload(envelope, _partition(subject, str(order["key"])))])
            self._fault("after_outcome", str(order["key"]))
            outcomes.append(OutcomeInput(outcome, at, envelope.event_id))
        follow_ups = self._decide_commit(outcomes, max(o.at for o in outcomes)) if outcomes else []
        self._store.done(entry)
        for follow_up in follow_ups:
            self._flush(follow_up)

    def _append(self, payloads: list[dict[str, Any]]) -> None:
        if not payloads:
            return
        envelopes = [Envelope.model_validate(p["envelope"]) for p in payloads]
        self._writer.append(envelopes, [str(p["partition_key"]) for p in payloads])

    # --- acting -------------------------------------------------------------------------------------

    def _execute(self, order: dict[str, Any]) -> tuple[ActionOutcome, str]:
        command: CommandModel = DecisionRecorded.model_validate(
            {"idempotency_key": order["key"], "action": order["command"], "step": order["step"]}).action
        key, at = str(order["key"]), iso(self._clock())
        result = self._result(command, key, at)
        self.actions += 1
        if result.status != "succeeded":
            self.failed_actions += 1
            self._metrics.count("FailedActions" if result.status == "failed" else "UnknownActions", 1)
            log.warning("action %s key=%s type=%s target=%s: %s", result.status, key, command.type, command.target,
                        result.error)
        return ActionOutcome(idempotency_key=key, action=command, incident_id=order.get("incident_id"),
                             job_id=order.get("job_id"), step=order["step"], status=result.status,
                             detail=result.detail, error=result.error, error_kind=result.error_kind), at

    def _result(self, command: CommandModel, key: str, at: str) -> ActionResult:
        if self._dry_run and command.type not in READ_ONLY:
            return ActionResult("succeeded", {"dry_run": True})
        claim = self._ledger.claim(key, command.type, at)
        self._fault("after_claim", key)
        if claim.state == "done":
            return ActionResult(claim.status or "unknown", claim.detail or {}, claim.error,  # type: ignore[arg-type]
                                claim.error_kind)  # type: ignore[arg-type]
        if claim.state == "claimed":
            resumed = self._resume(command, key)
            if resumed is not None:
                self._ledger.done(key, resumed.status, resumed.detail, resumed.error, resumed.error_kind)
                return resumed
        result = self._actuator.execute(command, key)
        if result.status == "unknown" and isinstance(command, StartTask):
            found = self._actuator.find_done(command, key)
            if found is not None:
                result = ActionResult("succeeded", found)
        self._fault("after_call", key)
        self._ledger.done(key, result.status, result.detail, result.error, result.error_kind)
        self._fault("after_done", key)
        return result

    def _resume(self, command: CommandModel, key: str) -> ActionResult | None:
        """A claim without a result: whether the call happened. None means: make it now."""
        if command.type in REPEATABLE or command.type in ("Publish", *READ_ONLY):
            return None  # a repeat changes nothing more (Publish: at least once)
        found = self._actuator.find_done(command, key)
        if found is not None:
            return ActionResult("succeeded", found)
        if isinstance(command, StartTask):
            return None  # no task carries our key: it was never started
        log.warning("ambiguous %s for %s: not repeated; its deadline decides", command.type, key)
        return ActionResult("unknown", {}, "stopped between claim and result", "unknown")

    # --- time -----------------------------------------------------------------------------------------

    def _advance(self, shard: str, items: list[_Item], behind_ms: int) -> None:
        newest = max((i.input.at for i in items if isinstance(i.input, EcsInput | ReportInput | SignalInput)),
                     default=None)
        if newest is not None:
            self._positions[shard] = max(self._positions.get(shard, newest), newest)
        caught_up = behind_ms <= 0
        position = iso(self._clock()) if caught_up else self._positions.get(shard)
        if position:
            # Kept even for a batch of our own events only: on_idle refreshes every shard it has published,
            # or a shard that went quiet would hold the stream's clock (and every deadline) where it was.
            self._positions[shard] = max(self._positions.get(shard, position), position)
            self._store.publish_position(shard, position)

    # --- records we keep aside ----------------------------------------------------------------------

    def _park(self, record: StreamRecord, kind: str, reason: str, *, notify: bool = False) -> None:
        self._parking.park([ParkedRecord(consumer=self.name, shard_id=record.shard_id,
                                         sequence_number=record.sequence_number, partition_key=record.partition_key,
                                         reason_kind=kind, reason=reason[:1000], data=record.data,
                                         parked_at=iso(self._clock()))])
        self.parked += 1
        self._metrics.count("ParkedRecords", 1)
        log.warning("parked record shard=%s seq=%s kind=%s: %s", record.shard_id, record.sequence_number, kind, reason)
        if notify:
            notice = RecordParked(consumer=self.name, shard_id=record.shard_id,
                                  sequence_number=record.sequence_number, reason=reason[:1000],
                                  size_bytes=len(record.data))
            envelope = make_envelope(notice, event_id=stable_id(f"parked:{record.sequence_number}"),
                                     time=self._clock(), source=SOURCE, subject=Subject())
            self._writer.append([envelope], ["parked"])


# --- helpers ------------------------------------------------------------------------------------------


def _first_keys(inputs: Sequence[Input]) -> set[RecordKey]:
    """The records each input surely needs (more are asked for as the decision goes)."""
    keys: set[RecordKey] = set()
    for item in inputs:
        if isinstance(item, EcsInput):
            event = item.event
            if isinstance(event, AwsHealthEvent | Ec2InstanceStateChange):
                keys.update(("instance", i) for i in event.instance_ids)
                continue
            if isinstance(event, TaskStateChange):
                keys.add(("task", event.detail.taskArn))
            if event.detail.containerInstanceArn:
                keys.add(("node", event.detail.containerInstanceArn))
        elif isinstance(item, ReportInput):
            keys.add(("node", item.report.node_arn))
            if item.report.incident_id:
                keys.add(("incident", item.report.incident_id))
        elif isinstance(item, OutcomeInput):
            outcome = item.outcome
            if outcome.incident_id:
                keys.add(("incident", outcome.incident_id))
            if outcome.job_id:
                keys.add(("job", outcome.job_id))
            # A burst's outcomes (every rank's tags read, every rank restarted) come back in one batch: their
            # tasks are loaded together, not one NeedMore round each (ROUNDS would run out at ~25 ranks).
            if isinstance(outcome.action, ListTagsForResource):
                keys.add(("task", outcome.action.target))
            if isinstance(outcome.action, StartTask) and outcome.detail.get("task_arn"):
                keys.add(("task", str(outcome.detail["task_arn"])))
        elif isinstance(item, TimerInput):
            keys.add(item.record)
    return keys


def _writes(view: View, loaded: Loaded, config: PolicyConfig) -> list[RecordWrite]:
    writes: list[RecordWrite] = []
    for key in sorted(set(view.changed) | set(view.retired)):
        body = view.dump(key)
        if body is None:
            continue
        old = loaded.bodies.get(key)
        timer = None if body.get("tombstone") else _timer_json(key[0], body)
        old_timer = _timer_json(key[0], old) if old and not old.get("tombstone") else None
        instance = (body.get("facts") or {}).get("instance_id") if key[0] == "node" else None
        old_instance = ((old or {}).get("facts") or {}).get("instance_id")
        writes.append(RecordWrite(key, body, loaded.revs.get(key, 0), timer, old_timer,
                                  instance if instance and instance != old_instance else None,
                                  _expires(key, body, config)))
    return writes


def _timer_json(kind: str, body: dict[str, Any]) -> dict[str, Any] | None:
    timer = timer_of(kind, body) if kind in ("job", "node", "incident", "fleet") else None
    return timer.model_dump(mode="json") if timer else None


def _expires(key: RecordKey, body: dict[str, Any], config: PolicyConfig) -> int | None:
    """Task records leave after the retention period once their task stopped (DynamoDB TTL)."""
    stopped = body.get("stopped_at") if key[0] == "task" else None
    if not stopped:
        return None
    return int((parse_iso(str(stopped)) + config.retention).timestamp())


def _event_payload(envelope: Envelope, partition_key: str) -> dict[str, Any]:
    return {"envelope": envelope.model_dump(mode="json"), "partition_key": partition_key}


def _partition(subject: Subject, fallback: str) -> str:
    return subject.node or subject.job or subject.task or fallback


def _emit_owner(emit: Emit) -> RecordKey | None:
    data = emit.data
    kind = getattr(data, "kind", None)
    if data.TYPE == "RecoveryRecorded":
        return (str(kind), str(getattr(data, "key", "")))
    return _subject_owner(emit.subject)


def _order_owner(order: Order) -> RecordKey | None:
    if order.incident_id:
        return ("incident", order.incident_id)
    if order.job_id:
        return ("job", order.job_id)
    return _subject_owner(order.subject)


def _subject_owner(subject: Subject) -> RecordKey | None:
    if subject.incident:
        return ("incident", subject.incident)
    if subject.job:
        return ("job", subject.job)
    if subject.node:
        return ("node", subject.node)
    if subject.task:
        return ("task", subject.task)
    return FLEET_KEY
