"""The recovery consumer's state shared by several processes (one per shard under the KCL), on moto.

A job's ranks run on different nodes, so their events land on different shards and reach different
processor processes. Each process must decide on the whole state: the lock gives turns, the store's
generations and change records bring each copy up to date, and the fence refuses a stale save.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import pytest

from consumers.adapters.dynamodb import create_tables
from consumers.adapters.ledger import InMemoryLedger
from consumers.adapters.memory import InMemoryParkingLot, InMemoryStreamWriter
from consumers.adapters.recovery_store import (
    CHANGES_PK,
    DynamoRecoveryStore,
    InMemoryRecoveryStore,
    StateConflict,
)
from consumers.adapters.state_lock import DynamoStateLock, LockLost, LockTiming
from consumers.adapters.table_specs import RECOVERY
from consumers.core.errors import TransientError
from consumers.core.ports import StreamRecord
from consumers.core.recovery.config import PolicyConfig
from consumers.core.recovery.policy import RecoveryPolicy
from consumers.core.recovery.state import Deadline, NodeRec
from consumers.recovery import RecoveryConsumer
from events_schema.events import Action
from tests.factories import at, node_arn, node_event, task_arn, task_event

TABLE = "gpu_recovery_state"


@pytest.fixture
def table(dynamodb: Any) -> Any:
    create_tables(dynamodb, {RECOVERY: TABLE})
    return dynamodb


class Wall:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def _node(n: int, state: str = "HEALTHY") -> NodeRec:
    return NodeRec(arn=node_arn(n), gpu_count=8, status="ACTIVE", repair_state=state)


# --- the store ------------------------------------------------------------------------------------


def test_a_second_copy_catches_up_on_exactly_what_the_first_saved(table: Any) -> None:
    # GIVEN two processes that loaded the same saved state
    first_store, second_store = DynamoRecoveryStore(table, TABLE), DynamoRecoveryStore(table, TABLE)
    seed = first_store.load()
    seed.put(_node(1))
    seed.put(_node(2))
    seed.put(Deadline(id="d1", kind="reboot", due_at="2026-11-27T09:00:00Z"))
    first_store.save(seed)
    first, second = first_store.load(), second_store.load()
    # WHEN the first changes one node, removes the deadline and adds a node, and saves
    first.put(_node(1, "CHECKING"))
    first.drop("deadline", "d1")
    first.put(_node(3))
    first_store.save(first)
    # THEN the second, refreshed, holds what the first holds, read from the change record
    refreshed = second_store.refresh(second)
    assert refreshed is second and second_store.catch_ups == 1 and second_store.full_loads == 1
    assert {k: v.repair_state for k, v in refreshed.nodes.items()} == {
        node_arn(1): "CHECKING", node_arn(2): "HEALTHY", node_arn(3): "HEALTHY"}
    assert refreshed.deadlines == {} and refreshed.generation == first.generation == 2
    assert not refreshed.dirty and not refreshed.removed
    # AND an unchanged generation costs one read and changes nothing
    assert second_store.refresh(refreshed) is refreshed and second_store.catch_ups == 1


def test_a_copy_older_than_the_kept_change_records_loads_everything(table: Any) -> None:
    # GIVEN a copy at generation 1 and two later saves whose first change record has expired
    store = DynamoRecoveryStore(table, TABLE)
    state = store.load()
    state.put(_node(1))
    store.save(state)
    old = DynamoRecoveryStore(table, TABLE)
    copy = old.load()
    for n in (2, 3):
        state.put(_node(n))
        store.save(state)
    table.delete_item(TableName=TABLE, Key={"pk": {"S": CHANGES_PK}, "sk": {"S": f"{2:020d}"}})
    # WHEN it refreshes
    refreshed = old.refresh(copy)
    # THEN it loads everything again instead of missing node 2
    assert old.full_loads == 2 and old.catch_ups == 0
    assert sorted(refreshed.nodes) == [node_arn(1), node_arn(2), node_arn(3)] and refreshed.generation == 3


def test_a_save_from_a_stale_copy_is_refused(table: Any) -> None:
    # GIVEN two copies of generation 0, and the first saved
    store = DynamoRecoveryStore(table, TABLE)
    first, second = store.load(), store.load()
    first.put(_node(1))
    store.save(first)
    # WHEN the second saves without catching up
    second.put(_node(1, "QUARANTINED"))
    # THEN the fence refuses it (a transient error: the batch is decided again on the fresh state)
    with pytest.raises(StateConflict) as raised:
        store.save(second)
    assert isinstance(raised.value, TransientError)
    assert store.load().nodes[node_arn(1)].repair_state == "HEALTHY"


def test_a_change_record_expires_and_entities_do_not(table: Any) -> None:
    store = DynamoRecoveryStore(table, TABLE, wall=lambda: 1_000.0)
    state = store.load()
    state.put(_node(1))
    store.save(state)
    change = table.get_item(TableName=TABLE, Key={"pk": {"S": CHANGES_PK}, "sk": {"S": f"{1:020d}"}})["Item"]
    node = table.get_item(TableName=TABLE, Key={"pk": {"S": "node"}, "sk": {"S": node_arn(1)}})["Item"]
    assert int(change["expires_at"]["N"]) == 1_000 + 2 * 86_400 and "expires_at" not in node
    assert json.loads(change["change"]["S"]) == {"written": [["node", node_arn(1)]], "removed": []}


def test_the_in_memory_store_keeps_the_same_contract() -> None:
    store = InMemoryRecoveryStore()
    first, second = store.load(), store.load()
    first.put(_node(1))
    store.save(first)
    second.put(_node(2))
    with pytest.raises(StateConflict):
        store.save(second)
    assert sorted(store.refresh(second).nodes) == [node_arn(1)]


# --- the lock -------------------------------------------------------------------------------------


def _lock(client: Any, owner: str, wall: Wall, **timing: float) -> DynamoStateLock:
    return DynamoStateLock(client, TABLE, owner, timing=LockTiming(**timing), wall=wall, sleep=wall.sleep)


def test_one_holder_at_a_time_and_the_next_gets_it_on_release(table: Any) -> None:
    wall = Wall()
    a, b = _lock(table, "a", wall, wait_s=5), _lock(table, "b", wall, wait_s=5)
    # WHEN b tries while a holds it, b waits and then gives up with a transient error
    with a.held(), pytest.raises(TransientError, match="busy"):
        b.acquire()
    # THEN once a lets go, b takes it at once
    started = wall.now
    with b.held():
        assert wall.now == started
        b.confirm()


def test_a_dead_holders_lease_expires_and_it_can_no_longer_act(table: Any) -> None:
    # GIVEN a holder that stops answering (SIGKILL: it never releases)
    wall = Wall()
    dead = _lock(table, "dead", wall, lease_s=60, renew_after_s=10, wait_s=300)
    dead.acquire()
    # WHEN another process wants the state
    alive = _lock(table, "alive", wall, lease_s=60, renew_after_s=10, wait_s=300)
    alive.acquire()
    # THEN it got it once the lease ran out, not before
    assert 60 <= wall.now - 1_000_000.0 < 70
    # AND the old holder, had it only been slow, is stopped before its next AWS call
    with pytest.raises(LockLost):
        dead.confirm()
    alive.confirm()
    alive.release()


def test_confirm_extends_the_lease_of_a_long_batch(table: Any) -> None:
    wall = Wall()
    slow = _lock(table, "slow", wall, lease_s=60, renew_after_s=10, wait_s=30)
    slow.acquire()
    for _ in range(10):  # 100 s of work, a confirm before each call
        wall.now += 10
        slow.confirm()
    with pytest.raises(TransientError):
        _lock(table, "other", wall, lease_s=60, wait_s=30).acquire()
    slow.release()


# --- two consumers, two shards, one job ----------------------------------------------------------


class CallLog:
    """Answers the consumer's AWS calls; what it records is what the test asserts on."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str]] = []

    def execute(self, action: Action, key: str) -> dict[str, Any]:
        self.calls.append((action.type, action.target, key))
        return {"task_arn": f"{action.target}/check"} if action.type == "StartTask" else {}

    def find_done(self, action: Action, key: str) -> dict[str, Any] | None:
        return None


