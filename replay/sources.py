"""Where history comes from: the stream (every shard in parallel), the Firehose archive in S3, or files.

Every source yields ``RawRecord(position, data)``: the bytes of one record exactly as stored, and where
it was found (``shard:sequence``, ``s3://bucket/key:line``, ``path:line``). Decoding is the caller's:
a line may be one of our envelopes or a raw EventBridge event, mixed freely.

Sources stream: nothing holds more than one line (files, S3) or a few batches per shard (stream).
"""

from __future__ import annotations

import gzip
import io
import json
import os
import queue
import re
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from consumers.adapters.kinesis import list_shards

GZIP_MAGIC = b"\x1f\x8b"
ARRIVAL_RESOLUTION = timedelta(milliseconds=1)
READ_BUFFER = 1 << 20
# Firehose without a delimiter processor writes records back to back: "}{" or "} {" on one line.
_BACK_TO_BACK = re.compile(rb"\}\s*\{")
_DECODER = json.JSONDecoder()

ClientFactory = Callable[[str], Any]


@dataclass(frozen=True, slots=True)
class RawRecord:
    position: str
    data: bytes


@dataclass(frozen=True, slots=True)
class Progress:
    """How far a source is: ``done`` of ``total`` in ``unit`` (total None: unknown)."""

    done: float
    total: float | None
    unit: str


class Source(Protocol):
    @property
    def description(self) -> str: ...

    @property
    def reads_window(self) -> bool:
        """Whether --since/--until were applied while reading (the stream, by arrival time);
        archives and files are filtered on the events' own time by the caller instead."""
        ...

    def records(self) -> Iterator[RawRecord]: ...

    def progress(self) -> Progress: ...


class SourceError(ValueError):
    """A --source value we cannot read from, with what to do about it."""


# --- lines and objects ----------------------------------------------------------------------------


def split_objects(line: bytes) -> list[bytes]:
    """One stored line -> the records in it: usually one, several when Firehose concatenated them."""
    line = line.strip()
    if not line:
        return []
    if not _BACK_TO_BACK.search(line):
        return [line]
    text = line.decode("utf-8", "replace")
    parts: list[bytes] = []
    index = 0
    while index < len(text):
        try:
            _, end = _DECODER.raw_decode(text, index)
        except json.JSONDecodeError:
            parts.append(text[index:].encode())  # the rest is not JSON: the decoder will say so
            break
        parts.append(text[index:end].encode())
        index = end
        while index < len(text) and text[index].isspace():
            index += 1
    return parts


def records_of_stream(stream: io.BufferedReader, where: str) -> Iterator[RawRecord]:
    """The records of one stored object, plain or gzip (by its magic bytes, not its name)."""
    lines: Iterable[bytes] = stream
    if stream.peek(2)[:2] == GZIP_MAGIC:
        lines = gzip.GzipFile(fileobj=stream, mode="rb")
    number = 0
    try:
        for number, line in enumerate(lines, start=1):
            parts = split_objects(line)
            if len(parts) == 1:
                yield RawRecord(f"{where}:{number}", parts[0])
            else:
                for k, part in enumerate(parts, start=1):
                    yield RawRecord(f"{where}:{number}#{k}", part)
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:  # a cut-off upload, or not gzip after all
        raise SourceError(f"{where} is not a whole gzip file: {exc} (after line {number}); re-fetch it or move it "
                          "out of the source") from None


class CountingReader(io.RawIOBase):
    """Counts the (compressed) bytes read from an inner file-like object, for progress and ETA."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._inner.read(len(buffer))
        size = len(data)
        buffer[:size] = data
        self.count += size
        return size

    def close(self) -> None:
        close = getattr(self._inner, "close", None)
        if close is not None:
            close()
        super().close()


# --- files ----------------------------------------------------------------------------------------


class FileSource:
    """A JSON Lines file, or every file under a folder (sorted by path); gzip or plain."""

    reads_window = False

    def __init__(self, path: str | Path) -> None:
        self._root = Path(path)
        if not self._root.exists():
            raise SourceError(f"file:{path} does not exist")
        self.description = f"file:{self._root}"
        self._files = _files_under(self._root)
        self._sizes = [f.stat().st_size for f in self._files]
        self._done_bytes = 0
        self._reader: CountingReader | None = None

    def records(self) -> Iterator[RawRecord]:
        self._done_bytes = 0
        for path, size in zip(self._files, self._sizes, strict=True):
            with path.open("rb", buffering=0) as raw:
                self._reader = CountingReader(raw)
                yield from records_of_stream(io.BufferedReader(self._reader, READ_BUFFER), str(path))
            self._reader = None
            self._done_bytes += size

    def progress(self) -> Progress:
        current = self._reader.count if self._reader else 0
        return Progress(self._done_bytes + current, float(sum(self._sizes)), "bytes")


def _files_under(root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    return sorted(
        p for p in root.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )


# --- the Firehose archive in S3 -------------------------------------------------------------------


class S3Source:
    """Every object under ``s3://bucket/prefix``, in key order (Firehose's date partitions sort by time)."""

    reads_window = False

    def __init__(self, client: Any, bucket: str, prefix: str) -> None:
        self._client = client
        self._bucket = bucket
        self._prefix = prefix
        self.description = f"s3://{bucket}/{prefix}"
        self._objects: list[tuple[str, int]] | None = None
        self._done_bytes = 0
        self._reader: CountingReader | None = None

    def objects(self) -> list[tuple[str, int]]:
        if self._objects is None:
            found: list[tuple[str, int]] = []
            paginator = self._client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self._bucket, Prefix=self._prefix):
                found.extend(
                    (str(o["Key"]), int(o["Size"])) for o in page.get("Contents", []) if not o["Key"].endswith("/")
                )
            self._objects = sorted(found)
        return self._objects

    def records(self) -> Iterator[RawRecord]:
        self._done_bytes = 0
        for key, size in self.objects():
            body = self._client.get_object(Bucket=self._bucket, Key=key)["Body"]
            self._reader = CountingReader(body)
            try:
                yield from records_of_stream(
                    io.BufferedReader(self._reader, READ_BUFFER), f"s3://{self._bucket}/{key}"
                )
            finally:
                self._reader.close()
                self._reader = None
            self._done_bytes += size

    def progress(self) -> Progress:
        total = float(sum(size for _, size in self._objects)) if self._objects is not None else None
        current = self._reader.count if self._reader else 0
        return Progress(self._done_bytes + current, total, "bytes")


