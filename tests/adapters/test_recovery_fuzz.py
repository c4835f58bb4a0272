"""Hostile input through the recovery consumer on moto (its DynamoDB store, ledger and parking lot, and its own
events written to a Kinesis stream): every named hostile class (tests/hostile.py, tests/schema/hostile.py),
arbitrary bytes, and real AWS events and envelopes of ours mutated at random (issue 15, items 1 and 3).

Whatever a record holds: no exception escapes the batch, every record is decided or parked, and the good records
around a bad one are decided (their jobs are in the store). Figures (records tried / parked / decided) are printed.
"""

from __future__ import annotations

import copy
import itertools
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from moto import mock_aws

from consumers.adapters.dynamodb import DynamoParkingLot, create_tables
from consumers.adapters.kinesis import KinesisStreamWriter
from consumers.adapters.ledger import DynamoLedger
from consumers.adapters.recovery_store import DynamoRecoveryStore
from consumers.core.ports import BatchContext, StreamRecord
from consumers.recovery import RecoveryConsumer
from tests.adapters.recovery_rig import Clock, FakeAws, policy
from tests.adapters.test_fuzz import HOSTILE_VALUES
from tests.factories import T0, task_event
from tests.hostile import HOSTILE as HOSTILE_RECORDS
from tests.hostile import good_records
from tests.schema.hostile import HOSTILE as HOSTILE_FIELDS

FUZZ = settings(max_examples=30, deadline=None, derandomize=True, database=None)  # figures repeat
FIXTURES = Path(__file__).parent.parent / "fixtures"
_shards = itertools.count(1)
_jobs = itertools.count(50_000)
NAMED: dict[str, bytes] = {**{f"tests/hostile.py:{k}": v() for k, v in HOSTILE_RECORDS.items()},
                           **{f"tests/schema/hostile.py:{k}": v.data for k, v in HOSTILE_FIELDS.items()}}


@dataclass
class Figures:
    tried: int = 0
    parked: int = 0
    decided: int = 0
    kinds: Counter[str] = field(default_factory=Counter)

    def __str__(self) -> str:
        kinds = ", ".join(f"{kind} {n}" for kind, n in sorted(self.kinds.items()))
        return f"records tried {self.tried}, parked {self.parked} ({kinds}), decided {self.decided}"


@dataclass
class Recovery:
    consumer: RecoveryConsumer
    store: DynamoRecoveryStore
    parking: DynamoParkingLot
    aws: FakeAws


def _recovery(suffix: str = "") -> Recovery:
    dynamodb = boto3.client("dynamodb", region_name="us-east-1")
    kinesis = boto3.client("kinesis", region_name="us-east-1")
    names = {"recovery": f"recovery{suffix}", "ledger": f"ledger{suffix}", "parked": f"parked{suffix}"}
    create_tables(dynamodb, names)
    kinesis.create_stream(StreamName=f"events{suffix}", ShardCount=1)
    clock = Clock(T0 + timedelta(days=1))
    store = DynamoRecoveryStore(dynamodb, names["recovery"], wall=lambda: clock().timestamp())
    parking = DynamoParkingLot(dynamodb, names["parked"])
    aws = FakeAws(clock, store.check_key)
    consumer = RecoveryConsumer(policy(), store, KinesisStreamWriter(kinesis, f"events{suffix}"), aws,
                                DynamoLedger(dynamodb, names["ledger"]), parking, clock=clock)
    consumer.initialize("shardId-000000000000")
    return Recovery(consumer, store, parking, aws)


@pytest.fixture(scope="module")
def recovery() -> Iterator[Recovery]:
    # One moto for the module: hypothesis runs many examples, each on a shard of its own.
    with mock_aws():
        yield _recovery()


@pytest.fixture
def fresh(aws: None, request: pytest.FixtureRequest) -> Recovery:
    """Tables of its own: a named class is judged without what other tests stored under the same ARNs."""
    return _recovery(f"-{abs(hash(request.node.name)) % 10**10}")


def _good(n: int) -> bytes:
    """A GPU task RUNNING, of a job of its own (no hostile record can touch it), seen in the last hour."""
    return json.dumps(task_event(n, version=2, group=f"job:fuzz-{n}", when=T0 + timedelta(hours=23))).encode()


