"""The recovery core with plain objects: jobs (failure, suspects, restarts, budgets, endings)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from consumers.core.recovery.model import FAILED_BIT
from tests.core.recovery_world import World
from tests.factories import at, node_arn, node_event, task_arn, task_event


def failed_job(world: World, nodes: int = 3) -> None:
    """A 2-rank job on nodes 1 and 2 (node 3 spare); the rank on node 2 fails, node 1's is stopped by us."""
    world.nodes(nodes)
    world.job([(1, 1), (2, 2)])
    world.fails(2, 2, when=100)
    world.stopped_by_us(1, 1, when=102)


def check_passes(world: World, node: int, verdict: str = "healthy", action: str = "none", **kw: object) -> None:
    world.settle_orders()
    world.report(verdict, action, node=node, **kw)  # type: ignore[arg-type]
    world.settle_orders()


def test_a_failure_stops_every_other_rank_and_checks_the_failed_ranks_own_node() -> None:
    # GIVEN a running 2-rank job
    world = World()
    world.nodes(3)
    world.job([(1, 1), (2, 2)])
    # WHEN the rank on node 2 fails
    world.fails(2, 2, when=100)
    # THEN the job is RECOVERING and its other rank is stopped, once
    assert world.job_of().phase == "RECOVERING"
    assert [o.command.target for o in world.commands("StopTask")] == [task_arn(1)]
    # AND once it stopped, node 2 (not the job's first node) is drained and checked
    world.stopped_by_us(1, 1, when=102)
    (check,) = world.commands("StartTask", step="health_check")
    assert check.command.target == node_arn(2)
    assert [o.command.target for o in world.commands("UpdateContainerInstancesState")] == [node_arn(2)]


def test_the_rank_that_failed_first_names_the_suspect_whatever_the_arrival_order() -> None:
    # GIVEN both ranks fail by the NCCL timeout; rank 1 (node 1) stopped first, its event arrives last
    world = World()
    world.nodes(3)
    world.job([(1, 1), (2, 2)])
    world.fails(2, 2, when=101)
    world.fails(1, 1, when=100)
    # THEN node 1 is the one suspect (no stop names an XID)
    (check,) = world.commands("StartTask", step="health_check")
    assert check.command.target == node_arn(1)


def test_every_node_whose_own_rank_names_a_gpu_fault_is_a_suspect_and_the_job_waits_for_all() -> None:
    # GIVEN a 3-rank job (and a breaker that lets two nodes into repair); ranks on nodes 2 and 3 stop naming
    # their own XIDs within a second
    world = World(breaker_fraction=0.5)
    world.nodes(5)
    world.job([(1, 1), (2, 2), (3, 3)])
    world.fails(2, 2, when=100, reason="NVRM: Xid (PCI:0000:3b:00): 48, pid=4242")
    world.fails(3, 3, when=100.5, reason="NVRM: Xid (PCI:0000:3b:00): 79, GPU has fallen off the bus")
    world.fails(1, 1, when=101, reason="NCCL watchdog: collective operation timed out")
    # THEN both nodes get their own incident and check (an application XID would not count)
    assert sorted(o.command.target for o in world.commands("StartTask", step="health_check")) == [
        node_arn(2), node_arn(3)]
    assert len(world.job_of().plan.incidents) == 2
    world.settle_orders()
    # WHEN node 2's check says healthy but node 3's has not reported
    world.report("healthy", node=2)
    world.settle_orders()
    # THEN nothing restarts yet: never onto an unchecked suspect
    assert world.commands(step="restart") == []
    # WHEN node 3 is quarantined
    world.report("hardware_fault", "quarantine", node=3, xids=[79])
    world.settle_orders()
    # THEN the job restarts, never on node 3
    restarts = world.commands(step="restart")
    assert len(restarts) == 3 and node_arn(3) not in {o.command.target for o in restarts}


def test_an_application_xid_in_a_stop_reason_is_no_evidence_against_the_node() -> None:
    world = World()
    world.nodes(3)
    world.job([(1, 1), (2, 2)])
    world.fails(2, 2, when=100)
    world.fails(1, 1, when=101, reason="NVRM: Xid (PCI:0000:3b:00): 13, Graphics Exception")
    assert [o.command.target for o in world.commands("StartTask", step="health_check")] == [node_arn(2)]


