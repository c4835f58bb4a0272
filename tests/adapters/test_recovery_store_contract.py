"""One contract, two adapters: the recovery store and the idempotency ledger behave the same in memory and on
DynamoDB (moto). Each contract is an abstract class; each adapter is a subclass that says how to make one and
how to read what it stored underneath (a TTL attribute is not part of the port, but DynamoDB must get it)."""

from __future__ import annotations

import abc
from typing import Any

import pytest

from consumers.adapters.dynamodb import create_tables
from consumers.adapters.ledger import RETENTION_S, DynamoLedger, InMemoryLedger
from consumers.adapters.recovery_store import (
    MAX_TRANSACTION,
    TOMBSTONE_DAYS,
    DynamoRecoveryStore,
    InMemoryRecoveryStore,
    item_key,
)
from consumers.core.ports import Output, RecordWrite, StateConflict

WALL = 1_800_000_000.0  # the stores' wall clock (seconds): TTL attributes count from it
OWNER = "shardId-000000000001"


def job(n: int, **extra: Any) -> dict[str, Any]:
    return {"job_id": f"job-{n}", "plan": {"version": 1, "phase": "RUNNING"}, **extra}


def timer(due: str, token: str = "t", kind: str = "restart") -> dict[str, Any]:
    return {"kind": kind, "due_at": due, "token": token}


def order(key: str) -> dict[str, Any]:
    return {"key": key, "command": {"type": "StopTask", "target": key}, "step": "stop_ranks"}


def outputs_of(entries: list[Any]) -> list[Output]:
    return [o for e in entries for o in e.outputs]


