"""Enhanced fan-out (SubscribeToShard) against kinesis-local (kinesis-mock), which implements it; moto does not.

Finding (kinesis-local 0.6.2, botocore 1.44): boto3 speaks to kinesis-local over HTTP/1.1 with JSON, and the
control plane works as is. SubscribeToShard streams events, but kinesis-mock omits the ``initial-response``
event that botocore requires first, so a plain client fails with "First event was not of type
initial-response". ``tolerate_missing_initial_response`` fixes that on one client (tested below, both ways).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.eventstream import EventStreamBuffer
from botocore.parsers import ResponseParserError

from analytics.tail import stop_after
from consumers.adapters.kinesis_fanout import (
    INITIAL_RESPONSE,
    FanOutFollower,
    _InitialResponseFirst,
    event_stream_message,
    tolerate_missing_initial_response,
)
from consumers.adapters.kinesis_reader import PollingFollower, ShardBatch, StartAt
from gpu_recovery.cli import main
from local import kinesis_local
from tests.analytics.scenario import history
from tests.analytics.test_report import record_bytes
from tests.tools import missing_tool

# --- the initial-response hook (no server) ---------------------------------------------------------------


class _Body:
    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks
        self.closed = False

    def stream(self) -> Iterator[bytes]:
        yield from self.chunks

    def close(self) -> None:
        self.closed = True


def _messages(data: bytes) -> list[Any]:
    buffer = EventStreamBuffer()
    buffer.add_data(data)
    return list(buffer)


RECORDS_EVENT = event_stream_message(
    {":message-type": "event", ":event-type": "SubscribeToShardEvent", ":content-type": "application/json"},
    b'{"Records":[],"ContinuationSequenceNumber":"1","MillisBehindLatest":0}',
)


def test_an_encoded_message_decodes_with_botocore() -> None:
    [message] = _messages(INITIAL_RESPONSE)
    assert message.headers[":event-type"] == "initial-response"
    assert message.payload == b"{}"


def test_a_stream_without_initial_response_gets_one_in_front() -> None:
    # GIVEN kinesis-mock's body: a records event split over two chunks, then another
    body = _Body([RECORDS_EVENT[:10], RECORDS_EVENT[10:], RECORDS_EVENT])
    # WHEN read through the guard
    data = b"".join(_InitialResponseFirst(body).stream())
    # THEN an initial-response comes first and every original byte follows
    assert data == INITIAL_RESPONSE + RECORDS_EVENT + RECORDS_EVENT
    assert [m.headers[":event-type"] for m in _messages(data)] == [
        "initial-response", "SubscribeToShardEvent", "SubscribeToShardEvent"]


def test_a_stream_with_initial_response_passes_unchanged() -> None:
    # GIVEN a real Kinesis body
    chunks = [INITIAL_RESPONSE, RECORDS_EVENT]
    guard = _InitialResponseFirst(_Body(chunks))
    # THEN the bytes are the same, and close reaches the body
    assert b"".join(guard.stream()) == b"".join(chunks)
    guard.close()
    assert guard._raw.closed


# --- against kinesis-local --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def kinesis_endpoint() -> Iterator[str]:
    try:
        kinesis_local.package_dir()
    except kinesis_local.KinesisLocalError as exc:
        missing_tool(f"kinesis-local (npm) is not installed: {exc}")
    with kinesis_local.KinesisLocal(region="us-east-1") as server:
        yield server.endpoint


def _client(endpoint: str) -> Any:
    return boto3.client("kinesis", endpoint_url=endpoint, region_name="us-east-1")


def _wait(check: Any, what: str, attempts: int = 100) -> None:
    for _ in range(attempts):
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"{what} did not happen")


def _stream_with_consumer(client: Any, shards: int) -> tuple[str, str]:
    name = f"fanout-{time.monotonic_ns()}"
    client.create_stream(StreamName=name, ShardCount=shards)
    _wait(lambda: client.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamStatus"]
          == "ACTIVE", "stream active")
    arn = client.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamARN"]
    consumer = client.register_stream_consumer(StreamARN=arn, ConsumerName="tail")["Consumer"]["ConsumerARN"]
    _wait(lambda: client.describe_stream_consumer(ConsumerARN=consumer)["ConsumerDescription"]["ConsumerStatus"]
          == "ACTIVE", "consumer active")
    return name, consumer


def _put(client: Any, stream: str, values: range) -> None:
    for i in values:
        client.put_record(StreamName=stream, Data=json.dumps({"i": i}).encode(), PartitionKey=f"key-{i}")


@pytest.mark.slow
def test_plain_boto3_cannot_read_kinesis_local_subscriptions(kinesis_endpoint: str) -> None:
    # GIVEN a plain boto3 client (no hook) and a consumer
    client = _client(kinesis_endpoint)
    stream, consumer = _stream_with_consumer(client, 1)
    shard = client.list_shards(StreamName=stream)["Shards"][0]["ShardId"]
    # WHEN it subscribes THEN botocore rejects kinesis-mock's stream for its missing initial-response
    with pytest.raises(ResponseParserError, match="initial-response"):
        client.subscribe_to_shard(ConsumerARN=consumer, ShardId=shard, StartingPosition={"Type": "TRIM_HORIZON"})


@pytest.mark.slow
def test_fan_out_reads_every_shard_then_follows_new_records(kinesis_endpoint: str) -> None:
    # GIVEN a 2-shard stream with 6 records and a registered consumer
    client = tolerate_missing_initial_response(_client(kinesis_endpoint))
    stream, consumer = _stream_with_consumer(client, 2)
    _put(client, stream, range(6))
    # WHEN following from the start with SubscribeToShard, adding 4 records once the first 6 are in
    follower = FanOutFollower(client, stream, consumer, StartAt("TRIM_HORIZON"), retry_s=0.5)
    should_stop, count = stop_after(max_events=10, timeout_s=60)
    got, shards = [], set()
    for record in follower.records(should_stop):
        got.append(json.loads(record.data)["i"])
        shards.add(record.shard_id)
        count()
        if len(got) == 6:
            _put(client, stream, range(6, 10))
    # THEN all 10 arrive, from both shards, in order within each shard
    assert sorted(got) == list(range(10))
    assert sorted(got[:6]) == list(range(6))
    assert len(shards) == 2


@pytest.mark.slow
def test_fan_out_batches_carry_how_far_behind_the_tip_they_are(kinesis_endpoint: str) -> None:
    # GIVEN a 1-shard stream with 3 records
    client = tolerate_missing_initial_response(_client(kinesis_endpoint))
    stream, consumer = _stream_with_consumer(client, 1)
    _put(client, stream, range(3))
    follower = FanOutFollower(client, stream, consumer, StartAt("TRIM_HORIZON"), retry_s=0.5)
    # WHEN followed batch by batch until the 3 records are in
    batches: list[ShardBatch] = []
    for batch in follower.batches(lambda: sum(len(b.records) for b in batches) >= 3):
        batches.append(batch)
    # THEN every batch carries the SubscribeToShard event's MillisBehindLatest, and they hold the records in order
    assert batches and all(isinstance(b.millis_behind_latest, int) and b.millis_behind_latest >= 0 for b in batches)
    assert [json.loads(r.data)["i"] for b in batches for r in b.records] == [0, 1, 2]


@pytest.mark.slow
def test_fan_out_at_timestamp_skips_older_records(kinesis_endpoint: str) -> None:
    client = tolerate_missing_initial_response(_client(kinesis_endpoint))
    stream, consumer = _stream_with_consumer(client, 1)
    _put(client, stream, range(3))
    time.sleep(0.2)  # arrival times are the server's clock: a gap on both sides of the moment
    moment = datetime.now(UTC)
    time.sleep(0.2)
    _put(client, stream, range(3, 5))
    follower = FanOutFollower(client, stream, consumer, StartAt("AT_TIMESTAMP", moment), retry_s=0.5)
    should_stop, count = stop_after(max_events=2, timeout_s=60)
    got = []
    for record in follower.records(should_stop):
        got.append(json.loads(record.data)["i"])
        count()
    assert got == [3, 4]


def _split(client: Any, stream: str) -> str:
    parent = client.list_shards(StreamName=stream)["Shards"][0]["ShardId"]
    client.split_shard(StreamName=stream, ShardToSplit=parent, NewStartingHashKey=str(2**127))
    _wait(lambda: client.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]["StreamStatus"]
          == "ACTIVE", "split done")
    return str(parent)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["fan-out", "polling"])
def test_new_shards_after_a_split_are_followed_parent_first(kinesis_endpoint: str, mode: str) -> None:
    # GIVEN a one-shard stream with 2 records, followed from the start
    client = tolerate_missing_initial_response(_client(kinesis_endpoint))
    stream, consumer = _stream_with_consumer(client, 1)
    _put(client, stream, range(2))
    follower: FanOutFollower | PollingFollower
    if mode == "fan-out":
        follower = FanOutFollower(client, stream, consumer, StartAt("TRIM_HORIZON"), retry_s=0.5,
                                  shard_refresh_s=0.5)
    else:
        follower = PollingFollower(client, stream, StartAt("TRIM_HORIZON"), idle_sleep=0.1, shard_refresh_s=0.5)
    should_stop, count = stop_after(max_events=10, timeout_s=60)
    got, shards, parent = [], [], ""
    for record in follower.records(should_stop):
        got.append(json.loads(record.data)["i"])
        shards.append(record.shard_id)
        count()
        if len(got) == 2:
            # WHEN the shard is split and 8 records go to the children
            parent = _split(client, stream)
            _put(client, stream, range(2, 10))
    # THEN all arrive: the parent's first, then the children's, from both children
    assert sorted(got) == list(range(10))
    assert shards[:2] == [parent, parent]
    assert parent not in shards[2:] and len(set(shards[2:])) == 2


@pytest.mark.slow
def test_tail_command_uses_fan_out_with_a_consumer_arn(kinesis_endpoint: str, capsys: pytest.CaptureFixture[str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN the scenario history on a kinesis-local stream, reached through the Kinesis-only endpoint setting
    client = _client(kinesis_endpoint)
    stream, consumer = _stream_with_consumer(client, 2)
    for item in history():
        data = record_bytes(item)
        client.put_record(StreamName=stream, Data=data, PartitionKey=str(len(data)))
    monkeypatch.setenv("GPU_RECOVERY_KINESIS_ENDPOINT_URL", kinesis_endpoint)
    # WHEN tailing JobStateChanged as JSON through the consumer
    code = main(["tail", "--stream-name", stream, "--consumer-arn", consumer, "--from-start", "--json",
                 "--type", "JobStateChanged", "--max-events", "4", "--timeout", "60"])
    # THEN the four RUNNING events of the history, each line valid JSON
    out = capsys.readouterr().out.splitlines()
    assert code == 0
    assert sorted(json.loads(line)["job"] for line in out) == ["job:alpha", "job:beta", "job:delta", "job:gamma"]
