"""The projector: a batch of stream records -> fold -> one conditional write per touched item.

Writes are coalesced (ten updates of one task in a batch make one write) and conditional on the item's
revision; a conflicting concurrent writer (two workers during a lease handover) makes us reload and
refold only the conflicting items.

One bad record never stalls the shard: whatever decoding, folding or storing one record raises parks that
record (shard, sequence number, reason, exception, position) and the rest of the batch is applied. Only
infrastructure errors propagate (TransientError is retried by the processor); a record that cannot even
be parked stops the shard, with the ParkingFailed metric.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from consumers.adapters.metrics import Metrics, NullMetrics
from consumers.core.clocktext import iso
from consumers.core.errors import TransientError, UnwritableItem, is_infrastructure
from consumers.core.ports import ItemWrite, ParkedRecord, ParkingLot, ProjectionStore, StreamRecord
from consumers.core.projection import EntityKey, ProjectionConfig, ProjectionState, fold, touched_keys
from events_schema.decode import MalformedRecord, StreamEvent, decode

log = logging.getLogger("gpu_recovery.projector")
MAX_CONFLICT_ROUNDS = 5
PARKING_FAILED = "ParkingFailed"  # a metric to alarm on: a shard stopped because it could not park


@dataclass
class BatchReport:
    records: int = 0
    applied: int = 0
    parked: int = 0
    items_written: int = 0
    conflicts: int = 0
    parked_by_kind: Counter[str] = field(default_factory=Counter)


@dataclass
class ProjectorStats:
    batches: int = 0
    records: int = 0
    parked: int = 0
    items_written: int = 0
    conflicts: int = 0

    def add(self, report: BatchReport) -> None:
        self.batches += 1
        self.records += report.records
        self.parked += report.parked
        self.items_written += report.items_written
        self.conflicts += report.conflicts


@dataclass(frozen=True, slots=True)
class Decoded:
    record: StreamRecord
    event: StreamEvent
    index: int  # in its batch, for the parked record's position


class RecordFault(Exception):
    """Something one of the batch's records caused (its fold raised, or the store refused what it made)."""

    def __init__(self, cause: Exception) -> None:
        super().__init__(f"{type(cause).__name__}: {cause}")
        self.cause = cause


@contextmanager
def record_fault(*, store: bool = False) -> Iterator[None]:
    """Blame the records for what the block raises: anything but infrastructure errors from pure code, only
    UnwritableItem (refused before anything is written) from a store, whose other errors are its own."""
    try:
        yield
    except UnwritableItem as exc:
        raise RecordFault(exc) from exc
    except Exception as exc:
        if store or is_infrastructure(exc):
            raise
        raise RecordFault(exc) from exc


class ParkingFailed(Exception):
    """Bad records could not even be parked: the shard stops (no checkpoint) rather than skip them."""


def decode_records(
    records: Sequence[StreamRecord], consumer: str, parked_at: str
) -> tuple[list[Decoded], list[ParkedRecord]]:
    """Each record alone: whatever decoding one raises (a RecursionError on deep nesting too) parks it."""
    decoded: list[Decoded] = []
    parked: list[ParkedRecord] = []
    for index, record in enumerate(records):
        try:
            decoded.append(Decoded(record, decode(record.data), index))
        except Exception as exc:
            if is_infrastructure(exc):
                raise
            kind = exc.kind if isinstance(exc, MalformedRecord) else "decode_error"
            detail = exc.detail if isinstance(exc, MalformedRecord) else str(exc) or type(exc).__name__
            parked.append(park_entry(record, consumer, parked_at, kind, detail, exc, f"{index + 1}/{len(records)}"))
    return decoded, parked


def decode_batch(
    records: Sequence[StreamRecord], consumer: str, parked_at: str
) -> tuple[list[StreamEvent], list[ParkedRecord]]:
    """The events of a batch, and its records that are not events (parked entries)."""
    decoded, parked = decode_records(records, consumer, parked_at)
    return [d.event for d in decoded], parked


def park_entry(
    record: StreamRecord, consumer: str, parked_at: str, kind: str, detail: str, exc: BaseException, position: str
) -> ParkedRecord:
    return ParkedRecord(
        consumer=consumer, shard_id=record.shard_id, sequence_number=record.sequence_number,
        partition_key=record.partition_key, reason_kind=kind, reason=detail[:2000], data=record.data,
        parked_at=parked_at, error_type=type(exc).__name__, position=f"record {position} of its batch",
    )


