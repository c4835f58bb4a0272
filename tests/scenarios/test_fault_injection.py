"""Kill the recovery consumer between any two steps; restarted from its checkpoint, it must never repeat
a reboot, a health check or a restart, and never lose one."""

from __future__ import annotations

import pytest

from consumers.recovery import InjectedStop
from tests.scenarios.conftest import scenario_run

pytestmark = pytest.mark.slow

STEPS = {"health check": ":check:1", "reboot": ":reboot:1", "restart": ":restart:"}
POINTS = ["after_decide", "after_record", "after_claim", "after_call", "after_done", "after_outcome"]


class StopOnce:
    """Stops the consumer the first time ``point`` is reached for a decision whose key matches ``step``."""

    def __init__(self, point: str, step: str | None, nth: int = 1) -> None:
        self.point, self.step, self.nth = point, step, nth
        self.fired = False

    def __call__(self, point: str, key: str | None) -> None:
        if self.fired or point != self.point:
            return
        if self.step is not None and (key is None or self.step not in key):
            return
        self.nth -= 1
        if self.nth == 0:
            self.fired = True
            raise InjectedStop(f"stopped at {point} for {key}")


@pytest.mark.parametrize("point", POINTS)
@pytest.mark.parametrize("step", list(STEPS))
def test_stop_between_steps_never_repeats_or_loses_an_action(point: str, step: str) -> None:
    # GIVEN scenario 2 (XID 48: one check, one reboot, one post-reboot check, four restarts)
    stop = StopOnce(point, STEPS[step])
    lines: list[str] = []
    # WHEN the consumer is stopped once at this boundary and restarted from its checkpoint
    with scenario_run("02-xid48-reboot", fault=stop, lines=lines) as (_, result):
        assert stop.fired and result.consumer_restarts == 1, "\n".join(lines)
        calls = result.actions
        checks = [c for c in calls if c["type"] == "StartTask" and ":check:" in c["idempotency_key"]]
        restarts = [c for c in calls if c["type"] == "StartTask" and ":restart:" in c["idempotency_key"]]
        reboots = [c for c in calls if c["type"] == "RebootInstances"]
        # THEN each action happened exactly once, and the job recovered
        assert len(reboots) == 1, "\n".join(lines)
        assert len(checks) == 2, "\n".join(lines)
        assert len(restarts) == 4, "\n".join(lines)
        assert result.job_states["job:llama-70b-run-42"] == "RUNNING", "\n".join(lines)
        assert result.node_states["gpu-node-3"] == "HEALTHY"


@pytest.mark.parametrize("nth", [1, 3, 6])
def test_stop_after_a_commit_before_its_outbox_is_flushed_finishes_the_outbox_once(nth: int) -> None:
    # GIVEN scenario 2, the consumer stopped right after its nth commit (state and outbox written,
    # nothing of it appended or acted on yet)
    stop = StopOnce("after_commit", None, nth=nth)
    lines: list[str] = []
    with scenario_run("02-xid48-reboot", fault=stop, lines=lines) as (_, result):
        # THEN the restarted consumer finishes that outbox: every action once, the job recovered
        assert stop.fired and result.consumer_restarts == 1, "\n".join(lines)
        counts = result.action_counts()
        assert counts["RebootInstances"] == 1 and counts["StartTask"] == 6 and counts["StopTask"] == 3, counts
        assert result.job_states["job:llama-70b-run-42"] == "RUNNING"
