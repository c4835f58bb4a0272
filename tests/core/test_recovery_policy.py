"""The recovery policy with plain objects: every rule of DESIGN section 5 is configurable and tested."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from consumers.core.recovery.config import PolicyConfig
from consumers.core.recovery.policy import Effects, RecoveryPolicy
from consumers.core.recovery.state import RecoveryState
from events_schema.decode import decode_mapping
from events_schema.envelope import EventData, OurEvent, Subject, make_envelope
from events_schema.events import ActionOutcome, DecisionRecorded, HealthCheckReported, NotificationSent
from tests.factories import at, node_arn, node_event, task_arn, task_event

CHECK_FAMILY = "gpu-recovery-healthcheck"


class World:
    """Feeds events to the policy and answers its decisions the way AWS would, by hand."""

    def __init__(self, **config: Any) -> None:
        self.policy = RecoveryPolicy(PolicyConfig(restart_backoff=timedelta(0), **config))
        self.state = RecoveryState()
        self.emitted: list[EventData] = []
        self.rejected: list[str] = []
        self.counter = 0

    def feed(self, raw: Any) -> Effects:
        event = decode_mapping(raw) if isinstance(raw, dict) else raw
        effects = self.policy.handle(self.state, event)
        self.emitted.extend(e.data for e in effects.emits)
        if effects.rejected:
            self.rejected.append(effects.rejected)
        return effects

    def ours(self, data: EventData, when: datetime) -> OurEvent:
        self.counter += 1
        return OurEvent(make_envelope(data, event_id=f"e{self.counter}", time=when, source="test",
                                      subject=Subject()), data)

    def decisions(self, action: str | None = None) -> list[DecisionRecorded]:
        return [d for d in self.emitted
                if isinstance(d, DecisionRecorded) and (action is None or d.action.type == action)]

    def answer(self, decision: DecisionRecorded, when: datetime, status: str = "succeeded",
               **detail: Any) -> Effects:
        outcome = ActionOutcome(idempotency_key=decision.idempotency_key, action=decision.action,
                                incident_id=decision.incident_id, job_id=decision.job_id, status=status,  # type: ignore[arg-type]
                                detail=detail, error=None if status == "succeeded" else "boom")
        return self.feed(self.ours(outcome, when))

    def notifications(self) -> list[str]:
        return [d.kind for d in self.emitted if isinstance(d, NotificationSent)]

    def expire_all(self, until: datetime) -> None:
        for emit in self.policy.expired(self.state, until):
            self.feed(self.ours(emit.data, until))

    # --- a 2-rank job on nodes 1 and 2 (and a spare node 3) whose rank on node 2 fails ----------

    def running_job(self, nodes: int = 3) -> None:
        for n in range(1, nodes + 1):
            self.feed(node_event(n))
        self.feed(task_event(1, node=1, version=2))
        self.feed(task_event(2, node=2, version=2))

    def rank_fails(self, when: float = 100) -> None:
        self.feed(task_event(2, node=2, version=3, status="STOPPED", exit_code=1,
                             stop_code="EssentialContainerExited", when=at(when)))
        self.feed(task_event(1, node=1, version=3, status="STOPPED", exit_code=137, stop_code="UserInitiated",
                             when=at(when + 2)))

    def check_started(self, when: float = 101, arn: str = "check-1") -> DecisionRecorded:
        check = [d for d in self.decisions("StartTask") if d.step == "health_check"][-1]
        self.answer(check, at(when), task_arn=arn)
        return check

    def report(self, verdict: str, action: str = "none", *, when: float = 400, arn: str = "check-1",
               xids: list[int] | None = None, node: int = 2, incident: str | None = None) -> Effects:
        incident_id = incident or next(iter(self.state.incidents))
        data = HealthCheckReported(node_arn=node_arn(node), check_task_arn=arn, incident_id=incident_id, level=2,
                                   verdict=verdict, recommended_action=action,  # type: ignore[arg-type]
                                   xids=[{"xid": x, "count": 1} for x in xids or []])  # type: ignore[misc]
        return self.feed(self.ours(data, at(when)))


def test_a_rank_first_seen_after_the_failure_is_stopped_once_too() -> None:
    # GIVEN a 2-rank job of which only rank 2 (node 2) is known when it fails: rank 1's events are on
    # another shard that is read later
    world = World()
    for n in (1, 2, 3):
        world.feed(node_event(n))
    world.feed(task_event(2, node=2, version=2))
    world.feed(task_event(2, node=2, version=3, status="STOPPED", exit_code=1,
                          stop_code="EssentialContainerExited", when=at(100)))
    assert world.decisions("StopTask") == []
    # WHEN rank 1's RUNNING event arrives, then again (redelivered), then an older one
    world.feed(task_event(1, node=1, version=2, when=at(101)))
    world.feed(task_event(1, node=1, version=2, when=at(101)))
    world.feed(task_event(1, node=1, version=1, when=at(90)))
    # THEN recovery stops it, once, as a rank of the interrupted job
    (stop,) = world.decisions("StopTask")
    assert stop.action.target == task_arn(1) and stop.step == "stop_siblings"
    # AND its UserInitiated stop is known as ours: the job is not taken for stopped by a user, and the
    # failed rank's node is the one checked
    world.feed(task_event(1, node=1, version=3, status="STOPPED", exit_code=137, stop_code="UserInitiated",
                          when=at(103)))
    assert world.state.jobs["job:alpha"].state == "RECOVERING"
    assert world.state.jobs["job:alpha"].tasks == [task_arn(2), task_arn(1)]
    (check,) = [d for d in world.decisions("StartTask") if d.step == "health_check"]
    assert check.action.target == node_arn(2)


def test_a_rank_created_before_the_first_one_seen_is_still_a_rank() -> None:
    # GIVEN rank 2 (created at 5 s) seen before rank 1 (created at 0 s): shards deliver in any order
    world = World()
    for n in (1, 2, 3):
        world.feed(node_event(n))
    world.feed(task_event(2, node=2, version=2, created=at(5)))
    world.feed(task_event(1, node=1, version=2, created=at(0)))
    # WHEN rank 2 fails
    world.feed(task_event(2, node=2, version=3, status="STOPPED", exit_code=1,
                          stop_code="EssentialContainerExited", when=at(100), created=at(5)))
    # THEN rank 1 is part of the job: stopped, and restarted later
    assert world.state.jobs["job:alpha"].tasks == [task_arn(2), task_arn(1)]
    assert [d.action.target for d in world.decisions("StopTask")] == [task_arn(1)]


def test_a_rank_of_a_replaced_generation_first_seen_after_the_restart_is_stopped() -> None:
    # GIVEN a 2-rank job restarted after a fault, while a third rank's events had not arrived at all
    world = World()
    world.running_job(nodes=3)
    world.rank_fails()
    world.check_started()
    world.report("application_fault", xids=[13])
    assert len([d for d in world.decisions("StartTask") if d.step == "restart"]) == 2
    stops_before = len(world.decisions("StopTask"))
    # WHEN that rank, launched with the first generation, is seen still running
    world.feed(task_event(7, node=3, version=2, when=at(500)))
    world.feed(task_event(7, node=3, version=2, when=at(500)))
    # THEN recovery stops it, once, and it does not join the restarted generation
    late = world.decisions("StopTask")[stops_before:]
    assert [d.action.target for d in late] == [task_arn(7)]
    assert "replaced by a restart" in late[0].reason
    assert task_arn(7) not in world.state.jobs["job:alpha"].tasks


def test_after_giving_up_a_late_rank_is_stopped_and_a_resubmission_is_left_alone() -> None:
    # GIVEN a job recovery gave up on (no capacity), while one of its ranks had not been seen at all
    world = World(capacity_deadline=timedelta(minutes=30))
    world.running_job(nodes=2)
    world.rank_fails()
    world.check_started()
    world.report("hardware_fault", "quarantine", xids=[79])
    world.expire_all(at(400) + timedelta(minutes=31))
    assert world.state.jobs["job:alpha"].state == "FAILED"
    stops_before = len(world.decisions("StopTask"))
    # WHEN that rank (created before the failure) shows up running, and so does the user's resubmission
    # of the same group (created after it)
    world.feed(task_event(5, node=1, version=2, created=at(0), when=at(3000)))
    world.feed(task_event(6, node=1, version=2, created=at(2900), when=at(3000)))
    # THEN only the leftover rank is stopped
    assert [d.action.target for d in world.decisions("StopTask")[stops_before:]] == [task_arn(5)]


def test_failure_stops_siblings_and_checks_the_failed_ranks_node() -> None:
    world = World()
    world.running_job()
    world.rank_fails()
    stops = world.decisions("StopTask")
    assert [d.action.target for d in stops] == [task_arn(1)]
    (check,) = [d for d in world.decisions("StartTask") if d.step == "health_check"]
    assert check.action.target == node_arn(2)
    env = {e["name"]: e["value"] for e in check.action.params["overrides"]["containerOverrides"][0]["environment"]}
    assert env["GPU_RECOVERY_CHECK_LEVEL"] == "2" and env["GPU_RECOVERY_INCIDENT_ID"] == check.incident_id
    assert world.decisions("UpdateContainerInstancesState")[0].action.params == {"status": "DRAINING"}


def test_the_rank_that_failed_first_names_the_node_whatever_the_arrival_order() -> None:
    world = World()
    world.running_job()
    # Rank 1's timeout (later) arrives before rank 2's crash (earlier).
    world.feed(task_event(1, node=1, version=3, status="STOPPED", exit_code=1, when=at(100.8)))
    world.feed(task_event(2, node=2, version=3, status="STOPPED", exit_code=1, when=at(100.1)))
    (check,) = [d for d in world.decisions("StartTask") if d.step == "health_check"]
    assert check.action.target == node_arn(2)


def test_report_not_naming_our_check_task_is_rejected() -> None:
    world = World()
    world.running_job()
    world.rank_fails()
    world.check_started(arn="check-1")
    # A report from something else on the node (or a forged one) cannot declare the node healthy.
    world.report("healthy", arn="someone-elses-task")
    assert world.rejected and "suspect health report" in world.rejected[0]
    assert world.decisions("RebootInstances") == []
    assert world.state.nodes[node_arn(2)].repair_state == "CHECKING"


def test_report_for_a_node_without_an_incident_is_rejected() -> None:
    world = World()
    world.running_job()
    data = HealthCheckReported(node_arn=node_arn(1), check_task_arn="x", incident_id="inc-nope", level=2,
                               verdict="healthy")
    world.feed(world.ours(data, at(10)))
    assert len(world.rejected) == 1


@pytest.mark.parametrize(("xids", "verdict", "action", "expected"), [
    ([48], "hardware_fault", "reboot", "REBOOTING"),
    ([79], "hardware_fault", "quarantine", "QUARANTINED"),
    ([74], "hardware_fault", "reboot", "QUARANTINED"),  # the catalog wins over a weaker recommendation
    ([13], "application_fault", "none", "HEALTHY"),
    ([], "inconclusive", "none", "QUARANTINED"),
])
def test_verdict_to_repair(xids: list[int], verdict: str, action: str, expected: str) -> None:
    world = World()
    world.running_job()
    world.rank_fails()
    world.check_started()
    world.report(verdict, action, xids=xids)
    assert world.state.nodes[node_arn(2)].repair_state == expected


def test_a_node_with_a_fault_inside_the_window_is_quarantined_not_rebooted() -> None:
    world = World(fault_window=timedelta(days=7))
    world.running_job()
    world.state.nodes[node_arn(2)].fault_times = [(at(100) - timedelta(days=3)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")]
    world.rank_fails()
    world.check_started()
    world.report("hardware_fault", "reboot", xids=[48])
    assert world.state.nodes[node_arn(2)].repair_state == "QUARANTINED"
    assert world.decisions("RebootInstances") == []


def test_a_fault_outside_the_window_reboots_again() -> None:
    world = World(fault_window=timedelta(days=7))
    world.running_job()
    world.state.nodes[node_arn(2)].fault_times = [(at(100) - timedelta(days=8)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")]
    world.rank_fails()
    world.check_started()
    world.report("hardware_fault", "reboot", xids=[48])
    assert len(world.decisions("RebootInstances")) == 1


def test_only_a_disconnect_and_reconnect_after_the_request_proves_a_reboot() -> None:
    # Old tool's bug 3: it restarted on any ACTIVE event, even before the reboot ran.
    world = World()
    world.running_job()
    world.rank_fails()
    world.check_started()
    world.report("hardware_fault", "reboot", xids=[48], when=400)
    world.feed(node_event(2, version=5, connected=True, when=at(410)))  # an ACTIVE, connected event
    assert world.state.nodes[node_arn(2)].repair_state == "REBOOTING"
    world.feed(node_event(2, version=6, connected=False, when=at(420)))
    world.feed(node_event(2, version=7, connected=True, when=at(600)))
    assert world.state.nodes[node_arn(2)].repair_state == "VERIFYING"
    post = [d for d in world.decisions("StartTask") if d.step == "health_check"][-1]
    assert "GPU_RECOVERY_CHECK_LEVEL" in str(post.action.params) and "'value': '1'" in str(post.action.params)


def test_check_exit_code_is_only_a_fallback_and_never_says_healthy() -> None:
    world = World(report_grace=timedelta(seconds=60))
    world.running_job()
    world.rank_fails()
    world.check_started(arn=task_arn(77))
    # The check task stops with exit 0 but no report arrives.
    world.feed(task_event(77, node=2, version=4, status="STOPPED", exit_code=0, family=CHECK_FAMILY,
                          group="family:" + CHECK_FAMILY, when=at(300)))
    world.expire_all(at(400))
    assert world.state.nodes[node_arn(2)].repair_state == "QUARANTINED"
    assert "escalation" in world.notifications()


def test_check_exit_1_without_report_falls_back_to_a_reboot() -> None:
    world = World(report_grace=timedelta(seconds=60))
    world.running_job()
    world.rank_fails()
    world.check_started(arn=task_arn(77))
    world.feed(task_event(77, node=2, version=4, status="STOPPED", exit_code=1, family=CHECK_FAMILY,
                          group="family:" + CHECK_FAMILY, when=at(300)))
    world.expire_all(at(400))
    assert world.state.nodes[node_arn(2)].repair_state == "REBOOTING"


def test_health_check_deadline_is_configurable_and_escalates() -> None:
    world = World(health_check_deadline=timedelta(minutes=5))
    world.running_job()
    world.rank_fails(when=100)
    world.check_started()
    (deadline,) = [d for d in world.state.deadlines.values() if d.kind == "health_check"]
    assert deadline.due_at.startswith((at(102) + timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%S"))
    world.expire_all(at(102) + timedelta(minutes=5))
    assert world.state.nodes[node_arn(2)].repair_state == "QUARANTINED"
    assert {"deadline_expired", "escalation"} <= set(world.notifications())


def test_failed_reboot_request_escalates() -> None:
    world = World()
    world.running_job()
    world.rank_fails()
    world.check_started()
    world.report("hardware_fault", "reboot", xids=[48])
    (reboot,) = world.decisions("RebootInstances")
    world.answer(reboot, at(401), status="failed")
    assert world.state.nodes[node_arn(2)].repair_state == "QUARANTINED"
    assert "escalation" in world.notifications()


def test_restart_goes_to_a_spare_when_the_node_is_out_of_service() -> None:
    world = World()
    world.running_job(nodes=3)
    world.rank_fails()
    world.check_started()
    world.report("hardware_fault", "quarantine", xids=[79])
    restarts = [d for d in world.decisions("StartTask") if d.step == "restart"]
    assert sorted(d.action.target for d in restarts) == [node_arn(1), node_arn(3)]
    spec = restarts[0].action.params
    assert spec["task_definition"].endswith("llm-train:7") and spec["group"] == "job:alpha"
    assert spec["started_by"] == "launcher" and spec["overrides"]["containerOverrides"][0]["name"] == "trainer"


def test_no_capacity_waits_notified_then_fails_at_the_deadline() -> None:
    world = World(capacity_deadline=timedelta(minutes=30))
    world.running_job(nodes=2)
    world.rank_fails()
    world.check_started()
    world.report("hardware_fault", "quarantine", xids=[79])
    assert world.state.jobs["job:alpha"].state == "WAITING_CAPACITY"
    assert "waiting_capacity" in world.notifications()
    world.expire_all(at(400) + timedelta(minutes=31))
    assert world.state.jobs["job:alpha"].state == "FAILED"
    assert "job_failed" in world.notifications()


def test_capacity_arriving_restarts_the_waiting_job() -> None:
    world = World()
    world.running_job(nodes=2)
    world.rank_fails()
    world.check_started()
    world.report("hardware_fault", "quarantine", xids=[79])
    world.feed(node_event(9, when=at(500)))  # a new GPU node registers
    restarts = [d for d in world.decisions("StartTask") if d.step == "restart"]
    assert sorted(d.action.target for d in restarts) == [node_arn(1), node_arn(9)]


@pytest.mark.parametrize("budget", [0, 1])
def test_restart_budget_is_configurable(budget: int) -> None:
    world = World(max_job_restarts=budget)
    world.running_job()
    world.rank_fails()
    world.check_started()
    world.report("application_fault", xids=[13])
    restarts = [d for d in world.decisions("StartTask") if d.step == "restart"]
    if budget == 0:
        assert restarts == [] and world.state.jobs["job:alpha"].state == "FAILED"
        assert "budget_exhausted" in world.notifications()
    else:
        assert len(restarts) == 2 and world.state.jobs["job:alpha"].state == "RESTARTING"


def test_restart_backoff_doubles() -> None:
    config = PolicyConfig(restart_backoff=timedelta(seconds=30))
    assert [config.backoff(n).total_seconds() for n in (1, 2, 3)] == [30, 60, 120]


@pytest.mark.parametrize(("nodes", "fraction", "limit"), [(8, 0.2, 1), (20, 0.2, 4), (3, 0.2, 1), (10, 0.5, 5)])
def test_breaker_limit(nodes: int, fraction: float, limit: int) -> None:
    assert PolicyConfig(breaker_fraction=fraction).breaker_limit(nodes) == limit


def test_user_stop_is_not_recovered() -> None:
    world = World()
    world.running_job()
    for task, node in ((1, 1), (2, 2)):
        world.feed(task_event(task, node=node, version=3, status="STOPPED", exit_code=143,
                              stop_code="UserInitiated", when=at(50)))
    assert world.state.jobs["job:alpha"].state == "STOPPED_BY_USER"
    assert world.decisions("StopTask") == [] and world.state.incidents == {}


def test_every_rank_exiting_zero_completes_the_job() -> None:
    world = World()
    world.running_job()
    for task, node in ((1, 1), (2, 2)):
        world.feed(task_event(task, node=node, version=3, status="STOPPED", exit_code=0, when=at(50)))
    assert world.state.jobs["job:alpha"].state == "COMPLETED"


def test_duplicate_and_stale_events_decide_nothing_new() -> None:
    world = World()
    world.running_job()
    world.rank_fails()
    before = len(world.emitted)
    world.rank_fails()  # delivered again
    world.feed(task_event(2, node=2, version=2))  # stale RUNNING
    assert len(world.emitted) == before


def test_decisions_are_deterministic() -> None:
    def run() -> list[str]:
        world = World()
        world.running_job()
        world.rank_fails()
        return [d.idempotency_key for d in world.decisions()]
    assert run() == run()
