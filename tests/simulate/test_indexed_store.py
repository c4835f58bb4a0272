"""The core engine's indexed store keeps the recovery store's contract: the same answers as the reference
``InMemoryRecoveryStore`` for the same commits (revisions, conflicts, timers, the instance index)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consumers.adapters.recovery_store import InMemoryRecoveryStore
from consumers.core.ports import RecordWrite, StateConflict
from local.indexed_store import IndexedRecoveryStore

KEYS = [("job", "j1"), ("job", "j2"), ("node", "n1"), ("node", "n2"), ("incident", "i1"), ("fleet", "fleet")]
DUE = [f"2026-01-01T00:00:0{n}Z" for n in range(10)]


def both() -> tuple[IndexedRecoveryStore, InMemoryRecoveryStore]:
    return IndexedRecoveryStore(), InMemoryRecoveryStore()


def test_revisions_and_conflicts() -> None:
    for store in both():
        store.commit([RecordWrite(("job", "j1"), {"v": 1}, 0)], [], "me")
        with pytest.raises(StateConflict):
            store.commit([RecordWrite(("job", "j1"), {"v": 2}, 0)], [], "me")
        store.commit([RecordWrite(("job", "j1"), {"v": 2}, 1)], [], "me")
        loaded = store.load([("job", "j1"), ("job", "none")])
        assert (loaded.bodies, loaded.revs) == ({("job", "j1"): {"v": 2}, ("job", "none"): None},
                                               {("job", "j1"): 2, ("job", "none"): 0})


def test_a_loaded_body_is_a_copy() -> None:
    store = IndexedRecoveryStore()
    store.commit([RecordWrite(("job", "j1"), {"v": [1]}, 0)], [], "me")
    store.load([("job", "j1")]).bodies[("job", "j1")]["v"].append(2)  # type: ignore[index]
    assert store.load([("job", "j1")]).bodies[("job", "j1")] == {"v": [1]}


def test_the_instance_index_finds_the_node() -> None:
    for store in both():
        store.commit([RecordWrite(("node", "n1"), {"facts": {}}, 0, instance_id="i-1")], [], "me")
        assert store.load([("instance", "i-1")]).bodies[("instance", "i-1")] == {"node_arn": "n1"}
        assert store.load([("instance", "i-2")]).bodies[("instance", "i-2")] is None


def test_expired_records_leave_and_the_state_shrinks() -> None:
    store = IndexedRecoveryStore()
    store.commit([RecordWrite(("job", "j1"), {"v": 1}, 0, expires_at=100),
                  RecordWrite(("job", "j2"), {"v": 1}, 0)], [], "me")
    before = store.state_bytes()
    assert store.expire(100) == 1
    assert store.state_bytes()[1] == before[1] - 1 and store.state_bytes()[0] < before[0]


writes = st.lists(st.tuples(st.sampled_from(KEYS), st.one_of(st.none(), st.sampled_from(DUE))), max_size=25)


@settings(max_examples=40, deadline=None)
@given(writes=writes, now=st.sampled_from(DUE), limit=st.integers(1, 10))
def test_timers_and_nodes_answer_as_the_reference_store(writes: list[tuple[tuple[str, str], str | None]],
                                                        now: str, limit: int) -> None:
    stores = both()
    for key, due in writes:
        for store in stores:
            loaded = store.load([key])
            old = loaded.bodies[key]
            timer = {"due_at": due, "token": due} if due else None
            store.commit([RecordWrite(key, {"timer": timer}, loaded.revs[key], timer,
                                      old["timer"] if old else None)], [], "me")
    indexed, reference = stores
    assert indexed.due(now, limit) == reference.due(now, limit)
    assert indexed.load_nodes().bodies == reference.load_nodes().bodies
    assert indexed.load(KEYS).revs == reference.load(KEYS).revs