def _records(shard: str, events: Sequence[dict[str, Any]], start: int) -> list[StreamRecord]:
    return [StreamRecord(shard, str(start + i), e["resources"][0], json.dumps(e).encode())
            for i, e in enumerate(events)]


def _consumer(table: Any, owner: str, calls: CallLog, ledger: InMemoryLedger, now: datetime) -> RecoveryConsumer:
    return RecoveryConsumer(
        RecoveryPolicy(PolicyConfig(restart_backoff=timedelta(0))),
        DynamoRecoveryStore(table, TABLE), InMemoryStreamWriter(), calls, ledger, InMemoryParkingLot(),
        clock=lambda: now, lock=DynamoStateLock(table, TABLE, owner),
    )


def test_processors_of_different_shards_decide_on_one_state(table: Any) -> None:
    # GIVEN two processors of the recovery application, as the KCL runs them (one per shard), and a
    # 2-rank job whose rank 0 runs on node 1 (shard A) and rank 1 on node 2 (shard B); node 3 is spare
    calls, ledger = CallLog(), InMemoryLedger()
    shard_a = _consumer(table, "proc-a", calls, ledger, at(100))
    shard_b = _consumer(table, "proc-b", calls, ledger, at(100))
    shard_a.handle_batch(_records("A", [node_event(1), task_event(1, node=1, version=2)], 1))
    shard_b.handle_batch(_records("B", [node_event(2), node_event(3), task_event(2, node=2, version=2)], 1))
    # WHEN rank 1 fails on node 2: only shard B's processor sees it
    shard_b.handle_batch(_records("B", [task_event(2, node=2, version=3, status="STOPPED", exit_code=1,
                                                    stop_code="EssentialContainerExited", when=at(100))], 10))
    # THEN it stops rank 0, which only shard A's processor ever saw, once
    stops = [target for kind, target, _ in calls.calls if kind == "StopTask"]
    assert stops == [task_arn(1)]
    # AND when rank 0's stop reaches shard A, that processor knows it was recovery's stop, not a user's,
    # and the suspect node gets its drain and DCGM check exactly once
    shard_a.handle_batch(_records("A", [task_event(1, node=1, version=3, status="STOPPED", exit_code=137,
                                                    stop_code="UserInitiated", when=at(102))], 10))
    shard_b.on_idle()
    checks = [target for kind, target, key in calls.calls if kind == "StartTask" and ":check:" in key]
    assert checks == [node_arn(2)]
    job = DynamoRecoveryStore(table, TABLE).load().jobs["job:alpha"]
    assert job.state != "STOPPED_BY_USER" and job.incident_id is not None
    assert len(calls.calls) == len({key for _, _, key in calls.calls}), "no action twice"


