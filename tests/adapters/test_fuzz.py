"""Hostile input through the projector on moto's DynamoDB and through replay: arbitrary bytes, real AWS events
mutated at random, and each hostile class of issue 15 by name (tests/hostile.py).

Whatever a record holds: no exception escapes, every record is applied or parked (left out of a replay, and
counted by reason), and the good records around a bad one are applied. The figures (records tried / parked /
applied) are printed at the end of each fuzz test.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import itertools
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from moto import mock_aws

from consumers.adapters.dynamodb import INLINE_BYTES, DynamoParkingLot, DynamoProjectionStore, check_key, create_tables
from consumers.core.ports import StreamRecord
from consumers.core.projection import TASK, ProjectionConfig
from consumers.projector import Projector
from replay.rebuild import rebuild
from replay.sources import RawRecord
from tests.factories import task_arn, task_event
from tests.hostile import DYNAMODB_ONLY, HOSTILE, good_records, real_samples

TABLES = {"ecs_task": "ecs_task", "ecs_job": "ecs_job", "ecs_node": "ecs_node"}
FUZZ = settings(max_examples=60, deadline=None, derandomize=True, database=None)  # figures repeat
_shards = itertools.count(1)
_tasks = itertools.count(10_000)


@dataclass
class Lot:
    projector: Projector
    store: DynamoProjectionStore
    parking: DynamoParkingLot


@dataclass
class Figures:
    tried: int = 0
    parked: int = 0
    applied: int = 0
    kinds: Counter[str] = field(default_factory=Counter)

    def __str__(self) -> str:
        kinds = ", ".join(f"{kind} {n}" for kind, n in sorted(self.kinds.items()))
        return f"records tried {self.tried}, parked {self.parked} ({kinds}), applied {self.applied}"


def _lot(client: Any, suffix: str = "") -> Lot:
    names = {logical: f"{logical}{suffix}" for logical in (*TABLES, "parked")}
    create_tables(client, names)
    store = DynamoProjectionStore(client, {k: v for k, v in names.items() if k in TABLES})
    parking = DynamoParkingLot(client, names["parked"])
    return Lot(Projector(store, parking, ProjectionConfig()), store, parking)


@pytest.fixture(scope="module")
def lot() -> Iterator[Lot]:
    # One moto for the module: hypothesis runs many examples, each on shards of its own.
    with mock_aws():
        yield _lot(boto3.client("dynamodb", region_name="us-east-1"))


@pytest.fixture
def fresh_lot(dynamodb: Any, request: pytest.FixtureRequest) -> Lot:
    """Tables of its own: a named class is judged without what other tests stored under the same ARNs
    (moto keeps one state per process, which the module's fixture may still hold)."""
    return _lot(dynamodb, f"-{hashlib.sha256(request.node.name.encode()).hexdigest()[:12]}")


def _good(n: int) -> bytes:
    """A task of a job of its own, so that no hostile record can touch it."""
    return json.dumps(task_event(n, version=3, group=f"job:fuzz-{n}")).encode()


def between_good(bad: list[bytes]) -> tuple[list[StreamRecord], set[str], dict[str, int]]:
    """good, bad, good, bad, ..., good on a fresh shard: the batch, the bad sequence numbers, good task -> seq."""
    shard = f"shardId-{next(_shards):012d}"
    records, bad_seqs, good_tasks = [], set(), {}
    for i in range(2 * len(bad) + 1):
        seq = str(100 + i)
        if i % 2:
            records.append(StreamRecord(shard, seq, "pk", bad[i // 2]))
            bad_seqs.add(seq)
        else:
            n = next(_tasks)
            records.append(StreamRecord(shard, seq, "pk", _good(n)))
            good_tasks[task_arn(n)] = n
    return records, bad_seqs, good_tasks


def project(lot: Lot, records: list[StreamRecord], figures: Figures) -> set[str]:
    """Project the batch and check what must hold for any input; returns the parked sequence numbers."""
    report = lot.projector.handle_batch(records)
    parked = {r["sequence_number"] for r in lot.parking.of_shard("projector", records[0].shard_id)}
    assert report.applied + report.parked == report.records == len(records)
    assert len(parked) == report.parked
    figures.tried += report.records
    figures.parked += report.parked
    figures.applied += report.applied
    figures.kinds.update(report.parked_by_kind)
    return parked


def assert_applied(lot: Lot, good_tasks: dict[str, int]) -> None:
    found = {k: v for (table, k), v in lot.store.load([(TASK, arn) for arn in good_tasks]).items() if table == TASK}
    assert sorted(found) == sorted(good_tasks)
    assert all(stored.item["version"] == 3 for stored in found.values())


def replay(records: list[StreamRecord], good_tasks: dict[str, int]) -> Any:
    rebuilt = rebuild([RawRecord(r.sequence_number, r.data) for r in records], ProjectionConfig(), check_key=check_key)
    stats = rebuilt.stats
    assert stats.records == len(records) == stats.events + sum(stats.malformed.values())
    assert {arn for (table, arn) in rebuilt.state.items if table == TASK} >= set(good_tasks)
    return stats


# --- arbitrary bytes ------------------------------------------------------------------------------


def test_arbitrary_bytes_are_parked_and_the_records_around_them_applied(lot: Lot, capsys: Any) -> None:
    figures = Figures()

    @FUZZ
    @given(st.lists(st.binary(max_size=3000), min_size=1, max_size=6))
    def run(blobs: list[bytes]) -> None:
        # GIVEN random bytes between good records; WHEN projected and replayed
        records, bad, good = between_good(blobs)
        parked = project(lot, records, figures)
        stats = replay(records, good)
        # THEN each one is parked (no random bytes make an event), the good ones are applied
        assert parked == bad
        assert stats.events == len(good)
        assert_applied(lot, good)

    run()
    with capsys.disabled():
        print(f"\nfuzz, arbitrary bytes: {figures}")
    assert figures.parked > 0 and figures.applied > 0


# --- real AWS events, mutated -----------------------------------------------------------------------


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    children = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in children:
        yield from _paths(child, (*prefix, key))


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


TEXT = st.text(alphabet=st.characters(codec=None, categories=None), max_size=40)  # lone surrogates too
HOSTILE_VALUES = st.one_of(
    st.none(), st.booleans(), TEXT, st.just(""), st.just("g" * 3000),
    st.integers(), st.integers(min_value=10**38, max_value=10**60), st.integers(max_value=-1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["9999-12-31T23:59:59Z", "0001-01-01T00:00:00+01:00", "0001-01-01T00:00:00Z",
                     "2026-02-30T00:00:00Z", "yesterday"]),
    st.integers(min_value=1, max_value=60).map(_nested),
    st.recursive(st.integers() | TEXT, lambda inner: st.lists(inner, max_size=3)
                 | st.dictionaries(TEXT, inner, max_size=3), max_leaves=8),
)


# Half the mutations aim where the projection keys, orders and expires items.
SENSITIVE = {("time",), ("detail", "version"), ("detail", "taskArn"), ("detail", "containerInstanceArn"),
             ("detail", "group"), ("detail", "startedBy"), ("detail", "stoppedAt"), ("detail", "updatedAt"),
             ("detail", "createdAt"), ("id",)}


@st.composite
def mutated_events(draw: st.DrawFn) -> bytes:
    """A real AWS sample with one to three of its fields replaced, removed or blown up."""
    event = copy.deepcopy(draw(st.sampled_from(sorted(real_samples().items())))[1])
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in _paths(event) if p]
        keys = [p for p in paths if p in SENSITIVE]
        path = draw(st.sampled_from(keys if keys and draw(st.booleans()) else paths))
        parent = event
        for part in path[:-1]:
            parent = parent[part]
        if draw(st.booleans()) and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(HOSTILE_VALUES)
    return json.dumps(event).encode()  # ensure_ascii: a lone surrogate travels as its escape


def test_mutated_real_events_are_applied_or_parked_never_stall_the_batch(lot: Lot, capsys: Any) -> None:
    figures = Figures()

    @FUZZ
    @given(st.lists(mutated_events(), min_size=1, max_size=4))
    def run(bad: list[bytes]) -> None:
        # GIVEN real ECS events with hostile fields, between good records; WHEN projected and replayed
        records, maybe_bad, good = between_good(bad)
        parked = project(lot, records, figures)
        replay(records, good)
        # THEN nothing escaped, only those records may be parked, and the good ones are applied
        assert parked <= maybe_bad
        assert_applied(lot, good)

    run()
    with capsys.disabled():
        print(f"\nfuzz, mutated AWS events: {figures}")
    assert figures.parked > 0 and figures.applied > figures.tried // 2


# --- each hostile class by name ---------------------------------------------------------------------

# What replay leaves out as it reads (the rest a DynamoDB target reports as not written).
REPLAY_CATCHES = set(HOSTILE) - DYNAMODB_ONLY


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_each_hostile_class_is_parked_with_its_reason_and_the_good_records_applied(fresh_lot: Lot, name: str) -> None:
    lot = fresh_lot
    # GIVEN the hostile record between real, good records
    data = HOSTILE[name]()
    records, bad, good = between_good([data])
    goods = [StreamRecord(records[0].shard_id, str(900 + i), "pk", body) for i, body in enumerate(good_records())]
    # WHEN projected
    report = lot.projector.handle_batch([*records, *goods])
    # THEN it alone is parked, with where it was, why, and its bytes (the head and a hash when too big)
    (row,) = [r for r in lot.parking.of_shard("projector", records[0].shard_id)]
    assert row["sequence_number"] in bad and row["position"] == f"record 2/{len(records) + len(goods)} of its batch"
    assert row["reason_kind"] and row["reason"] and row["error_type"]
    assert row["size"] == len(data) and row["sha256"] == hashlib.sha256(data).hexdigest()
    assert base64.b64decode(row["data_b64"]) == data[:INLINE_BYTES]
    assert row["truncated"] == (len(data) > INLINE_BYTES)
    assert report.applied == len(records) + len(goods) - 1
    assert_applied(lot, good)
    # AND replay gets through it, and leaves it out where it can tell
    stats = replay(records, good)
    assert stats.events == len(good) + (name not in REPLAY_CATCHES)
