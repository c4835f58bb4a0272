"""Reading Kinesis shards: the project's one shard-reading loop (GetRecords), and where to start.

The local reader, replay, ``tail`` and the tests all read through ``ShardPoller``; enhanced fan-out
(SubscribeToShard) lives beside it in ``kinesis_fanout.py`` and yields the same ``ShardBatch``. A batch
carries Kinesis's ``MillisBehindLatest``, so a consumer knows whether it is behind the tip.

Throttling and 5xx answers are retried by the client's botocore retry configuration (the clients of
``gpu_recovery.aws`` use standard mode); an expired iterator is reopened after the last record read.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol

from consumers.core.ports import StreamRecord

if TYPE_CHECKING:
    from mypy_boto3_kinesis import KinesisClient
    from mypy_boto3_kinesis.type_defs import RecordTypeDef, ShardTypeDef, StartingPositionTypeDef

log = logging.getLogger(__name__)

StartKind = Literal["LATEST", "TRIM_HORIZON", "AT_TIMESTAMP", "AFTER_SEQUENCE_NUMBER"]
ShouldStop = Callable[[], bool]


@dataclass(frozen=True)
class StartAt:
    """Where to begin reading a shard: GetShardIterator's and SubscribeToShard's starting position."""

    kind: StartKind = "LATEST"
    timestamp: datetime | None = None
    sequence_number: str | None = None

    def __post_init__(self) -> None:
        if (self.kind == "AT_TIMESTAMP") != (self.timestamp is not None):
            raise ValueError("a timestamp goes with AT_TIMESTAMP and only with it")
        if (self.kind == "AFTER_SEQUENCE_NUMBER") != (self.sequence_number is not None):
            raise ValueError("a sequence number goes with AFTER_SEQUENCE_NUMBER and only with it")

    @classmethod
    def after(cls, sequence_number: str) -> StartAt:
        return cls("AFTER_SEQUENCE_NUMBER", sequence_number=sequence_number)

    def iterator_args(self) -> dict[str, Any]:
        """Keyword arguments for GetShardIterator."""
        args: dict[str, Any] = {"ShardIteratorType": self.kind}
        if self.timestamp is not None:
            args["Timestamp"] = self.timestamp
        if self.sequence_number is not None:
            args["StartingSequenceNumber"] = self.sequence_number
        return args

    def starting_position(self) -> StartingPositionTypeDef:
        """The StartingPosition of SubscribeToShard."""
        position: StartingPositionTypeDef = {"Type": self.kind}
        if self.timestamp is not None:
            position["Timestamp"] = self.timestamp
        if self.sequence_number is not None:
            position["SequenceNumber"] = self.sequence_number
        return position


FROM_START = StartAt("TRIM_HORIZON")


@dataclass(frozen=True, slots=True)
class ShardBatch:
    """What one GetRecords call (or one SubscribeToShard event) gave for one shard."""

    shard_id: str
    records: list[StreamRecord]
    millis_behind_latest: int | None  # None: the answer did not say
    ended: bool = False  # the shard is closed and read to its end: its children may be read

    @property
    def at_tip(self) -> bool:
        """Nothing more to read now: the shard ended, or an empty answer that is not behind."""
        return self.ended or (not self.records and not self.millis_behind_latest)


class Follower(Protocol):
    """Follows every shard of a stream (new ones too) until ``should_stop()``: polling or fan-out."""

    def batches(self, should_stop: ShouldStop) -> Generator[ShardBatch]: ...

    def records(self, should_stop: ShouldStop) -> Iterator[StreamRecord]:
        """The batches' records one by one, stopping right after the one that made ``should_stop()`` true."""
        ...


def stream_record(shard_id: str, raw: RecordTypeDef | Mapping[str, Any]) -> StreamRecord:
    return StreamRecord(
        shard_id=shard_id,
        sequence_number=str(raw["SequenceNumber"]),
        partition_key=str(raw.get("PartitionKey", "")),
        data=bytes(raw["Data"]),
        arrival=raw.get("ApproximateArrivalTimestamp"),
    )


def list_shards(client: KinesisClient, stream_name: str) -> list[ShardTypeDef]:
    # By hand, not with botocore's paginator: it sends StreamName with NextToken, which Kinesis rejects
    # past 1,000 shards (boto/botocore#2009).
    response = client.list_shards(StreamName=stream_name)
    shards = list(response["Shards"])
    while token := response.get("NextToken"):
        response = client.list_shards(NextToken=token)
        shards.extend(response["Shards"])
    return shards


