"""The one shard reader (GetRecords) on moto: where it starts, where it stops, what a batch says."""

from __future__ import annotations

import json
from typing import Any

import pytest

from consumers.adapters.kinesis_reader import FROM_START, ShardPoller, StartAt, drain, list_shards, read_shard


def _stream(kinesis: Any, n: int) -> str:
    kinesis.create_stream(StreamName="s", ShardCount=1)
    for i in range(n):
        kinesis.put_record(StreamName="s", Data=json.dumps({"i": i}).encode(), PartitionKey="k")
    return str(list_shards(kinesis, "s")[0]["ShardId"])


def _numbers(batches: Any) -> list[int]:
    return [json.loads(r.data)["i"] for batch in batches for r in batch.records]


def test_drain_reads_to_the_tip_in_batches_and_stops(kinesis: Any) -> None:
    # GIVEN 7 records in one shard
    shard = _stream(kinesis, 7)
    # WHEN drained 3 at a time
    batches = list(drain(ShardPoller(kinesis, "s", shard, FROM_START, limit=3)))
    # THEN every record once, in order, in batches of at most 3, the last one at the tip
    assert _numbers(batches) == list(range(7))
    assert [len(b.records) for b in batches] == [3, 3, 1]
    assert batches[-1].millis_behind_latest == 0


def test_a_reader_started_after_a_sequence_number_reads_only_what_follows(kinesis: Any) -> None:
    # GIVEN 5 records, and the sequence number of the third
    shard = _stream(kinesis, 5)
    third = [r for b in read_shard(kinesis, "s", shard) for r in b.records][2].sequence_number
    # WHEN read after it
    got = _numbers(read_shard(kinesis, "s", shard, StartAt.after(third)))
    # THEN only the last two
    assert got == [3, 4]


def test_a_poller_keeps_its_place_between_drains(kinesis: Any) -> None:
    # GIVEN a poller that drained 2 records
    shard = _stream(kinesis, 2)
    poller = ShardPoller(kinesis, "s", shard)
    assert _numbers(drain(poller)) == [0, 1]
    # WHEN 2 more arrive and it drains again
    for i in (2, 3):
        kinesis.put_record(StreamName="s", Data=json.dumps({"i": i}).encode(), PartitionKey="k")
    # THEN it reads only the new ones, and remembers the last sequence number it read
    batch_numbers = _numbers(drain(poller))
    assert batch_numbers == [2, 3]
    assert poller.last_sequence is not None


@pytest.mark.parametrize(("kind", "extra"), [
    ("AT_TIMESTAMP", {}), ("AFTER_SEQUENCE_NUMBER", {}), ("LATEST", {"sequence_number": "1"}),
])
def test_a_start_position_needs_exactly_its_own_argument(kind: Any, extra: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="goes with"):
        StartAt(kind, **extra)


def test_a_start_position_speaks_both_apis() -> None:
    start = StartAt.after("42")
    assert start.iterator_args() == {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "StartingSequenceNumber": "42"}
    assert start.starting_position() == {"Type": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": "42"}
