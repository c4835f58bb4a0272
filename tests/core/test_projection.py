"""The pure fold: what each event does to ecs_task / ecs_job / ecs_node, and that order and
duplication never change the result. Real payloads come from tests/fixtures/aws_events (sources in its README)."""

from __future__ import annotations

import copy
import hashlib
import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consumers.adapters.dynamodb import item_size
from consumers.core.facts import RECOVERY_STOP_REASON, IdentityRules
from consumers.core.projection import (
    JOB,
    NODE,
    TASK,
    ProjectionConfig,
    ProjectionState,
    fold,
    fold_all,
    foreign_cluster,
    job_ranks,
)
from events_schema.commands import StartTask, StopTask
from events_schema.decode import StreamEvent, decode_mapping
from events_schema.envelope import Envelope, Subject
from events_schema.events import (
    ActionOutcome,
    DecisionRecorded,
    HealthCheckReported,
    JobStateChanged,
    NodeStateChanged,
    TaskTagsCaptured,
)
from tests.factories import CLUSTER, T0, at, node_arn, node_event, ours, task_arn, task_event
from tests.hostile import real_samples, sample

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


def _tagged_history(task: int, node: int, fails: bool, start: float) -> list[Any]:
    """A rank launched without --group (ECS sets family:llm-train), its job named by its tag."""
    return [_regroup(e, "family:llm-train") for e in _task_history(task, node, fails, start)]


def _regroup(event: dict[str, Any], group: str) -> dict[str, Any]:
    event["detail"]["group"] = group
    return event


def _tags_history() -> list[list[Any]]:
    """Each capture on its own (recovery records it whenever its ListTagsForResource returns)."""
    return [[tags_captured(task_arn(5), job_tag("llama-run-7"), when=at(2))],
            [tags_captured(task_arn(6), job_tag("llama-run-7"), when=at(2))],
            [tags_captured(task_arn(7), [], when=at(2))],  # no job tag: its job is its startedBy
            [tags_captured(task_arn(8), [], when=at(2))]]  # a service's task: no job whatever its tags


def _service_history() -> list[Any]:
    return [_service(e) for e in _task_history(8, 3, False, 0)]


def _service(event: dict[str, Any]) -> dict[str, Any]:
    event["detail"].update(group="service:web", startedBy="ecs-svc/1234567890123456789")
    return event


def _health_history() -> list[list[Any]]:
    """One queue per event: ECS sends each check's change on its own, several in one second."""
    return [[health_event(2, [("CONTAINER_RUNTIME", "OK", None)], updated=at(5), event_id="EXAMPLE-48f8")],
            [health_event(2, [("ACCELERATED_COMPUTE", "IMPAIRED", "XID_46")], updated=at(5),
                          event_id="EXAMPLE-46c3")],
            [health_event(2, [("ACCELERATED_COMPUTE", "OK", None)], updated=at(9), event_id="EXAMPLE-0001")]]