def test_a_healthy_check_restarts_the_job_exactly_as_launched_on_its_own_nodes() -> None:
    # GIVEN a failed job whose tags were captured when its ranks started
    world = World()
    failed_job(world)
    for order in world.commands("ListTagsForResource"):
        world.answer(order, tags=[{"key": "team", "value": "fm"}])
    # WHEN the check finds an application fault
    check_passes(world, 2, "application_fault")
    # THEN each rank restarts on its own node with its revision, overrides, group, startedBy and tags
    restarts = world.commands(step="restart")
    assert sorted(o.command.target for o in restarts) == [node_arn(1), node_arn(2)]
    for order in restarts:
        command = order.command
        assert command.task_definition.endswith("task-definition/llm-train:7")  # type: ignore[union-attr]
        assert command.group == "job:alpha" and command.started_by == "launcher"  # type: ignore[union-attr]
        assert {"key": "team", "value": "fm"} in command.tags  # type: ignore[union-attr]
        assert any(t["key"] == "gpu-recovery:key" for t in command.tags)  # type: ignore[union-attr]
    assert world.job_of().phase == "RESTARTING"


def test_restarted_ranks_running_bring_the_job_back() -> None:
    world = World()
    failed_job(world)
    check_passes(world, 2)
    world.run_restarted()
    assert world.job_of().phase == "RUNNING"
    assert world.job_of().plan.restart_total == 1


def test_out_of_service_node_sends_its_rank_to_a_spare() -> None:
    world = World()
    failed_job(world)
    check_passes(world, 2, "hardware_fault", "quarantine", xids=[79])
    assert sorted(o.command.target for o in world.commands(step="restart")) == [node_arn(1), node_arn(3)]
    assert world.node(2).plan.repair == "QUARANTINED"


def test_no_capacity_waits_notified_then_fails_at_the_deadline() -> None:
    world = World(capacity_deadline=timedelta(minutes=30))
    failed_job(world, nodes=2)
    check_passes(world, 2, "hardware_fault", "quarantine", xids=[79])
    assert world.job_of().phase == "WAITING_CAPACITY"
    assert "waiting_capacity" in world.notices()
    world.advance(31 * 60)
    assert world.job_of().phase == "FAILED"
    assert "job_failed" in world.notices()


def test_capacity_freed_by_another_job_finishing_is_taken_at_once() -> None:
    # GIVEN job alpha waits for capacity: node 3 is busy with job beta
    world = World()
    world.nodes(3)
    world.job([(1, 1), (2, 2)])
    world.job([(7, 3)], group="job:beta")
    world.fails(2, 2, when=100)
    world.stopped_by_us(1, 1, when=102)
    check_passes(world, 2, "hardware_fault", "quarantine", xids=[79])
    assert world.job_of().phase == "WAITING_CAPACITY"
    assert world.commands(step="restart") == []
    # WHEN beta completes (its rank exits 0)
    world.ecs(task_event(7, node=3, version=3, status="STOPPED", exit_code=0, stop_code="EssentialContainerExited",
                         group="job:beta", when=at(2000)))
    # THEN alpha restarts on node 1 and node 3
    assert world.job_of("job:beta").phase == "COMPLETED"
    assert sorted(o.command.target for o in world.commands(step="restart")) == [node_arn(1), node_arn(3)]


def test_gpus_freed_in_a_later_node_event_are_taken_by_the_waiting_job() -> None:
    # GIVEN alpha waits for capacity; node 3 runs beta and ECS says it has no GPU left
    world = World()
    world.nodes(3)
    world.ecs(node_event(3, version=2, remaining=0))
    world.job([(1, 1), (2, 2)])
    world.job([(7, 3)], group="job:beta")
    world.fails(2, 2, when=100)
    world.stopped_by_us(1, 1, when=102)
    check_passes(world, 2, "hardware_fault", "quarantine", xids=[79])
    # WHEN beta's user stops it: the task event first, then (later, as ECS does) the GPUs released
    world.stopped_by_user(7, 3, when=2000, group="job:beta")
    assert world.job_of("job:beta").phase == "STOPPED_BY_USER"
    assert world.commands(step="restart") == []
    world.ecs(node_event(3, version=3, remaining=8, when=at(2001)))
    # THEN alpha restarts at once, on node 1 and node 3
    assert sorted(o.command.target for o in world.commands(step="restart")) == [node_arn(1), node_arn(3)]


