"""The pure fold: what each event does to ecs_task / ecs_job / ecs_node, and that order and
duplication never change the result."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from consumers.core.facts import IdentityRules
from consumers.core.projection import (
    JOB,
    NODE,
    TASK,
    ProjectionConfig,
    ProjectionState,
    fold,
    fold_all,
)
from events_schema.commands import StopTask
from events_schema.decode import StreamEvent, decode_mapping
from events_schema.envelope import Subject
from events_schema.events import DecisionRecorded, HealthCheckReported, JobStateChanged, NodeStateChanged
from tests.factories import at, node_arn, node_event, ours, task_arn, task_event

CONFIG = ProjectionConfig(identity=IdentityRules(health_check_family="gpu-recovery-healthcheck"))


def ev(raw: dict[str, Any] | Any) -> StreamEvent:
    return decode_mapping(raw if isinstance(raw, dict) else raw.model_dump(mode="json"))


def project(*raws: Any) -> ProjectionState:
    return fold_all([ev(r) for r in raws], CONFIG)


def test_running_job_projects_tasks_job_and_nodes() -> None:
    # GIVEN two nodes and a 2-rank job whose tasks reach RUNNING
    state = project(
        node_event(1), node_event(2),
        task_event(1, node=1, version=1, status="PENDING"), task_event(2, node=2, version=1, status="PENDING"),
        task_event(1, node=1, version=2), task_event(2, node=2, version=2),
    )
    # THEN the tables hold the two tasks, one running job and two nodes
    assert [t["last_status"] for t in state.table(TASK)] == ["RUNNING", "RUNNING"]
    (job,) = state.table(JOB)
    assert (job["job_id"], job["state"], job["task_count"], job["running_count"]) == ("job:alpha", "RUNNING", 2, 2)
    assert [n["gpu_count"] for n in state.table(NODE)] == [8, 8]
    assert state.table(NODE)[0]["repair_state"] == "HEALTHY"


def test_task_keeps_its_launch_spec() -> None:
    # WHEN a task runs
    state = project(task_event(1, version=2))
    spec = state.table(TASK)[0]["launch_spec"]
    # THEN what StartTask needs to launch it again is kept (ECS forgets stopped tasks in an hour)
    assert spec["task_definition_arn"].endswith("task-definition/llm-train:7")
    assert spec["group"] == "job:alpha" and spec["started_by"] == "launcher"
    assert spec["overrides"]["containerOverrides"][0]["environment"] == [{"name": "RANK", "value": "0"}]


def test_stale_event_never_overwrites_newer_state() -> None:
    # GIVEN a task already STOPPED at version 5
    state = project(task_event(1, version=5, status="STOPPED", exit_code=1))
    # WHEN an older RUNNING event (version 3) arrives late
    fold(state, ev(task_event(1, version=3)), CONFIG)
    # THEN the task is still STOPPED
    assert state.table(TASK)[0]["last_status"] == "STOPPED"
    assert state.table(TASK)[0]["version"] == 5


def test_nonzero_exit_interrupts_the_job() -> None:
    state = project(task_event(1, node=1, version=2), task_event(2, node=2, version=2),
                    task_event(1, node=1, version=3, status="STOPPED", exit_code=1,
                               stop_code="EssentialContainerExited"))
    (job,) = state.table(JOB)
    assert job["state"] == "INTERRUPTED"
    assert job["failed_task_arns"] == [task_arn(1)]


def test_user_stop_is_not_a_failure() -> None:
    state = project(task_event(1, version=2),
                    task_event(1, version=3, status="STOPPED", exit_code=137, stop_code="UserInitiated"))
    assert state.table(TASK)[0]["failed"] is False
    assert state.table(JOB)[0]["state"] == "STOPPED_BY_USER"


def test_sibling_stopped_by_recovery_is_not_a_user_stop() -> None:
    # GIVEN recovery recorded its decision to stop rank 2 (old tool's bug 4: this looked like a user stop)
    decision = ours(
        DecisionRecorded(idempotency_key="inc1:stop:2", action=StopTask(target=task_arn(2)),
                         job_id="job:alpha", step="stop_ranks"),
        when=at(3.5),
    )
    state = project(
        task_event(1, version=2), task_event(2, node=2, version=2),
        task_event(1, version=3, status="STOPPED", exit_code=1),
        decision,
        task_event(2, node=2, version=3, status="STOPPED", exit_code=137, stop_code="UserInitiated", when=at(4)),
    )
    # THEN the job is interrupted, not STOPPED_BY_USER, and rank 2 is marked as stopped by recovery
    assert state.table(JOB)[0]["state"] == "INTERRUPTED"
    assert state.get((TASK, task_arn(2)))["stop_requested_by_recovery"] is True  # type: ignore[index]


def test_recovery_states_and_restart_generation() -> None:
    # GIVEN a failed job that recovery restarts
    restarting = ours(JobStateChanged(job_id="job:alpha", state="RESTARTING", restart_count=1, incident_id="i1"),
                      when=at(10))
    state = project(
        task_event(1, version=2), task_event(1, version=3, status="STOPPED", exit_code=1, when=at(3)),
        ours(JobStateChanged(job_id="job:alpha", state="RECOVERING", incident_id="i1"), when=at(4)),
        restarting,
    )
    assert state.table(JOB)[0]["state"] == "RESTARTING"
    # WHEN the new task (created after the restart decision) runs
    fold(state, ev(task_event(9, version=2, created=at(11), when=at(12))), CONFIG)
    job = state.table(JOB)[0]
    # THEN only the new generation counts, and the job runs again
    assert (job["state"], job["task_count"], job["restart_count"]) == ("RUNNING", 1, 1)


def test_node_repair_state_and_health_report() -> None:
    node = node_arn(1)
    state = project(
        node_event(1),
        ours(NodeStateChanged(node_arn=node, state="REBOOTING", incident_id="i1"), when=at(5)),
        ours(HealthCheckReported(node_arn=node, level=2, verdict="hardware_fault", recommended_action="reboot",
                                 xids=[{"xid": 48, "count": 2}]), when=at(4)),  # type: ignore[list-item]
    )
    (item,) = state.table(NODE)
    assert item["repair_state"] == "REBOOTING"
    assert item["last_health_report"]["verdict"] == "hardware_fault"
    assert item["last_health_report"]["xids"] == [48]


def test_agent_disconnect_is_projected() -> None:
    state = project(node_event(1, version=1), node_event(1, version=2, connected=False))
    assert state.table(NODE)[0]["agent_connected"] is False


def test_health_check_tasks_are_not_job_members() -> None:
    state = project(task_event(7, version=2, family="gpu-recovery-healthcheck",
                               group="family:gpu-recovery-healthcheck"))
    assert state.table(TASK)[0]["job_id"] is None
    assert state.table(JOB) == []


def test_unplaced_task_is_projected_without_a_node() -> None:
    state = project(task_event(3, node=None, version=1, status="STOPPED", stop_code="TaskFailedToStart"))
    (task,) = state.table(TASK)
    assert task["container_instance_arn"] is None and task["failed"] is True


# --- property: duplication and interleaving never change the tables -------------------------------


def _task_history(task: int, node: int, fails: bool, start: float) -> list[Any]:
    history = [task_event(task, node=node, version=v, status=s, when=at(start + v))
               for v, s in ((1, "PROVISIONING"), (2, "PENDING"), (3, "RUNNING"))]
    if fails:
        history.append(task_event(task, node=node, version=4, status="STOPPED", exit_code=1, when=at(start + 4)))
    else:
        history.append(task_event(task, node=node, version=4, status="STOPPED", exit_code=0, when=at(start + 4)))
    return history


def _node_history(node: int) -> list[Any]:
    return [node_event(node, version=1), node_event(node, version=2, connected=False, when=at(30)),
            node_event(node, version=3, when=at(40)),
            ours(NodeStateChanged(node_arn=node_arn(node), state="CHECKING", incident_id="i"), when=at(31),
                 subject=Subject(node=node_arn(node)))]


def _recovery_history() -> list[Any]:
    return [
        ours(DecisionRecorded(idempotency_key="k", action=StopTask(target=task_arn(2)),
                              job_id="job:alpha", step="stop_ranks"), when=at(8)),
        ours(JobStateChanged(job_id="job:alpha", state="RECOVERING", incident_id="i"), when=at(9)),
        ours(JobStateChanged(job_id="job:alpha", state="RESTARTING", incident_id="i", restart_count=1), when=at(20)),
    ]


def _later_interruption() -> list[Any]:
    """Recorded under another partition key (the node's), so it may be folded before the restart."""
    return [ours(JobStateChanged(job_id="job:alpha", state="RECOVERING", incident_id="i2", restart_count=1),
                 when=at(30), subject=Subject(node=node_arn(1)))]


@st.composite
def histories(draw: st.DrawFn) -> tuple[list[Any], list[Any]]:
    entities = [
        _task_history(1, 1, True, 0), _task_history(2, 2, False, 0), _task_history(3, 3, draw(st.booleans()), 0),
        _task_history(4, 1, False, 21), _node_history(1), _node_history(2), _recovery_history(),
        _later_interruption(),
    ]
    clean = [event for history in entities for event in history]
    # Interleave the per-entity histories in any way, keeping each entity's own order ...
    queues = [list(h) for h in entities]
    mixed: list[Any] = []
    while any(queues):
        index = draw(st.sampled_from([i for i, q in enumerate(queues) if q]))
        mixed.append(queues[index].pop(0))
    # ... and deliver any of them again, anywhere after their first delivery.
    for _ in range(draw(st.integers(0, 15))):
        original = draw(st.integers(0, len(mixed) - 1))
        position = draw(st.integers(original + 1, len(mixed)))
        mixed.insert(position, mixed[original])
    return clean, mixed


@settings(max_examples=150, deadline=None)
@given(histories())
def test_any_interleaving_and_duplication_projects_the_same_tables(pair: tuple[list[Any], list[Any]]) -> None:
    clean, mixed = pair
    # GIVEN the clean history and a shuffled, duplicated delivery of it
    expected = project(*clean)
    # WHEN both are folded
    actual = project(*mixed)
    # THEN every table is identical
    assert actual.items == expected.items


@settings(max_examples=100, deadline=None)
@given(st.permutations(list(range(8))))
def test_fold_commutes_even_across_one_entitys_versions(order: list[int]) -> None:
    # Last-writer-wins registers: even a task's own versions may arrive in any order.
    events = [task_event(1, version=v + 1, status="RUNNING" if v < 7 else "STOPPED", exit_code=None if v < 7 else 1)
              for v in range(8)]
    assert project(*[events[i] for i in order]).items == project(*events).items
