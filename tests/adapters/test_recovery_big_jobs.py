"""Jobs bigger than one DynamoDB transaction (100 items), on the consumer with in-memory adapters and a fake AWS.

A decision about a 100-rank job writes more records than one transaction holds, so the store commits it in
several; a processor on another shard may change one of them in between. Whatever commits, and whatever is
decided again after a conflict, every rank must restart, once, with its GPUs held on its node."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from consumers.adapters.recovery_store import InMemoryRecoveryStore
from consumers.core.ports import OutboxEntry, Output, RecordWrite
from tests.adapters.recovery_rig import Clock, Rig
from tests.factories import node_arn, task_arn

RANKS = 100


class Interrupting(InMemoryRecoveryStore):
    """Runs ``interrupt`` once, just before the first commit that writes more than 90 records including
    ``target`` (another processor's work, landing between this one's load and its commit)."""

    def __init__(self, clock: Clock, target: tuple[str, str]) -> None:
        super().__init__(wall=lambda: clock().timestamp())
        self.target = target
        self.interrupt: Callable[[], None] | None = None

    def commit(self, writes: Sequence[RecordWrite], outputs: Sequence[Output], owner: str) -> list[OutboxEntry]:
        if self.interrupt is not None and len(writes) > 90 and any(w.key == self.target for w in writes):
            hook, self.interrupt = self.interrupt, None
            hook()
        return super().commit(writes, outputs, owner)


def big_job(rig: Rig) -> None:
    rig.aws.nodes(RANKS + 1)
    rig.aws.launch("job:big", [(n, n) for n in range(1, RANKS + 1)])
    rig.drain()
    rig.clock.advance(60)


def test_a_job_of_100_ranks_launched_in_one_batch_has_its_tags_captured() -> None:
    # GIVEN 100 ranks RUNNING, read in one batch: 100 ListTagsForResource, their outcomes decided together
    rig = Rig()
    big_job(rig)
    # THEN every task's tags were captured (each outcome loads its task with the batch, not one by one)
    tasks = rig.records("task")
    assert len(tasks) == RANKS and all(t["tags"] is not None for t in tasks.values())
    assert all(rig.store.pending(s) == [] for s in rig.shard_ids)


def test_a_restart_over_several_transactions_survives_a_conflict_in_any_of_them() -> None:
    # GIVEN a 100-rank job on nodes 1..100; node 100's events are read by another shard's processor
    clock = Clock()
    store = Interrupting(clock, ("node", node_arn(RANKS)))
    rig = Rig(shards=2, store=store, clock=clock)
    here, there = rig.shard_ids
    rig.assign = lambda key: there if key == node_arn(RANKS) else here
    big_job(rig)

    def node_100_reports() -> None:
        rig.aws.node_event(RANKS)
        rig.collect()
        rig.deliver(there)

    # WHEN a rank fails, and node 100 changes while the restart (every node's hold) is being committed
    store.interrupt = node_100_reports
    rig.aws.fail(task_arn(1))
    rig.drain()
    # THEN the conflict happened, and still every rank was restarted, once, each node holding its GPUs
    assert store.interrupt is None and store.conflicts > 0
    started = [c.command.target for c in rig.aws.of("StartTask", "rank")]
    assert sorted(started) == sorted(node_arn(n) for n in range(1, RANKS + 1))
    holds: dict[str, Any] = {arn: body["plan"]["holds"] for (_, arn), body in rig.records("node").items()}
    assert [arn for arn in started if "job:big" not in holds[arn]] == []
    assert all(rig.store.pending(s) == [] for s in rig.shard_ids)
    # AND the job runs again once its ranks do
    rig.advance(60)
    assert rig.job("job:big")["plan"]["phase"] == "RUNNING"
