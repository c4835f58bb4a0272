"""What the random-fleet property test (test_recovery_random_fleets.py) found in the recovery core, each
shrunk to a plain case on the core's own objects."""

from __future__ import annotations

from datetime import timedelta

from events_schema.events import NotificationSent
from tests.core.recovery_world import World
from tests.factories import at, node_arn, node_event, task_event


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


def test_a_restart_never_lands_on_a_node_another_jobs_failed_rank_names_before_that_job_opens_its_incident() -> None:
    # GIVEN job alpha on node 1 and job beta on nodes 2 and 3 (4-GPU ranks on 8-GPU nodes: room beside each)
    world = World()
    world.nodes(3)
    world.job([(1, 1)], gpus=4)
    world.job([(2, 2), (3, 3)], group="job:beta", gpus=4)
    world.fails(1, 1, when=100, reason="NVRM: Xid (PCI:0000:3b:00): 79", gpus=4)
    world.settle_orders()
    # AND beta's rank on node 2 dies naming XID 48; its rank on node 3 is not stopped yet (no incident for node 2)
    world.fails(2, 2, when=200, reason="NVRM: Xid (PCI:0000:3b:00): 48", group="job:beta", gpus=4)
    world.settle_orders()
    assert world.node(2).plan.incident_id is None
    # WHEN alpha's node is quarantined and alpha restarts
    world.report("hardware_fault", "quarantine", node=1, xids=[79])
    # THEN alpha goes to node 3, never to node 2, which beta's evidence names and nobody has checked
    assert [o.command.target for o in world.commands(step="restart")] == [node_arn(3)]


def test_a_job_that_joins_a_suspect_waiting_for_a_repair_slot_is_told_too() -> None:
    # GIVEN a breaker of one node in repair, taken by job gamma's node 1
    world = World(breaker_fraction=0.2)
    world.nodes(4)
    world.job([(1, 1)], group="job:gamma")
    world.fails(1, 1, when=100, reason="NVRM: Xid (PCI:0000:3b:00): 48", group="job:gamma")
    world.settle_orders()
    # AND jobs alpha and beta share node 2; alpha's rank dies there naming XID 48: the suspect waits, alpha is told
    world.job([(2, 2)], gpus=4)
    world.job([(3, 2), (4, 3)], group="job:beta", gpus=4)
    world.fails(2, 2, when=200, reason="NVRM: Xid (PCI:0000:3b:00): 48", gpus=4)
    world.settle_orders()
    world.advance(1)
    # WHEN beta's rank on node 2 dies too, and beta's other rank is stopped: beta waits for the same suspect
    world.fails(3, 2, when=201, reason="NVRM: Xid (PCI:0000:3b:00): 48", group="job:beta", gpus=4)
    world.stopped_by_us(4, 3, when=203, group="job:beta", gpus=4)
    world.settle_orders()
    world.advance(1)
    incident = world.incident(2)
    assert incident is not None and incident.phase == "WAITING" and "job:beta" in incident.jobs
    # THEN beta's owner is told its job waits for a repair slot (before: only alpha, the first to wait, was)
    told = {j for e in world.events if isinstance(e, NotificationSent) and e.kind == "breaker_open"
            for j in e.message.job_ids}
    assert told == {"job:alpha", "job:beta"}


def test_recoverys_own_earlier_healthy_attribute_still_in_the_nodes_facts_is_no_operator_release() -> None:
    # GIVEN node 2 checked healthy after a fault: recovery set gpu-recovery.state=HEALTHY, and ECS's next
    # container-instance event shows it (PutAttributes itself sends no event)
    world = World()
    world.nodes(3)
    world.job([(2, 2)])
    world.fails(2, 2, when=100, reason="NVRM: Xid (PCI:0000:3b:00): 48")
    world.settle_orders()
    world.report("healthy", node=2)
    world.settle_orders()
    assert world.node(2).plan.repair == "HEALTHY"
    shown = node_event(2, version=5, when=world.now + timedelta(seconds=30))
    shown["detail"]["attributes"].append({"name": "gpu-recovery.state", "value": "HEALTHY"})
    world.ecs(shown)
    # WHEN another job's rank on it fails, and the check finds XID 79: quarantined (the attribute still
    # reads HEALTHY in the facts until ECS sends the node's next event)
    world.job([(3, 2)], group="job:beta", when=200)
    world.fails(3, 2, when=300, reason="NVRM: Xid (PCI:0000:3b:00): 79", group="job:beta")
    world.settle_orders()
    world.report("hardware_fault", "quarantine", node=2, xids=[79])
    world.settle_orders()
    # THEN it stays out of service: no release, no check (before: recovery read its own stale HEALTHY
    # as a person setting the attribute back, opened an "operator" incident and checked the node again)
    assert world.node(2).plan.repair in ("QUARANTINED", "REPLACED")
    assert [i.trigger for i in world.view.records().values() if getattr(i, "trigger", None) == "operator"] == []


def test_a_recovering_jobs_two_ranks_on_one_node_keep_both_their_gpus_from_another_jobs_restart() -> None:
    # GIVEN job alpha with two 4-GPU ranks on 8-GPU node 1 and one on node 2; job beta's 4-GPU rank on node 3
    world = World(breaker_fraction=1.0)
    world.nodes(3)
    world.job([(1, 1), (2, 1), (3, 2)], gpus=4)
    world.job([(4, 3)], group="job:beta", gpus=4)
    # AND alpha's rank on node 2 dies naming XID 48, its ranks on node 1 are stopped: alpha waits for node 2
    world.fails(3, 2, when=100, reason="NVRM: Xid (PCI:0000:3b:00): 48", gpus=4)
    world.stopped_by_us(1, 1, when=102, gpus=4)
    world.stopped_by_us(2, 1, when=102, gpus=4)
    world.settle_orders()
    # WHEN beta's node faults, is checked, and needs a place to restart: node 1 shows 8 free GPUs
    world.fails(4, 3, when=200, reason="NVRM: Xid (PCI:0000:3b:00): 79", group="job:beta", gpus=4)
    world.settle_orders()
    world.report("hardware_fault", "quarantine", node=3, xids=[79])
    world.settle_orders()
    # THEN beta does not restart on node 1: all 8 of its GPUs wait for alpha (before: alpha held 4, one rank's)
    assert world.node(1).plan.holds["job:alpha"].gpus == 8
    assert node_arn(1) not in [o.command.target for o in world.commands(step="restart")]
