"""The projector over moto's DynamoDB: coalesced conditional writes, parking of every kind of bad record."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from consumers.adapters.dynamodb import DynamoParkingLot, DynamoProjectionStore, create_tables
from consumers.adapters.memory import InMemoryParkingLot, InMemoryProjectionStore
from consumers.adapters.metrics import NAMESPACE, CloudWatchMetrics
from consumers.core.errors import TransientError
from consumers.core.ports import StreamRecord
from consumers.core.projection import JOB, KEY_ATTRIBUTE, TASK, ProjectionConfig
from consumers.projector import PARKING_FAILED, ParkingFailed, Projector
from tests.factories import task_arn, task_event
from tests.hostile import HOSTILE

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


# --- one bad record never stalls the batch -----------------------------------------------------------


def _stored_keys(store: DynamoProjectionStore, table: str) -> list[str]:
    return sorted(str(item[KEY_ATTRIBUTE[table]]) for item in store.scan_table(table))


def test_a_record_whose_fold_raises_is_parked_whole_and_the_records_around_it_applied(dynamo_projector: Any) -> None:
    projector, store, parking = dynamo_projector
    # GIVEN a completed task in year 9999: its fold writes the task, then fails on the job's expiry
    hostile = HOSTILE["time_in_year_9999"]()
    batch = records(task_event(1, version=2), hostile, task_event(2, node=2, version=2))
    # WHEN projected
    report = projector.handle_batch(batch)
    # THEN the good tasks are applied, nothing of the bad one (not even its task), which is parked
    assert _stored_keys(store, TASK) == [task_arn(1), task_arn(2)]
    assert _stored_keys(store, JOB) == ["job:alpha"]
    (row,) = parking.list("projector")
    assert (row["sequence_number"], row["reason_kind"], row["error_type"]) == ("1001", "fold_error", "OverflowError")
    assert row["position"] == "record 2/3 of its batch"
    assert (report.applied, report.parked) == (2, 1)


def test_an_item_dynamodb_would_refuse_is_parked_before_anything_of_it_is_written(dynamo_projector: Any) -> None:
    projector, store, parking = dynamo_projector
    # GIVEN a task whose group is 3,000 characters (its job's key would be over DynamoDB's 2,048 bytes)
    batch = records(HOSTILE["group_of_3000_characters"](), task_event(1, version=2))
    report = projector.handle_batch(batch)
    # THEN its task item was not written either, and the reason names the limit
    assert _stored_keys(store, TASK) == [task_arn(1)]
    (row,) = parking.list("projector")
    assert row["reason_kind"] == "unwritable" and "2048" in row["reason"]
    assert report.parked_by_kind == {"unwritable": 1}


def test_many_bad_records_in_one_batch_each_parked_every_good_one_applied(dynamo_projector: Any) -> None:
    projector, store, parking = dynamo_projector
    bad = [HOSTILE[name]() for name in ("time_0001_01_01_plus_one_hour", "empty_task_arn",
                                        "detail_version_10_to_the_40", "lone_surrogate_in_group")]
    goods = [task_event(n, node=n, version=2) for n in range(1, 6)]
    batch = records(*[body for pair in zip(goods, [*bad, None], strict=True) for body in pair if body is not None])
    report = projector.handle_batch(batch)
    assert _stored_keys(store, TASK) == sorted(task_arn(n) for n in range(1, 6))
    assert sorted(r["sequence_number"] for r in parking.list()) == ["1001", "1003", "1005", "1007"]
    assert (report.applied, report.parked) == (5, 4)


def test_a_store_that_fails_is_not_the_records_fault(dynamo_projector: Any, dynamodb: Any) -> None:
    projector, _, parking = dynamo_projector
    # GIVEN a projection table that is gone (an infrastructure fault, not the record's)
    dynamodb.delete_table(TableName="ecs_job")
    # WHEN a good record is projected THEN the error stops the batch (no checkpoint) and nothing is parked
    with pytest.raises(ClientError, match="ResourceNotFoundException"):
        projector.handle_batch(records(task_event(1, version=2)))
    assert parking.list() == []


def test_a_record_that_cannot_be_parked_stops_the_shard_with_an_alarm_metric(dynamodb: Any) -> None:
    create_tables(dynamodb, TABLES)
    cloudwatch = boto3.client("cloudwatch", region_name="us-east-1")
    store = DynamoProjectionStore(dynamodb, {k: v for k, v in TABLES.items() if k != "parked"})
    # GIVEN a parking lot whose table does not exist
    projector = Projector(store, DynamoParkingLot(dynamodb, "no-such-table"), ProjectionConfig(),
                          metrics=CloudWatchMetrics(cloudwatch))
    # WHEN a bad record comes THEN the batch fails loudly (the processor stops without a checkpoint) ...
    with pytest.raises(ParkingFailed, match="could not be parked"):
        projector.handle_batch(records(b"garbage", task_event(1, version=2)))
    # ... and the ParkingFailed metric is published at once, for the alarm
    names = [m["MetricName"] for m in cloudwatch.list_metrics(Namespace=NAMESPACE)["Metrics"]]
    assert names == [PARKING_FAILED]


class _ThrottledOnce(InMemoryParkingLot):
    def __init__(self) -> None:
        super().__init__()
        self.throttled = False

    def park(self, records: Any) -> None:
        if not self.throttled:
            self.throttled = True
            raise TransientError("ProvisionedThroughputExceededException")
        super().park(records)


def test_a_throttled_parking_lot_is_retried_with_the_batch_not_counted_as_unparkable() -> None:
    parking = _ThrottledOnce()
    projector = Projector(InMemoryProjectionStore(), parking, ProjectionConfig())
    batch = records(b"garbage", task_event(1, version=2))
    with pytest.raises(TransientError):
        projector.handle_batch(batch)
    # WHEN the processor delivers the batch again THEN the bad record is parked once, the good one applied
    report = projector.handle_batch(batch)
    assert [r.sequence_number for r in parking.records] == ["1000"] and report.applied == 1