@st.composite
def histories(draw: st.DrawFn) -> tuple[list[Any], list[Any]]:
    entities = [
        _task_history(1, 1, True, 0), _task_history(2, 2, False, 0), _task_history(3, 3, draw(st.booleans()), 0),
        _task_history(4, 1, False, 21), _node_history(1), _node_history(2), _recovery_history(),
        _later_interruption(), _tagged_history(5, 4, draw(st.booleans()), 0), _tagged_history(6, 5, False, 0),
        _tagged_history(7, 6, False, 0), _service_history(), *_tags_history(), *_health_history(),
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
    # GIVEN the clean history (explicit-group, tag-named, startedBy-named and service tasks, tags captured at
    # any moment, same-second health events) and a shuffled, duplicated delivery of it
    expected = project(*clean)
    assert [j["job_id"] for j in expected.table(JOB)] == ["job:alpha", "launcher", "llama-run-7"]
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


# --- which job: the recovery's own rules (consumers/core/facts.py) ----------------------------------

JOB_TAG = "gpu-recovery:job"


def run_of(name: str, task_id: str, **detail: Any) -> dict[str, Any]:
    """A real sample as another task (another RunTask run), with some detail fields changed."""
    event = copy.deepcopy(sample(name))
    arn = event["detail"]["taskArn"].rsplit("/", 1)[0] + "/" + task_id
    event["detail"].update(taskArn=arn, **detail)
    event["id"] = f"{event['id'][:-12]}{task_id[-12:]:0>12}"
    return event


def tags_captured(arn: str, tags: list[dict[str, str]], when: datetime = T0, job_id: str | None = None) -> Envelope:
    """What recovery records after reading a task's tags (task events carry none)."""
    return ours(TaskTagsCaptured(task_arn=arn, tags=tags, job_id=job_id), when=when, subject=Subject(task=arn))


def job_tag(name: str) -> list[dict[str, str]]:
    return [{"key": "team", "value": "research"}, {"key": JOB_TAG, "value": name}]


def without_started_by(event: dict[str, Any]) -> dict[str, Any]:
    event["detail"].pop("startedBy", None)
    return event


def test_two_runtask_runs_of_one_family_without_a_group_are_two_jobs() -> None:
    # GIVEN the ECS docs' EC2 task event (ECS set group family:webserver; no startedBy) and a second run of it
    first = sample("task_state_change_docs_ec2_running")
    second = run_of("task_state_change_docs_ec2_running", "0f0e0d0c0b0a49f8a7b6c5d4e3f2a1b0")
    arns = [first["detail"]["taskArn"], second["detail"]["taskArn"]]
    # WHEN recovery has read their tags and none names a job
    state = project(first, second, tags_captured(arns[0], []), tags_captured(arns[1], [{"key": "a", "value": "b"}]))
    # THEN each run is a job of its own, not one job "family:webserver" that every run joins forever
    jobs = state.table(JOB)
    assert [j["job_id"] for j in jobs] == sorted(f"task:{arn.rsplit('/', 1)[-1]}" for arn in arns)
    assert [(j["task_count"], j["state"]) for j in jobs] == [(1, "RUNNING"), (1, "RUNNING")]
    assert {t["identity"] for t in state.table(TASK)} == {"task"}


def test_without_the_tag_rule_two_runs_are_two_jobs_at_once() -> None:
    # GIVEN identity by group, then startedBy (no tags to wait for)
    config = ProjectionConfig(identity=IdentityRules(order=("group", "startedBy")))
    events = [sample("task_state_change_docs_ec2_running"),
              run_of("task_state_change_docs_ec2_running", "0f0e0d0c0b0a49f8a7b6c5d4e3f2a1b0")]
    state = fold_all([ev(e) for e in events], config)
    assert len(state.table(JOB)) == 2


def test_a_task_whose_job_depends_on_its_tags_waits_for_them() -> None:
    # GIVEN a task with no explicit group whose tags were not read yet
    state = project(sample("task_state_change_docs_ec2_running"))
    # THEN it is in ecs_task, waiting, and in no job
    (task,) = state.table(TASK)
    assert (task["job_id"], task["identity"], task["tags"]) == (None, "pending", None)
    assert state.table(JOB) == []


def test_the_gpu_recovery_job_tag_makes_ranks_one_job_whatever_the_order() -> None:
    # GIVEN two ranks launched with --tags key=gpu-recovery:job,value=llama-run-7 (no --group: family:llm-train)
    ranks = [task_event(n, node=n, version=v, status=s, group="family:llm-train")
             for n in (1, 2) for v, s in ((1, "PENDING"), (2, "RUNNING"))]
    tags = [tags_captured(task_arn(n), job_tag("llama-run-7"), when=at(3)) for n in (1, 2)]
    # WHEN the tags are folded after the task events, and before them
    after, before = project(*ranks, *tags), project(*tags, *ranks)
    # THEN the tables are the same: one job named by the tag, with both ranks running
    assert after.items == before.items
    (job,) = after.table(JOB)
    assert (job["job_id"], job["task_count"], job["state"]) == ("llama-run-7", 2, "RUNNING")
    assert {(t["job_id"], t["identity"]) for t in after.table(TASK)} == {("llama-run-7", "tag")}


def test_a_tag_job_keeps_the_newest_state_of_a_rank_that_waited() -> None:
    # GIVEN a rank that ran and failed before its tags were read
    state = project(task_event(1, version=2, group="family:llm-train"),
                    task_event(1, version=3, status="STOPPED", exit_code=1, group="family:llm-train"))
    assert state.table(JOB) == []
    # WHEN the tags come, and then an old event of the rank again
    fold(state, ev(tags_captured(task_arn(1), job_tag("run-9"))), CONFIG)
    fold(state, ev(task_event(1, version=2, group="family:llm-train")), CONFIG)
    # THEN the job has the rank as it is now: failed
    (job,) = state.table(JOB)
    assert (job["job_id"], job["state"], job["failed_task_arns"]) == ("run-9", "INTERRUPTED", [task_arn(1)])


def test_a_rank_recovery_restarted_joins_its_tag_identified_job() -> None:
    # GIVEN recovery restarted a rank of job llama-run-7 with its tags (it reads no tags of its own starts)
    start = StartTask(target=node_arn(2), purpose="rank", task_definition="llm-train:7",
                      tags=[*job_tag("llama-run-7"), {"key": "gpu-recovery:key", "value": "llama-run-7:restart:1:0"}],
                      generation=1, restart_of=task_arn(1))
    outcome = ours(ActionOutcome(idempotency_key="llama-run-7:restart:1:0", action=start, job_id="llama-run-7",
                                 step="restart", status="succeeded", detail={"task_arn": task_arn(9)}), when=at(20))
    restarted = task_event(9, node=2, version=2, group="family:llm-train", when=at(25), created=at(21))
    # WHEN the outcome and the new task's event are folded, in either order
    state = project(outcome, restarted)
    assert state.items == project(restarted, outcome).items
    # THEN the new rank is in the job
    (job,) = state.table(JOB)
    assert (job["job_id"], list(job_ranks(job))) == ("llama-run-7", [task_arn(9)])


def test_a_service_task_is_not_a_job() -> None:
    # GIVEN a task a service started (ECS sets group service:NAME and startedBy ecs-svc/...)
    event = run_of("task_state_change_docs_fargate_running", "5e5e5e5e5e5e45e5a5e5e5e5e5e5e5e5",
                   group="service:web", startedBy="ecs-svc/1234567890123456789")
    arn = event["detail"]["taskArn"]
    state = project(event, tags_captured(arn, []))
    # THEN it is a task, in no job: the service scheduler replaces it, recovery does not
    (task,) = state.table(TASK)
    assert (task["job_id"], task["identity"]) == (None, "service")
    assert state.table(JOB) == []
    # AND with services_are_jobs it is one (by startedBy, once its tags name none)
    config = ProjectionConfig(identity=IdentityRules(services_are_jobs=True))
    assert [j["job_id"] for j in fold_all([ev(event), ev(tags_captured(arn, []))], config).table(JOB)] == [
        "ecs-svc/1234567890123456789"]


def test_the_health_check_task_is_no_rank_even_when_its_tags_come() -> None:
    check = task_event(7, version=2, family="gpu-recovery-healthcheck", group="family:gpu-recovery-healthcheck")
    state = project(check, tags_captured(task_arn(7), job_tag("llama-run-7")))
    assert state.table(TASK)[0]["identity"] == "check" and state.table(JOB) == []


# --- GPU task and lifecycle ------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["DEACTIVATING", "STOPPING", "DEPROVISIONING"])
def test_a_stopping_rank_does_not_make_a_running_job_pending(status: str) -> None:
    # GIVEN a running 2-rank job WHEN one rank is on its way to STOPPED
    state = project(task_event(1, version=2), task_event(2, node=2, version=2),
                    task_event(2, node=2, version=3, status=status))
    # THEN the job is not PENDING (ECS's lifecycle: those stages come after RUNNING)
    assert state.table(JOB)[0]["state"] == "RUNNING"


@settings(max_examples=30, deadline=None)
@given(st.permutations([0, 1, 2]))
def test_a_task_is_a_gpu_task_once_any_of_its_events_shows_gpus(order: list[int]) -> None:
    # GIVEN an unplaced PROVISIONING event (no gpuIds yet), a RUNNING one with 8, a STOPPED one without
    events = [task_event(1, node=None, version=1, status="PROVISIONING", gpus=0), task_event(1, version=3, gpus=8),
              task_event(1, version=4, status="STOPPED", exit_code=0, gpus=0)]
    state = project(*[events[i] for i in order])
    # THEN task and job are GPU ones, in any order (never decided at first sight)
    assert state.table(TASK)[0]["is_gpu"] is True and state.table(JOB)[0]["is_gpu"] is True


# --- node health: one register per check -----------------------------------------------------------


def test_two_health_events_in_the_same_second_keep_both_checks() -> None:
    # GIVEN the ECS docs' runtime (OK) and accelerated compute (IMPAIRED, XID_46) events: the same node, the
    # same second, the same lastUpdated; the second's id sorts lower (the old fold dropped it as stale)
    runtime = sample("container_instance_health_change_docs_container_runtime")
    accelerated = sample("container_instance_health_change_docs_accelerated_compute")
    assert runtime["time"] == accelerated["time"] and accelerated["id"] < runtime["id"]
    # WHEN folded in either order
    state = project(runtime, accelerated)
    assert state.items == project(accelerated, runtime).items
    # THEN the node keeps both checks, each with its status, since and reason, and is IMPAIRED overall
    (node,) = state.table(NODE)
    checks = {name: (c["status"], c["since"], c["reason"]) for name, c in node["health_checks"].items()}
    assert checks == {"CONTAINER_RUNTIME": ("OK", "2026-04-11T00:48:53.000000Z", ""),
                      "ACCELERATED_COMPUTE": ("IMPAIRED", "2026-04-11T00:48:53.000000Z", "XID_46")}
    assert node["health_status"] == "IMPAIRED"


def health_event(node: int, checks: list[tuple[str, str, str | None]], *, updated: datetime,
                 event_id: str) -> dict[str, Any]:
    detail = {"clusterArn": CLUSTER, "containerInstanceArn": node_arn(node), "ec2InstanceId": f"i-{node:017x}",
              "overallStatus": "OK",
              "healthChecks": [{"type": kind, "status": status, "lastUpdated": updated.strftime("%Y-%m-%dT%H:%M:%SZ"),
                                "lastStatusChange": updated.strftime("%Y-%m-%dT%H:%M:%SZ"), "statusReason": reason}
                               for kind, status, reason in checks]}
    return {"version": "0", "id": event_id, "detail-type": "ECS Container Instance Health Change",
            "source": "aws.ecs", "account": "123456789012", "time": updated.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": "us-west-2", "resources": [node_arn(node)], "detail": detail}


def test_a_newer_result_of_one_check_leaves_the_other_checks() -> None:
    state = project(
        health_event(1, [("CONTAINER_RUNTIME", "OK", None), ("ACCELERATED_COMPUTE", "OK", None)], updated=at(0),
                     event_id="e1"),
        health_event(1, [("ACCELERATED_COMPUTE", "IMPAIRED", "XID_79")], updated=at(5), event_id="e2"),
        health_event(1, [("ACCELERATED_COMPUTE", "OK", None)], updated=at(3), event_id="e3"),  # older: late
    )
    node = state.table(NODE)[0]
    assert {k: c["status"] for k, c in node["health_checks"].items()} == {"CONTAINER_RUNTIME": "OK",
                                                                         "ACCELERATED_COMPUTE": "IMPAIRED"}
    assert node["health_checks"]["ACCELERATED_COMPUTE"]["reason"] == "XID_79"


health_events = st.lists(
    st.tuples(st.sampled_from(["CONTAINER_RUNTIME", "ACCELERATED_COMPUTE", "DAEMON"]),
              st.sampled_from(["OK", "IMPAIRED", "INSUFFICIENT_DATA", "INITIALIZING"]),
              st.integers(0, 2), st.sampled_from([None, "XID_46", "XID_79"])),
    min_size=1, max_size=8)


@settings(max_examples=150, deadline=None)
@given(health_events, st.randoms(use_true_random=False))
def test_health_events_in_any_order_give_the_same_node(checks: list[tuple[str, str, int, str | None]],
                                                       rng: Any) -> None:
    # GIVEN health events of one node, some in the same second, each about one check
    events = [health_event(1, [(kind, status, reason)], updated=at(second), event_id=f"id-{i:03d}")
              for i, (kind, status, second, reason) in enumerate(checks)]
    shuffled = list(events)
    rng.shuffle(shuffled)
    # WHEN folded in order and shuffled, with duplicates THEN the node is the same
    assert project(*shuffled, *events[:2]).items == project(*events).items
    # AND every check an event named is there
    assert set(project(*events).table(NODE)[0]["health_checks"]) == {kind for kind, *_ in checks}


# --- every kind of event we route, as AWS documents it ----------------------------------------------


def test_every_real_sample_decodes_and_folds() -> None:
    # GIVEN every sample in tests/fixtures/aws_events (task, container instance, instance health, AWS Health,
    # EC2 instance state change) WHEN each is decoded and folded THEN none raises
    samples = real_samples()
    assert {s["detail-type"] for s in samples.values()} == {
        "ECS Task State Change", "ECS Container Instance State Change", "ECS Container Instance Health Change",
        "AWS Health Event", "EC2 Instance State-change Notification"}
    state = project(*samples.values())
    assert {table for table, _ in state.items} == {TASK, JOB, NODE}


def test_aws_health_and_ec2_state_events_change_no_table_today() -> None:
    # Recovery acts on them (drain ahead of maintenance, count ranks on a stopped instance as failed); the
    # tables keep ECS's own view, so these events leave them as they are.
    kinds = ("AWS Health Event", "EC2 Instance State-change Notification")
    events = [e for e in real_samples().values() if e["detail-type"] in kinds]
    assert len(events) == 5
    base = project(task_event(1, version=2), node_event(1))
    after = fold_all([ev(e) for e in events], CONFIG)
    assert after.items == {} and after.dirty == set()
    for event in events:
        fold(base, ev(event), CONFIG)
    assert base.items == project(task_event(1, version=2), node_event(1)).items


def test_only_ecs_events_of_another_cluster_are_foreign() -> None:
    config = ProjectionConfig(cluster_arn=CLUSTER)
    other = task_event(1, cluster=CLUSTER.replace("gpu-training", "gpu-training-2"))
    assert foreign_cluster(ev(other), config) == CLUSTER.replace("gpu-training", "gpu-training-2")
    assert foreign_cluster(ev(task_event(1)), config) is None
    assert foreign_cluster(ev(sample("ec2_instance_state_change_gpu_stopped")), config) is None  # names no cluster
    assert foreign_cluster(ev(tags_captured(task_arn(1), [])), config) is None  # our own events carry none
    assert foreign_cluster(ev(other), ProjectionConfig()) is None  # no cluster configured: every one folds


def test_a_stub_the_previous_projector_left_takes_tags_and_stops_before_its_task_event() -> None:
    # GIVEN the stub an older projector wrote for a stop recorded before the task's first event (it named a job)
    stub = {"task_arn": task_arn(5), "version": -1, "job_id": "llama-run-7", "stop_requested_by_recovery": True}
    state = ProjectionState(items={(TASK, task_arn(5)): stub})
    stop = ours(DecisionRecorded(idempotency_key="k5", action=StopTask(target=task_arn(5)), job_id="llama-run-7",
                                 step="stop_ranks"), when=at(8))
    # WHEN the stop is delivered again and the tags come, then the task's event
    for event in (stop, tags_captured(task_arn(5), job_tag("llama-run-7")),
                  task_event(5, version=3, status="STOPPED", exit_code=137, stop_code="UserInitiated",
                             group="family:llm-train")):
        fold(state, ev(event), CONFIG)
    # THEN the task is in its job, stopped by recovery (not by a user)
    (job,) = state.table(JOB)
    assert (job["job_id"], job["state"]) == ("llama-run-7", "INTERRUPTED")


# --- bounded: a 2,048-rank job's item, restart after restart (DESIGN §3.10, §10) ---------------------

RANKS = 2048
BIG_JOB = "job:alpha"
JOB_ITEM_BOUND = 100 * 1024  # DESIGN §3.10; DynamoDB refuses an item over 400 KB (moto does not)
TASK_PREFIX = CLUSTER.replace(":cluster/", ":task/") + "/"


def ecs_task_arn(generation: int, rank: int) -> str:
    """A task ARN as ECS writes them now: the task id is 32 hex digits."""
    return TASK_PREFIX + hashlib.md5(f"{generation}/{rank}".encode(), usedforsecurity=False).hexdigest()


def generation_start(generation: int) -> datetime:
    return at(3600 * generation)


def big_rank_event(generation: int, rank: int, *, version: int, status: str, when: datetime,
                   exit_code: int | None = None, stop_code: str | None = None,
                   reason: str | None = None) -> dict[str, Any]:
    """Rank ``rank`` of the job's generation ``generation`` (created a millisecond after the rank before)."""
    created = generation_start(generation) + timedelta(seconds=1, milliseconds=rank)
    event = task_event(1, node=rank // 8 + 1, version=version, status=status, exit_code=exit_code,
                       stop_code=stop_code, when=when, created=created)
    arn = ecs_task_arn(generation, rank)
    event["detail"]["taskArn"] = arn
    event["detail"]["containers"][0]["containerArn"] = f"{arn}/trainer"
    if reason is not None:
        event["detail"]["stoppedReason"] = reason
    event["resources"] = [arn]
    event["id"] = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{arn}/{version}"))
    return event


def big_job_generation(generation: int, *, fabric_failure: bool = False, restart: bool = True) -> list[list[Any]]:
    """One generation of a 2,048-rank job, phase by phase: every rank runs; one rank fails (or every rank,
    when the fabric fails) and recovery stops the others; recovery restarts the job."""
    start = generation_start(generation)
    running = [big_rank_event(generation, r, version=2, status="RUNNING", when=start + timedelta(seconds=60))
               for r in range(RANKS)]
    if not restart:
        return [running]
    failed = range(RANKS) if fabric_failure else range(1)
    failures = [big_rank_event(generation, r, version=3, status="STOPPED", exit_code=1,
                               stop_code="EssentialContainerExited", when=start + timedelta(seconds=120))
                for r in failed]
    recovering = ours(JobStateChanged(job_id=BIG_JOB, state="RECOVERING", incident_id=f"i{generation}",
                                      restart_count=generation), when=start + timedelta(seconds=121))
    stops = [big_rank_event(generation, r, version=3, status="STOPPED", exit_code=137, stop_code="UserInitiated",
                            reason=RECOVERY_STOP_REASON, when=start + timedelta(seconds=130))
             for r in range(len(failed), RANKS)]
    restarting = ours(JobStateChanged(job_id=BIG_JOB, state="RESTARTING", incident_id=f"i{generation}",
                                      restart_count=generation + 1), when=start + timedelta(seconds=200))
    return [running, [*failures, recovering], stops, [restarting]]


def test_a_2048_rank_job_item_stays_small_restart_after_restart() -> None:
    # GIVEN a 2,048-rank job that runs, fails (once every rank at once: the fabric), is stopped and restarted
    # by recovery, five times, and then runs again (DESIGN §10: the bound)
    state = ProjectionState()
    peaks = []
    for generation in range(6):
        phases = big_job_generation(generation, fabric_failure=generation == 1, restart=generation < 5)
        peak = 0
        for phase in phases:
            for raw in phase:
                fold(state, ev(raw), CONFIG)
            # WHEN its item is measured as DynamoDB counts an item's size, after every phase
            peak = max(peak, item_size(state.items[(JOB, BIG_JOB)]))
        peaks.append(peak)
        # THEN it stays under 100 KB (DynamoDB's limit is 400 KB; the item that kept every generation's ranks
        # passed it in the first generation) ...
        assert peak <= JOB_ITEM_BOUND, f"generation {generation}: {peaks} bytes"
    # ... and the history does not make it grow
    assert max(peaks[2:]) - peaks[1] <= 1024, peaks
    # AND it still says what the job is: its current generation runs, five restarts behind it, and its ranks
    # are this generation's tasks
    job = state.items[(JOB, BIG_JOB)]
    assert (job["state"], job["task_count"], job["running_count"], job["failed_count"], job["restart_count"]) == (
        "RUNNING", RANKS, RANKS, 0, 5)
    assert sorted(job_ranks(job)) == sorted(ecs_task_arn(5, rank) for rank in range(RANKS))
