"""Fold a history into the projections with the live projector's own pure core, and (beside it, from the
same decoded events) into recovery's records with the recovery core's fold (``replay.recovery``).

Memory holds one item per entity and never the events: records stream in, are decoded, folded and
dropped. The fold's registers are last-writer-wins on a total order (ECS versions, our events' time
and id), so the result does not depend on duplicates or on how shards interleave.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from consumers.core.clocktext import iso
from consumers.core.errors import UnwritableItem, is_infrastructure
from consumers.core.projection import TABLES, EntityKey, Item, ProjectionConfig, ProjectionState
from events_schema.decode import MalformedRecord, StreamEvent, decode
from events_schema.envelope import OurEvent
from replay.recovery import RecoveryFold
from replay.retention import Retention
from replay.sources import RawRecord

MAX_REASONS = 50  # distinct malformed reasons kept; the rest are counted under "other"
TICK_EVERY = 2_000


@dataclass(frozen=True)
class TimeWindow:
    """Events whose own time is within [since, until]; either end open when None."""

    since: datetime | None = None
    until: datetime | None = None

    def contains(self, moment: datetime) -> bool:
        moment = aware(moment)
        return (self.since is None or moment >= self.since) and (self.until is None or moment <= self.until)


def aware(moment: datetime) -> datetime:
    """Event times without a zone are UTC (as the fold reads them); comparing needs them aware."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


@dataclass
class Malformed:
    count: int = 0
    first_position: str = ""


