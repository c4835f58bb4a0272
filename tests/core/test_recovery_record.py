"""Recovery's state as a fold of the stream: replay folds to what live decided; records stay bounded."""

from __future__ import annotations

import json
from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from consumers.core.facts import IdentityRules
from tests.core.recovery_world import World
from tests.factories import at, node_arn, task_event


def test_replay_of_the_stream_gives_the_recovery_live_has() -> None:
    # GIVEN a job through a fault, a reboot, a post-reboot check and a restart
    world = World()
    world.nodes(3)
    world.job([(1, 1), (2, 2)])
    world.fails(2, 2, when=100)
    world.stopped_by_us(1, 1, when=101)
    world.settle_orders()
    world.report("hardware_fault", "reboot", node=2, xids=[48])
    world.settle_orders()
    from tests.factories import node_event

    world.ecs(node_event(2, version=2, connected=False, when=world.now + timedelta(seconds=10)))
    world.ecs(node_event(2, version=3, connected=True, when=world.now + timedelta(seconds=200)))
    world.settle_orders()
    world.report("healthy", node=2, boot=world.now)
    world.settle_orders()
    world.run_restarted()
    # THEN folding the stream (ECS's events and ours) gives the same incidents, nodes and jobs
    assert world.summary() == world.replayed()
    assert world.summary()["incidents"][0]["outcome"] == "recovered"


@settings(max_examples=25, deadline=None)
@given(faults=st.lists(st.tuples(st.integers(1, 6), st.sampled_from(["healthy", "reboot", "quarantine",
                                                                       "inconclusive"])),
                       min_size=1, max_size=4, unique_by=lambda f: f[0]))
def test_replay_equals_live_for_any_set_of_faults(faults: list[tuple[int, str]]) -> None:
    # GIVEN six single-rank jobs on eight nodes, and faults on some of them, each checked with a verdict
    world = World(breaker_fraction=1.0, max_out_of_service_fraction=1.0)
    world.nodes(8)
    for n in range(1, 7):
        world.job([(n, n)], group=f"job:{n}")
    for n, _ in faults:
        world.fails(n, n, when=100 + n, group=f"job:{n}")
    world.settle_orders()
    verdicts = {"healthy": ("healthy", "none", []), "reboot": ("hardware_fault", "reboot", [48]),
                "quarantine": ("hardware_fault", "quarantine", [79]), "inconclusive": ("inconclusive", "none", [])}
    for n, verdict in faults:
        name, action, xids = verdicts[verdict]
        world.report(name, action, node=n, xids=xids)
        world.settle_orders()
    world.advance(3600)
    # THEN replay folds to exactly what live holds
    assert world.summary() == world.replayed()


def test_a_finished_job_leaves_after_its_ttl_and_a_late_duplicate_does_not_bring_it_back() -> None:
    world = World(retention=timedelta(days=30))
    world.nodes(1)
    world.job([(1, 1)])
    done = task_event(1, node=1, version=3, status="STOPPED", exit_code=0, stop_code="EssentialContainerExited",
                      when=at(100))
    world.ecs(done)
    assert world.job_of().phase == "COMPLETED"
    world.advance(31 * 86_400)
    assert world.view.job("job:alpha") is None
    tombstone = world.view.tombstone(("job", "job:alpha"))
    assert tombstone is not None
    # WHEN the same STOPPED event comes again (a redelivery, a lagging shard)
    world.ecs(done)
    # THEN the job stays gone
    assert world.view.job("job:alpha") is None
    # AND a new run of the group (created after the end) is a new job, generation after the old one
    world.ecs(task_event(5, node=1, version=2, when=world.now, created=world.now))
    assert world.job_of().plan.generation == tombstone["generation"] + 1


def test_a_closed_incident_leaves_after_its_ttl() -> None:
    world = World(retention=timedelta(days=30))
    world.nodes(3)
    world.job([(2, 2)])
    world.fails(2, 2, when=100)
    world.settle_orders()
    world.report("healthy", node=2)
    incident = world.incident(2)
    assert incident is not None and incident.closed
    world.advance(31 * 86_400)
    assert world.view.incident(incident.incident_id) is None


