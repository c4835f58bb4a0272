"""The projector: a batch of stream records -> fold -> one conditional write per touched item.

Writes are coalesced (ten updates of one task in a batch make one write) and conditional on the item's
revision; a conflicting concurrent writer (two workers during a lease handover) makes us reload the
conflicting items and fold again. The items a batch needs are loaded in one read, plus one more for the
jobs that tasks' stored tags name (the fold says which). Another cluster's ECS events are parked
(``foreign_cluster``).

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
from consumers.core.ports import ItemWrite, ParkedRecord, ParkingLot, ProjectionStore, StoredItem, StreamRecord
from consumers.core.projection import (
    EntityKey,
    Item,
    ProjectionConfig,
    ProjectionState,
    fold,
    foreign_cluster,
    touched_keys,
)
from events_schema.decode import MalformedRecord, StreamEvent, decode

log = logging.getLogger("gpu_recovery.projector")
MAX_CONFLICT_ROUNDS = 5
MAX_DISCOVERY_ROUNDS = 4  # the task's item names its job; a job it leaves is one more; nothing reads further
FOREIGN_CLUSTER = "foreign_cluster"  # the parked reason kind for another cluster's ECS event
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


@dataclass
class Loaded:
    """What one batch read of the store: items as stored (or as we wrote them), and every key asked for."""

    items: dict[EntityKey, StoredItem] = field(default_factory=dict)
    asked: set[EntityKey] = field(default_factory=set)

    def item(self, key: EntityKey) -> Item | None:
        stored = self.items.get(key)
        return stored.item if stored else None

    def rev(self, key: EntityKey) -> int:
        stored = self.items.get(key)
        return stored.rev if stored else 0


class ForeignCluster(Exception):
    """An ECS event of a cluster that is not ours."""


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
        decoded, foreign = self._ours_only(decoded, parked_at, len(records))
        report = BatchReport(records=len(records))
        failed = self._project_isolated(decoded, report, parked_at, len(records))
        report.applied = len(decoded) - len(failed)
        self._park([*parked, *foreign, *failed], report)
        self.stats.add(report)
        self._metrics.flush()
        return report

    def _ours_only(self, decoded: list[Decoded], parked_at: str, batch_size: int) -> tuple[list[Decoded],
                                                                                           list[ParkedRecord]]:
        """Another cluster's ECS events are parked (the rules match our cluster exactly: this is defence in
        depth, and a parked record shows a rule that lets too much through)."""
        ours: list[Decoded] = []
        parked: list[ParkedRecord] = []
        for d in decoded:
            cluster = foreign_cluster(d.event, self._config)
            if cluster is None:
                ours.append(d)
                continue
            detail = f"an event of cluster {cluster}; this projector folds {self._config.cluster_arn}"
            parked.append(park_entry(d.record, self._consumer, parked_at, FOREIGN_CLUSTER, detail,
                                     ForeignCluster(detail), f"{d.index + 1}/{batch_size}"))
        return ours, parked

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
        """Fold the batch over the items it touches and write each changed item conditionally. A conflict (a
        rival writer) reloads the conflicting items and folds the batch again; every item whose result changes
        with them is written too (a job's entry is derived from its task's item)."""
        events = [d.event for d in decoded]
        with record_fault():
            wanted = {key for event in events for key in touched_keys(event, self._config)}
        loaded = Loaded()
        for _ in range(MAX_CONFLICT_ROUNDS):
            state = self._fold_loading(events, wanted, loaded)
            writes = [ItemWrite(key, state.items[key], loaded.rev(key)) for key in sorted(state.dirty)
                      if loaded.item(key) != state.items[key]]
            with record_fault(store=True):
                conflicts = set(self._store.save(writes))
            for write in writes:
                if write.key not in conflicts:
                    loaded.items[write.key] = StoredItem(write.item, write.expected_rev + 1)
            report.items_written += len(writes) - len(conflicts)
            if not conflicts:
                return
            report.conflicts += len(conflicts)
            self._load(conflicts, loaded)
        raise TransientError(f"items still contended after {MAX_CONFLICT_ROUNDS} rounds")

    def _fold_loading(self, events: list[StreamEvent], wanted: set[EntityKey], loaded: Loaded) -> ProjectionState:
        """Fold the events over the stored items; when the fold reads an item not loaded yet (the job that a
        task's stored tags name), load it too and fold again."""
        for _ in range(MAX_DISCOVERY_ROUNDS):
            self._load(wanted - loaded.asked, loaded)
            with record_fault():
                state = ProjectionState(items={key: stored.item for key, stored in loaded.items.items()},
                                        known=set(loaded.asked))
                for event in events:
                    fold(state, event, self._config)
            if not state.missing:
                return state
            wanted = wanted | state.missing
        raise RecordFault(RuntimeError(f"the fold kept asking for more items: {sorted(state.missing)[:3]}"))

    def _load(self, keys: set[EntityKey], loaded: Loaded) -> None:
        if not keys:
            return
        with record_fault(store=True):
            found = self._store.load(keys)
        loaded.asked |= keys
        for key in keys:
            if key in found:
                loaded.items[key] = found[key]
            else:
                loaded.items.pop(key, None)