def between_good(bad: list[bytes]) -> tuple[list[StreamRecord], set[str], list[str]]:
    """good, bad, good, ..., good on a fresh shard: the batch, the bad sequence numbers, the good jobs."""
    shard = f"shardId-{next(_shards):012d}"
    records, bad_seqs, jobs = [], set(), []
    for i in range(2 * len(bad) + 1):
        seq = f"{100 + i:08d}"
        if i % 2:
            records.append(StreamRecord(shard, seq, "pk", bad[i // 2]))
            bad_seqs.add(seq)
        else:
            n = next(_jobs)
            records.append(StreamRecord(shard, seq, "pk", _good(n)))
            jobs.append(f"job:fuzz-{n}")
    return records, bad_seqs, jobs


def decide(recovery: Recovery, records: list[StreamRecord], figures: Figures) -> set[str]:
    """The batch through the consumer, as a processor hands it (behind, then caught up); nothing may escape.
    Returns the parked sequence numbers."""
    shard = records[0].shard_id
    recovery.consumer.handle_batch(records, BatchContext(shard, 1000))
    recovery.consumer.handle_batch([], BatchContext(shard, 0))
    rows = recovery.parking.of_shard("recovery", shard)
    parked = {str(r["sequence_number"]) for r in rows}
    assert parked <= {r.sequence_number for r in records}
    figures.tried += len(records)
    figures.parked += len(parked)
    figures.decided += len(records) - len(parked)
    figures.kinds.update(str(r["reason_kind"]) for r in rows)
    return parked


def assert_decided(recovery: Recovery, jobs: list[str]) -> None:
    loaded = recovery.store.load([("job", job) for job in jobs])
    missing = [job for job in jobs if loaded.bodies[("job", job)] is None]
    assert missing == [], "good records around a bad one were not decided"


# --- each hostile class by name -----------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(NAMED))
def test_each_hostile_record_is_parked_or_decided_and_the_good_ones_around_it_decided(fresh: Recovery,
                                                                                      name: str) -> None:
    # GIVEN the hostile record between good ones (and the real, good AWS samples after them)
    records, bad, jobs = between_good([NAMED[name]])
    shard = records[0].shard_id
    samples = [StreamRecord(shard, f"{900 + i:08d}", "pk", body) for i, body in enumerate(good_records())]
    # WHEN the recovery consumer reads the batch (nothing escapes)
    figures = Figures()
    parked = decide(fresh, [*records, *samples], figures)
    # THEN at most the hostile record is parked, with its reason; the good ones are decided
    assert parked <= bad, parked
    assert_decided(fresh, jobs)
    for row in fresh.parking.of_shard("recovery", shard):
        assert row["reason_kind"] and row["reason"]


def test_every_named_class_that_decode_refuses_is_parked_by_recovery(capsys: Any) -> None:
    # The schema's classes are records decode refuses (each names its field): recovery must park each one.
    figures = Figures()
    with mock_aws():
        recovery = _recovery()
        for name, case in sorted(HOSTILE_FIELDS.items()):
            records, bad, jobs = between_good([case.data])
            parked = decide(recovery, records, figures)
            assert parked == bad, name
            assert_decided(recovery, jobs)
    with capsys.disabled():
        print(f"\nrecovery, named classes decode refuses: {figures}")
    assert figures.parked == len(HOSTILE_FIELDS)


# --- arbitrary bytes ----------------------------------------------------------------------------------


def test_arbitrary_bytes_are_parked_and_the_records_around_them_decided(recovery: Recovery, capsys: Any) -> None:
    figures = Figures()

    @FUZZ
    @given(st.lists(st.binary(max_size=2000), min_size=1, max_size=5))
    def run(blobs: list[bytes]) -> None:
        records, bad, jobs = between_good(blobs)
        parked = decide(recovery, records, figures)
        assert parked == bad  # no random bytes make an event
        assert_decided(recovery, jobs)

    run()
    with capsys.disabled():
        print(f"\nrecovery fuzz, arbitrary bytes: {figures}")
    assert figures.parked > 0 and figures.decided > 0


# --- real events, mutated -------------------------------------------------------------------------------


def _samples() -> list[dict[str, Any]]:
    """The real AWS samples whose records recovery reads, and our own envelopes (a signed-looking report)."""
    chosen = ["task_state_change_gpu_running", "task_state_change_gpu_stopped_xid", "task_state_change_unplaced",
              "task_state_change_gpu_user_stopped", "container_instance_state_change_gpu",
              "container_instance_state_change_gpu_disconnected", "container_instance_health_change_gpu_impaired"]
    events = [json.loads((FIXTURES / "aws_events" / f"{name}.json").read_text()) for name in chosen]
    ours = [json.loads(path.read_text()) for path in sorted((FIXTURES / "our_events").glob("*.json"))]
    return events + ours


SAMPLES = _samples()
# Where recovery keys, orders, times and verifies: half the mutations aim there.
SENSITIVE = {("time",), ("detail", "version"), ("detail", "taskArn"), ("detail", "containerInstanceArn"),
             ("detail", "group"), ("detail", "startedBy"), ("detail", "stoppedAt"), ("detail", "createdAt"),
             ("detail", "clusterArn"), ("detail", "containers"), ("detail", "stopCode"), ("detail", "lastStatus"),
             ("data", "node_arn"), ("data", "incident_id"), ("data", "check_key"), ("data", "verdict"),
             ("data", "xids"), ("data", "proof"), ("type",), ("schema_version",), ("subject", "node")}


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    children = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in children:
        yield from _paths(child, (*prefix, key))


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    event = copy.deepcopy(draw(st.sampled_from(SAMPLES)))
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in _paths(event) if p]
        keys = [p for p in paths if p in SENSITIVE]
        aim = draw(st.booleans())
        path = draw(st.sampled_from(keys if keys and aim else paths))
        parent = event
        for part in path[:-1]:
            parent = parent[part]
        if draw(st.booleans()) and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(HOSTILE_VALUES)
    return json.dumps(event).encode()


def test_mutated_events_are_decided_or_parked_and_never_stall_the_batch(recovery: Recovery, capsys: Any) -> None:
    figures = Figures()

    @FUZZ
    @given(st.lists(mutated(), min_size=1, max_size=4))
    def run(bad: list[bytes]) -> None:
        records, maybe_bad, jobs = between_good(bad)
        parked = decide(recovery, records, figures)
        assert parked <= maybe_bad
        assert_decided(recovery, jobs)

    run()
    with capsys.disabled():
        print(f"\nrecovery fuzz, mutated events: {figures}")
    assert figures.parked > 0 and figures.decided > figures.tried // 2
