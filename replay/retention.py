"""Expired items leave the replay's fold, as DynamoDB's TTL deletes them from the live tables.

The live ``ecs_task`` and ``ecs_job`` tables carry ``expires_at`` (a stopped task, a finished job:
``ttl_days`` after its last change) and DynamoDB deletes what has expired. A replay that kept every
item would hold every task ever launched: on a fleet that launches new tasks every day its memory
would grow with the history's length. So the replay lets an item go once it has expired, measured on
the history's own clock (the events' times), and keeps one bound instead of a tombstone per item so
that a late record cannot bring it back. The rules (docs/replay.md, "Expired items"):

* **Watermark.** Per partition of the source (a shard, a file, an S3 object: a record's position up
  to its last ``:``), the newest event time folded from it. The replay's watermark is the oldest of
  those among the partitions that delivered a record within the last ``idle_records`` records: shards
  are read in parallel and may be far apart in time, so the slowest one decides; a finished shard or
  file stops holding the watermark back once it has been quiet that long.
* **Expiry.** An item leaves once ``expires_at + lateness < watermark``. ``lateness`` is how late a
  record may legitimately be: 24 hours, the ingest rule's maximum event age (``infra/ingest.py``);
  EventBridge drops older events into the dead-letter queue.
* **No resurrection.** A record that touches a task or job item the fold does not hold, and whose
  own time is more than ``ttl_days`` behind the watermark, is dropped and counted (``late_dropped``).
  Every record of an expired item is that old: an item expires ``ttl_days`` after its last change
  (a task: its ``stoppedAt``, which its STOPPED event follows within seconds) and leaves ``lateness``
  later still, so whatever could recreate it (a redelivered RUNNING, a duplicated STOPPED) is older
  than the bound. A legitimate record is at most ``lateness`` behind its own partition, and a new
  entity (a job id launched again) has a new time: both are folded as live would fold them.
  The bound is one number: nothing grows with the history, unlike a tombstone per expired key.
* **Skew.** Shards read in parallel drift apart; the watermark waits for the slowest one it has
  heard from lately. A shard that starts late or goes quiet for ``idle_records`` records may fall
  behind the others by up to ``ttl_days - lateness`` without any of its records being dropped or any
  item leaving early (a task or job leaves ``ttl_days + lateness`` after its last change).
* **The end.** When the source is exhausted every partition is done: the last sweep uses the newest
  event time seen, so the result does not depend on how the shards interleaved.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from consumers.adapters.table_specs import TABLE_SPECS
from consumers.core.projection import TABLES, EntityKey, ProjectionConfig, ProjectionState, fold, touched_keys
from events_schema.decode import StreamEvent

MAX_LATENESS = timedelta(hours=24)  # infra/ingest.py MAX_EVENT_AGE: EventBridge gives up after this
IDLE_RECORDS = 20_000  # a partition quiet for this many records no longer holds the watermark back
SWEEP_EVERY = 1_000  # records between two looks at what has expired
# The tables whose items DynamoDB's TTL deletes (ecs_task, ecs_job): the only ones that expire here.
EXPIRING = frozenset(table for table in TABLES if TABLE_SPECS[table].ttl_attribute == "expires_at")


@dataclass
class _Partition:
    newest: datetime  # the newest event time folded from it
    last_seen: int  # the record count when it last delivered


@dataclass
class Retention:
    """Folds events like ``projection.fold`` and lets expired items go (the module's docstring)."""

    config: ProjectionConfig
    lateness: timedelta = MAX_LATENESS
    idle_records: int = IDLE_RECORDS
    sweep_every: int = SWEEP_EVERY
    expired: int = 0  # items that left the fold
    late_dropped: int = 0  # records that would have brought an expired item back
    _partitions: dict[str, _Partition] = field(default_factory=dict)
    _due: list[tuple[int, EntityKey]] = field(default_factory=list)  # (expires_at, key), a heap
    _scheduled: dict[EntityKey, int] = field(default_factory=dict)  # the expiry each item has now
    _records: int = 0
    _watermark: datetime | None = None
    _gate: datetime | None = None  # records older than this may not recreate an item: watermark - ttl
    _newest: datetime | None = None  # of partitions forgotten as quiet

    @property
    def watermark(self) -> float:
        """The history's clock, epoch seconds (-inf before the first sweep)."""
        return self._watermark.timestamp() if self._watermark is not None else -math.inf

    @property
    def pending(self) -> int:
        """Expiries still to come: one per item that will expire (stopped tasks, finished jobs)."""
        return len(self._scheduled)

    @property
    def remembered(self) -> int:
        """Everything retention itself holds: heap entries, scheduled expiries, partitions."""
        return len(self._due) + len(self._scheduled) + len(self._partitions)

    @property
    def partitions(self) -> int:
        """Partitions heard from lately (the watermark's inputs)."""
        return len(self._partitions)

    def fold(self, state: ProjectionState, event: StreamEvent, position: str) -> None:
        """Fold one event unless it is a late record of an expired item; let expired items go."""
        moment = event.time
        if moment.tzinfo is None:  # the fold reads a time without a zone as UTC
            moment = moment.replace(tzinfo=UTC)
        self._note(position.rpartition(":")[0], moment)
        if self._gate is not None and moment < self._gate and self._recreates(state, event):
            self.late_dropped += 1
        else:
            fold(state, event, self.config)
            if state.dirty:
                self._schedule(state)
        if self._records % self.sweep_every == 0:
            self._sweep(state, self._low_watermark())

    def finish(self, state: ProjectionState) -> None:
        """The source is exhausted: every partition is done, the newest event time is the clock."""
        self._schedule(state)
        newest = [p.newest for p in self._partitions.values()] + ([self._newest] if self._newest else [])
        if newest:
            self._sweep(state, max(newest))

    def _note(self, partition: str, moment: datetime) -> None:
        self._records += 1
        seen = self._partitions.get(partition)
        if seen is None:
            self._partitions[partition] = _Partition(moment, self._records)
            return
        seen.last_seen = self._records
        if moment > seen.newest:
            seen.newest = moment

    def _recreates(self, state: ProjectionState, event: StreamEvent) -> bool:
        return any(table in EXPIRING and (table, key) not in state.items
                   for table, key in touched_keys(event, self.config))

    def _schedule(self, state: ProjectionState) -> None:
        """The fold's write set says which items changed: remember when each of them expires.

        Replay writes everything at the end, so the write set is free for this (and emptied here)."""
        items, scheduled = state.items, self._scheduled
        for key in state.dirty:
            item = items.get(key)
            expires = item.get("expires_at") if item is not None else None
            if not isinstance(expires, int):
                scheduled.pop(key, None)  # running again (a job restarted): it no longer expires
            elif scheduled.get(key) != expires:
                scheduled[key] = expires
                heapq.heappush(self._due, (expires, key))
        state.dirty.clear()
        if len(self._due) > 2 * len(scheduled) + 1_024:
            self._compact()

    def _compact(self) -> None:
        """Entries whose item's expiry moved since stay in the heap until their time; when they outnumber
        the live ones (an item stopped and restarted over and over), the heap is rebuilt from the live."""
        self._due = [(expires, key) for key, expires in self._scheduled.items()]
        heapq.heapify(self._due)

    def _low_watermark(self) -> datetime | None:
        """The oldest newest-time among partitions heard from lately; quiet ones are forgotten."""
        quiet = [name for name, p in self._partitions.items() if self._records - p.last_seen > self.idle_records]
        for name in quiet:
            newest = self._partitions.pop(name).newest
            self._newest = newest if self._newest is None else max(self._newest, newest)
        return min((p.newest for p in self._partitions.values()), default=None)

    def _sweep(self, state: ProjectionState, watermark: datetime | None) -> None:
        if watermark is None or (self._watermark is not None and watermark <= self._watermark):
            return  # the watermark never moves back
        self._watermark = watermark
        self._gate = watermark - timedelta(days=self.config.ttl_days)
        cutoff = (watermark - self.lateness).timestamp()
        due, scheduled = self._due, self._scheduled
        while due and due[0][0] < cutoff:
            expires, key = heapq.heappop(due)
            # A later change may have moved the expiry (a job restarted): its own entry is in the heap.
            if scheduled.get(key) == expires:
                del scheduled[key]
                state.items.pop(key, None)
                self.expired += 1
