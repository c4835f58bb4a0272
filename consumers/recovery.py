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

Why one module (about 630 lines): it is one loop with one state (the positions, the outbox being flushed,
the fault hooks); the decisions are the core's and the calls the actuator's, and what is left here is the
order of those steps, which reads best in one place.
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
from consumers.core.recovery.record import record_write
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
ROUNDS = 25  # conflicts before a batch is retried as a whole (TransientError)
LOADS = 1_000  # records asked for (NeedMore) in one decision: each round loads more, so a loop is a bug
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
        self._unflushed = False  # a flush stopped half-way (an error was raised): resume before the next batch
        self._orphans = False  # a commit conflicted after some of its transactions went through
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
        self._unflushed, self._orphans = True, False
        for entry in self._store.pending(self.owner):
            self._flush(entry)
        self._unflushed = False

    def handle_batch(self, records: Sequence[StreamRecord], context: BatchContext | None = None) -> None:
        if self._unflushed or self._orphans:
            self.resume()  # the last try stopped between a commit and its outbox (it is being retried)
        items = self._read(records)
        for run in _runs(items):
            self._flush_all(self._isolated(run, max(i.input.at for i in run)))
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
        if self._unflushed or self._orphans:
            self.resume()
        wall = iso(self._clock())
        now = min(self._store.clock() or wall, wall)
        for _ in range(ROUNDS):
            due = self._store.due(now, TIMERS_PER_TICK)
            if not due:
                return
            inputs: list[Input] = [TimerInput(key, Timer.model_validate(timer)) for key, timer in due]
            self._flush_all(self._decide_commit(inputs, now))

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

    def _isolated(self, items: list[_Item], now: str) -> list[OutboxEntry]:
        """Decide and commit a batch; when deciding fails, find the records that make it fail and park them.

        Acting on what was committed happens after, outside: a failed call is never a record's fault."""
        try:
            return self._decide_commit([i.input for i in items], now, items)
        except (TransientError, InjectedStop):
            raise
        except Exception as exc:  # a record the core cannot decide on: parked, never a stalled shard
            if len(items) == 1:
                log.exception("parking a record recovery cannot decide on")
                self._park(items[0].record, "undecidable", f"{type(exc).__name__}: {exc}",
                           error_type=type(exc).__name__)
                return []
            half = len(items) // 2
            return self._isolated(items[:half], now) + self._isolated(items[half:], now)

    def _flush_all(self, entries: list[OutboxEntry]) -> None:
        self._unflushed = True
        for entry in entries:
            self._flush(entry)
        while self._orphans:
            # A commit of several transactions conflicted after the first went through: what those
            # committed is in the outbox, and no decision returned it. Finish it now, not at the next start.
            self._orphans = False
            for entry in self._store.pending(self.owner):
                self._flush(entry)
        self._unflushed = False

    def _decide_commit(self, inputs: list[Input], now: str, items: list[_Item] | None = None) -> list[OutboxEntry]:
        loaded = self._load(_first_keys(inputs) | {FLEET_KEY})
        for _ in range(ROUNDS):
            view, effects, loaded = self._decide(inputs, now, loaded)
            writes = _writes(view, loaded, self._config)
            outputs = self._outputs(effects, now)
            self._fault("after_decide", " ".join(o.key for o in effects.orders) or None)
            try:
                entries = self._store.commit(writes, outputs, self.owner)
            except StateConflict as conflict:
                self.conflicts += 1
                self._metrics.count("StateConflicts", 1)
                self._orphans = True
                # Every record written, not only the conflicting ones: a transaction before it may have gone through.
                loaded = loaded.merge(self._store.load(conflict.keys | {w.key for w in writes}))
                continue
            except BaseException:
                # It may have gone through, wholly or in part (a timeout after DynamoDB applied it): its outbox
                # is finished before anything else is decided (deciding again finds nothing new to order).
                self._orphans = True
                raise
            self._fault("after_commit", " ".join(o.key for o in effects.orders) or None)
            self._rejected(effects, items)
            return entries
        raise TransientError(f"records still contended after {ROUNDS} rounds")

    def _decide(self, inputs: list[Input], now: str, loaded: Loaded) -> tuple[View, Effects, Loaded]:
        """Decide on the loaded records, loading what the decision asks for (never counted as a conflict)."""
        for _ in range(LOADS):
            view = View(loaded.bodies)
            try:
                return view, decide(view, self._config, inputs, now), loaded
            except NeedMore as more:
                missing = more.keys - loaded.bodies.keys()
                if not missing:
                    asked = sorted(more.keys)[:5]
                    raise RuntimeError(f"the decision asked again for records it has: {asked}") from None
                loaded = loaded.merge(self._load(missing))
        raise RuntimeError(f"the decision asked for records {LOADS} times")

    def _load(self, keys: Collection[RecordKey]) -> Loaded:
        loaded = self._store.load([k for k in keys if k != ALL_NODES])
        return loaded.merge(self._store.load_nodes()) if ALL_NODES in keys else loaded

    def _rejected(self, effects: Effects, items: list[_Item] | None) -> None:
        for reason in effects.rejected:
            # Screened inputs are decided alone (``_runs``): a rejection in a batch of items is theirs.
            record = items[0].record if items and len(items) == 1 else None
            if record is not None:
                self._park(record, "suspect", reason, notify=True)
            else:
                log.warning("rejected without a record to park: %s", reason)

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
        follow_ups = self._on_outcomes(outcomes, entry) if outcomes else []
        self._store.done(entry)
        for follow_up in follow_ups:
            self._flush(follow_up)

    def _on_outcomes(self, outcomes: list[Input], entry: OutboxEntry) -> list[OutboxEntry]:
        """Decide on the outcomes; one the core cannot decide on is parked (its event is on the stream)."""
        try:
            return self._decide_commit(outcomes, max(o.at for o in outcomes))
        except (TransientError, InjectedStop):
            raise
        except Exception as exc:
            if len(outcomes) > 1:
                return [e for o in outcomes for e in self._on_outcomes([o], entry)]
            outcome = outcomes[0]
            assert isinstance(outcome, OutcomeInput)
            log.exception("parking an outcome recovery cannot decide on")
            data = outcome.outcome.model_dump_json().encode()
            self._park(StreamRecord(entry.owner, f"outcome:{outcome.outcome.idempotency_key}", "outcome", data),
                       "undecidable", f"{type(exc).__name__}: {exc}", error_type=type(exc).__name__)
            return []

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
        result = self._call(command, key)
        if result.status == "unknown" and isinstance(command, StartTask):
            _, found = self._found(command, key)
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
        looked, found = self._found(command, key)
        if found is not None:
            return ActionResult("succeeded", found)
        if isinstance(command, StartTask) and looked:
            return None  # no task carries our key: it was never started
        log.warning("ambiguous %s for %s: not repeated; its deadline decides", command.type, key)
        return ActionResult("unknown", {}, "stopped between claim and result", "unknown")

    def _call(self, command: CommandModel, key: str) -> ActionResult:
        """The actuator never raises (its port says so); if one does, the call may have happened: unknown."""
        try:
            return self._actuator.execute(command, key)
        except InjectedStop:
            raise
        except Exception as exc:
            log.exception("actuator raised on %s %s", command.type, key)
            return ActionResult("unknown", {}, f"{type(exc).__name__}: {exc}"[:1000], "unknown")

    def _found(self, command: CommandModel, key: str) -> tuple[bool, dict[str, Any] | None]:
        """(whether it could look, the evidence that the call took effect). A failed lookup tells nothing."""
        try:
            return True, self._actuator.find_done(command, key)
        except InjectedStop:
            raise
        except Exception as exc:
            log.warning("could not tell whether %s %s took effect: %s: %s", command.type, key, type(exc).__name__,
                        exc)
            return False, None

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

    def _park(self, record: StreamRecord, kind: str, reason: str, *, notify: bool = False,
              error_type: str = "") -> None:
        self._parking.park([ParkedRecord(consumer=self.name, shard_id=record.shard_id,
                                         sequence_number=record.sequence_number, partition_key=record.partition_key,
                                         reason_kind=kind, reason=reason[:1000], data=record.data,
                                         parked_at=iso(self._clock()), error_type=error_type)])
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

