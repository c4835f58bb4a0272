"""The recovery consumer: event -> decide -> record the decision -> act -> record the outcome.

Decisions are appended to the stream before their AWS call, outcomes after it; every call is claimed in
the idempotency ledger first, so a redelivered or restarted step resumes and never repeats:

* claimed and done: the recorded outcome is used again, the call is not made;
* claimed, not done (we stopped between claim and result): calls that can be repeated safely are
  repeated; a StartTask is looked up by its idempotency tag; a reboot is never repeated here (the reboot
  deadline asks again only if the node never disconnected, i.e. the request never reached it).

State (incidents, budgets, pending deadlines) is a projection of the stream, saved after each batch and
before the checkpoint. Under the KCL every shard has its own processor process, but a job's ranks and the
breaker's nodes span shards: the processors share one state, taking turns under a lock
(``consumers.adapters.state_lock``) and catching up on each other's saves when they take it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Protocol

from consumers.adapters.actuators import IDEMPOTENT, ActionFailed, Actuator
from consumers.adapters.ledger import Claim
from consumers.adapters.metrics import Metrics, NullMetrics
from consumers.adapters.recovery_store import RecoveryStore
from consumers.adapters.state_lock import NoLock, StateLock
from consumers.core.clocktext import iso, parse_iso
from consumers.core.ports import ParkedRecord, ParkingLot, StreamRecord, StreamWriter
from consumers.core.recovery.policy import OUTPUT_TYPES, Effects, Emit, RecoveryPolicy, stable_id
from consumers.projector import decode_batch
from events_schema.envelope import Envelope, OurEvent, Subject, make_envelope
from events_schema.events import ActionOutcome, DecisionRecorded, RecordParked

log = logging.getLogger("gpu_recovery.recovery")
SOURCE = "gpu-recovery/recovery"


class Ledger(Protocol):
    def claim(self, key: str, action_type: str, at: str) -> Claim: ...

    def done(self, key: str, status: str, detail: dict[str, Any], error: str | None) -> None: ...


class InjectedStop(Exception):
    """Raised by a fault-injection hook: the consumer 'dies' here, as a SIGKILL would stop it."""


def no_fault(point: str, key: str | None) -> None:
    """Fault-injection hook: tests raise here to stop the consumer between two steps (key: the action)."""


class RecoveryConsumer:
    name = "recovery"

    def __init__(
        self,
        policy: RecoveryPolicy,
        store: RecoveryStore,
        writer: StreamWriter,
        actuator: Actuator,
        ledger: Ledger,
        parking: ParkingLot,
        *,
        clock: Callable[[], datetime],
        dry_run: bool = False,
        fault: Callable[[str, str | None], None] = no_fault,
        metrics: Metrics | None = None,
        lock: StateLock | None = None,
    ) -> None:
        self.policy = policy
        self._store = store
        self._writer = writer
        self._actuator = actuator
        self._ledger = ledger
        self._parking = parking
        self._clock = clock
        self._dry_run = dry_run
        self._fault = fault
        self._metrics: Metrics = metrics or NullMetrics()
        self._lock: StateLock = lock or NoLock()
        self._stale = False
        self.state = store.load()
        self.actions = 0
        self.failed_actions = 0
        self.parked = 0

    # --- the batch ------------------------------------------------------------------------------

    def handle_batch(self, records: Sequence[StreamRecord]) -> None:
        with self._exclusive():
            self._handle(records)

    def on_idle(self) -> None:
        """Called when the stream is quiet: notice deadlines, then save."""
        with self._exclusive():
            self.tick()
            self._store.save(self.state)
            self._publish()

    @contextmanager
    def _exclusive(self) -> Iterator[None]:
        """Hold the shared state: up to date on entry, saved by the caller; reloaded after any failure."""
        with self._lock.held():
            self.state = self._store.load() if self._stale else self._store.refresh(self.state)
            self._stale = False
            try:
                yield
            except BaseException:
                # Part of the batch may have changed the state in memory only: decide again from the
                # saved state (decisions and their keys are stable; the ledger keeps actions single).
                self._stale = True
                raise

    def _handle(self, records: Sequence[StreamRecord]) -> None:
        parked_at = iso(self._clock())
        for record in records:
            events, malformed = decode_batch([record], self.name, parked_at)
            if malformed:
                self._park(malformed)
                continue
            event = events[0]
            if isinstance(event, OurEvent) and event.type in OUTPUT_TYPES:
                continue  # our own decision coming back: applied when it was made
            effects = self.policy.handle(self.state, event)
            if effects.rejected:
                self._park_suspect(record, effects.rejected)
            self._apply(effects, _event_id(event))
        self.tick()
        self._fault("before_save", None)
        self._store.save(self.state)
        self._publish()

    def _publish(self) -> None:
        self._metrics.gauge("OpenIncidents", sum(1 for i in self.state.incidents.values() if not i.closed))
        self._metrics.flush()

    def tick(self) -> None:
        """Record the deadlines that have passed, then decide on them like any other event."""
        for emit in self.policy.expired(self.state, self._clock()):
            envelope = self._envelope(emit, iso(emit.data.due_at), None)  # type: ignore[attr-defined]
            self._writer.append([envelope])
            effects = self.policy.handle(self.state, OurEvent(envelope, emit.data))
            self._apply(effects, envelope.event_id)

    # --- decide, record, act, record ------------------------------------------------------------

    def _apply(self, effects: Effects, causation: str | None) -> None:
        if not effects.emits:
            return
        envelopes = [self._envelope(emit, effects.now, causation) for emit in effects.emits]
        keys = " ".join(d.idempotency_key for d in effects.decisions) or None
        self._fault("after_decide", keys)
        self._writer.append(envelopes)
        self._fault("after_record", keys)
        for decision, envelope in zip(effects.emits, envelopes, strict=True):
            if isinstance(decision.data, DecisionRecorded):
                self._act(decision.data, envelope)

    def _act(self, decision: DecisionRecorded, recorded: Envelope) -> None:
        outcome = self._execute(decision, iso(recorded.time))
        envelope = make_envelope(outcome, event_id=stable_id(f"outcome:{decision.idempotency_key}"),
                                 time=recorded.time, source=SOURCE, subject=recorded.subject,
                                 causation_id=recorded.event_id)
        self._writer.append([envelope])
        self._fault("after_outcome", decision.idempotency_key)
        self.actions += 1
        if outcome.status == "failed":
            self.failed_actions += 1
            self._metrics.count("FailedActions", 1)
        follow_up = self.policy.handle(self.state, OurEvent(envelope, outcome))
        self._apply(follow_up, envelope.event_id)

    def _execute(self, decision: DecisionRecorded, at: str) -> ActionOutcome:
        action, key = decision.action, decision.idempotency_key

        def outcome(status: str, detail: dict[str, Any] | None = None, error: str | None = None) -> ActionOutcome:
            return ActionOutcome(idempotency_key=key, action=action, incident_id=decision.incident_id,
                                 job_id=decision.job_id, status=status, detail=detail or {}, error=error)

        if self._dry_run:
            return outcome("succeeded", {"dry_run": True})
        claim = self._ledger.claim(key, action.type, at)
        self._fault("after_claim", key)
        if claim.state == "done":
            return outcome(claim.status or "failed", claim.detail, claim.error)
        if claim.state == "claimed":
            resumed = self._resume(decision)
            if resumed is not None:
                self._ledger.done(key, resumed.status, resumed.detail, resumed.error)
                return resumed
        self._lock.confirm()  # never act on a state another process has taken over
        try:
            detail, status, error = self._actuator.execute(action, key), "succeeded", None
        except ActionFailed as exc:
            detail, status, error = {}, "failed", str(exc)
            log.warning("action failed key=%s type=%s target=%s: %s", key, action.type, action.target, exc)
        self._fault("after_call", key)
        self._ledger.done(key, status, detail, error)
        self._fault("after_done", key)
        return outcome(status, detail, error)

    def _resume(self, decision: DecisionRecorded) -> ActionOutcome | None:
        """A claim without a result: decide whether the call happened. None means: make it now."""
        action, key = decision.action, decision.idempotency_key
        if action.type in IDEMPOTENT:
            return None
        found = self._actuator.find_done(action, key)
        if found is not None:
            return ActionOutcome(idempotency_key=key, action=action, incident_id=decision.incident_id,
                                 job_id=decision.job_id, status="succeeded", detail=found)
        if action.type == "StartTask":
            return None  # no task carries our key: it was never started
        log.warning("ambiguous %s for %s: not repeated; the deadline decides", action.type, key)
        return ActionOutcome(idempotency_key=key, action=action, incident_id=decision.incident_id,
                             job_id=decision.job_id, status="unknown", error="stopped between claim and result")

    # --- records we keep aside ------------------------------------------------------------------

    def _park(self, records: list[ParkedRecord]) -> None:
        self._parking.park(records)
        self.parked += len(records)
        self._metrics.count("ParkedRecords", len(records))
        for record in records:
            log.warning("parked record shard=%s seq=%s kind=%s: %s", record.shard_id, record.sequence_number,
                        record.reason_kind, record.reason)

    def _park_suspect(self, record: StreamRecord, reason: str) -> None:
        self._park([ParkedRecord(consumer=self.name, shard_id=record.shard_id,
                                 sequence_number=record.sequence_number, partition_key=record.partition_key,
                                 reason_kind="suspect", reason=reason, data=record.data, parked_at=iso(self._clock()))])
        notice = RecordParked(consumer=self.name, shard_id=record.shard_id, sequence_number=record.sequence_number,
                              reason=reason, size_bytes=len(record.data))
        self._writer.append([make_envelope(notice, event_id=stable_id(f"parked:{record.sequence_number}"),
                                           time=self._clock(), source=SOURCE, subject=Subject())])

    def _envelope(self, emit: Emit, now: str, causation: str | None) -> Envelope:
        return make_envelope(emit.data, event_id=emit.event_id, time=parse_iso(now), source=SOURCE,
                             subject=emit.subject, causation_id=causation)


def _event_id(event: Any) -> str | None:
    return str(getattr(event, "event_id", None) or getattr(event, "id", "")) or None