class ShardPoller:
    """GetRecords on one shard, one call per ``read()``, from ``start``; resumes after the last record
    read when the iterator expires (the reader was slow) and after the shard ends says so forever."""

    def __init__(self, client: KinesisClient, stream_name: str, shard_id: str, start: StartAt = FROM_START,
                 *, limit: int = 1000) -> None:
        self._client = client
        self._stream = stream_name
        self.shard_id = shard_id
        self._start = start
        self._limit = limit
        self._iterator: str | None = None
        self.last_sequence: str | None = None
        self.ended = False

    def read(self) -> ShardBatch:
        if self.ended:
            return ShardBatch(self.shard_id, [], 0, ended=True)
        try:
            response = self._client.get_records(ShardIterator=self._iterator or self._open(), Limit=self._limit)
        except self._client.exceptions.ExpiredIteratorException:
            log.info("shard %s: iterator expired; reopening after %s", self.shard_id, self.last_sequence)
            response = self._client.get_records(ShardIterator=self._open(), Limit=self._limit)
        records = [stream_record(self.shard_id, r) for r in response["Records"]]
        if records:
            self.last_sequence = records[-1].sequence_number
        self._iterator = response.get("NextShardIterator")
        self.ended = self._iterator is None
        return ShardBatch(self.shard_id, records, response.get("MillisBehindLatest"), ended=self.ended)

    def _open(self) -> str:
        start = StartAt.after(self.last_sequence) if self.last_sequence is not None else self._start
        response = self._client.get_shard_iterator(
            StreamName=self._stream, ShardId=self.shard_id, **start.iterator_args())
        return str(response["ShardIterator"])


def drain(poller: ShardPoller) -> Iterator[ShardBatch]:
    """The non-empty batches of one shard up to its tip as it is now (or its end), then stop."""
    while True:
        batch = poller.read()
        if batch.records:
            yield batch
        if batch.at_tip:
            return


def read_shard(client: KinesisClient, stream_name: str, shard_id: str, start: StartAt = FROM_START,
               *, limit: int = 10_000) -> Iterator[ShardBatch]:
    """One shard from ``start`` to its current tip."""
    return drain(ShardPoller(client, stream_name, shard_id, start, limit=limit))


def records_of(batches: Generator[ShardBatch], should_stop: ShouldStop) -> Iterator[StreamRecord]:
    """The records of a follower's batches, one by one, until ``should_stop()`` (checked before each)."""
    with closing(batches):  # stops the follower's threads and subscriptions at once
        for batch in batches:
            for record in batch.records:
                if should_stop():
                    return
                yield record


# --- following every shard, new ones too -------------------------------------------------------------


@dataclass
class ShardCursor:
    shard_id: str
    parents: tuple[str, ...]
    start: StartAt
    closed: bool = False
    done: bool = False


@dataclass
class ShardBook:
    """Which shards exist, which are drained, which may be read now (parents first, so a partition's
    records keep their order across a split or merge)."""

    initial_start: StartAt
    cursors: dict[str, ShardCursor] = field(default_factory=dict)
    _seen_listing: bool = False

    def update(self, shards: Iterable[ShardTypeDef] | Sequence[Mapping[str, Any]]) -> None:
        """Take in a ListShards answer: shards open when following starts begin at ``initial_start``,
        shards born later at their beginning."""
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


@dataclass
class PollingFollower:
    """GetRecords on every ready shard in turn; sleeps ``idle_sleep`` when a round brought nothing.
    Nothing here reads a clock except through ``clock`` and ``sleep``."""

    client: KinesisClient
    stream_name: str
    start: StartAt = field(default_factory=StartAt)
    idle_sleep: float = 1.0
    shard_refresh_s: float = 10.0
    limit: int = 1000
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep

    def batches(self, should_stop: ShouldStop) -> Generator[ShardBatch]:
        book, pollers = ShardBook(self.start), dict[str, ShardPoller]()
        book.update(list_shards(self.client, self.stream_name))
        refreshed = self.clock()
        while not should_stop():
            if self.clock() - refreshed >= self.shard_refresh_s:
                book.update(list_shards(self.client, self.stream_name))
                refreshed = self.clock()
            got = 0
            for cursor in book.ready():
                batch = self._read(cursor, book, pollers)
                got += len(batch.records)
                if batch.records:
                    yield batch
                if should_stop():
                    return
            if not got:
                self.sleep(self.idle_sleep)

    def records(self, should_stop: ShouldStop) -> Iterator[StreamRecord]:
        return records_of(self.batches(should_stop), should_stop)

    def _read(self, cursor: ShardCursor, book: ShardBook, pollers: dict[str, ShardPoller]) -> ShardBatch:
        poller = pollers.get(cursor.shard_id)
        if poller is None:
            poller = pollers[cursor.shard_id] = ShardPoller(
                self.client, self.stream_name, cursor.shard_id, cursor.start, limit=self.limit)
        batch = poller.read()
        # kinesis-mock keeps handing out iterators on a closed shard: read to empty, it has ended too.
        if batch.ended or (cursor.closed and not batch.records):
            book.finish(cursor.shard_id)
        return batch
