"""The recovery core with plain objects: AWS scheduled changes and instances lost outside recovery."""

from __future__ import annotations

from datetime import timedelta

from tests.core.recovery_world import World
from tests.factories import at, instance_state_event, node_arn, node_event, scheduled_change_event, task_event

RETIREMENT = "AWS_EC2_INSTANCE_RETIREMENT_SCHEDULED"
HOUR = 3600.0


def announced(world: World, node: int, code: str = RETIREMENT, start_h: float = 48) -> None:
    world.ecs(scheduled_change_event(node, code, start=at(start_h * HOUR), end=at((start_h + 24) * HOUR),
                                     when=at(10)))


def test_a_scheduled_change_is_announced_once_then_the_idle_node_is_drained_and_replaced_ahead() -> None:
    # GIVEN an idle node 3 in a group with replace on, and a retirement two days out
    world = World(replace_instances=True, maintenance_lead=timedelta(hours=1))
    world.nodes(3)
    world.job([(1, 1)])
    announced(world, 3)
    announced(world, 3)  # AWS Health sends updates of the same event
    # THEN one notice now, nothing drained yet
    assert world.notices().count("maintenance_scheduled") == 1
    assert world.commands("UpdateContainerInstancesState") == []
    # WHEN time reaches the lead before the window
    world.advance(47 * HOUR)
    # THEN drained and replaced; REPLACED only once Auto Scaling said yes
    assert [o.command.target for o in world.commands("UpdateContainerInstancesState")] == [node_arn(3)]
    (replace,) = world.commands("TerminateInstanceInAutoScalingGroup")
    assert world.node(3).plan.repair == "HEALTHY"
    world.answer(replace)
    assert world.node(3).plan.repair == "REPLACED"
    assert "node_replaced" in world.notices()


def test_a_refused_replace_ahead_leaves_the_node_drained_and_says_so() -> None:
    world = World(replace_instances=True, maintenance_lead=timedelta(hours=1))
    world.nodes(3)
    announced(world, 3)
    world.advance(47 * HOUR)
    (replace,) = world.commands("TerminateInstanceInAutoScalingGroup")
    world.answer(replace, "failed", error_kind="refused")
    node = world.node(3)
    assert node.plan.repair == "HEALTHY" and node.plan.drained
    assert "replace_failed" in world.notices() and "node_replaced" not in world.notices()
    world.advance(HOUR / 2)
    assert len(world.commands("TerminateInstanceInAutoScalingGroup")) == 1  # asked once, not in a loop


def test_a_busy_node_is_drained_not_killed_and_replaced_once_its_job_leaves() -> None:
    # GIVEN job alpha on node 2, a retirement of node 2 two days out
    world = World(replace_instances=True, maintenance_lead=timedelta(hours=1))
    world.nodes(3)
    world.job([(2, 2)])
    announced(world, 2)
    world.advance(47 * HOUR)
    # THEN drained, the job untouched, no replace while it runs
    assert world.commands("StopTask") == [] and world.commands("TerminateInstanceInAutoScalingGroup") == []
    assert world.node(2).plan.drained
    # WHEN the job completes (and ECS releases its GPUs in the node's next event)
    world.ecs(task_event(2, node=2, version=3, status="STOPPED", exit_code=0, stop_code="EssentialContainerExited",
                         when=at(47.2 * HOUR)))
    world.ecs(node_event(2, version=2, remaining=8, when=at(47.2 * HOUR)))
    # THEN the node is replaced ahead of the window
    assert len(world.commands("TerminateInstanceInAutoScalingGroup")) == 1


def test_without_replace_a_scheduled_node_is_only_drained_and_announced() -> None:
    world = World(maintenance_lead=timedelta(hours=1))
    world.nodes(3)
    world.job([(2, 2)])
    announced(world, 2)
    world.advance(48 * HOUR)
    assert world.commands("TerminateInstanceInAutoScalingGroup") == []
    assert world.commands("RebootInstances") == [] and world.commands("StopTask") == []
    assert world.notices().count("maintenance_scheduled") == 1


def test_an_instance_stopped_outside_recovery_fails_its_ranks_and_the_job_moves() -> None:
    # GIVEN a 2-rank job on nodes 1 and 2, spare node 3
    world = World()
    world.nodes(3)
    world.job([(1, 1), (2, 2)])
    # WHEN node 2's instance is stopped from the EC2 console
    world.ecs(instance_state_event(2, "stopping", when=at(100)))
    # THEN the job is interrupted (its other rank stopped); no check or reboot of a stopped instance
    assert world.job_of().phase in ("RECOVERING", "RESTARTING")
    assert [o.command.target for o in world.commands("StopTask")]
    assert world.commands("RebootInstances") == []


def test_our_own_reboot_is_not_an_instance_lost() -> None:
    world = World()
    world.nodes(3)
    world.job([(1, 1), (2, 2)])
    world.fails(2, 2, when=100, reason="Xid 48")
    world.stopped_by_us(1, 1, when=102)
    world.settle_orders()
    world.report("hardware_fault", "reboot", node=2, xids=[48])
    world.settle_orders()
    assert len(world.commands("RebootInstances")) == 1
    stops = len(world.commands("StopTask"))
    world.ecs(instance_state_event(2, "stopping", when=at(200)))
    assert len(world.commands("StopTask")) == stops
    assert world.incident(2) is not None and world.incident(2).phase == "REBOOTING"  # type: ignore[union-attr]
