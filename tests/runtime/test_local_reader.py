"""The in-process reader drives ShardProcessor like the daemon, and resumes after its checkpoint."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from consumers.core.ports import StreamRecord
from consumers.runtime.local_reader import LocalReader, MemoryCheckpoints
from consumers.runtime.processor import ShardProcessor


class Recorder:
    def __init__(self) -> None:
        self.seen: list[tuple[str, int]] = []

    def handle_batch(self, records: Sequence[StreamRecord]) -> None:
        self.seen.extend((r.shard_id, json.loads(r.data)["n"]) for r in records)


def put(kinesis: Any, numbers: range) -> None:
    for n in numbers:
        kinesis.put_record(StreamName="s", Data=json.dumps({"n": n}).encode(), PartitionKey=f"k{n % 7}")


def reader(kinesis: Any, handler: Recorder, checkpoints: MemoryCheckpoints) -> LocalReader:
    return LocalReader(kinesis, "s", "app", lambda: ShardProcessor(handler, on_fatal=lambda e: None),
                       checkpoints, batch_limit=10)


def test_every_record_once_in_shard_order_and_resume_after_restart(kinesis: Any) -> None:
    kinesis.create_stream(StreamName="s", ShardCount=3)
    put(kinesis, range(0, 50))
    checkpoints, first = MemoryCheckpoints(), Recorder()
    # WHEN a reader drains the stream
    assert reader(kinesis, first, checkpoints).run_until_idle() == 50
    assert sorted(n for _, n in first.seen) == list(range(50))
    for shard in {s for s, _ in first.seen}:
        numbers = [n for s, n in first.seen if s == shard]
        assert numbers == sorted(numbers)
    # AND a new reader starts after more records arrive
    put(kinesis, range(50, 60))
    second = Recorder()
    reader(kinesis, second, checkpoints).run_until_idle()
    # THEN it resumes after the checkpoints: only the new records
    assert sorted(n for _, n in second.seen) == list(range(50, 60))


class _BehindRecorder:
    """A kclpy v3 processor that notes each batch's size and millisBehindLatest, and checkpoints it."""

    def __init__(self) -> None:
        self.batches: list[tuple[int, int]] = []

    def initialize(self, initialize_input: Any) -> None:
        pass

    def process_records(self, process_records_input: Any) -> None:
        self.batches.append((len(process_records_input.records), process_records_input.millis_behind_latest))
        process_records_input.checkpointer.checkpoint()

    def shutdown_requested(self, shutdown_requested_input: Any) -> None:
        pass


def test_each_batch_says_how_far_behind_the_tip_it_is(kinesis: Any) -> None:
    # GIVEN one shard holding 10 records, then (300 ms later) 5 more
    kinesis.create_stream(StreamName="s", ShardCount=1)
    put(kinesis, range(0, 10))
    time.sleep(0.3)
    put(kinesis, range(10, 15))
    processor = _BehindRecorder()
    # WHEN the reader drains it 10 records at a time
    LocalReader(kinesis, "s", "app", lambda: processor, MemoryCheckpoints(), batch_limit=10).run_until_idle()
    # THEN the first batch is GetRecords' real millisBehindLatest (the newer records are ~300 ms ahead),
    # and the batch that reaches the tip is 0 behind
    (first, behind_first), (last, behind_last) = processor.batches
    assert (first, last) == (10, 5)
    assert 250 <= behind_first < 5_000
    assert behind_last == 0


def test_a_reader_given_shards_reads_only_those(kinesis: Any) -> None:
    # GIVEN a 3-shard stream with records on every shard, and two workers sharing it: one owns a shard,
    # the other the rest (as KCL leases would split them)
    kinesis.create_stream(StreamName="s", ShardCount=3)
    put(kinesis, range(0, 30))
    shards = [s["ShardId"] for s in kinesis.list_shards(StreamName="s")["Shards"]]
    checkpoints, one, rest = MemoryCheckpoints(), Recorder(), Recorder()

    def worker(handler: Recorder, owned: list[str]) -> LocalReader:
        return LocalReader(kinesis, "s", "app", lambda: ShardProcessor(handler, on_fatal=lambda e: None),
                           checkpoints, shards=owned)

    # WHEN each drains its own shards
    worker(one, shards[:1]).run_until_idle()
    worker(rest, shards[1:]).run_until_idle()
    # THEN each saw only its shards' records, and together every record once
    assert {s for s, _ in one.seen} == set(shards[:1])
    assert {s for s, _ in rest.seen} <= set(shards[1:])
    assert sorted(n for _, n in one.seen + rest.seen) == list(range(30))
