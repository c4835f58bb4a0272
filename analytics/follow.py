"""Follow the stream live, every shard, new shards too: by polling (GetRecords) or enhanced fan-out.

Both followers yield ``StreamRecord`` in arrival order per shard and stop when ``should_stop()`` says so.
A child shard (after a split or merge) is read only once its parents are drained, so a partition's
records keep their order across a reshard. Kinesis clients are injected; nothing here reads a clock
except through the ``clock`` and ``sleep`` arguments.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from botocore.exceptions import ClientError

from consumers.adapters.kinesis import list_shards
from consumers.core.ports import StreamRecord

log = logging.getLogger(__name__)

StartKind = Literal["LATEST", "TRIM_HORIZON", "AT_TIMESTAMP"]
RETRY_CODES = frozenset({"ProvisionedThroughputExceededException", "LimitExceededException", "ThrottlingException",
                         "KMSThrottlingException", "InternalFailure", "ServiceUnavailable"})


@dataclass(frozen=True)
class StartAt:
    """Where to begin on the shards open when following starts; shards born later start at their beginning."""

    kind: StartKind = "LATEST"
    timestamp: datetime | None = None

    def __post_init__(self) -> None:
        if (self.kind == "AT_TIMESTAMP") != (self.timestamp is not None):
            raise ValueError("a timestamp goes with AT_TIMESTAMP and only with it")

    def iterator_args(self) -> dict[str, Any]:
        """Keyword arguments for GetShardIterator."""
        if self.timestamp is not None:
            return {"ShardIteratorType": self.kind, "Timestamp": self.timestamp}
        return {"ShardIteratorType": self.kind}

    def starting_position(self) -> dict[str, Any]:
        """The StartingPosition of SubscribeToShard."""
        if self.timestamp is not None:
            return {"Type": self.kind, "Timestamp": self.timestamp}
        return {"Type": self.kind}


FROM_START = StartAt("TRIM_HORIZON")


@dataclass
class ShardCursor:
    shard_id: str
    parents: tuple[str, ...]
    start: StartAt
    closed: bool = False
    done: bool = False
    iterator: str | None = None
    last_sequence: str | None = None


@dataclass
class ShardBook:
    """Which shards exist, which are drained, which may be read now (parents first)."""

    initial_start: StartAt
    cursors: dict[str, ShardCursor] = field(default_factory=dict)
    _seen_listing: bool = False

    def update(self, shards: Sequence[Mapping[str, Any]]) -> None:
        for shard in shards:
            shard_id = str(shard["ShardId"])
            closed = "EndingSequenceNumber" in shard.get("SequenceNumberRange", {})
            cursor = self.cursors.get(shard_id)
            if cursor is None:
                parents = tuple(str(shard[k]) for k in ("ParentShardId", "AdjacentParentShardId") if shard.get(k))
                start = self.initial_start if not self._seen_listing else FROM_START
                self.cursors[shard_id] = ShardCursor(shard_id, parents, start, closed=closed)
            else:
                cursor.closed = cursor.closed or closed
        self._seen_listing = True

    def ready(self) -> list[ShardCursor]:
        """Shards that may be read now: not drained, and every parent we know of drained."""
        return [
            cursor for cursor in sorted(self.cursors.values(), key=lambda c: c.shard_id)
            if not cursor.done and all(self._drained(parent) for parent in cursor.parents)
        ]

    def finish(self, shard_id: str) -> None:
        self.cursors[shard_id].done = True

    def _drained(self, shard_id: str) -> bool:
        parent = self.cursors.get(shard_id)
        return parent is None or parent.done  # a parent trimmed from the stream has nothing left to read


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def to_stream_record(shard_id: str, raw: Mapping[str, Any]) -> StreamRecord:
    return StreamRecord(
        shard_id=shard_id,
        sequence_number=str(raw["SequenceNumber"]),
        partition_key=str(raw["PartitionKey"]),
        data=bytes(raw["Data"]),
        arrival=raw.get("ApproximateArrivalTimestamp"),
    )


@dataclass
class PollingFollower:
    """GetRecords on every ready shard in turn; sleeps ``idle_sleep`` when a round brought nothing."""

    client: Any
    stream_name: str
    start: StartAt = field(default_factory=StartAt)
    idle_sleep: float = 1.0
    shard_refresh_s: float = 10.0
    limit: int = 1000
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep

    def records(self, should_stop: Callable[[], bool]) -> Iterator[StreamRecord]:
        book = ShardBook(self.start)
        book.update(list_shards(self.client, self.stream_name))
        refreshed = self.clock()
        while not should_stop():
            if self.clock() - refreshed >= self.shard_refresh_s:
                book.update(list_shards(self.client, self.stream_name))
                refreshed = self.clock()
            got = 0
            for cursor in book.ready():
                batch = self._read(cursor, book)
                got += len(batch)
                yield from batch
                if should_stop():
                    return
            if not got:
                self.sleep(self.idle_sleep)

    def _read(self, cursor: ShardCursor, book: ShardBook) -> list[StreamRecord]:
        try:
            if cursor.iterator is None:
                cursor.iterator = self._iterator(cursor)
            response = self.client.get_records(ShardIterator=cursor.iterator, Limit=self.limit)
        except ClientError as exc:
            if _code(exc) == "ExpiredIteratorException":
                cursor.iterator = None  # re-open after the last record we saw
                return []
            if _code(exc) in RETRY_CODES:
                log.info("shard %s: %s; retrying", cursor.shard_id, _code(exc))
                return []
            raise
        records = [to_stream_record(cursor.shard_id, r) for r in response["Records"]]
        if records:
            cursor.last_sequence = records[-1].sequence_number
        cursor.iterator = response.get("NextShardIterator")
        if cursor.iterator is None or (cursor.closed and not records):
            book.finish(cursor.shard_id)
        return records

    def _iterator(self, cursor: ShardCursor) -> str:
        if cursor.last_sequence is not None:
            args: dict[str, Any] = {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER",
                                    "StartingSequenceNumber": cursor.last_sequence}
        else:
            args = cursor.start.iterator_args()
        response = self.client.get_shard_iterator(StreamName=self.stream_name, ShardId=cursor.shard_id, **args)
        return str(response["ShardIterator"])


def stop_after(*, max_events: int | None, timeout_s: float | None,
               clock: Callable[[], float] = time.monotonic) -> tuple[Callable[[], bool], Callable[[], None]]:
    """A ``should_stop`` for the followers and a ``count()`` to call per emitted event."""
    deadline = clock() + timeout_s if timeout_s is not None else None
    emitted = [0]

    def should_stop() -> bool:
        if max_events is not None and emitted[0] >= max_events:
            return True
        return deadline is not None and clock() >= deadline

    def count() -> None:
        emitted[0] += 1

    return should_stop, count