# --- the stream -----------------------------------------------------------------------------------


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
        client: Any,
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
            self._shards = sorted(s["ShardId"] for s in list_shards(self.client, self.stream_name))
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
        last_sequence: str | None = None
        iterator: str | None = self._iterator(shard_id, None)
        while iterator:
            try:
                response = self.client.get_records(ShardIterator=iterator, Limit=self.batch_limit)
            except self.client.exceptions.ExpiredIteratorException:
                iterator = self._iterator(shard_id, last_sequence)  # the consumer was slow; resume
                continue
            batch, past_cutoff = _batch(shard_id, response["Records"], cutoff, progress)
            if batch:
                last_sequence = batch[-1].position.rsplit(":", 1)[1]
                yield batch
            if past_cutoff or (not response["Records"] and not response.get("MillisBehindLatest")):
                return
            iterator = response.get("NextShardIterator")

    def _iterator(self, shard_id: str, after: str | None) -> str:
        kwargs: dict[str, Any] = {"StreamName": self.stream_name, "ShardId": shard_id}
        if after is not None:
            kwargs.update(ShardIteratorType="AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=after)
        elif self.since is not None:
            kwargs.update(ShardIteratorType="AT_TIMESTAMP", Timestamp=self.since)
        else:
            kwargs.update(ShardIteratorType="TRIM_HORIZON")
        return str(self.client.get_shard_iterator(**kwargs)["ShardIterator"])


def _batch(
    shard_id: str, records: list[dict[str, Any]], cutoff: datetime, progress: _ShardProgress
) -> tuple[list[RawRecord], bool]:
    batch: list[RawRecord] = []
    for record in records:
        arrival = _aware(record["ApproximateArrivalTimestamp"])
        if arrival > cutoff:
            return batch, True
        if progress.first is None:
            progress.first = arrival
        progress.last = arrival
        batch.append(RawRecord(f"{shard_id}:{record['SequenceNumber']}", bytes(record["Data"])))
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
        client_factory: Callable[[], Any],
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
            for position, data in payload:
                yield RawRecord(position, data)


def _read_in_child(factory: Callable[[], Any], stream_name: str, options: dict[str, Any], out: Any) -> None:
    source = StreamSource(None, stream_name, **options)
    try:
        source.client = factory()
        batch: list[tuple[str, bytes]] = []
        for record in source.records():
            batch.append((record.position, record.data))
            if len(batch) >= CHILD_BATCH:
                out.put(("batch", batch, source.progress()))
                batch = []
        out.put(("batch", batch, source.progress()))
        out.put(("done", None, source.progress()))
    except BaseException as exc:  # handed to the parent, which raises it as a StreamReadError
        out.put(("error", f"{type(exc).__name__}: {exc}", source.progress()))


# --- --source ---------------------------------------------------------------------------------------


def open_source(
    spec: str,
    *,
    clients: ClientFactory | None,
    stream_name: str,
    now: datetime,
    since: datetime | None = None,
    until: datetime | None = None,
    kinesis_factory: Callable[[], Any] | None = None,
) -> Source:
    """``stream``, ``s3://bucket/prefix`` or ``file:PATH`` -> a Source (clients only when AWS is needed).

    With ``kinesis_factory`` (picklable) the stream is read in a child process, else in threads here.
    """
    if spec == "stream" and kinesis_factory is not None:
        return ProcessStreamSource(kinesis_factory, stream_name, now=now, since=since, until=until)
    if spec == "stream":
        return StreamSource(_need(clients, spec)("kinesis"), stream_name, now=now, since=since, until=until)
    if spec.startswith("s3://"):
        bucket, _, prefix = spec.removeprefix("s3://").partition("/")
        if not bucket:
            raise SourceError(f"--source {spec}: expected s3://BUCKET/PREFIX")
        return S3Source(_need(clients, spec)("s3"), bucket, prefix)
    if spec.startswith("file:"):
        return FileSource(os.path.expanduser(spec.removeprefix("file:")))
    raise SourceError(f"--source {spec!r}: expected 'stream', 's3://BUCKET/PREFIX' or 'file:PATH'")


def _need(clients: ClientFactory | None, spec: str) -> ClientFactory:
    if clients is None:
        raise SourceError(f"--source {spec} needs AWS clients")
    return clients
