"""The projector over moto's DynamoDB: coalesced conditional writes, parking of every kind of bad record."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consumers.adapters.dynamodb import (
    DynamoParkingLot,
    DynamoProjectionStore,
    create_tables,
    from_attribute_map,
    item_size,
)
from consumers.adapters.memory import InMemoryParkingLot, InMemoryProjectionStore
from consumers.adapters.metrics import NAMESPACE, CloudWatchMetrics
from consumers.core.errors import TransientError
from consumers.core.ports import ItemWrite, StreamRecord
from consumers.core.projection import JOB, KEY_ATTRIBUTE, NODE, TASK, ProjectionConfig, fold_all, job_ranks
from consumers.projector import FOREIGN_CLUSTER, PARKING_FAILED, ParkingFailed, Projector
from events_schema.decode import decode_mapping
from events_schema.envelope import Envelope
from events_schema.events import JobStateChanged, TaskTagsCaptured
from gpu_recovery.apps import projection_config
from gpu_recovery.settings import load_settings
from gpu_recovery.wiring import policy_config
from tests.core.test_projection import (
    BIG_JOB,
    CONFIG,
    JOB_ITEM_BOUND,
    JOB_TAG,
    RANKS,
    big_job_generation,
    ecs_task_arn,
    histories,
    job_tag,
    tags_captured,
)
from tests.factories import CLUSTER, at, node_arn, node_event, ours, task_arn, task_event
from tests.hostile import HOSTILE, sample

TABLES = {"ecs_task": "ecs_task", "ecs_job": "ecs_job", "ecs_node": "ecs_node", "parked": "parked"}


def records(*bodies: Any, shard: str = "shardId-000000000000", first: int = 1000) -> list[StreamRecord]:
    out = []
    for i, body in enumerate(bodies, start=first - 1000):
        body = body.model_dump(mode="json") if isinstance(body, Envelope) else body
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
    assert sorted(job_ranks(job)) == [task_arn(1), task_arn(2)]
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
    assert list(job_ranks(job)) == [task_arn(1)]


# --- one bad record never stalls the batch -----------------------------------------------------------


def _stored_keys(store: DynamoProjectionStore, table: str) -> list[str]:
    return sorted(str(item[KEY_ATTRIBUTE[table]]) for item in store.scan_table(table))


def test_a_record_whose_fold_raises_is_parked_whole_and_the_records_around_it_applied(dynamo_projector: Any) -> None:
    projector, store, parking = dynamo_projector
    # GIVEN task 9's item edited by hand behind the projector's back (its version is text): folding task 9's
    # event over it raises (decoding bounds every AWS field, so only a stored item can still make a fold raise)
    store.save([ItemWrite((TASK, task_arn(9)), {"task_arn": task_arn(9), "version": "seven"}, 0)])
    batch = records(task_event(1, version=2), task_event(9, node=3, version=2), task_event(2, node=2, version=2))
    # WHEN projected
    report = projector.handle_batch(batch)
    # THEN the good tasks are applied, nothing of the bad one (not even its job), which is parked
    assert _stored_keys(store, TASK) == [task_arn(1), task_arn(2), task_arn(9)]
    (job,) = store.scan_table(JOB)
    assert sorted(job_ranks(job)) == [task_arn(1), task_arn(2)]
    (row,) = parking.list("projector")
    assert (row["sequence_number"], row["reason_kind"], row["error_type"]) == ("1001", "fold_error", "TypeError")
    assert row["position"] == "record 2/3 of its batch"
    assert (report.applied, report.parked) == (2, 1)


def test_a_tag_longer_than_ecs_allows_is_parked_before_anything_of_it_is_written(dynamo_projector: Any) -> None:
    projector, store, parking = dynamo_projector
    # GIVEN a task waiting for its tags, and a forged capture whose job tag is 3,000 characters (ECS allows 256;
    # the job's key would be over DynamoDB's 2,048 bytes)
    projector.handle_batch(records(task_event(5, version=2, group="family:llm-train")))
    forged = ours(TaskTagsCaptured(task_arn=task_arn(5), tags=[{"key": JOB_TAG, "value": "j"}]), when=at(3))
    body = forged.model_dump(mode="json")
    body["data"]["tags"][0]["value"] = "j" * 3000
    report = projector.handle_batch(records(body, task_event(1, version=2)))
    # THEN the capture is parked with ECS's limit as its reason (the decoder bounds tags as ECS does), and
    # nothing of it was written (not the task's tags)
    assert _stored_keys(store, TASK) == [task_arn(1), task_arn(5)]
    assert next(t for t in store.scan_table(TASK) if t["task_arn"] == task_arn(5))["tags"] is None
    (row,) = parking.list("projector")
    assert row["reason_kind"] == "invalid" and "key 128, value 256" in row["reason"]
    assert report.parked_by_kind == {"invalid": 1}


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


# --- which job: tags that came in an earlier batch ----------------------------------------------------


def test_tags_from_an_earlier_batch_name_the_job_of_later_task_events(dynamo_projector: Any) -> None:
    projector, store, _ = dynamo_projector
    # GIVEN a rank launched with the job tag and no --group, running (its job waits for its tags) ...
    projector.handle_batch(records(task_event(5, version=2, group="family:llm-train")))
    assert list(store.scan_table(JOB)) == []
    # ... and then recovery's capture of its tags, in a batch of its own
    projector.handle_batch(records(tags_captured(task_arn(5), job_tag("llama-run-7"), when=at(3))))
    # WHEN the rank fails, in a later batch that names no job
    store.requests = 0
    projector.handle_batch(records(task_event(5, version=3, status="STOPPED", exit_code=1, group="family:llm-train")))
    # THEN the projector read the job the stored tags name (a second read) and the job is interrupted
    (job,) = store.scan_table(JOB)
    assert (job["job_id"], job["state"], job["failed_task_arns"]) == ("llama-run-7", "INTERRUPTED", [task_arn(5)])
    assert store.requests == 2 + 2  # two reads (the task, then its job), two conditional puts


class _RacingTags(InMemoryProjectionStore):
    """Another worker folds the rank's tags between our read and our write, once."""

    def __init__(self) -> None:
        super().__init__()
        self.armed = False

    def save(self, writes: Any) -> list[Any]:
        if self.armed:
            self.armed = False
            rival = Projector(InMemoryProjectionStore(), InMemoryParkingLot(), CONFIG)
            rival._store = self
            rival.handle_batch(records(tags_captured(task_arn(5), job_tag("llama-run-7"))))
        return super().save(writes)


