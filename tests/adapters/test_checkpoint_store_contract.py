"""One contract, two checkpoint stores: memory and DynamoDB behave the same, for the store itself and for
the local reader that resumes from it. Every store the reader may be given subclasses the contract."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pytest

from consumers.adapters.dynamodb import create_tables
from consumers.adapters.table_specs import CHECKPOINTS
from consumers.core.ports import StreamRecord
from consumers.runtime.local_reader import CheckpointStore, DynamoCheckpoints, LocalReader, MemoryCheckpoints
from consumers.runtime.processor import ShardProcessor

# A real Kinesis sequence number: 56 digits, more than any integer type holds.
SEQUENCE = "49590338271490256608559692538361571095921575989136588898"


class CheckpointStoreContract:
    """What every CheckpointStore does; a subclass provides ``store``."""

    @pytest.fixture
    def store(self) -> CheckpointStore:
        raise NotImplementedError

    def test_a_shard_never_checkpointed_has_no_position(self, store: CheckpointStore) -> None:
        assert store.get("projector", "shardId-000000000000") is None

    def test_a_position_reads_back_exactly_as_written(self, store: CheckpointStore) -> None:
        # WHEN a 56-digit sequence number is checkpointed
        store.put("projector", "shardId-000000000000", SEQUENCE)
        # THEN it reads back as the same string, digit for digit
        assert store.get("projector", "shardId-000000000000") == SEQUENCE

    def test_the_latest_checkpoint_replaces_the_previous_one(self, store: CheckpointStore) -> None:
        store.put("projector", "shardId-000000000000", "100")
        store.put("projector", "shardId-000000000000", "200")
        assert store.get("projector", "shardId-000000000000") == "200"

    def test_applications_and_shards_keep_their_own_positions(self, store: CheckpointStore) -> None:
        # GIVEN two applications reading the same two shards
        store.put("projector", "shardId-000000000000", "1")
        store.put("projector", "shardId-000000000001", "2")
        store.put("recovery", "shardId-000000000000", "3")
        # THEN each (application, shard) has its own position, and none leaks to the others
        assert store.get("projector", "shardId-000000000000") == "1"
        assert store.get("projector", "shardId-000000000001") == "2"
        assert store.get("recovery", "shardId-000000000000") == "3"
        assert store.get("recovery", "shardId-000000000001") is None

    def test_a_new_reader_resumes_after_the_stores_checkpoints(self, store: CheckpointStore, kinesis: Any) -> None:
        # GIVEN a 2-shard stream read to its end by one reader that checkpointed into the store
        kinesis.create_stream(StreamName="s", ShardCount=2)
        _put(kinesis, range(0, 20))
        assert _reader(kinesis, store, _Seen()).run_until_idle() == 20
        # WHEN more records arrive and a new reader (a restart) reads with the same store
        _put(kinesis, range(20, 26))
        seen = _Seen()
        _reader(kinesis, store, seen).run_until_idle()
        # THEN it gets only the records after the checkpoints
        assert sorted(seen.numbers) == list(range(20, 26))


class TestMemoryCheckpoints(CheckpointStoreContract):
    @pytest.fixture
    def store(self) -> CheckpointStore:
        return MemoryCheckpoints()


class TestDynamoCheckpoints(CheckpointStoreContract):
    @pytest.fixture
    def store(self, dynamodb: Any) -> CheckpointStore:
        create_tables(dynamodb, {CHECKPOINTS: "gpu-recovery-checkpoints"})
        return DynamoCheckpoints(dynamodb, "gpu-recovery-checkpoints")


class _Seen:
    def __init__(self) -> None:
        self.numbers: list[int] = []

    def handle_batch(self, records: Sequence[StreamRecord]) -> None:
        self.numbers.extend(json.loads(r.data)["n"] for r in records)


def _put(kinesis: Any, numbers: range) -> None:
    for n in numbers:
        kinesis.put_record(StreamName="s", Data=json.dumps({"n": n}).encode(), PartitionKey=f"k{n}")


def _reader(kinesis: Any, store: CheckpointStore, handler: _Seen) -> LocalReader:
    return LocalReader(kinesis, "s", "app", lambda: ShardProcessor(handler, on_fatal=lambda e: None), store,
                       batch_limit=5)
