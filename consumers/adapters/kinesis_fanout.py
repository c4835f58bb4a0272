"""Enhanced fan-out: SubscribeToShard on every shard of a registered consumer, new shards too.

The push twin of ``kinesis_reader.PollingFollower``: the same ``StartAt``, ``ShardBook`` and ``ShardBatch``
(with each event's ``MillisBehindLatest``). Each shard has its own subscription thread (a subscription
lasts at most five minutes; it is renewed from the last ``ContinuationSequenceNumber``). Batches meet in
one queue; the caller's thread yields them. When a shard ends, its last event names the child shards,
which are then subscribed from their start.

kinesis-mock (npm ``kinesis-local``, the local Kinesis our tests use) streams SubscribeToShard events
but omits the ``initial-response`` event that botocore requires first in an ``awsJson`` event stream
("First event was not of type initial-response"). ``tolerate_missing_initial_response`` registers a
botocore ``before-parse`` hook on one client that puts an empty initial-response in front when, and
only when, the first message is something else; a real Kinesis response passes through byte for byte.
"""

from __future__ import annotations

import binascii
import contextlib
import logging
import queue
import struct
import threading
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from botocore.eventstream import EventStreamBuffer
from botocore.exceptions import ClientError

from consumers.adapters.kinesis_reader import (
    ShardBatch,
    ShardBook,
    ShouldStop,
    StartAt,
    list_shards,
    records_of,
    stream_record,
)
from consumers.core.ports import StreamRecord

if TYPE_CHECKING:
    from mypy_boto3_kinesis import KinesisClient
    from mypy_boto3_kinesis.type_defs import StartingPositionTypeDef, SubscribeToShardEventTypeDef

log = logging.getLogger(__name__)

# SubscribeToShard may be called once per 5 s per consumer and shard; busy or throttled -> wait and retry.
RESUBSCRIBE_CODES = frozenset({"ResourceInUseException", "LimitExceededException", "InternalFailure",
                               "KMSThrottlingException"})


# --- the kinesis-mock compatibility hook ------------------------------------------------------------


def event_stream_message(headers: dict[str, str], payload: bytes) -> bytes:
    """Encode one ``application/vnd.amazon.eventstream`` message with string headers."""
    encoded = b""
    for name, value in headers.items():
        name_bytes, value_bytes = name.encode(), value.encode()
        encoded += bytes([len(name_bytes)]) + name_bytes + b"\x07" + struct.pack(">H", len(value_bytes)) + value_bytes
    total = 12 + len(encoded) + len(payload) + 4
    prelude = struct.pack(">II", total, len(encoded))
    head = prelude + struct.pack(">I", binascii.crc32(prelude))
    body = head + encoded + payload
    return body + struct.pack(">I", binascii.crc32(body))


INITIAL_RESPONSE = event_stream_message(
    {":message-type": "event", ":event-type": "initial-response", ":content-type": "application/json"}, b"{}"
)


class _InitialResponseFirst:
    """Wraps the raw HTTP body; ``stream()`` yields the same bytes, with an initial-response first if missing."""

    def __init__(self, raw: Any) -> None:
        self._raw = raw

    def stream(self) -> Iterator[bytes]:
        chunks = iter(self._raw.stream())
        head = b""
        for chunk in chunks:
            head += chunk
            first = _first_message(head)
            if first is None:
                continue
            if first.headers.get(":event-type") != "initial-response":
                yield INITIAL_RESPONSE
            yield head
            break
        else:
            if head:
                yield head
            return
        yield from chunks

    def close(self) -> None:
        self._raw.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)


def _first_message(data: bytes) -> Any:
    buffer = EventStreamBuffer()
    buffer.add_data(data)
    return next(iter(buffer), None)


def _guard_initial_response(response_dict: dict[str, Any], **_: Any) -> None:
    if response_dict.get("status_code") == 200 and hasattr(response_dict.get("body"), "stream"):
        response_dict["body"] = _InitialResponseFirst(response_dict["body"])


def tolerate_missing_initial_response(client: KinesisClient) -> KinesisClient:
    """Make ``client.subscribe_to_shard`` work against kinesis-mock too; returns the client."""
    client.meta.events.register(
        "before-parse.kinesis.SubscribeToShard", _guard_initial_response, unique_id="gpu-recovery-initial-response"
    )
    return client


# --- the follower ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _ShardEnded:
    shard_id: str


@dataclass(frozen=True)
class _Failed:
    shard_id: str
    error: BaseException