def test_a_rival_writers_tags_put_our_newer_rank_state_in_the_job() -> None:
    store = _RacingTags()
    projector = Projector(store, InMemoryParkingLot(), CONFIG)
    projector.handle_batch(records(task_event(5, version=2, group="family:llm-train")))
    store.armed = True
    # WHEN our batch stops the rank while a rival folds its tags (the rival writes the job from version 2)
    report = projector.handle_batch(records(task_event(5, version=3, status="STOPPED", exit_code=1,
                                                       group="family:llm-train")))
    # THEN our refold after the conflict wrote the job too, from the rank's newest state
    (job,) = store.table(JOB)
    assert job_ranks(job)[task_arn(5)].version == 3 and job["state"] == "INTERRUPTED"
    assert report.conflicts >= 1


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories(), st.lists(st.integers(1, 12), min_size=1, max_size=40))
def test_the_projector_in_any_batches_writes_what_the_fold_gives(pair: tuple[list[Any], list[Any]],
                                                                 sizes: list[int]) -> None:
    # GIVEN a shuffled, duplicated delivery (tags before or after their tasks' events) cut into batches
    clean, mixed = pair
    store = InMemoryProjectionStore()
    projector = Projector(store, InMemoryParkingLot(), CONFIG)
    start, position = 0, 0
    while start < len(mixed):
        size = sizes[position % len(sizes)]
        projector.handle_batch(records(*mixed[start:start + size], first=1000 + start))
        start, position = start + size, position + 1
    # THEN the stored items are the fold of the clean history, item for item
    expected = fold_all([decode_mapping(e if isinstance(e, dict) else e.model_dump(mode="json")) for e in clean],
                        CONFIG)
    assert {key: stored.item for key, stored in store.items.items()} == expected.items


