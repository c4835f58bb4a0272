"""No lock (issue 13): several recovery processors, one per shard, share one store, ledger and writer, and decide
at once with per-record optimistic concurrency. Hypothesis chooses how partition keys fall on shards, which
processor reads which batch next and how big, and when to run another processor's batch between a processor's
load and its commit (``InMemoryRecoveryStore.before_commit``). Two jobs fail on two faulty nodes at once;
whatever the interleaving, every sibling is stopped once, every action happens once, and both jobs end
restarted. The fake AWS (tests/adapters/recovery_rig.py) answers each command and emits what follows.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.adapters.recovery_rig import HEALTHY, Rig, policy
from tests.factories import task_arn

EXAMPLES = 50
HORIZON = timedelta(hours=2)  # every path of this story ends well within it (retention timers lie beyond)


@dataclass
class Figures:
    examples: int = 0
    conflicts: int = 0
    with_conflicts: int = 0
    interleaved: int = 0  # batches run between another processor's load and its commit
    batches: int = 0

    def __str__(self) -> str:
        return (f"examples {self.examples}, batches {self.batches}, interleaved {self.interleaved}, "
                f"StateConflicts {self.conflicts} (in {self.with_conflicts} examples)")


FIGURES = Figures()


def two_jobs_two_faults(rig: Rig) -> None:
    """Jobs alpha (nodes 1, 2) and beta (nodes 3, 4), node 5 spare; alpha's rank on node 1 fails with XID 48
    (a reboot, then a passing check), beta's rank on node 3 fails and its check finds an application fault."""
    rig.aws.nodes(5)
    rig.aws.launch("job:alpha", [(1, 1), (2, 2)])
    rig.aws.launch("job:beta", [(3, 3), (4, 4)])
    rig.aws.verdicts[1] = [("hardware_fault", "reboot", [48]), HEALTHY]
    rig.aws.verdicts[3] = [("application_fault", "none", [13])]


class Interleaving:
    """Drives the processors in the order hypothesis draws."""

    def __init__(self, rig: Rig, data: st.DataObject) -> None:
        self.rig, self.data = rig, data

    def step(self) -> bool:
        """One batch of one shard (maybe with another's run inside its commit); False when all is quiet."""
        rig = self.rig
        rig.collect()
        busy = [s for s in rig.shard_ids if rig.shards[s].records]
        if not busy:
            return self.idle()
        shard = self.data.draw(st.sampled_from(busy), label="shard")
        limit = self.data.draw(st.integers(1, 6), label="batch size")
        others = [s for s in busy if s != shard]
        interleave = bool(others) and self.data.draw(st.booleans(), label="interleave")
        if interleave:
            other = self.data.draw(st.sampled_from(others), label="inside its commit")
            other_limit = self.data.draw(st.integers(1, 6), label="its batch size")
            rig.store.before_commit = lambda: self._inside(other, other_limit)
        rig.deliver(shard, limit)
        rig.store.before_commit = None
        FIGURES.batches += 1
        return True

    def _inside(self, shard: str, limit: int) -> None:
        FIGURES.interleaved += 1
        self.rig.deliver(shard, limit)

    def idle(self) -> bool:
        """Nothing to read: time moves to the next deadline and every processor, caught up, ticks."""
        rig = self.rig
        due = rig.store.due("9999", 1)
        if not due:
            return False
        moment = datetime.fromisoformat(due[0][1]["due_at"].replace("Z", "+00:00"))
        if moment > self.start + HORIZON:
            return False
        rig.clock.now = max(rig.clock.now, moment)
        for shard in self.data.draw(st.permutations(rig.shard_ids), label="tick order"):
            rig.deliver(shard)
        return True

    def run(self) -> None:
        self.start = self.rig.clock()
        for _ in range(600):
            if not self.step():
                return
        raise AssertionError("the processors did not settle")


def assert_each_action_once(rig: Rig) -> None:
    keys = Counter(c.key for c in rig.aws.calls)
    assert [k for k, n in keys.items() if n > 1] == [], "a decision was acted on twice"
    stops = Counter(c.command.target for c in rig.aws.of("StopTask"))
    assert stops == {task_arn(2): 1, task_arn(4): 1}, "every sibling stopped exactly once"
    assert len(rig.aws.of("StartTask", "check")) == 3  # node 1, node 1 after its reboot, node 3
    assert [c.target for c in rig.aws.of("RebootInstances")] == [f"i-{1:017x}"]
    ranks = Counter(getattr(c.command, "group", None) for c in rig.aws.of("StartTask", "rank"))
    assert ranks == {"job:alpha": 2, "job:beta": 2}


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None)
@given(shards=st.integers(2, 3), data=st.data())
def test_processors_on_every_shard_at_once_act_once_and_restart_both_jobs(shards: int, data: st.DataObject) -> None:
    # GIVEN a processor per shard over one store, ledger and writer; partition keys spread as hypothesis says
    rig = Rig(shards=shards, config=policy(breaker_fraction=0.5))
    placed: dict[str, str] = {}

    def assign(key: str) -> str:
        if key not in placed:
            placed[key] = data.draw(st.sampled_from(rig.shard_ids), label=f"shard of {key[-24:]}")
        return placed[key]

    rig.assign = assign
    two_jobs_two_faults(rig)
    # WHEN both jobs' ranks fail at once and the processors run in any interleaving
    Interleaving(rig, data).run()
    rig.collect()
    rig.aws.fail(task_arn(1))
    rig.aws.fail(task_arn(3))
    Interleaving(rig, data).run()
    # THEN every action happened once, both nodes are repaired and both jobs run again, restarted once
    assert_each_action_once(rig)
    for job in ("job:alpha", "job:beta"):
        plan = rig.job(job)["plan"]
        assert (plan["phase"], plan["restart_total"]) == ("RUNNING", 1), (job, plan)
    outcomes = sorted(str(i["outcome"]) for i in rig.incidents())
    assert outcomes == ["application_fault", "recovered"]
    assert all(rig.store.pending(s) == [] for s in rig.shard_ids)
    assert {e["state"] for e in rig.ledger.entries.values()} == {"done"}
    FIGURES.examples += 1
    FIGURES.conflicts += rig.store.conflicts
    FIGURES.with_conflicts += bool(rig.store.conflicts)


def test_conflicts_happened_across_the_run(capsys: Any) -> None:
    # The interleavings above must have made processors collide, or they proved nothing about concurrency.
    if FIGURES.examples == 0:
        test_processors_on_every_shard_at_once_act_once_and_restart_both_jobs()
    with capsys.disabled():
        print(f"\nno lock: {FIGURES}")
    assert FIGURES.examples >= EXAMPLES and FIGURES.interleaved > 0
    assert FIGURES.conflicts > 0 and FIGURES.with_conflicts >= EXAMPLES // 10