def test_a_2048_rank_job_restarted_five_times_stays_under_100_kb() -> None:
    # GIVEN a 2,048-rank job on 2,049 nodes (long moto-like task ids, the largest real ECS uses)
    world = World(breaker_fraction=1.0, max_job_restarts=10)
    nodes = 2049
    world.nodes(nodes)
    ranks = [(t, t) for t in range(1, 2049)]
    world.ecs(*(task_event(t, node=n, version=2, when=at(2)) for t, n in ranks))
    for restart in range(5):
        job = world.job_of()
        arns = [arn for arn, _ in job.facts.ranks.items()]
        moment = world.now + timedelta(hours=1)
        # WHEN the first rank fails and the others are stopped by us (one batch, as a burst arrives)
        events = []
        for i, arn in enumerate(arns):
            event = task_event(1, node=1 + i, version=3, status="STOPPED",
                               exit_code=1 if i == 0 else 137,
                               stop_code="EssentialContainerExited" if i == 0 else "UserInitiated",
                               when=moment, created=moment - timedelta(minutes=30))
            event["detail"]["taskArn"] = arn
            if i:
                event["detail"]["stoppedReason"] = "gpu-recovery: stopping the ranks of an interrupted job"
            events.append(event)
        world.stream.clear()
        world.ecs(*events)
        world.settle_orders()
        world.report("healthy", node=1)
        world.settle_orders()
        world.run_restarted()
        assert world.job_of().phase == "RUNNING", restart
    job = world.job_of()
    # THEN the job record (facts and plan, as stored) is under 100 KB, and holds only this generation
    size = len(json.dumps(job.model_dump(mode="json"), separators=(",", ":")))
    assert len(job.facts.ranks) == 2048 and job.plan.restart_total == 5
    assert size < 100_000, size


# --- which job ------------------------------------------------------------------------------------


def test_two_runs_of_one_family_without_a_group_are_two_jobs() -> None:
    world = World(identity=IdentityRules(order=("group", "startedBy"), health_check_family="x"))
    world.nodes(2)
    first = task_event(1, node=1, version=2, group="family:llm-train")
    second = task_event(2, node=2, version=2, group="family:llm-train", created=at(50))
    for event in (first, second):
        del event["detail"]["startedBy"]
    world.ecs(first, second)
    jobs = sorted(k[1] for k in world.view.records() if k[0] == "job")
    assert jobs == ["task:task00001", "task:task00002"]


def test_a_tag_names_the_job_once_the_tags_are_read() -> None:
    world = World()
    world.nodes(2)
    event = task_event(1, node=1, version=2, group="family:llm-train")
    del event["detail"]["startedBy"]
    world.ecs(event)
    # THEN the job is not known yet; recovery reads the task's tags
    assert [k for k in world.view.records() if k[0] == "job"] == []
    (capture,) = world.commands("ListTagsForResource")
    world.answer(capture, tags=[{"key": "gpu-recovery:job", "value": "run-7"}])
    # AND then the task is a rank of job run-7, with the status it had meanwhile
    assert world.job_of("run-7").facts.ranks.code(event["detail"]["taskArn"]) is not None


def test_service_tasks_are_not_jobs_and_the_check_task_is_not_a_rank() -> None:
    world = World()
    world.nodes(1)
    service = task_event(1, node=1, version=2, group="service:web")
    check = task_event(2, node=1, version=2, family="gpu-recovery-healthcheck", group=None)
    world.ecs(service, check)
    assert [k for k in world.view.records() if k[0] == "job"] == []


def test_a_holds_of_jobs_keep_other_jobs_off_a_recovering_jobs_idle_nodes() -> None:
    world = World()
    world.nodes(3)
    world.job([(1, 1), (2, 2)])
    assert set(world.node(1).plan.holds) == {"job:alpha"}
    assert node_arn(1) != node_arn(3)
