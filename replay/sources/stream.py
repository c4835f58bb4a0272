"""Replay from the stream: every shard in parallel threads (or in a child process), up to the tip it had
when the replay started. Shards are read by ``consumers.adapters.kinesis_reader``; nothing holds more
than a few batches per shard.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from consumers.adapters.kinesis_reader import FROM_START, ShardPoller, StartAt, drain, list_shards
from consumers.core.ports import StreamRecord
from replay.sources.base import Progress, RawRecord, SourceError

if TYPE_CHECKING:
    from mypy_boto3_kinesis import KinesisClient

ARRIVAL_RESOLUTION = timedelta(milliseconds=1)
KinesisFactory = Callable[[], "KinesisClient"]


@dataclass
class _ShardProgress:
    first: datetime | None = None
    last: datetime | None = None
    done: bool = False
    records: int = 0


@dataclass
class _Finished:
    shard_id: str


@dataclass
class _Failed:
    error: BaseException


class StreamSource:
    """Every shard of the stream, read in parallel threads, from TRIM_HORIZON (or ``since``) up to
    what was in the stream when the replay started (or ``until``).

    Kinesis has no call that returns an open shard's last sequence number, so "the tip at start" is
    the arrival time ``cutoff``: a shard stops at its first record that arrived later, or when
    GetRecords returns nothing and says it is not behind. Closed shards (after resharding) end on
    their own. Order across shards is free: the fold is commutative across entities.
    """

    reads_window = True

    def __init__(
        self,
        client: KinesisClient | None,
        stream_name: str,
        *,
        now: datetime,
        since: datetime | None = None,
        until: datetime | None = None,
        batch_limit: int = 10_000,
        max_threads: int = 16,
        queue_batches: int = 32,
    ) -> None:
        self.client = client
        self.stream_name = stream_name
        self.now = _aware(now)
        self.since = _aware(since) if since else None
        self.until = _aware(until) if until else None
        self.batch_limit = batch_limit
        self.max_threads = max_threads
        self.queue_batches = queue_batches
        self._shards: list[str] | None = None
        self._progress: dict[str, _ShardProgress] = {}

    @property
    def description(self) -> str:
        return f"stream {self.stream_name}"

    @property
    def cutoff(self) -> datetime:
        return min(self.until, self.now) if self.until else self.now

    def shards(self) -> list[str]:
        if self._shards is None:
            self._shards = sorted(s["ShardId"] for s in list_shards(self._client(), self.stream_name))
        return self._shards

    def records(self) -> Iterator[RawRecord]:
        shards = self.shards()
        self._progress = {shard: _ShardProgress() for shard in shards}
        if not shards:
            return
        batches: queue.Queue[list[RawRecord] | _Finished | _Failed] = queue.Queue(self.queue_batches)
        stop = threading.Event()
        with ThreadPoolExecutor(max_workers=min(self.max_threads, len(shards)),
                                thread_name_prefix="replay-shard") as pool:
            for shard in shards:
                pool.submit(self._pump, shard, batches, stop)
            try:
                yield from _drain(batches, len(shards))
            finally:
                stop.set()
                _empty(batches)  # unblock readers waiting on a full queue

    def progress(self) -> Progress:
        """Per shard, the fraction of its time span read (arrival times), summed over shards."""
        total = float(len(self._progress) or 1)
        return Progress(sum(self._fraction(p) for p in self._progress.values()), total, "shards")

    def _fraction(self, shard: _ShardProgress) -> float:
        if shard.done:
            return 1.0
        if shard.first is None or shard.last is None:
            return 0.0
        span = (self.cutoff - shard.first).total_seconds()
        return min(1.0, (shard.last - shard.first).total_seconds() / span) if span > 0 else 0.0

    def _pump(self, shard_id: str, out: queue.Queue[Any], stop: threading.Event) -> None:
        try:
            for batch in self._read(shard_id):
                if not _put(out, batch, stop):
                    return
            self._progress[shard_id].done = True
            _put(out, _Finished(shard_id), stop)
        except BaseException as exc:  # handed to the consumer thread, which raises it
            _put(out, _Failed(exc), stop)

    def _read(self, shard_id: str) -> Iterator[list[RawRecord]]:
        progress = self._progress[shard_id]
        # Arrival times come in whole (rounded) milliseconds: a record that arrived in the very
        # millisecond the replay started may read as one millisecond later, and still belongs.
        cutoff = self.cutoff + ARRIVAL_RESOLUTION
        start = StartAt("AT_TIMESTAMP", self.since) if self.since is not None else FROM_START
        poller = ShardPoller(self._client(), self.stream_name, shard_id, start, limit=self.batch_limit)
        for batch in drain(poller):
            raw, past_cutoff = _batch(batch.records, cutoff, progress)
            if raw:
                yield raw
            if past_cutoff:
                return

    def _client(self) -> KinesisClient:
        if self.client is None:
            raise SourceError(f"stream {self.stream_name}: no Kinesis client")
        return self.client


def _batch(records: list[StreamRecord], cutoff: datetime, progress: _ShardProgress) -> tuple[list[RawRecord], bool]:
    batch: list[RawRecord] = []
    for record in records:
        if record.arrival is None:
            raise SourceError(f"{record.shard_id}:{record.sequence_number}: GetRecords gave no arrival time")
        arrival = _aware(record.arrival)
        if arrival > cutoff:
            return batch, True
        if progress.first is None:
            progress.first = arrival
        progress.last = arrival
        batch.append(RawRecord(f"{record.shard_id}:{record.sequence_number}", record.data, arrival))
    progress.records += len(batch)
    return batch, False


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _put(out: queue.Queue[Any], item: Any, stop: threading.Event) -> bool:
    while not stop.is_set():
        try:
            out.put(item, timeout=0.2)
            return True
        except queue.Full:
            continue
    return False


def _drain(batches: queue.Queue[Any], shards: int) -> Iterator[RawRecord]:
    finished = 0
    while finished < shards:
        item = batches.get()
        if isinstance(item, _Finished):
            finished += 1
        elif isinstance(item, _Failed):
            raise item.error
        else:
            yield from item


def _empty(batches: queue.Queue[Any]) -> None:
    while True:
        try:
            batches.get_nowait()
        except queue.Empty:
            return


class StreamReadError(SourceError):
    """The stream reader process failed; the message is its error."""


CHILD_BATCH = 500
CHILD_QUEUE = 16  # messages in flight: bounds memory to a few MiB of records


class ProcessStreamSource:
    """A StreamSource run in a child process, which hands raw records over a bounded queue.

    Reading costs CPU too (botocore parses every GetRecords response); in its own process it runs
    beside the decode and fold instead of taking turns with them under one GIL. ``client_factory``
    must be picklable (a module-level function or a partial of one): the child builds its own client.
    """

    reads_window = True

    def __init__(
        self,
        client_factory: KinesisFactory,
        stream_name: str,
        *,
        now: datetime,
        since: datetime | None = None,
        until: datetime | None = None,
        batch_limit: int = 10_000,
    ) -> None:
        self._factory = client_factory
        self.stream_name = stream_name
        self._options = {"now": _aware(now), "since": _aware(since) if since else None,
                         "until": _aware(until) if until else None, "batch_limit": batch_limit}
        self._progress = Progress(0.0, None, "shards")

    @property
    def description(self) -> str:
        return f"stream {self.stream_name}"

    def progress(self) -> Progress:
        return self._progress

    def records(self) -> Iterator[RawRecord]:
        import multiprocessing

        context = multiprocessing.get_context("spawn")  # fork would copy this process's threads' locks
        messages: Any = context.Queue(CHILD_QUEUE)
        child = context.Process(target=_read_in_child, name="replay-stream-reader", daemon=True,
                                args=(self._factory, self.stream_name, self._options, messages))
        child.start()
        try:
            yield from self._receive(messages, child)
        finally:
            if child.is_alive():
                child.terminate()
            child.join(timeout=10)
            messages.close()

    def _receive(self, messages: Any, child: Any) -> Iterator[RawRecord]:
        while True:
            try:
                kind, payload, self._progress = messages.get(timeout=1.0)
            except queue.Empty:
                if not child.is_alive():
                    raise StreamReadError(f"the stream reader process exited ({child.exitcode})") from None
                continue
            if kind == "error":
                raise StreamReadError(payload)
            if kind == "done":
                return
            for position, data, arrival in payload:
                yield RawRecord(position, data, arrival)


def _read_in_child(factory: KinesisFactory, stream_name: str, options: dict[str, Any], out: Any) -> None:
    source = StreamSource(None, stream_name, **options)
    try:
        source.client = factory()
        batch: list[tuple[str, bytes, datetime | None]] = []
        for record in source.records():
            batch.append((record.position, record.data, record.arrival))
            if len(batch) >= CHILD_BATCH:
                out.put(("batch", batch, source.progress()))
                batch = []
        out.put(("batch", batch, source.progress()))
        out.put(("done", None, source.progress()))
    except BaseException as exc:  # handed to the parent, which raises it as a StreamReadError
        out.put(("error", f"{type(exc).__name__}: {exc}", source.progress()))