class RecoveryStoreContract(abc.ABC):
    """What the recovery consumer relies on, whichever store holds its records."""

    @abc.abstractmethod
    def make(self, request: pytest.FixtureRequest) -> Any:
        """A fresh, empty store whose wall clock reads WALL."""

    @abc.abstractmethod
    def expires_at(self, store: Any, key: tuple[str, str]) -> int | None:
        """The TTL attribute the store wrote on a record (None: none)."""

    @pytest.fixture
    def store(self, request: pytest.FixtureRequest) -> Any:
        return self.make(request)

    # --- load ---------------------------------------------------------------------------------------

    def test_absent_records_load_as_none_at_revision_0(self, store: Any) -> None:
        loaded = store.load([("job", "nope"), ("incident", "nope")])
        assert loaded.bodies == {("job", "nope"): None, ("incident", "nope"): None}
        assert loaded.revs == {("job", "nope"): 0, ("incident", "nope"): 0}

    def test_a_new_record_commits_at_revision_1_and_loads_back_equal(self, store: Any) -> None:
        # GIVEN nothing stored; WHEN a job and a node are committed as new (expected revision 0)
        node = {"arn": "n1", "facts": {"gpus_total": 8, "attributes": {"a": "b"}}, "plan": {"holds": {}}}
        store.commit([RecordWrite(("job", "job-1"), job(1), 0), RecordWrite(("node", "n1"), node, 0)], [], OWNER)
        # THEN both load back equal (nested values, nulls and all) at revision 1
        loaded = store.load([("job", "job-1"), ("node", "n1")])
        assert loaded.bodies == {("job", "job-1"): job(1), ("node", "n1"): node}
        assert loaded.revs == {("job", "job-1"): 1, ("node", "n1"): 1}

    def test_load_nodes_reads_every_node_and_nothing_else(self, store: Any) -> None:
        writes = [RecordWrite(("node", f"arn:node/{n}"), {"arn": f"arn:node/{n}"}, 0) for n in range(3)]
        store.commit([*writes, RecordWrite(("job", "job-1"), job(1), 0)], [], OWNER)
        loaded = store.load_nodes()
        # ("nodes", "*") says "every node was loaded" (a placement may read them all)
        assert set(loaded.bodies) == {("nodes", "*"), *(w.key for w in writes)}
        assert all(loaded.revs[w.key] == 1 for w in writes)

    def test_the_instance_index_finds_a_node_by_its_instance_id(self, store: Any) -> None:
        store.commit([RecordWrite(("node", "arn:node/1"), {"arn": "arn:node/1"}, 0, instance_id="i-0abc")], [], OWNER)
        assert store.load([("instance", "i-0abc")]).bodies[("instance", "i-0abc")] == {"node_arn": "arn:node/1"}

    # --- commit: conditions -------------------------------------------------------------------------

    def test_a_stale_revision_is_a_conflict_naming_the_record_and_nothing_of_it_is_written(self, store: Any) -> None:
        # GIVEN job-1 and job-2 at revision 1, then job-2 advanced to 2 by another processor
        store.commit([RecordWrite(("job", "job-1"), job(1), 0), RecordWrite(("job", "job-2"), job(2), 0)], [], OWNER)
        store.commit([RecordWrite(("job", "job-2"), job(2, by="other"), 1)], [], "other")
        # WHEN a processor that loaded both at revision 1 commits both, with an order owned by job-1
        with pytest.raises(StateConflict) as raised:
            store.commit([RecordWrite(("job", "job-1"), job(1, by="me"), 1),
                          RecordWrite(("job", "job-2"), job(2, by="me"), 1)],
                         [Output("order", order("k1"), ("job", "job-1"))], OWNER)
        # THEN the conflict names job-2 only, and the transaction wrote nothing: no job-1 change, no order
        assert raised.value.keys == {("job", "job-2")}
        loaded = store.load([("job", "job-1"), ("job", "job-2")])
        assert loaded.bodies[("job", "job-1")] == job(1) and loaded.revs[("job", "job-1")] == 1
        assert loaded.bodies[("job", "job-2")] == job(2, by="other") and loaded.revs[("job", "job-2")] == 2
        assert store.pending(OWNER) == []

    def test_creating_a_record_that_exists_is_a_conflict(self, store: Any) -> None:
        store.commit([RecordWrite(("incident", "inc-1"), {"incident_id": "inc-1"}, 0)], [], OWNER)
        with pytest.raises(StateConflict) as raised:
            store.commit([RecordWrite(("incident", "inc-1"), {"incident_id": "inc-1", "x": 1}, 0)], [], OWNER)
        assert raised.value.keys == {("incident", "inc-1")}

    def test_the_right_revision_wins_and_advances_it(self, store: Any) -> None:
        store.commit([RecordWrite(("fleet", "fleet"), {"version": 1}, 0)], [], OWNER)
        store.commit([RecordWrite(("fleet", "fleet"), {"version": 2}, 1)], [], OWNER)
        loaded = store.load([("fleet", "fleet")])
        assert loaded.bodies[("fleet", "fleet")] == {"version": 2} and loaded.revs[("fleet", "fleet")] == 2

    # --- commit: more than one transaction holds --------------------------------------------------

    def test_a_commit_over_100_items_is_written_whole_in_chunks(self, store: Any) -> None:
        # GIVEN 150 records, each with a timer (two items each: more than one transaction of 100)
        writes = [RecordWrite(("job", f"job-{n:03d}"), job(n), 0, timer=timer(f"2026-01-01T00:{n % 60:02d}:00Z",
                                                                                 f"t{n}")) for n in range(150)]
        outputs = [Output("order", order(f"k{n}"), ("job", f"job-{n:03d}")) for n in range(150)]
        # WHEN committed at once
        entries = store.commit(writes, outputs, OWNER)
        # THEN every record, timer and output is there, in order
        loaded = store.load([w.key for w in writes])
        assert all(loaded.revs[w.key] == 1 for w in writes)
        assert len(store.due("2026-01-01T01:00:00Z", 1000)) == 150
        assert [o.payload["key"] for o in outputs_of(store.pending(OWNER))] == [f"k{n}" for n in range(150)]
        assert [o.payload["key"] for o in outputs_of(entries)] == [f"k{n}" for n in range(150)]

    def test_outputs_commit_with_the_record_that_owns_them(self, store: Any) -> None:
        # GIVEN 150 records, the last one changed meanwhile by another processor
        writes = [RecordWrite(("job", f"job-{n:03d}"), job(n), 0, timer=timer("2026-01-01T00:00:00Z", f"t{n}"))
                  for n in range(150)]
        store.commit([RecordWrite(("job", "job-149"), job(149, by="other"), 0)], [], "other")
        outputs = [Output("order", order("first"), ("job", "job-000")),
                   Output("order", order("last"), ("job", "job-149"))]
        # WHEN committed with an order owned by the first record and one owned by the last
        with pytest.raises(StateConflict) as raised:
            store.commit(writes, outputs, OWNER)
        # THEN the conflict names the last; its order was not committed; none is ever committed without its owner
        assert raised.value.keys == {("job", "job-149")}
        pending = [o.payload["key"] for o in outputs_of(store.pending(OWNER))]
        assert "last" not in pending
        if "first" in pending:  # the first transaction went through: its record went with it
            assert store.load([("job", "job-000")]).revs[("job", "job-000")] == 1
        else:
            assert store.load([("job", "job-000")]).revs[("job", "job-000")] == 0

    def test_the_record_that_owns_commands_commits_in_the_last_transaction(self, store: Any) -> None:
        # GIVEN a decision over 150 nodes (their holds) driven by one job that owns the commands; a node
        # another processor changed meanwhile
        nodes = [RecordWrite(("node", f"n{n:03d}"), {"arn": f"n{n:03d}", "hold": "job-1"}, 0) for n in range(150)]
        store.commit([RecordWrite(("node", "n120"), {"arn": "n120", "by": "other"}, 0)], [], "other")
        driver = RecordWrite(("job", "job-1"), job(1, phase="RESTARTING"), 0)
        outputs = [Output("order", order("start-rank-0"), ("job", "job-1")),
                   Output("event", {"recorded": "n000"}, ("node", "n000"))]
        # WHEN committed, the job first in the list
        with pytest.raises(StateConflict) as raised:
            store.commit([driver, *nodes], outputs, OWNER)
        # THEN whatever went through before the conflict, the job and its command did not: deciding again
        # finds the job as it was and decides the commands again
        assert raised.value.keys == {("node", "n120")}
        assert store.load([("job", "job-1")]).revs[("job", "job-1")] == 0
        assert "start-rank-0" not in [o.payload.get("key") for o in outputs_of(store.pending(OWNER))]

    def test_a_single_item_per_transaction_limit_is_never_passed(self, store: Any) -> None:
        # 100 records whose timers move (3 items each) and that index an instance (4 items each)
        first = [RecordWrite(("node", f"n{n:03d}"), {"arn": f"n{n:03d}"}, 0, timer=timer("2026-01-01T00:00:00Z"))
                 for n in range(100)]
        store.commit(first, [], OWNER)
        moved = [RecordWrite(w.key, {"arn": w.key[1], "x": 1}, 1, timer=timer("2026-01-02T00:00:00Z", "u"),
                             old_timer=w.timer, instance_id=f"i-{n:03d}") for n, w in enumerate(first)]
        store.commit(moved, [Output("event", {"n": n}, w.key) for n, w in enumerate(moved)], OWNER)
        assert len(store.due("2026-01-03T00:00:00Z", 1000)) == 100 > MAX_TRANSACTION - 1
        assert store.due("2026-01-01T12:00:00Z", 1000) == []

    # --- outbox -------------------------------------------------------------------------------------

    def test_the_outbox_keeps_outputs_per_owner_until_done(self, store: Any) -> None:
        # GIVEN outputs committed by two processors
        mine = [Output("event", {"envelope": {"n": 1}, "partition_key": "p"}, ("job", "job-1")),
                Output("order", order("k1"), ("job", "job-1")), Output("event", {"n": 2}, None)]
        store.commit([RecordWrite(("job", "job-1"), job(1), 0)], mine, OWNER)
        store.commit([RecordWrite(("job", "job-2"), job(2), 0)], [Output("order", order("k2"), ("job", "job-2"))],
                     "other")
        # THEN each owner sees its own, equal to what was committed (kind, payload, owning record)
        (entry,) = store.pending(OWNER)
        assert list(entry.outputs) == mine
        assert [o.payload["key"] for o in outputs_of(store.pending("other"))] == ["k2"]
        # WHEN done, it is gone for good, and the other owner's stays
        store.done(entry)
        assert store.pending(OWNER) == [] and len(store.pending("other")) == 1

    def test_the_outbox_keeps_commit_order(self, store: Any) -> None:
        for n in range(5):
            store.commit([RecordWrite(("job", f"job-{n}"), job(n), 0)], [Output("order", order(f"k{n}"),
                                                                                 ("job", f"job-{n}"))], OWNER)
        assert [o.payload["key"] for o in outputs_of(store.pending(OWNER))] == [f"k{n}" for n in range(5)]

    def test_two_thousand_orders_fit_the_outbox(self, store: Any) -> None:
        # A 2,048-rank job's StopTasks, decided at once (DynamoDB: zlib blobs of at most 300 KB each)
        outputs = [Output("order", {**order(f"arn:aws:ecs:us-west-2:123456789012:task/c/{n:032x}"),
                                    "reason": "gpu-recovery: stopping the ranks of an interrupted job"},
                          ("job", "job-1")) for n in range(2048)]
        store.commit([RecordWrite(("job", "job-1"), job(1), 0)], outputs, OWNER)
        assert outputs_of(store.pending(OWNER)) == outputs

    # --- timers -------------------------------------------------------------------------------------

    def test_due_timers_come_in_due_order_up_to_the_limit(self, store: Any) -> None:
        store.commit([RecordWrite(("job", "b"), job(2), 0, timer=timer("2026-01-01T00:02:00Z", "tb")),
                      RecordWrite(("incident", "a"), {"incident_id": "a"}, 0,
                                  timer=timer("2026-01-01T00:01:00Z", "ta", "health_check")),
                      RecordWrite(("node", "c"), {"arn": "c"}, 0, timer=timer("2026-01-01T00:03:00Z", "tc"))],
                     [], OWNER)
        assert store.due("2026-01-01T00:00:59Z", 10) == []
        assert store.due("2026-01-01T00:01:00Z", 10) == [(("incident", "a"), timer("2026-01-01T00:01:00Z", "ta",
                                                                                     "health_check"))]
        assert [k for k, _ in store.due("2026-01-01T00:05:00Z", 10)] == [("incident", "a"), ("job", "b"), ("node", "c")]
        assert [k for k, _ in store.due("2026-01-01T00:05:00Z", 2)] == [("incident", "a"), ("job", "b")]

    def test_a_moved_timer_leaves_its_old_slot_and_a_disarmed_one_is_gone(self, store: Any) -> None:
        first = timer("2026-01-01T00:01:00Z", "t1")
        store.commit([RecordWrite(("job", "j"), job(1), 0, timer=first)], [], OWNER)
        moved = timer("2026-01-01T00:10:00Z", "t2")
        store.commit([RecordWrite(("job", "j"), job(1, x=1), 1, timer=moved, old_timer=first)], [], OWNER)
        assert store.due("2026-01-01T00:09:00Z", 10) == []
        assert store.due("2026-01-01T00:10:00Z", 10) == [(("job", "j"), moved)]
        store.commit([RecordWrite(("job", "j"), job(1, x=2), 2, timer=None, old_timer=moved)], [], OWNER)
        assert store.due("9999", 10) == []

    def test_a_conflicting_commit_moves_no_timer(self, store: Any) -> None:
        first = timer("2026-01-01T00:01:00Z", "t1")
        store.commit([RecordWrite(("job", "j"), job(1), 0, timer=first)], [], OWNER)
        store.commit([RecordWrite(("job", "j"), job(1, x=1), 1, timer=first, old_timer=first)], [], "other")
        with pytest.raises(StateConflict):
            store.commit([RecordWrite(("job", "j"), job(1), 1, timer=None, old_timer=first)], [], OWNER)
        assert store.due("9999", 10) == [(("job", "j"), first)]

    # --- the stream's clock -------------------------------------------------------------------------

    def test_the_clock_is_the_slowest_shards_position(self, store: Any) -> None:
        assert store.clock() is None
        store.publish_position("shard-a", "2026-01-01T00:10:00Z")
        store.publish_position("shard-b", "2026-01-01T00:05:00Z")
        assert store.clock() == "2026-01-01T00:05:00Z"
        store.publish_position("shard-b", "2026-01-01T00:20:00Z")
        assert store.clock() == "2026-01-01T00:10:00Z"
        store.drop_position("shard-a")
        assert store.clock() == "2026-01-01T00:20:00Z"

    # --- the check key ------------------------------------------------------------------------------

    def test_the_check_key_is_made_once_and_kept(self, store: Any) -> None:
        key = store.check_key()
        assert isinstance(key, bytes) and len(key) == 32
        assert store.check_key() == key

    # --- retention ----------------------------------------------------------------------------------

    def test_a_tombstone_expires_after_any_duplicate_could_come(self, store: Any) -> None:
        # WHEN a record is replaced by its tombstone
        store.commit([RecordWrite(("job", "j"), job(1), 0)], [], OWNER)
        store.commit([RecordWrite(("job", "j"), {"tombstone": True, "finished_at": "x"}, 1)], [], OWNER)
        # THEN the tombstone loads (a late duplicate sees it) and carries its TTL: beyond Kinesis's retention
        assert store.load([("job", "j")]).bodies[("job", "j")] == {"tombstone": True, "finished_at": "x"}
        assert self.expires_at(store, ("job", "j")) == int(WALL) + TOMBSTONE_DAYS * 86_400

    def test_a_record_given_an_expiry_carries_it_and_a_live_one_none(self, store: Any) -> None:
        store.commit([RecordWrite(("task", "t1"), {"task_arn": "t1"}, 0, expires_at=1_900_000_000),
                      RecordWrite(("job", "j"), job(1), 0)], [], OWNER)
        assert self.expires_at(store, ("task", "t1")) == 1_900_000_000
        assert self.expires_at(store, ("job", "j")) is None


