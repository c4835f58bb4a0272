"""The projector over moto's DynamoDB: coalesced conditional writes, parking of every kind of bad record."""

from __future__ import annotations

import json
from typing import Any

import pytest

from consumers.adapters.dynamodb import DynamoParkingLot, DynamoProjectionStore, create_tables
from consumers.adapters.memory import InMemoryParkingLot, InMemoryProjectionStore
from consumers.core.ports import StreamRecord
from consumers.core.projection import JOB, TASK, ProjectionConfig
from consumers.projector import Projector
from tests.factories import task_arn, task_event

TABLES = {"ecs_task": "ecs_task", "ecs_job": "ecs_job", "ecs_node": "ecs_node", "parked": "parked"}


def records(*bodies: Any, shard: str = "shardId-000000000000") -> list[StreamRecord]:
    out = []
    for i, body in enumerate(bodies):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        out.append(StreamRecord(shard, str(1000 + i), "pk", data))
    return out


@pytest.fixture
def dynamo_projector(dynamodb: Any) -> tuple[Projector, DynamoProjectionStore, DynamoParkingLot]:
    create_tables(dynamodb, TABLES)
    store = DynamoProjectionStore(dynamodb, {k: v for k, v in TABLES.items() if k != "parked"})
    parking = DynamoParkingLot(dynamodb, "parked")
    return Projector(store, parking, ProjectionConfig()), store, parking


def test_ten_updates_of_one_task_make_one_write_per_item(dynamo_projector: Any) -> None:
    projector, store, _ = dynamo_projector
    # GIVEN a batch with ten versions of one task
    batch = records(*[task_event(1, version=v) for v in range(1, 11)])
    # WHEN projected
    report = projector.handle_batch(batch)
    # THEN the task and its job are each written once, at the newest version
    assert report.items_written == 2
    (task,) = list(store.scan_table(TASK))
    assert task["version"] == 10
    assert store.requests == 1 + 2  # one batch read, two conditional puts


def test_each_kind_of_bad_record_is_parked_and_the_batch_goes_on(dynamo_projector: Any) -> None:
    projector, store, parking = dynamo_projector
    batch = records(
        b"\x00\x01 not json at all",
        {"detail-type": "ECS Task State Change", "source": "aws.ecs", "detail": {"taskArn": "x"}},
        {"type": "NobodyKnowsMe", "schema_version": 1, "event_id": "e", "time": "2026-01-01T00:00:00Z",
         "source": "s"},
        task_event(1, version=2),
    )
    report = projector.handle_batch(batch)
    # THEN the good record is projected ...
    assert [t["task_arn"] for t in store.scan_table(TASK)] == [task_arn(1)]
    # ... and every bad one is parked with its shard, sequence number, reason and raw bytes
    parked = parking.list("projector")
    assert [(p["sequence_number"], p["reason_kind"]) for p in parked] == [
        ("1000", "not_json"), ("1001", "invalid"), ("1002", "unknown_event")]
    assert parked[0]["shard_id"] == "shardId-000000000000"
    assert parked[0]["data_b64"] == "AAEgbm90IGpzb24gYXQgYWxs"
    assert report.parked == 3 and dict(report.parked_by_kind) == {"not_json": 1, "invalid": 1, "unknown_event": 1}


def test_redelivered_bad_record_is_parked_once(dynamo_projector: Any) -> None:
    projector, _, parking = dynamo_projector
    projector.handle_batch(records(b"garbage"))
    projector.handle_batch(records(b"garbage"))
    assert len(parking.list()) == 1


def test_replayed_batch_changes_nothing(dynamo_projector: Any) -> None:
    projector, store, _ = dynamo_projector
    batch = records(task_event(1, version=2), task_event(2, node=2, version=2))
    projector.handle_batch(batch)
    before = {t["task_arn"]: t for t in store.scan_table(TASK)}
    projector.handle_batch(batch)
    assert {t["task_arn"]: t for t in store.scan_table(TASK)} == before


class _RacingStore(InMemoryProjectionStore):
    """Another worker writes the job between our read and our write, once."""

    def __init__(self) -> None:
        super().__init__()
        self.raced = False

    def save(self, writes: Any) -> list[Any]:
        if not self.raced:
            self.raced = True
            other = Projector(InMemoryProjectionStore(), InMemoryParkingLot(), ProjectionConfig())
            other._store = self  # the rival shares our table
            other.handle_batch(records(task_event(2, node=2, version=2)))
        return super().save(writes)


def test_concurrent_writer_conflict_is_refolded_not_lost() -> None:
    store = _RacingStore()
    projector = Projector(store, InMemoryParkingLot(), ProjectionConfig())
    report = projector.handle_batch(records(task_event(1, version=2)))
    (job,) = store.table(JOB)
    # THEN both workers' tasks are in the job: the conflict was reloaded and refolded
    assert sorted(job["tasks"]) == [task_arn(1), task_arn(2)]
    assert report.conflicts >= 1


class _CrashAfterFirstPut(InMemoryProjectionStore):
    """The worker dies after the task's put and before the job's."""

    def __init__(self) -> None:
        super().__init__()
        self.crash = True

    def save(self, writes: Any) -> list[Any]:
        if self.crash:
            self.crash = False
            super().save([w for w in writes if w.key[0] == TASK])
            raise RuntimeError("killed between two puts")
        return super().save(writes)


def test_a_write_lost_between_two_puts_heals_on_redelivery() -> None:
    store = _CrashAfterFirstPut()
    projector = Projector(store, InMemoryParkingLot(), ProjectionConfig())
    batch = records(task_event(1, version=2))
    with pytest.raises(RuntimeError):
        projector.handle_batch(batch)
    # WHEN the same batch is delivered again (nothing was checkpointed)
    projector.handle_batch(batch)
    # THEN the job has the task although the task item was already current
    (job,) = store.table(JOB)
    assert list(job["tasks"]) == [task_arn(1)]
