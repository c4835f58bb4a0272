"""One contract, two adapters: the in-memory store and the DynamoDB store behave the same."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from consumers.adapters.dynamodb import DynamoProjectionStore, create_tables
from consumers.adapters.memory import InMemoryProjectionStore
from consumers.core.ports import ItemWrite
from consumers.core.projection import JOB, NODE, TASK

TABLES = {TASK: "ecs_task", JOB: "ecs_job", NODE: "ecs_node"}


@pytest.fixture(params=["memory", "dynamodb"])
def store(request: pytest.FixtureRequest) -> Iterator[Any]:
    if request.param == "memory":
        yield InMemoryProjectionStore()
        return
    client = request.getfixturevalue("dynamodb")
    create_tables(client, TABLES)
    yield DynamoProjectionStore(client, TABLES, write_threads=4)


def task(arn: str, **extra: Any) -> dict[str, Any]:
    return {"task_arn": arn, "last_status": "RUNNING", "version": 2, "gpu_ids": ["0", "1"],
            "containers": [{"name": "c", "exit_code": None}], "spec": {"overrides": {}}, **extra}


def test_new_item_is_written_and_loaded_with_revision_1(store: Any) -> None:
    # WHEN a new item is saved expecting revision 0 (absent)
    assert store.save([ItemWrite((TASK, "t1"), task("t1"), 0)]) == []
    # THEN it loads back equal, at revision 1
    loaded = store.load([(TASK, "t1"), (TASK, "missing")])
    assert list(loaded) == [(TASK, "t1")]
    assert loaded[(TASK, "t1")].item == task("t1")
    assert loaded[(TASK, "t1")].rev == 1


def test_write_with_a_stale_revision_is_a_conflict(store: Any) -> None:
    # GIVEN an item another worker already advanced to revision 2
    store.save([ItemWrite((JOB, "j"), {"job_id": "j", "state": "RUNNING"}, 0)])
    store.save([ItemWrite((JOB, "j"), {"job_id": "j", "state": "INTERRUPTED"}, 1)])
    # WHEN we write expecting revision 1
    conflicts = store.save([ItemWrite((JOB, "j"), {"job_id": "j", "state": "RUNNING"}, 1)])
    # THEN it is refused and the newer item stays
    assert conflicts == [(JOB, "j")]
    assert store.load([(JOB, "j")])[(JOB, "j")].item["state"] == "INTERRUPTED"


def test_creating_an_existing_item_is_a_conflict(store: Any) -> None:
    store.save([ItemWrite((NODE, "n"), {"container_instance_arn": "n"}, 0)])
    assert store.save([ItemWrite((NODE, "n"), {"container_instance_arn": "n"}, 0)]) == [(NODE, "n")]


def test_many_keys_load_in_chunks(store: Any) -> None:
    writes = [ItemWrite((TASK, f"t{i:03d}"), task(f"t{i:03d}"), 0) for i in range(230)]
    assert store.save(writes) == []
    loaded = store.load([w.key for w in writes])
    assert len(loaded) == 230


def test_nested_values_and_nulls_survive(store: Any) -> None:
    item = {"job_id": "j", "tasks": {"a": {"version": 3, "failed": True, "exit_code": None}}, "recovery": None,
            "failed_task_arns": []}
    store.save([ItemWrite((JOB, "j"), item, 0)])
    assert store.load([(JOB, "j")])[(JOB, "j")].item == item