class TestInMemoryRecoveryStore(RecoveryStoreContract):
    def make(self, request: pytest.FixtureRequest) -> Any:
        return InMemoryRecoveryStore(wall=lambda: WALL)

    def expires_at(self, store: Any, key: tuple[str, str]) -> int | None:
        value = store.items[item_key(key)].get("expires_at")
        return None if value is None else int(value)


class TestDynamoRecoveryStore(RecoveryStoreContract):
    def make(self, request: pytest.FixtureRequest) -> Any:
        client = request.getfixturevalue("dynamodb")
        create_tables(client, {"recovery": "gpu_recovery_state"})
        self._client = client
        return DynamoRecoveryStore(client, "gpu_recovery_state", wall=lambda: WALL)

    def expires_at(self, store: Any, key: tuple[str, str]) -> int | None:
        pk, sk = item_key(key)
        item = self._client.get_item(TableName="gpu_recovery_state", Key={"pk": {"S": pk}, "sk": {"S": sk}},
                                     ConsistentRead=True)["Item"]
        return int(item["expires_at"]["N"]) if "expires_at" in item else None

    def test_two_processors_share_one_check_key(self, store: Any) -> None:
        other = DynamoRecoveryStore(self._client, "gpu_recovery_state", wall=lambda: WALL)
        assert other.check_key() == store.check_key()

    def test_the_clock_items_expire(self, store: Any) -> None:
        # A shard that ended without drop_position must not hold the clock back forever.
        store.publish_position("shard-a", "2026-01-01T00:10:00Z")
        item = self._client.get_item(TableName="gpu_recovery_state", Key={"pk": {"S": "clock"},
                                                                           "sk": {"S": "shard-a"}})["Item"]
        assert int(item["expires_at"]["N"]) > WALL