class Projector:
    name = "projector"

    def __init__(
        self,
        store: ProjectionStore,
        parking: ParkingLot,
        config: ProjectionConfig,
        *,
        consumer: str = "projector",
        metrics: Metrics | None = None,
    ) -> None:
        self._store = store
        self._parking = parking
        self._config = config
        self._consumer = consumer
        self._metrics: Metrics = metrics or NullMetrics()
        self.stats = ProjectorStats()

    def handle_batch(self, records: Sequence[StreamRecord]) -> BatchReport:
        parked_at = iso(records[-1].arrival) if records and records[-1].arrival else ""
        decoded, parked = decode_records(records, self._consumer, parked_at)
        report = BatchReport(records=len(records))
        failed = self._project_isolated(decoded, report, parked_at, len(records))
        report.applied = len(decoded) - len(failed)
        self._park([*parked, *failed], report)
        self.stats.add(report)
        self._metrics.flush()
        return report

    def _project_isolated(
        self, decoded: list[Decoded], report: BatchReport, parked_at: str, batch_size: int
    ) -> list[ParkedRecord]:
        """Project the events; if one of them cannot be folded or stored, halve the batch until it is alone,
        so the good records around it are applied and only it is parked. Infrastructure errors propagate."""
        try:
            self._project(decoded, report)
            return []
        except RecordFault as fault:
            exc = fault.cause
            if len(decoded) > 1:
                middle = len(decoded) // 2
                return [*self._project_isolated(decoded[:middle], report, parked_at, batch_size),
                        *self._project_isolated(decoded[middle:], report, parked_at, batch_size)]
            (bad,) = decoded
            kind = "unwritable" if isinstance(exc, UnwritableItem) else "fold_error"
            return [park_entry(bad.record, self._consumer, parked_at, kind, str(exc) or type(exc).__name__, exc,
                               f"{bad.index + 1}/{batch_size}")]

    def _park(self, parked: list[ParkedRecord], report: BatchReport) -> None:
        if not parked:
            return
        try:
            self._parking.park(parked)
        except Exception as exc:
            if isinstance(exc, TransientError):
                raise  # retried with the whole batch; projecting it again changes nothing
            self._metrics.count(PARKING_FAILED, len(parked))
            self._metrics.flush(force=True)
            first = parked[0]
            raise ParkingFailed(f"{len(parked)} bad records could not be parked ({type(exc).__name__}: {exc}); the "
                                f"shard stops here, at {first.shard_id} {first.sequence_number}") from exc
        report.parked = len(parked)
        self._metrics.count("ParkedRecords", len(parked))
        for record in parked:
            report.parked_by_kind[record.reason_kind] += 1
            log.warning(
                "parked record shard=%s seq=%s kind=%s error=%s: %s",
                record.shard_id, record.sequence_number, record.reason_kind, record.error_type, record.reason[:300],
            )

    def _project(self, decoded: list[Decoded], report: BatchReport) -> None:
        with record_fault():
            keyed = [(d.event, touched_keys(d.event, self._config)) for d in decoded]
        pending: set[EntityKey] | None = None  # None: every touched key
        for _ in range(MAX_CONFLICT_ROUNDS):
            relevant = [(e, keys) for e, keys in keyed if pending is None or pending.intersection(keys)]
            if not relevant:
                return
            conflicts = self._fold_and_save(relevant, pending, report)
            if not conflicts:
                return
            report.conflicts += len(conflicts)
            pending = set(conflicts)
        raise TransientError(f"items still contended after {MAX_CONFLICT_ROUNDS} rounds: {sorted(pending or ())}")

    def _fold_and_save(
        self,
        relevant: list[tuple[StreamEvent, list[EntityKey]]],
        only: set[EntityKey] | None,
        report: BatchReport,
    ) -> list[EntityKey]:
        keys = {key for _, event_keys in relevant for key in event_keys if only is None or key in only}
        with record_fault(store=True):
            stored = self._store.load(keys)
        with record_fault():
            state = ProjectionState(items={key: value.item for key, value in stored.items()})
            for event, _ in relevant:
                fold(state, event, self._config)
            writes = [
                ItemWrite(key, state.items[key], stored[key].rev if key in stored else 0)
                for key in sorted(state.dirty)
                if only is None or key in only
            ]
        with record_fault(store=True):
            conflicts = self._store.save(writes)
        report.items_written += len(writes) - len(conflicts)
        return conflicts
