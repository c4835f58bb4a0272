"""The in-process reader drives ShardProcessor like the daemon, and resumes after its checkpoint."""

from __future__ import annotations

import json
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
