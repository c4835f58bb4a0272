"""A consumer stopped between any two steps resumes: the processor that takes its shard (``initialize(shard)``)
finishes the outbox the stopped one committed, the batch comes again from the last checkpoint, and every action
happens once (in-memory adapters and a fake AWS, tests/adapters/recovery_rig.py)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import pytest

from consumers.adapters.recovery_store import InMemoryRecoveryStore
from consumers.core.errors import TransientError
from consumers.core.ports import BatchContext, Claim, OutboxEntry, Output, RecordWrite
from consumers.recovery import InjectedStop
from events_schema.commands import REPEATABLE
from tests.adapters.recovery_rig import HEALTHY, Clock, Rig
from tests.factories import task_arn

POINTS = ["after_decide", "after_commit", "after_record", "after_claim", "after_call", "after_done", "after_outcome"]
STEPS = {"stop a rank": ":stop:", "health check": ":check:1", "reboot": ":reboot:1", "restart": ":restart:"}


class StopOnce:
    """Stops the consumer the first time ``point`` is reached for a decision whose key holds ``step``."""

    def __init__(self, point: str, step: str) -> None:
        self.point, self.step = point, step
        self.fired: str | None = None

    def __call__(self, point: str, key: str | None) -> None:
        if self.fired is None and point == self.point and key is not None and self.step in key:
            self.fired = key
            raise InjectedStop(f"stopped at {point} for {key}")


def recover(rig: Rig) -> None:
    """A 2-rank job on nodes 1 and 2; the rank on node 1 fails with XID 48: a check, a reboot, a check after
    it, and both ranks restarted."""
    rig.aws.nodes(3)
    rig.aws.launch("job:alpha", [(1, 1), (2, 2)])
    rig.aws.verdicts[1] = [("hardware_fault", "reboot", [48]), HEALTHY]
    rig.drain()
    rig.clock.advance(60)
    rig.aws.fail(task_arn(1))
    rig.drain()
    rig.advance(40 * 60)  # long enough for any deadline a stop left to decide (a reboot never sent: 15 min)


def assert_every_action_once(rig: Rig, repeated: str | None = None) -> None:
    """Each call once; ``repeated``: the one call a stop between it and its result may repeat (only a call whose
    repeat changes nothing: StopTask, UpdateContainerInstancesState, PutAttributes, ...)."""
    keys = Counter(c.key for c in rig.aws.calls if c.type != "Publish")
    twice = [k for k, n in keys.items() if n > 1]
    assert twice == ([repeated] if repeated else []) and all(keys[k] == 2 for k in twice)
    assert all(c.type in REPEATABLE for c in rig.aws.calls if c.key in twice)
    assert len({c.command.target for c in rig.aws.of("StopTask")}) == 1
    assert len(rig.aws.of("StartTask", "check")) == 2
    assert len(rig.aws.of("RebootInstances")) == 1
    assert len(rig.aws.of("StartTask", "rank")) == 2
    (incident,) = rig.incidents()
    assert incident["outcome"] == "recovered" and rig.node(1)["plan"]["repair"] == "HEALTHY"
    assert rig.job("job:alpha")["plan"]["phase"] == "RUNNING"
    assert all(s == [] for s in (rig.store.pending(shard) for shard in rig.shard_ids))
    assert {e["state"] for e in rig.ledger.entries.values()} == {"done"}


def test_without_a_stop_the_recovery_makes_each_action_once() -> None:
    rig = Rig()
    recover(rig)
    assert_every_action_once(rig)
    assert rig.restarts == 0


@pytest.mark.parametrize("point", POINTS)
@pytest.mark.parametrize("step", list(STEPS))
def test_a_stop_between_any_two_steps_resumes_and_each_action_happens_once(point: str, step: str) -> None:
    # GIVEN a consumer that stops once at this point, for this step's decision
    stop = StopOnce(point, STEPS[step])
    rig = Rig(fault=stop, restart_on_stop=True)
    # WHEN the job recovers, the stopped processor replaced by one that takes its shard
    recover(rig)
    # THEN it did stop there, and every action happened exactly once (a stop between a call and its result
    # repeats it only when a repeat changes nothing)
    assert stop.fired is not None and rig.restarts == 1
    made = [c.type for c in rig.aws.calls if c.key == stop.fired]
    assert_every_action_once(rig, stop.fired if point == "after_call" and made[0] in REPEATABLE else None)


def test_the_outbox_a_stop_after_commit_left_is_finished_by_the_next_owner_of_the_shard() -> None:
    # GIVEN a consumer stopped right after committing the decision to stop the failed job's other rank
    stop = StopOnce("after_commit", ":stop:")
    rig = Rig(fault=stop)
    rig.aws.nodes(3)
    rig.aws.launch("job:alpha", [(1, 1), (2, 2)])
    rig.drain()
    rig.aws.fail(task_arn(1))
    rig.collect()
    shard = rig.shard_ids[0]
    with pytest.raises(InjectedStop):
        rig.deliver(shard)
    (entry,) = rig.store.pending(shard)
    assert [o.payload["key"] for o in entry.outputs if o.kind == "order"] == [stop.fired]
    assert rig.aws.of("StopTask") == []
    # WHEN another processor takes the shard (initialize finishes the outbox before any record)
    rig.consumers[shard] = rig.consumer(shard)
    # THEN the rank is stopped, once, and the outbox is empty; the batch delivered again decides nothing new
    assert [c.target for c in rig.aws.of("StopTask")] == [task_arn(2)]
    assert rig.store.pending(shard) == []
    rig.drain()
    assert len(rig.aws.of("StopTask")) == 1


class ThrottledOnce:
    """A ledger whose first claim is throttled (DynamoDB said so after its own retries)."""

    def __init__(self, inner: object) -> None:
        self._inner = inner
        self.throttled = 0

    def claim(self, key: str, action_type: str, at: str) -> Claim:
        if not self.throttled and ":check:" in key:
            self.throttled += 1
            raise TransientError("ProvisionedThroughputExceededException")
        return self._inner.claim(key, action_type, at)  # type: ignore[attr-defined, no-any-return]

    def done(self, *args: object, **kwargs: object) -> None:
        self._inner.done(*args, **kwargs)  # type: ignore[attr-defined]

    @property
    def entries(self) -> object:
        return self._inner.entries  # type: ignore[attr-defined]


def test_a_batch_retried_after_a_transient_error_in_its_outbox_finishes_it_without_a_restart() -> None:
    # GIVEN the ledger throttled once, right when the check is to be claimed (after its commit)
    from consumers.adapters.ledger import InMemoryLedger

    ledger = ThrottledOnce(InMemoryLedger())
    rig = Rig(ledger=ledger)
    rig.aws.nodes(3)
    rig.aws.launch("job:alpha", [(1, 1)])
    rig.drain()
    rig.aws.fail(task_arn(1))
    rig.collect()
    shard = rig.shard_ids[0]
    batch = rig.shards[shard].records[:]
    rig.shards[shard].records.clear()
    consumer = rig.consumers[shard]
    with pytest.raises(TransientError):
        consumer.handle_batch(batch, BatchContext(shard, 0))
    assert rig.aws.of("StartTask", "check") == [] and len(rig.store.pending(shard)) == 1
    # WHEN the processor retries the batch, as it does with a transient error (the same consumer, no restart)
    consumer.handle_batch(batch, BatchContext(shard, 0))
    # THEN the check is started, once, and the outbox is empty
    assert len(rig.aws.of("StartTask", "check")) == 1 and rig.store.pending(shard) == []


class CommitsThenTimesOut(InMemoryRecoveryStore):
    """The first commit with a health check's order goes through, and then its answer is lost (a timeout after
    DynamoDB applied the transaction): the caller sees a TransientError."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.lost = 0

    def commit(self, writes: Sequence[RecordWrite], outputs: Sequence[Output], owner: str) -> list[OutboxEntry]:
        entries = super().commit(writes, outputs, owner)
        if not self.lost and any(":check:" in str(o.payload.get("key")) for o in outputs if o.kind == "order"):
            self.lost += 1
            raise TransientError("ReadTimeoutError on TransactWriteItems")
        return entries


def test_a_commit_whose_answer_was_lost_is_acted_on_when_the_batch_is_retried() -> None:
    # GIVEN a commit that went through but whose answer was lost
    clock = Clock()
    store = CommitsThenTimesOut(wall=lambda: clock().timestamp())
    rig = Rig(store=store, clock=clock)
    rig.aws.nodes(3)
    rig.aws.launch("job:alpha", [(1, 1)])
    rig.drain()
    rig.aws.fail(task_arn(1))
    rig.collect()
    shard = rig.shard_ids[0]
    batch = rig.shards[shard].records[:]
    rig.shards[shard].records.clear()
    consumer = rig.consumers[shard]
    with pytest.raises(TransientError):
        consumer.handle_batch(batch, BatchContext(shard, 0))
    assert store.lost == 1 and rig.aws.of("StartTask", "check") == []
    # WHEN the processor retries the batch (the decision is made again on the committed records: no new order)
    consumer.handle_batch(batch, BatchContext(shard, 0))
    # THEN what the lost commit put in the outbox is acted on now, once
    assert len(rig.aws.of("StartTask", "check")) == 1 and rig.store.pending(shard) == []