def test_two_jobs_restarting_at_once_never_share_a_spare() -> None:
    # GIVEN two 1-rank jobs on nodes 1 and 2, one spare (node 3); both nodes quarantined at once
    world = World()
    world.nodes(3)
    world.job([(1, 1)], group="job:a")
    world.job([(2, 2)], group="job:b")
    world.fails(1, 1, when=100, group="job:a")
    world.fails(2, 2, when=100, group="job:b")
    world.settle_orders()
    for node in (1, 2):
        world.report("hardware_fault", "quarantine", node=node, xids=[79])
    world.settle_orders()
    # THEN one job restarts on the spare and the other waits (8 GPUs per node, 8 per rank)
    restarts = world.commands(step="restart")
    assert [o.command.target for o in restarts] == [node_arn(3)]
    assert sorted(world.job_of(j).phase for j in ("job:a", "job:b")) == ["RESTARTING", "WAITING_CAPACITY"]


def test_a_recovering_jobs_idle_nodes_stay_its_own_even_when_its_tasks_came_before_its_nodes() -> None:
    # GIVEN job alpha's ranks were seen before any event of their nodes (another shard), then the nodes
    world = World(breaker_fraction=0.5)
    world.job([(1, 1), (2, 2)])
    world.nodes(4)
    world.job([(7, 3)], group="job:beta")
    # AND alpha waits for node 2's check while beta loses node 3 (quarantined)
    world.fails(2, 2, when=100)
    world.stopped_by_us(1, 1, when=102)
    world.fails(7, 3, when=110, reason="Xid 79", group="job:beta")
    world.settle_orders()
    world.report("hardware_fault", "quarantine", node=3, xids=[79])
    world.settle_orders()
    # THEN beta restarts on the real spare (node 4), never on alpha's idle node 1
    assert [o.command.target for o in world.commands(step="restart")] == [node_arn(4)]
    assert world.node(1).plan.holds["job:alpha"].gpus == 8


def test_small_ranks_share_a_node_up_to_its_gpus() -> None:
    # GIVEN a 4-rank job of 4-GPU ranks over 4 nodes of 8 GPUs; two nodes are quarantined
    world = World(breaker_fraction=0.5)
    world.nodes(4)
    world.job([(1, 1), (2, 2), (3, 3), (4, 4)], gpus=4)
    world.fails(1, 1, when=100, reason="Xid 79", gpus=4)
    world.fails(2, 2, when=100.2, reason="Xid 79", gpus=4)
    for task, node in ((3, 3), (4, 4)):
        world.stopped_by_us(task, node, when=102, gpus=4)
    world.settle_orders()
    for node in (1, 2):
        world.report("hardware_fault", "quarantine", node=node, xids=[79])
    world.settle_orders()
    # THEN the 4 ranks fit on nodes 3 and 4, two each, and never more GPUs than a node has
    targets = [o.command.target for o in world.commands(step="restart")]
    assert sorted(targets) == [node_arn(3), node_arn(3), node_arn(4), node_arn(4)]


@pytest.mark.parametrize("budget", [0, 1])
def test_the_restart_budget_is_configurable(budget: int) -> None:
    world = World(max_job_restarts=budget)
    failed_job(world)
    check_passes(world, 2)
    assert len({o.key.rsplit(":", 1)[0] for o in world.commands(step="restart")}) == budget
    if budget == 0:
        assert world.job_of().phase == "FAILED" and "budget_exhausted" in world.notices()


