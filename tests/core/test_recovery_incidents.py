"""The recovery core with plain objects: incidents (checks, verified reports, repairs, limits, notices)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.core.recovery_world import World
from tests.factories import at, node_arn, node_event


def suspect(world: World, node: int = 2, nodes: int = 3) -> None:
    """A 1-rank job on ``node`` fails there; its check task started."""
    world.nodes(nodes)
    world.job([(node, node)])
    world.fails(node, node, when=100)
    world.settle_orders()


# --- verified reports only ------------------------------------------------------------------------


def test_only_a_report_signed_with_the_checks_secret_counts() -> None:
    world = World()
    suspect(world)
    # WHEN someone who reads the stream forges a report: the live ids copied, but no valid proof
    world.report("hardware_fault", "quarantine", node=2, xids=[79], sign=False)
    # THEN it is rejected, and nothing is repaired
    assert world.rejected and "proof does not verify" in world.rejected[-1]
    assert world.commands("RebootInstances") == [] and world.node(2).plan.repair == "CHECKING"
    # WHEN the check task's own, signed report arrives
    world.report("hardware_fault", "reboot", node=2, xids=[48])
    assert [o.step for o in world.commands("RebootInstances")] == ["reboot"]


def test_a_report_for_another_check_or_node_or_no_incident_is_rejected() -> None:
    world = World()
    suspect(world)
    world.report("healthy", node=2, key="inc-other:check:1")
    world.report("healthy", node=3, incident="inc-nope")
    assert len(world.rejected) == 2
    assert world.node(2).plan.repair == "CHECKING"


def test_the_accepted_report_delivered_again_changes_nothing_and_is_not_parked() -> None:
    world = World()
    suspect(world)
    world.report("hardware_fault", "reboot", node=2, xids=[48])
    orders = len(world.orders)
    world.report("hardware_fault", "reboot", node=2, xids=[48])
    assert len(world.orders) == orders and world.rejected == []


@pytest.mark.parametrize(("verdict", "action", "xids", "state", "outcome"), [
    ("healthy", "none", [], "HEALTHY", "healthy"),
    ("application_fault", "none", [13], "HEALTHY", "application_fault"),
    ("hardware_fault", "reboot", [48], "REBOOTING", None),
    ("hardware_fault", "quarantine", [79], "QUARANTINED", "quarantined"),
    ("hardware_fault", "reboot", [74], "QUARANTINED", "quarantined"),  # the catalog says out of service
    ("misconfigured", "reconfigure", [], "MISCONFIGURED", "misconfigured"),
    ("inconclusive", "none", [], "QUARANTINED", "escalated"),
])
def test_a_verified_verdict_decides_the_repair(verdict: str, action: str, xids: list[int], state: str,
                                               outcome: str | None) -> None:
    world = World()
    suspect(world)
    world.report(verdict, action, node=2, xids=xids, fix="nvidia-smi -pm 1")
    assert world.node(2).plan.repair == state
    incident = world.incident(2)
    assert incident is not None and incident.outcome == outcome


def test_misconfigured_never_reboots_and_the_notice_says_the_fix() -> None:
    world = World()
    suspect(world)
    world.report("misconfigured", "reconfigure", node=2, fix="Enable persistence mode: nvidia-smi -pm 1")
    assert world.commands("RebootInstances") == []
    (notice,) = [e for e in world.events if getattr(e, "kind", None) == "node_misconfigured"]
    assert "nvidia-smi -pm 1" in notice.message.next_step  # type: ignore[attr-defined]


def test_a_fault_inside_the_window_quarantines_and_outside_reboots_again() -> None:
    # GIVEN node 2 was rebooted for a fault
    world = World(fault_window=timedelta(days=7))
    suspect(world)
    world.report("hardware_fault", "reboot", node=2, xids=[48])
    assert world.node(2).plan.fault_times
    # WHEN it faults again 3 days later: quarantined
    again = World(fault_window=timedelta(days=7))
    again.view = world.view
    again.now = world.now
    node = world.node(2)
    node.plan.incident_id, node.plan.repair = None, "HEALTHY"
    world.advance(3 * 86_400)
    world.job([(9, 2)], group="job:beta", when=(world.now - at(0)).total_seconds())
    world.fails(9, 2, when=(world.now - at(0)).total_seconds() + 1, group="job:beta")
    world.settle_orders()
    world.report("hardware_fault", "reboot", node=2, xids=[48])
    assert world.node(2).plan.repair == "QUARANTINED"


# --- what a check that cannot report means ----------------------------------------------------------


def test_a_check_that_stops_without_a_report_is_never_healthy_and_never_a_reboot() -> None:
    world = World(report_grace=timedelta(seconds=60))
    suspect(world)
    incident = world.incident(2)
    assert incident is not None and incident.check_task_arn
    from tests.factories import task_event

    stopped = task_event(77, node=2, version=3, status="STOPPED", exit_code=1, stop_code="EssentialContainerExited",
                         family="gpu-recovery-healthcheck", group=None, when=at(200))
    stopped["detail"]["taskArn"] = incident.check_task_arn
    world.ecs(stopped)
    world.advance(61)
    assert world.commands("RebootInstances") == []
    assert world.node(2).plan.repair == "QUARANTINED" and world.incident(2).outcome == "escalated"  # type: ignore[union-attr]
    assert "escalation" in world.notices()


def test_a_check_that_fails_to_start_escalates() -> None:
    world = World()
    world.nodes(3)
    world.job([(2, 2)])
    world.fails(2, 2, when=100)
    (check,) = world.commands(step="health_check")
    world.answer(check, "failed", error_kind="refused")
    assert world.incident(2).outcome == "escalated"  # type: ignore[union-attr]


def test_no_report_within_the_deadline_escalates() -> None:
    world = World(health_check_deadline=timedelta(minutes=20))
    suspect(world)
    world.advance(19 * 60)
    assert world.node(2).plan.repair == "CHECKING"
    world.advance(2 * 60)
    assert world.incident(2).outcome == "escalated" and "deadline_expired" in world.notices()  # type: ignore[union-attr]


def test_the_check_deadline_counts_from_when_the_check_really_started() -> None:
    # GIVEN the decision was made at t=100 but the StartTask only ran 25 minutes later (a backlog)
    world = World(health_check_deadline=timedelta(minutes=20))
    world.nodes(3)
    world.job([(2, 2)])
    world.fails(2, 2, when=100)
    (check,) = world.commands(step="health_check")
    world.answer(check, when=at(100 + 25 * 60), task_arn="arn:check")
    # WHEN 15 more minutes pass
    world.advance(15 * 60)
    # THEN the check still runs: 20 minutes from its start, not from the decision
    assert world.node(2).plan.repair == "CHECKING"


# --- reboots and their proof --------------------------------------------------------------------


def rebooting(world: World) -> None:
    suspect(world)
    world.report("hardware_fault", "reboot", node=2, xids=[48])
    world.settle_orders()


def test_a_routine_reconnect_is_no_proof_the_boot_time_is() -> None:
    world = World()
    rebooting(world)
    requested = world.incident(2).reboot_requested_at  # type: ignore[union-attr]
    # WHEN the agent's routine reconnect happens 2 s after the request (before the machine rebooted)
    world.ecs(node_event(2, version=2, connected=False, when=world.now + timedelta(seconds=1)))
    world.ecs(node_event(2, version=3, connected=True, when=world.now + timedelta(seconds=2)))
    world.settle_orders()
    # THEN the post-reboot check runs, but its boot time is from before the request: not rebooted yet
    world.report("healthy", node=2, boot=at(0))
    assert world.node(2).plan.repair == "REBOOTING"
    # WHEN the real reboot happens (the agent drops and returns) and the next check shows the new boot
    world.ecs(node_event(2, version=4, connected=False, when=world.now + timedelta(seconds=30)))
    world.ecs(node_event(2, version=5, connected=True, when=world.now + timedelta(seconds=200)))
    world.settle_orders()
    world.report("healthy", node=2, boot=world.now)
    # THEN the node is back, recovered; never quarantined, nobody paged
    assert world.node(2).plan.repair == "HEALTHY" and world.incident(2).outcome == "recovered"  # type: ignore[union-attr]
    assert requested and world.notices() == []


def test_a_lost_reboot_request_is_asked_once_more_then_escalated() -> None:
    world = World(reboot_deadline=timedelta(minutes=15))
    rebooting(world)
    world.advance(16 * 60)
    assert len(world.commands("RebootInstances")) == 2
    world.settle_orders()
    world.advance(16 * 60)
    assert world.incident(2).outcome == "escalated"  # type: ignore[union-attr]


def test_a_node_that_never_comes_back_escalates_at_the_deadline() -> None:
    world = World(reboot_deadline=timedelta(minutes=15))
    rebooting(world)
    world.ecs(node_event(2, version=2, connected=False, when=world.now + timedelta(seconds=10)))
    world.advance(16 * 60)
    assert len(world.commands("RebootInstances")) == 1
    assert world.incident(2).outcome == "escalated" and "deadline_expired" in world.notices()  # type: ignore[union-attr]


def test_a_refused_reboot_escalates_but_a_throttled_one_is_not_a_failure() -> None:
    refused = World()
    refused.nodes(3)
    refused.job([(2, 2)])
    refused.fails(2, 2, when=100)
    refused.settle_orders()
    refused.report("hardware_fault", "reboot", node=2, xids=[48])
    (reboot,) = refused.commands("RebootInstances")
    refused.answer(reboot, "failed", error_kind="refused")
    assert refused.incident(2).outcome == "escalated"  # type: ignore[union-attr]

    throttled = World()
    throttled.nodes(3)
    throttled.job([(2, 2)])
    throttled.fails(2, 2, when=100)
    throttled.settle_orders()
    throttled.report("hardware_fault", "reboot", node=2, xids=[48])
    (reboot,) = throttled.commands("RebootInstances")
    throttled.answer(reboot, "unknown", error_kind="throttled")
    assert throttled.node(2).plan.repair == "REBOOTING"  # asked again at the deadline, never read as failed


def test_an_anywhere_node_is_rebooted_through_ssm() -> None:
    world = World()
    world.ecs(*(node_event(n, instance_id=f"mi-{n:017x}") for n in (1, 2, 3)))
    world.job([(2, 2)])
    world.fails(2, 2, when=100)
    world.settle_orders()
    world.report("hardware_fault", "reboot", node=2, xids=[48])
    assert [o.command.type for o in world.commands(step="reboot")] == ["SendCommand"]


# --- out of service: replace, release -------------------------------------------------------------


def test_replace_notices_only_after_it_succeeded_and_falls_back_to_quarantine() -> None:
    ok = World(replace_instances=True)
    suspect(ok)
    ok.report("hardware_fault", "quarantine", node=2, xids=[79])
    assert "node_replaced" not in ok.notices()  # not before the call
    (replace,) = ok.commands("TerminateInstanceInAutoScalingGroup")
    ok.answer(replace)
    assert ok.node(2).plan.repair == "REPLACED" and "node_replaced" in ok.notices()

    failed = World(replace_instances=True)
    suspect(failed)
    failed.report("hardware_fault", "quarantine", node=2, xids=[79])
    (replace,) = failed.commands("TerminateInstanceInAutoScalingGroup")
    failed.answer(replace, "failed", error_kind="refused")
    assert failed.node(2).plan.repair == "QUARANTINED" and "replace_failed" in failed.notices()
    assert "node_replaced" not in failed.notices()


def test_a_released_node_comes_back_only_through_a_passing_check() -> None:
    world = World()
    suspect(world)
    world.report("hardware_fault", "quarantine", node=2, xids=[79])
    assert world.node(2).plan.repair == "QUARANTINED"
    # WHEN an operator releases it
    world.operator("release_node", node=2)
    world.settle_orders()
    # THEN it is checked first; a pass returns it
    assert world.node(2).plan.repair == "CHECKING"
    world.report("healthy", node=2)
    assert world.node(2).plan.repair == "HEALTHY" and world.incident(2).outcome == "released"  # type: ignore[union-attr]


def test_the_attribute_set_back_by_hand_also_releases_through_a_check() -> None:
    world = World()
    suspect(world)
    world.report("hardware_fault", "quarantine", node=2, xids=[79])
    world.settle_orders()  # the QUARANTINED attribute put: a later event showing HEALTHY is a person's
    event = node_event(2, version=5, when=world.now + timedelta(minutes=5))
    event["detail"]["attributes"].append({"name": "gpu-recovery.state", "value": "HEALTHY"})
    world.ecs(event)
    assert world.node(2).plan.repair == "CHECKING"


# --- cluster limits and their notices ---------------------------------------------------------------


def test_the_out_of_service_cap_holds_four_xid79_nodes_in_ten_to_two() -> None:
    # GIVEN 10 nodes, 4 single-node jobs whose nodes all raise XID 79 within seconds
    world = World(breaker_fraction=0.5, notice_window=timedelta(seconds=60))
    world.nodes(10)
    for n in range(1, 5):
        world.job([(n, n)], group=f"job:{n}")
    for n in range(1, 5):
        world.fails(n, n, when=100 + n * 0.1, group=f"job:{n}", reason="NVRM: Xid 79")
    world.settle_orders()
    checking = [n for n in range(1, 5) if world.node(n).plan.repair == "CHECKING"]
    assert len(checking) == 2
    for n in checking:
        world.report("hardware_fault", "quarantine", node=n, xids=[79])
    world.settle_orders()
    # THEN never more than 2 out of service; the other two wait SUSPECT and drained; one notice for the burst
    states = [world.node(n).plan.repair for n in range(1, 5)]
    assert states.count("QUARANTINED") == 2 and states.count("SUSPECT") == 2
    assert all(world.node(n).plan.drained for n in range(1, 5))
    world.advance(120)
    assert world.notices().count("out_of_service_cap") == 1


def test_the_repair_breaker_lets_one_in_at_a_time_and_forgets_none() -> None:
    world = World(notice_window=timedelta(seconds=60))
    world.nodes(8)
    for n in (2, 5, 7):
        world.job([(n, n)], group=f"job:{n}")
    for n in (2, 5, 7):
        world.fails(n, n, when=100, group=f"job:{n}")
    world.settle_orders()
    for _ in range(3):
        (current,) = [n for n in (2, 5, 7) if world.node(n).plan.repair == "CHECKING"]
        world.report("healthy", node=current)
        world.settle_orders()
    assert [world.node(n).plan.repair for n in (2, 5, 7)] == ["HEALTHY"] * 3
    world.advance(120)
    assert world.notices().count("breaker_open") == 1


def test_a_burst_of_64_quarantines_is_one_message() -> None:
    world = World(breaker_fraction=1.0, max_out_of_service_fraction=1.0, notice_window=timedelta(seconds=60))
    world.nodes(64)
    for n in range(1, 65):
        world.job([(n, n)], group=f"job:{n}")
        world.fails(n, n, when=100, group=f"job:{n}", reason="Xid 79")
    world.settle_orders()
    for n in range(1, 65):
        world.report("hardware_fault", "quarantine", node=n, xids=[79])
    world.advance(120)
    quarantined = [e for e in world.events if getattr(e, "kind", None) == "node_quarantined"]
    assert len(quarantined) == 1
    assert len(quarantined[0].message.node_arns) == 64  # type: ignore[attr-defined]


# --- signals may start a diagnosis, only verified checks may repair ------------------------------


def test_an_impaired_idle_node_is_checked_before_any_job_uses_it() -> None:
    world = World()
    world.nodes(3)
    world.signal(3, xids=[48])
    assert world.node(3).plan.drained and world.node(3).plan.repair == "CHECKING"
    world.settle_orders()
    world.report("hardware_fault", "reboot", node=3, xids=[48])
    assert world.commands("RebootInstances")


def test_a_forged_signal_costs_one_check_and_nothing_else() -> None:
    world = World()
    world.nodes(3)
    world.signal(3, xids=[79])
    world.settle_orders()
    world.report("healthy", node=3)
    assert world.node(3).plan.repair == "HEALTHY" and not world.node(3).plan.drained
    assert world.commands("RebootInstances") == [] and world.commands("TerminateInstanceInAutoScalingGroup") == []
    assert len(world.commands(step="health_check")) == 1 and world.notices() == []


def test_a_busy_node_with_a_signal_tells_the_job_and_checks_when_it_stops() -> None:
    world = World()
    world.nodes(3)
    world.job([(1, 1), (2, 2)])
    world.signal(2, xids=[48])
    assert world.commands(step="health_check") == [] and "job_at_risk" in world.notices()
    assert world.job_of().plan.at_risk == node_arn(2) and world.node(2).plan.drained
    for task in (1, 2):
        from tests.factories import task_event

        world.ecs(task_event(task, node=task, version=3, status="STOPPED", exit_code=0,
                             stop_code="EssentialContainerExited", when=world.now + timedelta(minutes=5)))
    assert [o.command.target for o in world.commands(step="health_check")] == [node_arn(2)]


def test_with_stop_job_a_busy_node_is_emptied_repaired_and_the_job_restarted_on_a_spare() -> None:
    world = World(proactive_action="stop_job")
    world.nodes(3)
    world.job([(1, 1), (2, 2)])
    world.signal(2, xids=[48])
    assert sorted(o.command.target[-9:] for o in world.commands("StopTask")) == ["task00001", "task00002"]
    for task in (1, 2):
        world.stopped_by_us(task, task, when=(world.now - at(0)).total_seconds() + 3)
    world.settle_orders()
    world.report("hardware_fault", "quarantine", node=2, xids=[79])
    world.settle_orders()
    assert sorted(o.command.target for o in world.commands(step="restart")) == [node_arn(1), node_arn(3)]
