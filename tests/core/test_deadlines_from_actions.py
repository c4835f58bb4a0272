"""A deadline on an action counts from when the action was made, not from when it was decided.

A consumer reading a backlog decides at the events' time (the stream's clock) but acts at once, at the wall
clock: after a 25-minute outage a restart decided "5 minutes in" is started 20 minutes later. The check's
deadline already counts from its StartTask's outcome (incidents._check_started); the restart's must too,
or the restarted job is FAILED (and a page sent) while its ranks' RUNNING events are still on their way.
Found by tests/adapters/test_recovery_clock.py on the consumer.
"""

from __future__ import annotations

from tests.core.recovery_world import World
from tests.factories import at


def test_the_restart_deadline_counts_from_when_the_ranks_were_started() -> None:
    # GIVEN a failed 2-rank job whose check passed in an event read late: the restart decided at +5 min
    world = World()
    world.nodes(3)
    world.job([(1, 1), (2, 2)])
    world.fails(2, 2, when=100)
    world.stopped_by_us(1, 1, when=102)
    world.settle_orders()
    world.report("healthy", node=2, when=300)
    restarts = world.commands(step="restart")
    assert len(restarts) == 2 and world.job_of().phase == "RESTARTING"
    # WHEN the consumer, 20 minutes behind, starts the ranks 20 minutes after that decision
    started = at(300 + 20 * 60)
    for order in restarts:
        world.answer(order, when=started, task_arn=f"arn:aws:ecs:us-west-2:123456789012:task/gpu-training/"
                                                  f"{order.key[-24:]}")
    # THEN the job is still restarting (10 minutes from the start), and its ranks running bring it back
    assert world.job_of().phase == "RESTARTING" and "deadline_expired" not in world.notices()
    world.run_restarted(when=at(300 + 21 * 60))
    assert world.job_of().phase == "RUNNING"