# --- only this cluster -----------------------------------------------------------------------------


def test_another_clusters_events_are_parked_as_foreign_cluster() -> None:
    parking = InMemoryParkingLot()
    store = InMemoryProjectionStore()
    projector = Projector(store, parking, ProjectionConfig(cluster_arn=CLUSTER))
    other = CLUSTER.replace("gpu-training", "gpu-training-2")
    # GIVEN a batch with our task, another cluster's GPU task failing, and our own event (which names no cluster)
    batch = records(task_event(1, version=2), task_event(2, node=2, version=3, status="STOPPED", exit_code=1,
                                                         cluster=other),
                    ours(JobStateChanged(job_id="job:alpha", state="RUNNING"), when=at(4)))
    report = projector.handle_batch(batch)
    # THEN the foreign task is parked with its reason, nothing of it in the tables; the rest is applied
    assert sorted(key for key in store.items) == [(JOB, "job:alpha"), (TASK, task_arn(1))]
    (row,) = parking.records
    assert (row.sequence_number, row.reason_kind) == ("1001", FOREIGN_CLUSTER) and other in row.reason
    assert (report.applied, report.parked, dict(report.parked_by_kind)) == (2, 1, {FOREIGN_CLUSTER: 1})
    assert NODE not in {table for table, _ in store.items}


@pytest.mark.parametrize("overrides", [
    {},
    {"job_id_source": "startedBy"},
    {"job_identity": "tag,group", "job_tag_key": "team:run", "services_are_jobs": True,
     "gpu_task_families": "llm-train,vlm", "health_check_task": "dcgm-check", "cluster_name": "gpu-2"},
])
def test_the_tables_and_recovery_read_one_identity_from_the_same_settings(overrides: dict[str, Any]) -> None:
    settings = load_settings(**overrides)
    config = projection_config(settings)
    assert config.identity == policy_config(settings).identity
    assert config.cluster_arn == policy_config(settings).cluster_arn == settings.cluster_arn


# --- items the previous projector wrote ------------------------------------------------------------


def test_a_task_leaves_the_family_job_an_older_projector_put_it_in() -> None:
    # GIVEN items as the projector before one identity model wrote them: every run of a family in one job
    # "family:llm-train" (no identity, no tags), and a node whose health was one event's list of checks
    store = InMemoryProjectionStore()
    old_task = {**fold_all([decode_mapping(task_event(5, version=2, group="family:llm-train"))], CONFIG)
                .items[(TASK, task_arn(5))], "job_id": "family:llm-train"}
    for key in ("identity", "tags", "tags_order"):
        old_task.pop(key)
    old_job = {"job_id": "family:llm-train", "tasks": {task_arn(5): {"version": 2}}, "recovery": None,
               "generation_at": None, "recovery_stops": []}
    old_node = {**fold_all([decode_mapping(node_event(1))], CONFIG).items[(NODE, node_arn(1))],
                "health_checks": [{"type": "CONTAINER_RUNTIME", "status": "OK"}], "health_order": "2026-11-27|x"}
    store.save([ItemWrite((TASK, task_arn(5)), old_task, 0), ItemWrite((JOB, "family:llm-train"), old_job, 0),
                ItemWrite((NODE, node_arn(1)), old_node, 0)])
    projector = Projector(store, InMemoryParkingLot(), CONFIG)
    # WHEN the task's next event, its tags and a health event of the node come
    accelerated = {**sample("container_instance_health_change_docs_accelerated_compute")}
    accelerated["detail"] = {**accelerated["detail"], "containerInstanceArn": node_arn(1)}
    projector.handle_batch(records(task_event(5, version=3, group="family:llm-train"),
                                   tags_captured(task_arn(5), job_tag("llama-run-7")), accelerated))
    # THEN the task left the family job (read although no event named it) and is in the job its tag names
    emptied = store.items[(JOB, "family:llm-train")].item
    assert job_ranks(emptied) == {} and emptied["expires_at"] is not None  # it leaves the table after the TTL
    assert list(job_ranks(store.items[(JOB, "llama-run-7")].item)) == [task_arn(5)]
    # AND the node's checks are registers now (the old list was one event's, not a register per check)
    node = store.items[(NODE, node_arn(1))].item
    assert list(node["health_checks"]) == ["ACCELERATED_COMPUTE"] and "health_order" not in node