# Inputs the core may reject (an unverified report, a signal or request about nothing it knows): each is
# decided on its own, so that a rejection names its record and that record is parked as suspect.
SCREENED = (ReportInput, SignalInput, OperatorInput)


def _runs(items: list[_Item]) -> list[list[_Item]]:
    """The batch in order, as runs of ECS events decided together and screened inputs one by one."""
    runs: list[list[_Item]] = []
    for item in items:
        if isinstance(item.input, SCREENED) or not runs or isinstance(runs[-1][0].input, SCREENED):
            runs.append([item])
        else:
            runs[-1].append(item)
    return runs



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
            keys |= _outcome_keys(item.outcome)
        elif isinstance(item, TimerInput):
            keys.add(item.record)
    return keys


def _outcome_keys(outcome: ActionOutcome) -> set[RecordKey]:
    """An outcome's records: its incident or job, and the task it read the tags of or started (a job's ranks'
    outcomes come in one flush: asked for one by one, 2,048 ranks would take 2,048 decisions)."""
    keys: set[RecordKey] = set()
    if outcome.incident_id:
        keys.add(("incident", outcome.incident_id))
    if outcome.job_id:
        keys.add(("job", outcome.job_id))
    if isinstance(outcome.action, ListTagsForResource):
        keys.add(("task", outcome.action.target))
    started = outcome.detail.get("task_arn") if isinstance(outcome.action, StartTask) else None
    if isinstance(started, str) and started:
        keys.add(("task", started))
    return keys


def _writes(view: View, loaded: Loaded, config: PolicyConfig) -> list[RecordWrite]:
    writes: list[RecordWrite] = []
    for key in sorted(set(view.changed) | set(view.retired)):
        body = view.dump(key)
        if body is not None:
            writes.append(record_write(key, body, loaded.bodies.get(key), loaded.revs.get(key, 0), config.retention))
    return writes


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
