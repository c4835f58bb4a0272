"""What the random-fleet property test (test_recovery_random_fleets.py) found in the recovery core, each
shrunk to a plain case on the core's own objects."""

from __future__ import annotations

from tests.core.recovery_world import World
from tests.factories import at, task_event


def test_an_old_event_of_a_replaced_rank_delivered_again_orders_no_stop() -> None:
    # GIVEN a 2-rank job restarted after its failed node's check passed (both old ranks known STOPPED)
    world = World()
    world.nodes(3)
    world.job([(1, 1), (2, 2)])
    world.fails(2, 2, when=100)
    world.stopped_by_us(1, 1, when=102)
    world.settle_orders()
    world.report("healthy", node=2)
    world.settle_orders()
    assert world.job_of().phase == "RESTARTING"
    before = len(world.orders)
    # WHEN the old RUNNING event of a replaced rank is delivered again, twice (a reader read from its checkpoint)
    world.ecs(task_event(1, node=1, version=2, when=at(2)))
    world.ecs(task_event(1, node=1, version=2, when=at(2)))
    # THEN nothing is ordered: the rank is known stopped (before: the same StopTask decided once per delivery)
    assert world.orders[before:] == []