def test_the_restart_budget_counts_a_window_not_a_lifetime() -> None:
    # GIVEN a budget of 1 restart per 24 h: a fault, a restart, then another fault three weeks later
    world = World(max_job_restarts=1)
    failed_job(world)
    check_passes(world, 2)
    world.run_restarted()
    assert world.job_of().phase == "RUNNING" and world.job_of().plan.restart_total == 1
    world.advance(21 * 86_400)
    restarted = [arn for arn, _ in world.job_of().facts.ranks.items()]
    failed = task_event(1, node=1, version=3, status="STOPPED", exit_code=1, stop_code="EssentialContainerExited",
                        when=world.now, created=world.now)
    failed["detail"]["taskArn"] = restarted[0]
    world.ecs(failed)
    world.settle_orders()
    for arn in restarted[1:]:
        stopped = task_event(2, node=2, version=3, status="STOPPED", exit_code=137, stop_code="UserInitiated",
                             when=world.now, created=world.now)
        stopped["detail"]["taskArn"] = arn
        stopped["detail"]["stoppedReason"] = "gpu-recovery: stopping the ranks of an interrupted job"
        world.ecs(stopped)
    check_passes(world, 1)
    # THEN the second restart is within its own window: the job restarts again, not budget_exhausted
    assert world.job_of().plan.restart_total == 2
    assert "budget_exhausted" not in world.notices()


def test_restart_backoff_doubles() -> None:
    config = World(restart_backoff=timedelta(seconds=30)).config
    assert [config.backoff(n).total_seconds() for n in (1, 2, 3)] == [30, 60, 120]


def test_a_user_stopping_the_job_is_not_recovered() -> None:
    world = World()
    world.nodes(2)
    world.job([(1, 1), (2, 2)])
    world.stopped_by_user(1, 1, when=100)
    world.fails(2, 2, when=101)  # the other rank dies of it
    assert world.job_of().phase == "STOPPED_BY_USER"
    assert world.commands("StartTask") == []


def test_a_user_stopping_a_rank_during_recovery_ends_it_and_nothing_restarts() -> None:
    world = World()
    world.nodes(3)
    world.job([(1, 1), (2, 2), (3, 3)])
    world.fails(2, 2, when=100)
    world.stopped_by_user(3, 3, when=101)  # before our stop reached it
    world.stopped_by_us(1, 1, when=102)
    check_passes(world, 2)
    assert world.job_of().phase == "STOPPED_BY_USER"
    assert world.commands(step="restart") == []


def test_job_cancel_ends_recovery() -> None:
    world = World()
    failed_job(world)
    world.operator("cancel_job", job="job:alpha")
    check_passes(world, 2)
    assert world.job_of().phase == "STOPPED_BY_USER"
    assert world.commands(step="restart") == []


def test_every_rank_exiting_zero_completes_the_job() -> None:
    world = World()
    world.nodes(2)
    world.job([(1, 1), (2, 2)])
    for task in (1, 2):
        world.ecs(task_event(task, node=task, version=3, status="STOPPED", exit_code=0,
                             stop_code="EssentialContainerExited", when=at(200)))
    assert world.job_of().phase == "COMPLETED"
    assert world.orders == [o for o in world.orders if o.step == "capture_tags"]


def test_a_rank_first_seen_after_the_failure_is_stopped_too() -> None:
    world = World()
    world.nodes(3)
    world.job([(1, 1)])
    world.fails(1, 1, when=100)
    world.ecs(task_event(2, node=2, version=2, when=at(101), created=at(0)))
    assert [o.command.target for o in world.commands("StopTask")] == [task_arn(2)]


def test_a_rank_of_a_replaced_generation_seen_after_the_restart_is_stopped() -> None:
    world = World()
    failed_job(world)
    check_passes(world, 2)
    world.ecs(task_event(9, node=1, version=2, when=at(5000), created=at(1)))
    assert task_arn(9) in [o.command.target for o in world.commands("StopTask")]


def test_duplicate_and_stale_events_decide_nothing_new() -> None:
    world = World()
    failed_job(world)
    before = len(world.orders)
    world.fails(2, 2, when=100)  # the same event again
    world.ecs(task_event(2, node=2, version=2, when=at(2)))  # an older one
    assert len(world.orders) == before


def test_decisions_are_deterministic() -> None:
    def run() -> list[tuple[str, str]]:
        world = World()
        failed_job(world)
        check_passes(world, 2, "hardware_fault", "reboot", xids=[48])
        return [(o.key, o.command.type) for o in world.orders]

    first = run()
    assert first and first == run()


def test_a_failed_rank_code_carries_the_failure() -> None:
    world = World()
    failed_job(world)
    assert world.job_of().facts.ranks.code(task_arn(2)) & FAILED_BIT  # type: ignore[operator]