@dataclass
class FanOutFollower:
    client: KinesisClient
    stream_name: str
    consumer_arn: str
    start: StartAt = field(default_factory=StartAt)
    shard_refresh_s: float = 10.0
    poll_s: float = 0.2
    retry_s: float = 5.0
    clock: Callable[[], float] = time.monotonic

    def records(self, should_stop: ShouldStop) -> Iterator[StreamRecord]:
        return records_of(self.batches(should_stop), should_stop)

    def batches(self, should_stop: ShouldStop) -> Generator[ShardBatch]:
        inbox: queue.Queue[ShardBatch | _ShardEnded | _Failed] = queue.Queue(maxsize=1_000)
        stop = threading.Event()
        subscriptions: dict[str, _Subscription] = {}
        book = ShardBook(self.start)
        try:
            refreshed = self._refresh(book, subscriptions, inbox, stop)
            while not should_stop():
                if self.clock() - refreshed >= self.shard_refresh_s:
                    refreshed = self._refresh(book, subscriptions, inbox, stop)
                try:
                    item = inbox.get(timeout=self.poll_s)
                except queue.Empty:
                    continue
                if isinstance(item, ShardBatch):
                    yield item
                elif isinstance(item, _ShardEnded):
                    book.finish(item.shard_id)
                    refreshed = self._refresh(book, subscriptions, inbox, stop)
                else:
                    raise item.error
        finally:
            stop.set()
            for subscription in subscriptions.values():
                subscription.close()
            for subscription in subscriptions.values():
                subscription.thread.join(timeout=2.0)

    def _refresh(self, book: ShardBook, subscriptions: dict[str, _Subscription],
                 inbox: queue.Queue[Any], stop: threading.Event) -> float:
        book.update(list_shards(self.client, self.stream_name))
        for shard_id, subscription in subscriptions.items():
            if book.cursors[shard_id].closed:
                subscription.closed.set()
        for cursor in book.ready():
            if cursor.shard_id not in subscriptions:
                subscription = _Subscription(self, cursor.shard_id, cursor.start, inbox, stop)
                subscriptions[cursor.shard_id] = subscription
                subscription.thread.start()
        return self.clock()


class _Subscription:
    """One shard: subscribe, forward records, renew from the continuation, report the shard's end."""

    def __init__(self, owner: FanOutFollower, shard_id: str, start: StartAt,
                 inbox: queue.Queue[Any], stop: threading.Event) -> None:
        self._owner = owner
        self.shard_id = shard_id
        self._position: StartingPositionTypeDef = start.starting_position()
        self._inbox = inbox
        self._stop = stop
        self._stream: Any = None  # the open EventStream, closed from the caller's thread on stop
        self._lock = threading.Lock()
        self.closed = threading.Event()  # ListShards says the shard is closed (split or merged)
        self.thread = threading.Thread(target=self._run, name=f"subscribe-{shard_id}", daemon=True)

    def close(self) -> None:
        with self._lock:
            stream, self._stream = self._stream, None
        if stream is not None:
            with contextlib.suppress(Exception):
                stream.close()  # wakes the thread blocked on the HTTP body

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                if self._subscribe_once():
                    self._put(_ShardEnded(self.shard_id))
                    return
        except Exception as exc:  # handed to the caller's thread, which raises it
            if not self._stop.is_set():
                self._put(_Failed(self.shard_id, exc))

    def _subscribe_once(self) -> bool:
        """One subscription (up to five minutes). True when the shard has ended."""
        try:
            return self._read_subscription()
        except ClientError as exc:  # also EventStreamError: an error event inside the stream
            if self._stop.is_set():
                return False
            code = exc.response.get("Error", {}).get("Code")
            if code in RESUBSCRIBE_CODES:
                log.info("shard %s: %s; subscribing again in %.1f s", self.shard_id, code, self._owner.retry_s)
                self._stop.wait(self._owner.retry_s)
                return False
            raise
        except Exception:
            if self._stop.is_set():
                return False  # we closed the stream under the reader
            raise
        finally:
            self.close()

    def _read_subscription(self) -> bool:
        response = self._owner.client.subscribe_to_shard(
            ConsumerARN=self._owner.consumer_arn, ShardId=self.shard_id, StartingPosition=self._position
        )
        with self._lock:
            self._stream = response["EventStream"]
        for event in response["EventStream"]:
            if self._stop.is_set():
                return False
            if self._forward(event.get("SubscribeToShardEvent")):
                return True
        return False  # the subscription's five minutes are up: renew from the continuation

    def _forward(self, event: SubscribeToShardEventTypeDef | None) -> bool:
        if event is None:
            return False
        records = [stream_record(self.shard_id, raw) for raw in event.get("Records") or []]
        if records:
            self._put(ShardBatch(self.shard_id, records, event.get("MillisBehindLatest")))
        continuation = event.get("ContinuationSequenceNumber")
        if continuation:
            self._position = {"Type": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": continuation}
        # Kinesis ends a closed shard with an event that names its children and has no continuation.
        if event.get("ChildShards") or not continuation:
            return True
        # kinesis-mock never sends that event: a closed shard we have read to the end has ended too.
        return self.closed.is_set() and not records and not event.get("MillisBehindLatest")

    def _put(self, item: Any) -> None:
        while not self._stop.is_set():
            try:
                self._inbox.put(item, timeout=0.5)
                return
            except queue.Full:
                continue