# --- the idempotency ledger -------------------------------------------------------------------------------


class LedgerContract(abc.ABC):
    @abc.abstractmethod
    def make(self, request: pytest.FixtureRequest) -> Any:
        """A fresh ledger whose wall clock reads WALL and whose retention is RETENTION_S."""

    @abc.abstractmethod
    def expires_at(self, ledger: Any, key: str) -> int | None: ...

    @pytest.fixture
    def ledger(self, request: pytest.FixtureRequest) -> Any:
        return self.make(request)

    def test_the_first_claim_is_new_and_a_second_finds_it_claimed(self, ledger: Any) -> None:
        assert ledger.claim("inc-1:reboot:1", "RebootInstances", "2026-01-01T00:00:00Z").state == "new"
        again = ledger.claim("inc-1:reboot:1", "RebootInstances", "2026-01-01T00:00:05Z")
        assert (again.state, again.status) == ("claimed", None)

    def test_a_done_entry_gives_back_its_result(self, ledger: Any) -> None:
        ledger.claim("inc-1:check:1", "StartTask", "2026-01-01T00:00:00Z")
        ledger.done("inc-1:check:1", "succeeded", {"task_arn": "arn:task/1", "n": 3}, None, None)
        found = ledger.claim("inc-1:check:1", "StartTask", "2026-01-01T00:01:00Z")
        assert (found.state, found.status, found.detail, found.error, found.error_kind) == (
            "done", "succeeded", {"task_arn": "arn:task/1", "n": 3}, None, None)

    def test_an_unknown_result_keeps_its_error_kind(self, ledger: Any) -> None:
        ledger.claim("k", "RebootInstances", "2026-01-01T00:00:00Z")
        ledger.done("k", "unknown", {}, "ThrottlingException: Rate exceeded", "throttled")
        found = ledger.claim("k", "RebootInstances", "2026-01-01T00:01:00Z")
        assert (found.status, found.error_kind) == ("unknown", "throttled")

    def test_each_entry_carries_its_ttl_attribute(self, ledger: Any) -> None:
        # issue 13: the ledger's TTL attribute (expires_at) was never written
        ledger.claim("k", "StopTask", "2026-01-01T00:00:00Z")
        assert self.expires_at(ledger, "k") == int(WALL) + RETENTION_S
        ledger.done("k", "succeeded", {}, None)
        assert self.expires_at(ledger, "k") == int(WALL) + RETENTION_S


class TestInMemoryLedger(LedgerContract):
    def make(self, request: pytest.FixtureRequest) -> Any:
        return InMemoryLedger(wall=lambda: WALL)

    def expires_at(self, ledger: Any, key: str) -> int | None:
        value = ledger.entries[key].get("expires_at")
        return None if value is None else int(value)


class TestDynamoLedger(LedgerContract):
    def make(self, request: pytest.FixtureRequest) -> Any:
        client = request.getfixturevalue("dynamodb")
        create_tables(client, {"ledger": "gpu_recovery_ledger"})
        self._client = client
        return DynamoLedger(client, "gpu_recovery_ledger", wall=lambda: WALL)

    def expires_at(self, ledger: Any, key: str) -> int | None:
        item = self._client.get_item(TableName="gpu_recovery_ledger", Key={"idempotency_key": {"S": key}})["Item"]
        return int(item["expires_at"]["N"]) if "expires_at" in item else None

    def test_the_table_expires_entries_by_that_attribute(self, ledger: Any) -> None:
        ttl = self._client.describe_time_to_live(TableName="gpu_recovery_ledger")["TimeToLiveDescription"]
        assert (ttl["TimeToLiveStatus"], ttl["AttributeName"]) == ("ENABLED", "expires_at")
