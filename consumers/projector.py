"""The projector: a batch of stream records -> fold -> one conditional write per touched item.

Writes are coalesced (ten updates of one task in a batch make one write) and conditional on the item's
revision; a conflicting concurrent writer (two workers during a lease handover) makes us reload and
refold only the conflicting items. Malformed records are parked, counted and logged once.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from consumers.adapters.metrics import Metrics, NullMetrics
from consumers.core.clocktext import iso
from consumers.core.errors import TransientError
from consumers.core.ports import ItemWrite, ParkedRecord, ParkingLot, ProjectionStore, StreamRecord
from consumers.core.projection import EntityKey, ProjectionConfig, ProjectionState, fold, touched_keys
from events_schema.decode import MalformedRecord, StreamEvent, decode

log = logging.getLogger("gpu_recovery.projector")
MAX_CONFLICT_ROUNDS = 5


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


def decode_batch(
    records: Sequence[StreamRecord], consumer: str, parked_at: str
) -> tuple[list[StreamEvent], list[ParkedRecord]]:
    events: list[StreamEvent] = []
    parked: list[ParkedRecord] = []
    for record in records:
        try:
            events.append(decode(record.data))
        except MalformedRecord as exc:
            parked.append(
                ParkedRecord(
                    consumer=consumer, shard_id=record.shard_id, sequence_number=record.sequence_number,
                    partition_key=record.partition_key, reason_kind=exc.kind, reason=exc.detail,
                    data=record.data, parked_at=parked_at,
                )
            )
    return events, parked


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
        events, parked = decode_batch(records, self._consumer, parked_at)
        report = BatchReport(records=len(records), applied=len(events), parked=len(parked))
        self._project(events, report)
        if parked:
            self._parking.park(parked)
            self._metrics.count("ParkedRecords", len(parked))
            for record in parked:
                report.parked_by_kind[record.reason_kind] += 1
                log.warning(
                    "parked record shard=%s seq=%s kind=%s: %s",
                    record.shard_id, record.sequence_number, record.reason_kind, record.reason,
                )
        self.stats.add(report)
        self._metrics.flush()
        return report

    def _project(self, events: list[StreamEvent], report: BatchReport) -> None:
        keyed = [(event, touched_keys(event, self._config)) for event in events]
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
        stored = self._store.load(keys)
        state = ProjectionState(items={key: value.item for key, value in stored.items()})
        for event, _ in relevant:
            fold(state, event, self._config)
        writes = [
            ItemWrite(key, state.items[key], stored[key].rev if key in stored else 0)
            for key in sorted(state.dirty)
            if only is None or key in only
        ]
        conflicts = self._store.save(writes)
        report.items_written += len(writes) - len(conflicts)
        return conflicts