@dataclass
class ReplayStats:
    records: int = 0
    events: int = 0
    outside_window: int = 0
    by_type: Counter[str] = field(default_factory=Counter)
    # by kind: not_json, unknown_event, invalid; decode_error, fold_error, unwritable (what the projector parks)
    malformed: Counter[str] = field(default_factory=Counter)
    reasons: dict[str, Malformed] = field(default_factory=dict)
    first: datetime | None = None
    last: datetime | None = None
    seconds: float = 0.0

    @property
    def first_time(self) -> str | None:
        return iso(self.first) if self.first else None

    @property
    def last_time(self) -> str | None:
        return iso(self.last) if self.last else None

    @property
    def rate(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else 0.0

    def count_malformed(self, error: MalformedRecord, position: str) -> None:
        self.count_bad(error.kind, error.detail, position)

    def count_bad(self, kind: str, detail: str, position: str) -> None:
        self.malformed[kind] += 1
        reason = f"{kind}: {detail[:120]}"
        if reason not in self.reasons and len(self.reasons) >= MAX_REASONS:
            reason = f"{kind}: other"
        entry = self.reasons.setdefault(reason, Malformed(first_position=position))
        entry.count += 1

    def as_json(self) -> dict[str, object]:
        return {
            "records": self.records,
            "events": self.events,
            "outside_window": self.outside_window,
            "by_type": dict(sorted(self.by_type.items())),
            "malformed": dict(sorted(self.malformed.items())),
            "malformed_reasons": {
                reason: {"count": m.count, "first_position": m.first_position}
                for reason, m in sorted(self.reasons.items())
            },
            "first_event_time": self.first_time,
            "last_event_time": self.last_time,
            "seconds": round(self.seconds, 3),
            "records_per_second": round(self.rate, 1),
        }


def retention_json(retention: Retention | None) -> dict[str, int]:
    """What the TTL retention dropped: items that expired and left, and late records that would have
    brought an expired item back (``replay.retention``)."""
    if retention is None:
        return {"expired": 0, "late_dropped": 0}
    return {"expired": retention.expired, "late_dropped": retention.late_dropped}


@dataclass
class Rebuilt:
    state: ProjectionState
    stats: ReplayStats
    recovery: RecoveryFold | None = None
    retention: Retention | None = None  # what the TTL retention dropped (its counts go in the summary)

    def items_per_table(self) -> dict[str, int]:
        counts = Counter(table for table, _ in self.state.items)
        return {table: counts.get(table, 0) for table in TABLES}


def event_type(event: StreamEvent) -> str:
    return event.type if isinstance(event, OurEvent) else event.detail_type


def rebuild(
    records: Iterable[RawRecord],
    config: ProjectionConfig,
    *,
    window: TimeWindow | None = None,
    tick: Callable[[ReplayStats], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    check_key: Callable[[EntityKey], None] | None = None,
    retention: Retention | None = None,
    recovery: RecoveryFold | None = None,
) -> Rebuilt:
    """Decode and fold every record; a record that fails either is counted by kind and reason, never fatal,
    and leaves the state as it was (what the live projector parks, replay leaves out). ``check_key``: the
    target store's own key check (an event whose key it would refuse is left out too). Expired items
    leave as DynamoDB's TTL deletes them (``replay.retention``). ``recovery``: also fold every event in the
    window into recovery's records (the two consumers park independently)."""
    state = UndoableState()
    keep = retention or Retention(config)
    stats = ReplayStats()
    started = clock()
    for record in records:
        stats.records += 1
        event = _decode(record, stats)
        if event is not None and (window is None or window.contains(event.time)):
            if _fold_one(state, event, keep, check_key, stats, record.position):
                _count(stats, event)
            if recovery is not None:
                recovery.add(event, record)
        elif event is not None:
            stats.outside_window += 1
        if stats.records % TICK_EVERY == 0:
            state.dirty.clear()  # the projector's write set; replay writes everything at the end
            if tick is not None:
                stats.seconds = clock() - started
                tick(stats)
    keep.finish(state)
    stats.seconds = clock() - started
    return Rebuilt(state, stats, recovery, keep)


def _decode(record: RawRecord, stats: ReplayStats) -> StreamEvent | None:
    try:
        return decode(record.data)
    except MalformedRecord as exc:
        stats.count_malformed(exc, record.position)
    except Exception as exc:  # a RecursionError on deep nesting, ...: whatever one record can raise
        if is_infrastructure(exc):
            raise
        stats.count_bad("decode_error", f"{type(exc).__name__}: {exc}", record.position)
    return None


def _fold_one(
    state: UndoableState, event: StreamEvent, keep: Retention,
    check_key: Callable[[EntityKey], None] | None, stats: ReplayStats, position: str,
) -> bool:
    """Fold one event; if the fold raises, or makes an item under a key the target refuses, count the
    record as bad and undo what it did."""
    state.undo.clear()
    try:
        keep.fold(state, event, position)
        if check_key is not None:
            _check_new_keys(state, check_key)
        return True
    except Exception as exc:
        if is_infrastructure(exc):
            raise
        state.rollback()
        kind = "unwritable" if isinstance(exc, UnwritableItem) else "fold_error"
        stats.count_bad(kind, f"{type(exc).__name__}: {exc}", position)
        return False


def _check_new_keys(state: UndoableState, check_key: Callable[[EntityKey], None]) -> None:
    for key in state.undo:
        if key not in state.keys_checked:  # an entity's key is checked once, not at every event
            check_key(key)
            state.keys_checked.add(key)


@dataclass
class UndoableState(ProjectionState):
    """Remembers what the current event's fold replaced (the fold changes items only through ``put``)."""

    undo: dict[EntityKey, tuple[Item | None, bool]] = field(default_factory=dict)
    keys_checked: set[EntityKey] = field(default_factory=set)

    def put(self, key: EntityKey, item: Item) -> None:
        if key not in self.undo:
            self.undo[key] = (self.items.get(key), key in self.dirty)
        super().put(key, item)

    def rollback(self) -> None:
        for key, (item, dirty) in self.undo.items():
            if item is None:
                self.items.pop(key, None)
            else:
                self.items[key] = item
            if not dirty:
                self.dirty.discard(key)
        self.undo.clear()


def _count(stats: ReplayStats, event: StreamEvent) -> None:
    stats.events += 1
    stats.by_type[event_type(event)] += 1
    moment = aware(event.time)
    if stats.first is None or moment < stats.first:
        stats.first = moment
    if stats.last is None or moment > stats.last:
        stats.last = moment