# --- a 2,048-rank job's item, as DynamoDB stores it ---------------------------------------------------


class _JobsOnDynamo:
    """The ecs_job table on (moto's) DynamoDB through the real adapter, the tasks and nodes in memory: the
    job item is the one that grows with a job's ranks (and 2,048 task items on moto would take minutes)."""

    def __init__(self, dynamo: DynamoProjectionStore) -> None:
        self.dynamo, self.memory = dynamo, InMemoryProjectionStore()

    def load(self, keys: Any) -> dict[Any, Any]:
        jobs = {key for key in keys if key[0] == JOB}
        return {**self.memory.load(set(keys) - jobs), **(self.dynamo.load(jobs) if jobs else {})}

    def save(self, writes: Any) -> list[Any]:
        jobs = [write for write in writes if write.key[0] == JOB]
        others = [write for write in writes if write.key[0] != JOB]
        return [*self.memory.save(others), *(self.dynamo.save(jobs) if jobs else [])]


def test_a_2048_rank_jobs_item_as_dynamodb_stores_it_stays_small(dynamodb: Any) -> None:
    create_tables(dynamodb, TABLES)
    store = _JobsOnDynamo(DynamoProjectionStore(dynamodb, {k: v for k, v in TABLES.items() if k != "parked"}))
    parking = InMemoryParkingLot()
    projector = Projector(store, parking, CONFIG)
    # GIVEN a 2,048-rank job that runs, fails (the second time every rank at once: the fabric), is stopped and
    # restarted twice, then runs again, projected a phase a batch (the adapter refuses an item DynamoDB would
    # refuse: the projector would park its records)
    phases = [phase for generation in range(3)
              for phase in big_job_generation(generation, fabric_failure=generation == 1, restart=generation < 2)]
    sizes, first = [], 1000
    for phase in phases:
        projector.handle_batch(records(*phase, first=first))
        first += len(phase)
        # WHEN the job's item is read back from DynamoDB and measured as DynamoDB counts an item's size
        raw = dynamodb.get_item(TableName="ecs_job", Key={"job_id": {"S": BIG_JOB}}, ConsistentRead=True)
        job = from_attribute_map(raw["Item"])
        sizes.append(item_size(job))
        if job["failed_count"] == RANKS:  # the fabric failure, recovery on it: every rank counted, a few named
            fabric = job
    # THEN nothing was parked, and the item stayed under 100 KB, whatever the history
    assert parking.records == []
    assert max(sizes) <= JOB_ITEM_BOUND, sizes
    # AND what people read of it still says what the job is: the current generation runs, two restarts behind
    assert (job["state"], job["task_count"], job["running_count"], job["failed_count"], job["restart_count"]) == (
        "RUNNING", RANKS, RANKS, 0, 2)
    assert sorted(job_ranks(job)) == sorted(ecs_task_arn(2, rank) for rank in range(RANKS))
    assert fabric["state"] == "RECOVERING" and fabric["failed_task_arns"] == sorted(
        ecs_task_arn(1, rank) for rank in range(RANKS))[:16]