# --- any split and interleaving of the shards stops every rank once ------------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


def _job_history() -> dict[int, list[dict[str, Any]]]:
    """Per node: its node event and its rank's life; rank 0 (node 0) fails, the others keep running."""
    history = {}
    for n in range(4):
        events = [node_event(n), task_event(n, node=n, version=2, when=at(2))]
        if n == 0:
            events.append(task_event(0, node=0, version=3, status="STOPPED", exit_code=1,
                                     stop_code="EssentialContainerExited", when=at(100)))
        history[n] = events
    history[4] = [node_event(4)]  # the spare
    return history


def _run(shard_of: dict[int, int], order: list[int], batch: int) -> list[tuple[str, str, str]]:
    calls, ledger, store = CallLog(), InMemoryLedger(), InMemoryRecoveryStore()
    shards = sorted(set(shard_of.values()))
    consumers = {s: RecoveryConsumer(RecoveryPolicy(PolicyConfig(restart_backoff=timedelta(0))), store,
                                     InMemoryStreamWriter(), calls, ledger, InMemoryParkingLot(), clock=lambda: at(100))
                 for s in shards}
    queues: dict[int, list[dict[str, Any]]] = {s: [] for s in shards}
    for node, events in _job_history().items():
        queues[shard_of[node]].extend(events)  # a node's events stay in order on its shard
    seq = 0
    turns = [(s, batch) for s in order if s in queues] + [(s, len(queues[s])) for s in shards]
    for s, size in turns:  # some turns of a few records, then the rest shard by shard
        taken, queues[s] = queues[s][:size], queues[s][size:]
        consumers[s].handle_batch(_records(f"shard-{s}", taken, seq))
        seq += len(taken)
    return calls.calls


@settings(max_examples=60, deadline=None)
@given(shard_of=st.fixed_dictionaries({n: st.integers(0, 2) for n in range(5)}),
       order=st.lists(st.integers(0, 2), max_size=12), batch=st.integers(1, 3))
def test_any_split_over_shards_stops_every_other_rank_exactly_once(
    shard_of: dict[int, int], order: list[int], batch: int
) -> None:
    # GIVEN a 4-rank job whose rank 0 fails, its nodes spread over up to 3 shards, each shard with its own
    # processor (sharing one state), read in any interleaving and batch size
    calls = _run(shard_of, order, batch)
    # THEN ranks 1-3 are stopped exactly once each whether they were known before the failure or seen
    # after it, every task's tags are read once, and no call is made twice
    assert sorted(target for kind, target, _ in calls if kind == "StopTask") == [task_arn(n) for n in (1, 2, 3)]
    assert sorted(target for kind, target, _ in calls if kind == "ListTagsForResource") == [
        task_arn(n) for n in range(4)]
    assert len({key for _, _, key in calls}) == len(calls)
