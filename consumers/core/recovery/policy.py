"""The recovery policy: ``decide(state, event) -> effects``. Pure: no I/O, no clock.

Every rule of DESIGN section 5 lives here or in ``xid_catalog``. The flow for one job interruption:

1. a GPU task fails -> the job is RECOVERING; recovery stops the job's other ranks (recorded, so their
   ``UserInitiated`` stops are never mistaken for a user's);
2. once every rank has stopped (or the siblings deadline passes), the suspect is the node of the rank
   that failed first -> one incident per node (other jobs and ranks join it);
3. breaker admits it -> drain, start the DCGM check on exactly that container instance;
4. the report (only one naming our check task counts) -> healthy/application fault: back to service and
   restart; hardware fault: reboot (or quarantine for out-of-service XIDs and repeat offenders);
5. reboot proof: agent disconnected and reconnected after the request -> post-reboot check;
6. restart the job's tasks exactly as launched, on the same nodes or healthy spares; wait for capacity
   otherwise; budgets and deadlines end every path with a state and, where a human is needed, a message.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from consumers.core.clocktext import iso, parse_iso
from consumers.core.projection import first_nonzero_exit, is_failure, launch_spec
from consumers.core.recovery.config import PolicyConfig
from consumers.core.recovery.state import (
    OUT_OF_SERVICE,
    Deadline,
    Incident,
    JobRec,
    NodeRec,
    RecoveryState,
    TaskRec,
)
from consumers.core.xid_catalog import action_for_xids, classify_xid
from events_schema.aws import ContainerInstanceStateChange, TaskDetail, TaskStateChange
from events_schema.decode import StreamEvent
from events_schema.envelope import EventData, OurEvent, Subject
from events_schema.events import (
    Action,
    ActionOutcome,
    DeadlineExpired,
    DecisionRecorded,
    HealthCheckReported,
    IncidentClosed,
    IncidentOpened,
    JobStateChanged,
    NodeStateChanged,
    NotificationSent,
)

# Events this consumer writes itself: when they come back on the stream they were already applied.
OUTPUT_TYPES = frozenset({
    DecisionRecorded.TYPE, IncidentOpened.TYPE, IncidentClosed.TYPE, NodeStateChanged.TYPE,
    JobStateChanged.TYPE, NotificationSent.TYPE, "RecordParked",
})
ACTIVE_JOB = frozenset({"RUNNING", "INTERRUPTED"})
IN_RECOVERY = frozenset({"RECOVERING", "RESTARTING", "WAITING_CAPACITY"})
# An interrupted job whose ranks of the current generation must all be down: before it is restarted, or
# because recovery gave up on it.
STOPPING_RANKS = frozenset({"RECOVERING", "WAITING_CAPACITY", "FAILED"})
CHECK_CONTAINER = "healthcheck"
RESTART_TAG = "gpu-recovery:key"


@dataclass(frozen=True)
class Emit:
    data: EventData
    subject: Subject
    event_id: str


@dataclass
class Effects:
    now: str
    emits: list[Emit] = field(default_factory=list)
    rejected: str | None = None

    def emit(self, data: EventData, subject: Subject, identity: str) -> None:
        self.emits.append(Emit(data, subject, stable_id(f"{data.TYPE}:{identity}")))

    def decide(self, key: str, action: Action, *, step: str, reason: str, subject: Subject,
               incident_id: str | None = None, job_id: str | None = None) -> None:
        data = DecisionRecorded(idempotency_key=key, action=action, incident_id=incident_id, job_id=job_id,
                                step=step, reason=reason)
        self.emit(data, subject, key)

    @property
    def decisions(self) -> list[DecisionRecorded]:
        return [e.data for e in self.emits if isinstance(e.data, DecisionRecorded)]


def stable_id(text: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"gpu-recovery/{text}"))


def short_hash(*parts: str) -> str:
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:12]


class RecoveryPolicy:
    def __init__(self, config: PolicyConfig) -> None:
        self.config = config

    # --- entry points ---------------------------------------------------------------------------

    def handle(self, state: RecoveryState, event: StreamEvent) -> Effects:
        if isinstance(event, TaskStateChange):
            effects = Effects(iso(event.time))
            self._on_task(state, event.detail, effects)
        elif isinstance(event, ContainerInstanceStateChange):
            effects = Effects(iso(event.time))
            self._on_node(state, event, effects)
        elif isinstance(event, OurEvent):
            effects = Effects(iso(event.time))
            self._on_ours(state, event, effects)
        else:
            effects = Effects("")
        return effects

    def expired(self, state: RecoveryState, now: datetime) -> list[Emit]:
        """Deadlines due at ``now``, as DeadlineExpired events to record (time enters only as events)."""
        due = sorted((d for d in state.deadlines.values() if d.due_at <= iso(now)), key=lambda d: (d.due_at, d.id))
        return [
            Emit(
                DeadlineExpired(deadline_id=d.id, kind=d.kind, due_at=parse_iso(d.due_at), incident_id=d.incident_id,
                                job_id=d.job_id, node_arn=d.node),
                Subject(node=d.node, job=d.job_id, incident=d.incident_id),
                stable_id(f"deadline:{d.id}"),
            )
            for d in due
        ]

    def next_deadline(self, state: RecoveryState) -> str | None:
        return min((d.due_at for d in state.deadlines.values()), default=None)

    # --- ECS task events ------------------------------------------------------------------------

    def _job_id(self, detail: TaskDetail) -> str | None:
        if detail.task_definition_family == self.config.health_check_family:
            return None
        if self.config.job_id_source == "startedBy":
            return detail.startedBy or detail.group
        return detail.group or detail.startedBy

    def _on_task(self, state: RecoveryState, detail: TaskDetail, fx: Effects) -> None:
        task = state.tasks.get(detail.taskArn)
        if task is not None and task.version >= detail.version:
            return  # a duplicate or a stale event: already known
        task = task or self._new_task(detail, fx)
        task.version = detail.version
        task.status = detail.lastStatus
        task.node = detail.containerInstanceArn or task.node
        task.failed = is_failure(detail)
        task.exit_code = first_nonzero_exit(detail)
        if task.exit_code is None:
            task.exit_code = next((c.exitCode for c in detail.containers if c.exitCode is not None), None)
        task.stop_code = detail.stopCode
        if detail.lastStatus == "STOPPED":
            task.stopped_at = iso(detail.stoppedAt) if detail.stoppedAt else fx.now
        state.put(task)
        if task.is_check:
            self._on_check_task(state, task, detail, fx)
        elif task.job_id is not None and task.is_gpu:
            self._on_job_task(state, task, fx)

    def _new_task(self, detail: TaskDetail, fx: Effects) -> TaskRec:
        family = detail.task_definition_family
        gpu = bool(detail.gpu_ids) or family in self.config.gpu_task_families
        return TaskRec(
            arn=detail.taskArn, job_id=self._job_id(detail), node=detail.containerInstanceArn, family=family,
            is_gpu=gpu, is_check=family == self.config.health_check_family,
            created_at=iso(detail.createdAt) if detail.createdAt else fx.now, spec=launch_spec(detail),
            gpus=len(detail.gpu_ids),
        )

    def _on_job_task(self, state: RecoveryState, task: TaskRec, fx: Effects) -> None:
        assert task.job_id is not None
        job = state.jobs.get(task.job_id) or JobRec(job_id=task.job_id, generation_at=task.created_at)
        # Until recovery restarts a job every task of its group is a rank, whatever order the shards
        # deliver them in; after a restart, only the tasks it launched (created since) are.
        member = job.restart_count == 0 or task.created_at >= job.generation_at
        if member and task.arn not in job.tasks:
            job.tasks.append(task.arn)
        state.put(job)
        if task.status == "RUNNING" and not task.ran:
            task.ran = True
            if task.tags is None:
                fx.decide(f"tags:{task.arn}", Action(type="ListTagsForResource", target=task.arn),
                          step="capture_tags", reason="keep the tags to restart with (ECS forgets stopped tasks)",
                          subject=Subject(node=task.node, task=task.arn, job=job.job_id), job_id=job.job_id)
        if task.status == "STOPPED":
            self._on_job_task_stopped(state, job, task, fx)
        elif job.state in STOPPING_RANKS and member and task.created_at <= (job.first_failure_at or ""):
            # Its events came after the failure (another shard, read later): it is a rank all the same.
            # (Created after the failure, it is the user's resubmission of the group: not ours to stop.)
            self._stop_rank(state, job, task, "rank of an interrupted job, first seen after the failure", fx)
        elif not member:
            # A rank of the generation recovery replaced, first seen after the restart: it would hold
            # its GPUs (and talk to nobody) for ever.
            self._stop_rank(state, job, task, "rank of a generation replaced by a restart, still running", fx)
        elif task.status == "RUNNING" and job.state == "RESTARTING":
            self._maybe_restarted(state, job, fx)

    def _current(self, state: RecoveryState, job: JobRec) -> list[TaskRec]:
        return [state.tasks[arn] for arn in job.tasks if arn in state.tasks]

    def _on_job_task_stopped(self, state: RecoveryState, job: JobRec, task: TaskRec, fx: Effects) -> None:
        if task.arn not in job.tasks:
            return  # a rank of a past generation
        current = self._current(state, job)
        user_stopped = any(t.stop_code == "UserInitiated" and not t.recovery_stop for t in current)
        if task.failed and not user_stopped:
            self._on_failure(state, job, task, fx)
        if all(t.status == "STOPPED" for t in current):
            self._on_all_stopped(state, job, current, user_stopped, fx)

    def _on_failure(self, state: RecoveryState, job: JobRec, task: TaskRec, fx: Effects) -> None:
        if job.state in IN_RECOVERY and job.state != "RESTARTING":
            return  # joins the interruption already being handled
        job.state = "RECOVERING"
        job.incident_id = None
        job.first_failure_at = task.stopped_at or fx.now
        job.reason = f"rank {_short(task.arn)} on {_short(task.node)} exited {task.exit_code} ({task.stop_code})"
        state.put(job)
        subject = Subject(job=job.job_id, node=task.node, task=task.arn)
        fx.emit(JobStateChanged(job_id=job.job_id, state="RECOVERING", reason=job.reason,
                                restart_count=job.restart_count),
                subject, f"{job.job_id}:{job.generation_at}:recovering")
        for sibling in self._current(state, job):
            self._stop_rank(state, job, sibling, f"sibling of failed rank {_short(task.arn)}", fx)
        self._set_deadline(state, f"{job.job_id}:{job.generation_at}:siblings", "siblings",
                           fx.now, self.config.siblings_deadline, job_id=job.job_id)

    def _stop_rank(self, state: RecoveryState, job: JobRec, rank: TaskRec, reason: str, fx: Effects) -> None:
        if rank.status == "STOPPED" or rank.recovery_stop:
            return
        rank.recovery_stop = True
        state.put(rank)
        fx.decide(f"{job.job_id}:{job.generation_at}:stop:{rank.arn}",
                  Action(type="StopTask", target=rank.arn,
                         params={"reason": "gpu-recovery: stopping the ranks of an interrupted job"}),
                  step="stop_siblings", reason=reason,
                  subject=Subject(node=rank.node, job=job.job_id, task=rank.arn), job_id=job.job_id)

    def _on_all_stopped(self, state: RecoveryState, job: JobRec, current: list[TaskRec], user_stopped: bool,
                        fx: Effects) -> None:
        if job.state == "RECOVERING" and job.incident_id is None:
            self._choose_suspect(state, job, fx)
        elif job.state in ACTIVE_JOB and user_stopped:
            self._finish_job(state, job, "STOPPED_BY_USER", "stopped by a user", fx)
        elif job.state in ACTIVE_JOB and all(t.exit_code in (0, None) and not t.failed for t in current):
            self._finish_job(state, job, "COMPLETED", "every rank exited 0", fx)

    def _finish_job(self, state: RecoveryState, job: JobRec, final: str, reason: str, fx: Effects) -> None:
        job.state = final
        job.reason = reason
        state.put(job)
        fx.emit(JobStateChanged(job_id=job.job_id, state=final, reason=reason, restart_count=job.restart_count,
                                incident_id=job.incident_id), Subject(job=job.job_id), f"{job.job_id}:{final}:{fx.now}")

    def _choose_suspect(self, state: RecoveryState, job: JobRec, fx: Effects) -> None:
        """The node of the rank that failed first; the others died of the collective timeout."""
        self._drop_deadline(state, f"{job.job_id}:{job.generation_at}:siblings")
        # A rank we asked to stop reports UserInitiated, which is never a failure: every failed rank here
        # died on its own, even if our stop request was already on its way.
        failed = [t for t in self._current(state, job) if t.failed and t.node]
        if not failed:
            return
        first = min(failed, key=lambda t: (t.stopped_at or "", t.arn))
        assert first.node is not None
        self._open_or_join(state, first.node, job, first, fx)

    # --- incidents ------------------------------------------------------------------------------

    def _open_or_join(self, state: RecoveryState, node_arn: str, job: JobRec, trigger: TaskRec, fx: Effects) -> None:
        node = state.nodes.get(node_arn) or NodeRec(arn=node_arn)
        incident = state.open_incident_on(node_arn)
        if incident is not None:
            incident.jobs.append(job.job_id)
            job.incident_id = incident.id
            state.put(incident)
            state.put(job)
            fx.emit(JobStateChanged(job_id=job.job_id, state="RECOVERING", incident_id=incident.id,
                                    reason=f"joined incident {incident.id} on its node",
                                    restart_count=job.restart_count),
                    Subject(job=job.job_id, node=node_arn, incident=incident.id), f"{job.job_id}:join:{incident.id}")
            if incident.phase == "RESOLVED_WAITING_JOBS":
                self._restart_job(state, incident, job, fx)
            return
        incident = Incident(
            id=f"inc-{short_hash(node_arn, job.job_id, job.first_failure_at or fx.now)}", node=node_arn,
            jobs=[job.job_id], opened_at=fx.now, trigger_task=trigger.arn, reason=job.reason,
            fault_at=trigger.stopped_at,
        )
        job.incident_id = incident.id
        state.put(incident)
        state.put(job)
        subject = Subject(node=node_arn, job=job.job_id, incident=incident.id)
        fx.emit(IncidentOpened(incident_id=incident.id, node_arn=node_arn, ec2_instance_id=node.instance_id,
                               job_ids=[job.job_id], trigger_task_arn=trigger.arn, reason=job.reason),
                subject, incident.id)
        fx.emit(JobStateChanged(job_id=job.job_id, state="RECOVERING", incident_id=incident.id, reason=job.reason,
                                restart_count=job.restart_count), subject, f"{job.job_id}:join:{incident.id}")
        if node.repair_state in OUT_OF_SERVICE:
            self._resolve_out_of_service(state, incident, node, f"node already {node.repair_state}", fx)
            return
        limit = self.config.breaker_limit(len(state.gpu_nodes()))
        if state.nodes_in_repair() >= limit:
            incident.phase = "WAITING"
            self._set_node_state(state, node, "SUSPECT", incident, "waiting for the repair breaker", fx)
            self._notify(state, fx, "breaker_open", incident=incident,
                         summary=f"{state.nodes_in_repair()} of {len(state.gpu_nodes())} GPU nodes are in repair "
                                 f"(limit {limit}); node waits its turn",
                         next_step="Nothing yet: the node is checked as soon as a repair finishes. Several faults "
                                   "at once can mean a shared cause (power, network, driver rollout).")
            return
        self._start_check(state, incident, self.config.post_failure_level, fx)

    def _start_check(self, state: RecoveryState, incident: Incident, level: int, fx: Effects) -> None:
        node = state.nodes.get(incident.node) or NodeRec(arn=incident.node)
        verifying = level == self.config.post_reboot_level and incident.reboot_attempt > 0
        incident.phase = "VERIFYING" if verifying else "CHECKING"
        incident.check_attempt += 1
        incident.check_level = level
        incident.check_key = f"{incident.id}:check:{incident.check_attempt}"
        incident.check_task_arn = None
        incident.check_exit = None
        state.put(incident)
        subject = Subject(node=incident.node, incident=incident.id)
        if incident.check_attempt == 1:
            fx.decide(f"{incident.id}:drain", Action(type="UpdateContainerInstancesState", target=incident.node,
                                                     params={"status": "DRAINING"}),
                      step="drain", reason="keep new work off a suspect node", subject=subject, incident_id=incident.id)
        self._set_node_state(state, node, incident.phase, incident, f"DCGM check level {level}", fx)
        environment = [
            {"name": "GPU_RECOVERY_CHECK_LEVEL", "value": str(level)},
            {"name": "GPU_RECOVERY_INCIDENT_ID", "value": incident.id},
            {"name": "GPU_RECOVERY_NODE_ARN", "value": incident.node},
        ]
        if node.instance_id:
            environment.append({"name": "GPU_RECOVERY_INSTANCE_ID", "value": node.instance_id})
        if node.gpu_count:
            # Without the count the agent cannot see a GPU that fell off the bus entirely.
            environment.append({"name": "GPU_RECOVERY_EXPECTED_GPUS", "value": str(node.gpu_count)})
        # XIDs since the failed rank stopped (the agent looks back a margin before it).
        environment.append({"name": "GPU_RECOVERY_SINCE", "value": incident.fault_at or incident.opened_at})
        fx.decide(incident.check_key, Action(type="StartTask", target=incident.node, params={
            "task_definition": self.config.health_check_family, "started_by": "gpu-recovery",
            "overrides": {"containerOverrides": [{"name": CHECK_CONTAINER, "environment": environment}]},
            "tags": [{"key": RESTART_TAG, "value": incident.check_key}],
        }), step="health_check", reason=f"DCGM diag -r {level} on the suspect node itself", subject=subject,
            incident_id=incident.id)
        self._set_deadline(state, f"{incident.check_key}:report", "health_check", fx.now,
                           self.config.health_check_deadline, incident=incident)

    def _on_check_task(self, state: RecoveryState, task: TaskRec, detail: TaskDetail, fx: Effects) -> None:
        incident = next((i for i in state.incidents.values()
                         if not i.closed and i.check_task_arn == task.arn), None)
        if incident is None or task.status != "STOPPED" or incident.verdict_for_check():
            return
        incident.check_exit = task.exit_code
        state.put(incident)
        if detail.stopCode == "TaskFailedToStart" or not detail.startedAt:
            self._on_verdict(state, incident, "inconclusive", "none",
                             f"health check task failed to start: {detail.stoppedReason or detail.stopCode}", fx)
            return
        # The report should already be here; give it a short grace, then fall back on the exit code.
        self._set_deadline(state, f"{incident.check_key}:grace", "report_grace", fx.now,
                           self.config.report_grace, incident=incident)

    def _on_ours(self, state: RecoveryState, event: OurEvent, fx: Effects) -> None:
        data = event.data
        if isinstance(data, HealthCheckReported):
            self._on_report(state, data, fx)
        elif isinstance(data, ActionOutcome):
            self._on_outcome(state, data, fx)
        elif isinstance(data, DeadlineExpired):
            self._on_deadline(state, data, fx)

    def _on_report(self, state: RecoveryState, report: HealthCheckReported, fx: Effects) -> None:
        incident = state.incidents.get(report.incident_id or "")
        if incident is not None and report.check_task_arn and report.check_task_arn in incident.outcomes.get(
                "reports", ""):
            return  # the same accepted report, delivered again
        valid = (
            incident is not None and not incident.closed and incident.node == report.node_arn
            and incident.phase in ("CHECKING", "VERIFYING") and incident.check_task_arn is not None
            and report.check_task_arn == incident.check_task_arn
        )
        if not valid or incident is None:
            fx.rejected = (f"suspect health report for {report.node_arn}: no open incident of ours started check "
                           f"task {report.check_task_arn!r} (incident {report.incident_id!r})")
            return
        incident.outcomes["reports"] = incident.outcomes.get("reports", "") + f" {report.check_task_arn}"
        incident.xids = sorted({x.xid for x in report.xids} | set(incident.xids))
        state.put(incident)
        self._on_verdict(state, incident, report.verdict, report.recommended_action, report.reason, fx)

    def _on_verdict(self, state: RecoveryState, incident: Incident, verdict: str, action: str, reason: str,
                    fx: Effects) -> None:
        assert incident.check_key is not None
        self._drop_deadline(state, f"{incident.check_key}:report")
        self._drop_deadline(state, f"{incident.check_key}:grace")
        node = state.nodes.get(incident.node) or NodeRec(arn=incident.node)
        after_reboot = incident.phase == "VERIFYING"
        incident.verdict = verdict
        incident.action = action
        state.put(incident)
        if verdict in ("healthy", "application_fault"):
            outcome = "recovered" if after_reboot else "application_fault"
            self._return_to_service(state, incident, node, outcome, f"DCGM {verdict}: {reason}", fx)
            return
        if verdict == "inconclusive":
            self._take_out_of_service(state, incident, node, f"health check inconclusive: {reason}", "escalation", fx)
            return
        node.fault_times = sorted({*node.fault_times, fx.now})
        state.put(node)
        if after_reboot:
            self._take_out_of_service(state, incident, node, f"still faulty after reboot: {reason}", "node_quarantined",
                                      fx)
        elif action == "quarantine" or action_for_xids(incident.xids) == "quarantine":
            self._take_out_of_service(state, incident, node, f"{self._xid_text(incident)}: {reason}",
                                      "node_quarantined", fx)
        elif self._recent_fault(node, fx.now):
            self._take_out_of_service(state, incident, node, "faulted again within "
                                      f"{self.config.fault_window.days} days of an earlier fault: {reason}",
                                      "node_quarantined", fx)
        else:
            self._reboot(state, incident, node, f"{self._xid_text(incident)}: {reason}", fx)

    def _xid_text(self, incident: Incident) -> str:
        if not incident.xids:
            return "hardware fault"
        return ", ".join(f"XID {x} ({classify_xid(x).meaning})" for x in incident.xids)

    def _recent_fault(self, node: NodeRec, now: str) -> bool:
        window_start = iso(parse_iso(now) - self.config.fault_window)
        return any(window_start <= t < now for t in node.fault_times)

    def _reboot(self, state: RecoveryState, incident: Incident, node: NodeRec, reason: str, fx: Effects) -> None:
        incident.phase = "REBOOTING"
        incident.reboot_attempt += 1
        incident.reboot_requested_at = fx.now
        incident.saw_disconnect = False
        state.put(incident)
        key = f"{incident.id}:reboot:{incident.reboot_attempt}"
        self._set_node_state(state, node, "REBOOTING", incident, reason, fx)
        if node.external:
            action = Action(type="SendCommand", target=node.instance_id or node.arn,
                            params={"document": "AWS-RunShellScript", "commands": ["sudo systemctl reboot"]})
        else:
            action = Action(type="RebootInstances", target=node.instance_id or node.arn)
        fx.decide(key, action, step="reboot", reason=reason, subject=Subject(node=node.arn, incident=incident.id),
                  incident_id=incident.id)
        self._set_deadline(state, f"{key}:proof", "reboot", fx.now, self.config.reboot_deadline, incident=incident)

    # --- container instances (reboot proof, capacity) ---------------------------------------------

    def _on_node(self, state: RecoveryState, event: ContainerInstanceStateChange, fx: Effects) -> None:
        detail = event.detail
        node = state.nodes.get(detail.containerInstanceArn)
        if node is not None and node.version >= detail.version:
            return
        new = node is None
        node = node or NodeRec(arn=detail.containerInstanceArn)
        was_connected = node.agent_connected
        node.version = detail.version
        node.instance_id = detail.ec2InstanceId or node.instance_id
        node.status = detail.status
        node.gpu_count = len(detail.gpu_ids)
        node.agent_connected = detail.agentConnected
        if detail.agentConnected is False and was_connected is not False:
            node.last_disconnect_at = fx.now
        if detail.agentConnected and was_connected is False:
            node.last_connect_at = fx.now
        state.put(node)
        incident = state.open_incident_on(node.arn)
        if incident is not None and incident.phase == "REBOOTING":
            self._reboot_progress(state, incident, node, fx)
        elif new and node.gpu_count and node.status == "ACTIVE":
            self._retry_waiting_jobs(state, fx)

    def _reboot_progress(self, state: RecoveryState, incident: Incident, node: NodeRec, fx: Effects) -> None:
        """Proof of a reboot: the agent disconnected and reconnected after we asked (an hourly reconnect
        alone, or one from before the request, proves nothing)."""
        requested = incident.reboot_requested_at or ""
        if node.last_disconnect_at and node.last_disconnect_at >= requested:
            incident.saw_disconnect = True
            state.put(incident)
        back = incident.saw_disconnect and node.agent_connected and (node.last_connect_at or "") >= (
            node.last_disconnect_at or "")
        if back:
            self._drop_deadline(state, f"{incident.id}:reboot:{incident.reboot_attempt}:proof")
            self._start_check(state, incident, self.config.post_reboot_level, fx)

    # --- outcomes of our own actions ---------------------------------------------------------------

    def _on_outcome(self, state: RecoveryState, outcome: ActionOutcome, fx: Effects) -> None:
        key = outcome.idempotency_key
        if outcome.action.type == "ListTagsForResource":
            task = state.tasks.get(outcome.action.target)
            if task is not None and outcome.status == "succeeded" and task.tags is None:
                task.tags = list(outcome.detail.get("tags", []))
                state.put(task)
            return
        incident = state.incidents.get(outcome.incident_id or "")
        if incident is None or key in incident.outcomes:
            return  # not ours to follow up, or already followed up
        incident.outcomes[key] = outcome.status
        state.put(incident)
        if key == incident.check_key:
            self._on_check_started(state, incident, outcome, fx)
        elif ":reboot:" in key and outcome.status == "failed":
            node = state.nodes.get(incident.node) or NodeRec(arn=incident.node)
            self._take_out_of_service(state, incident, node, f"reboot request failed: {outcome.error}",
                                      "escalation", fx)
        elif ":restart:" in key:
            self._on_restart_started(state, incident, outcome, fx)

    def _on_check_started(self, state: RecoveryState, incident: Incident, outcome: ActionOutcome,
                          fx: Effects) -> None:
        if outcome.status == "succeeded":
            incident.check_task_arn = str(outcome.detail.get("task_arn") or "") or None
            state.put(incident)
            return
        self._on_verdict(state, incident, "inconclusive", "none",
                         f"health check task could not be started: {outcome.error}", fx)

    def _on_restart_started(self, state: RecoveryState, incident: Incident, outcome: ActionOutcome,
                            fx: Effects) -> None:
        job = state.jobs.get(outcome.job_id or "")
        if job is None or job.state != "RESTARTING":
            return
        if outcome.status == "succeeded":
            job.restart_tasks.append(str(outcome.detail.get("task_arn")))
            state.put(job)
            return
        self._drop_deadline(state, f"{job.job_id}:restart:{job.restart_attempt}")
        self._wait_for_capacity(state, job, incident, f"restart failed: {outcome.error}", fx)

    # --- deadlines ------------------------------------------------------------------------------

    def _on_deadline(self, state: RecoveryState, expired: DeadlineExpired, fx: Effects) -> None:
        deadline = state.deadlines.get(expired.deadline_id)
        if deadline is None:
            return  # met in time, or already handled
        state.drop("deadline", deadline.id)
        incident = state.incidents.get(deadline.incident_id or "")
        job = state.jobs.get(deadline.job_id or "")
        handler = {
            "siblings": self._siblings_deadline, "health_check": self._check_deadline,
            "report_grace": self._grace_deadline, "reboot": self._reboot_deadline,
            "restart": self._restart_deadline, "capacity": self._capacity_deadline,
            "restart_backoff": self._backoff_deadline,
        }[deadline.kind]
        handler(state, deadline, incident, job, fx)

    def _siblings_deadline(self, state: RecoveryState, d: Deadline, i: Incident | None, job: JobRec | None,
                           fx: Effects) -> None:
        if job is not None and job.state == "RECOVERING" and job.incident_id is None:
            self._choose_suspect(state, job, fx)

    def _check_deadline(self, state: RecoveryState, d: Deadline, i: Incident | None, job: JobRec | None,
                        fx: Effects) -> None:
        if i is not None and not i.closed and i.phase in ("CHECKING", "VERIFYING"):
            minutes = int(self.config.health_check_deadline.total_seconds() // 60)
            self._notify(state, fx, "deadline_expired", incident=i,
                         summary=f"no health report within {minutes} min",
                         next_step="Look at the health-check task's logs on the node.")
            self._on_verdict(state, i, "inconclusive", "none", f"no health report within {minutes} min", fx)

    def _grace_deadline(self, state: RecoveryState, d: Deadline, i: Incident | None, job: JobRec | None,
                        fx: Effects) -> None:
        if i is None or i.closed or i.phase not in ("CHECKING", "VERIFYING"):
            return
        # Fallback only: exit 1 means the agent found a fault; anything else never counts as healthy.
        if i.check_exit == 1:
            self._on_verdict(state, i, "hardware_fault", "reboot", "check task exited 1 and sent no report", fx)
        else:
            self._on_verdict(state, i, "inconclusive", "none",
                             f"check task exited {i.check_exit} and sent no report", fx)

    def _reboot_deadline(self, state: RecoveryState, d: Deadline, i: Incident | None, job: JobRec | None,
                         fx: Effects) -> None:
        if i is None or i.closed or i.phase != "REBOOTING":
            return
        node = state.nodes.get(i.node) or NodeRec(arn=i.node)
        if not i.saw_disconnect and i.reboot_attempt == 1:
            # A real reboot always drops the agent: with no disconnect in the whole window, the request
            # never reached the node (e.g. we stopped between recording and calling). Ask once more.
            self._reboot(state, i, node, "no sign of the first reboot request; asking once more", fx)
            return
        minutes = int(self.config.reboot_deadline.total_seconds() // 60)
        self._notify(state, fx, "deadline_expired", incident=i,
                     summary=f"node not back within {minutes} min after the reboot request",
                     next_step="Check the instance's console and status checks; replace it if it does not boot.")
        self._take_out_of_service(state, i, node, f"not back within {minutes} min after reboot", "escalation", fx)

    def _restart_deadline(self, state: RecoveryState, d: Deadline, i: Incident | None, job: JobRec | None,
                          fx: Effects) -> None:
        if job is None or job.state != "RESTARTING":
            return
        minutes = int(self.config.restart_deadline.total_seconds() // 60)
        self._notify(state, fx, "deadline_expired", incident=i, job=job,
                     summary=f"restarted tasks not all RUNNING within {minutes} min",
                     next_step="Check the tasks' stopped reasons and the cluster's capacity; relaunch by hand.")
        self._fail_job(state, job, f"restarted tasks not RUNNING within {minutes} min", fx, notify=False)

    def _capacity_deadline(self, state: RecoveryState, d: Deadline, i: Incident | None, job: JobRec | None,
                           fx: Effects) -> None:
        if job is not None and job.state == "WAITING_CAPACITY":
            minutes = int(self.config.capacity_deadline.total_seconds() // 60)
            self._fail_job(state, job, f"no healthy GPU capacity to restart on within {minutes} min "
                           f"({job.reason})", fx)

    def _backoff_deadline(self, state: RecoveryState, d: Deadline, i: Incident | None, job: JobRec | None,
                          fx: Effects) -> None:
        if job is not None and i is not None and job.state == "RECOVERING":
            self._launch_restart(state, i, job, fx)

    # --- resolutions ----------------------------------------------------------------------------

    def _return_to_service(self, state: RecoveryState, incident: Incident, node: NodeRec, outcome: str, reason: str,
                           fx: Effects) -> None:
        subject = Subject(node=node.arn, incident=incident.id)
        fx.decide(f"{incident.id}:undrain", Action(type="UpdateContainerInstancesState", target=node.arn,
                                                   params={"status": "ACTIVE"}),
                  step="return_to_service", reason=reason, subject=subject, incident_id=incident.id)
        self._set_node_state(state, node, "HEALTHY", incident, reason, fx)
        self._close(state, incident, outcome, reason, fx)
        for job_id in incident.jobs:
            job = state.jobs.get(job_id)
            if job is not None and job.state == "RECOVERING":
                self._restart_job(state, incident, job, fx)

    def _take_out_of_service(self, state: RecoveryState, incident: Incident, node: NodeRec, reason: str, kind: str,
                             fx: Effects) -> None:
        replace = self.config.replace_instances and not node.external and bool(node.instance_id)
        final = "REPLACED" if replace else "QUARANTINED"
        self._resolve_out_of_service(state, incident, node, reason, fx, final=final)
        if replace:
            fx.decide(f"{incident.id}:replace", Action(type="TerminateInstanceInAutoScalingGroup",
                                                       target=node.instance_id or node.arn,
                                                       params={"should_decrement_desired_capacity": False}),
                      step="replace", reason=reason, subject=Subject(node=node.arn, incident=incident.id),
                      incident_id=incident.id)
        self._notify(state, fx, kind if kind != "node_quarantined" or not replace else "node_replaced",
                     incident=incident, summary=f"node {final.lower()}: {reason}",
                     next_step=("A new instance replaces it through its Auto Scaling group." if replace else
                                "Inspect the node (nvidia-smi -q, dcgmi diag -r 3); RMA it or return it to service "
                                "by setting the attribute gpu-recovery.state=HEALTHY and draining off."))

    def _resolve_out_of_service(self, state: RecoveryState, incident: Incident, node: NodeRec, reason: str,
                                fx: Effects, final: str = "QUARANTINED") -> None:
        self._set_node_state(state, node, final, incident, reason, fx)
        self._close(state, incident, "replaced" if final == "REPLACED" else (
            "escalated" if "inconclusive" in reason or "not back" in reason or "failed" in reason else "quarantined"),
            reason, fx)
        for job_id in incident.jobs:
            job = state.jobs.get(job_id)
            if job is not None and job.state == "RECOVERING":
                self._restart_job(state, incident, job, fx)

    def _close(self, state: RecoveryState, incident: Incident, outcome: str, reason: str, fx: Effects) -> None:
        if incident.closed:
            return
        incident.closed = True
        incident.outcome = outcome
        incident.phase = "CLOSED"
        state.put(incident)
        fx.emit(IncidentClosed(incident_id=incident.id, node_arn=incident.node, outcome=outcome,
                               reason=reason), Subject(node=incident.node, incident=incident.id), incident.id)
        self._admit_waiting(state, fx)

    def _admit_waiting(self, state: RecoveryState, fx: Effects) -> None:
        limit = self.config.breaker_limit(len(state.gpu_nodes()))
        waiting = sorted((i for i in state.incidents.values() if i.phase == "WAITING" and not i.closed),
                         key=lambda i: (i.opened_at, i.id))
        for incident in waiting:
            if state.nodes_in_repair() >= limit:
                return
            self._start_check(state, incident, self.config.post_failure_level, fx)

    # --- restarts -------------------------------------------------------------------------------

    def _restart_job(self, state: RecoveryState, incident: Incident, job: JobRec, fx: Effects) -> None:
        if job.restart_count >= self.config.max_job_restarts:
            self._notify(state, fx, "budget_exhausted", incident=incident, job=job,
                         summary=f"job restarted {job.restart_count} times already (budget "
                                 f"{self.config.max_job_restarts})",
                         next_step="Look for a cause the restarts do not fix (code, data, a bad node) and relaunch.")
            self._fail_job(state, job, f"restart budget exhausted ({job.restart_count} restarts)", fx, notify=False)
            return
        delay = self.config.backoff(job.restart_count + 1)
        job.restart_attempt = job.restart_count + 1
        state.put(job)
        if delay.total_seconds() > 0:
            self._set_deadline(state, f"{job.job_id}:backoff:{job.restart_attempt}", "restart_backoff", fx.now, delay,
                               incident=incident, job_id=job.job_id)
        else:
            self._launch_restart(state, incident, job, fx)

    def _placement(self, state: RecoveryState, job: JobRec) -> list[tuple[TaskRec, str]] | None:
        """Each rank back on its node where that node is healthy, otherwise on a free healthy GPU node."""
        ranks = sorted(self._current(state, job), key=lambda t: (t.created_at, t.arn))
        busy = {t.node for t in state.tasks.values() if t.status != "STOPPED" and t.is_gpu and t.node}
        healthy = {n.arn for n in state.nodes.values()
                   if n.repair_state == "HEALTHY" and n.status == "ACTIVE" and n.agent_connected and n.gpu_count}
        own = [t.node for t in ranks if t.node in healthy]
        spares = sorted(healthy - busy - set(own))
        plan: list[tuple[TaskRec, str]] = []
        used: set[str] = set()
        for task in ranks:
            if task.node in healthy and task.node not in used:
                node = task.node
            elif spares:
                node = spares.pop(0)
            else:
                return None
            used.add(node)
            plan.append((task, node))
        return plan

    def _launch_restart(self, state: RecoveryState, incident: Incident, job: JobRec, fx: Effects) -> None:
        plan = self._placement(state, job)
        if plan is None:
            self._wait_for_capacity(state, job, incident, "not enough healthy GPU nodes for every rank", fx)
            return
        job.restart_count += 1
        job.restart_attempt = job.restart_count
        job.state = "RESTARTING"
        job.generation_at = fx.now
        job.tasks = []
        job.restart_tasks = []
        state.put(job)
        fx.emit(JobStateChanged(job_id=job.job_id, state="RESTARTING", incident_id=incident.id,
                                restart_count=job.restart_count, reason=f"restart {job.restart_count} of "
                                f"{self.config.max_job_restarts}"), Subject(job=job.job_id, incident=incident.id),
                f"{job.job_id}:restart:{job.restart_count}")
        for rank, (task, node) in enumerate(plan):
            key = f"{incident.id}:restart:{job.job_id}:{job.restart_count}:{rank}"
            spec = task.spec
            tags = [t for t in (task.tags or []) if t.get("key") != RESTART_TAG] + [{"key": RESTART_TAG, "value": key}]
            fx.decide(key, Action(type="StartTask", target=node, params={
                "task_definition": spec.get("task_definition_arn"), "overrides": spec.get("overrides") or {},
                "group": spec.get("group"), "started_by": spec.get("started_by"), "tags": tags,
                "restart_of": task.arn,
            }), step="restart", reason=f"relaunch rank of {_short(task.arn)} exactly as launched",
                subject=Subject(node=node, job=job.job_id, incident=incident.id), incident_id=incident.id,
                job_id=job.job_id)
        self._set_deadline(state, f"{job.job_id}:restart:{job.restart_attempt}", "restart", fx.now,
                           self.config.restart_deadline, incident=incident, job_id=job.job_id)

    def _maybe_restarted(self, state: RecoveryState, job: JobRec, fx: Effects) -> None:
        current = self._current(state, job)
        expected = len(job.restart_tasks) or len(current)
        if len(current) >= expected and all(t.status == "RUNNING" for t in current):
            self._drop_deadline(state, f"{job.job_id}:restart:{job.restart_attempt}")
            job.state = "RUNNING"
            job.reason = f"recovered after restart {job.restart_count}"
            state.put(job)
            fx.emit(JobStateChanged(job_id=job.job_id, state="RUNNING", incident_id=job.incident_id,
                                    restart_count=job.restart_count, reason=job.reason),
                    Subject(job=job.job_id, incident=job.incident_id), f"{job.job_id}:running:{job.restart_count}")

    def _wait_for_capacity(self, state: RecoveryState, job: JobRec, incident: Incident, reason: str,
                           fx: Effects) -> None:
        if job.state == "WAITING_CAPACITY":
            return
        job.state = "WAITING_CAPACITY"
        job.reason = reason
        state.put(job)
        fx.emit(JobStateChanged(job_id=job.job_id, state="WAITING_CAPACITY", incident_id=incident.id, reason=reason,
                                restart_count=job.restart_count), Subject(job=job.job_id, incident=incident.id),
                f"{job.job_id}:waiting:{job.restart_count}")
        minutes = int(self.config.capacity_deadline.total_seconds() // 60)
        self._notify(state, fx, "waiting_capacity", incident=incident, job=job,
                     summary=f"job waits for healthy GPU capacity ({reason})",
                     next_step=f"Add or repair a GPU node; the job restarts by itself, or fails in {minutes} min.")
        self._set_deadline(state, f"{job.job_id}:capacity:{job.restart_count}", "capacity", fx.now,
                           self.config.capacity_deadline, incident=incident, job_id=job.job_id)

    def _retry_waiting_jobs(self, state: RecoveryState, fx: Effects) -> None:
        for job in sorted(state.jobs.values(), key=lambda j: j.job_id):
            incident = state.incidents.get(job.incident_id or "")
            if job.state == "WAITING_CAPACITY" and incident is not None and self._placement(state, job):
                self._drop_deadline(state, f"{job.job_id}:capacity:{job.restart_count}")
                job.state = "RECOVERING"
                state.put(job)
                self._launch_restart(state, incident, job, fx)

    def _fail_job(self, state: RecoveryState, job: JobRec, reason: str, fx: Effects, *, notify: bool = True) -> None:
        incident = state.incidents.get(job.incident_id or "")
        if notify:
            self._notify(state, fx, "job_failed", incident=incident, job=job, summary=f"job failed: {reason}",
                         next_step="Relaunch the job when the cause is fixed.")
        self._finish_job(state, job, "FAILED", reason, fx)

    # --- small shared steps ---------------------------------------------------------------------

    def _set_node_state(self, state: RecoveryState, node: NodeRec, repair_state: str, incident: Incident, reason: str,
                        fx: Effects) -> None:
        node.repair_state = repair_state
        node.incident_id = incident.id
        state.put(node)
        subject = Subject(node=node.arn, incident=incident.id)
        fx.emit(NodeStateChanged(node_arn=node.arn, state=repair_state, reason=reason, incident_id=incident.id,
                                 ec2_instance_id=node.instance_id), subject,
                f"{incident.id}:{repair_state}:{incident.check_attempt}:{incident.reboot_attempt}")
        fx.decide(f"{incident.id}:attr:{repair_state}:{incident.check_attempt}:{incident.reboot_attempt}",
                  Action(type="PutAttributes", target=node.arn,
                         params={"name": self.config.node_attribute, "value": repair_state}),
                  step="mirror_state", reason="placement constraints can keep jobs off the node", subject=subject,
                  incident_id=incident.id)

    def _notify(self, state: RecoveryState, fx: Effects, kind: str, *, summary: str, next_step: str,
                incident: Incident | None = None, job: JobRec | None = None) -> None:
        node = state.nodes.get(incident.node) if incident else None
        jobs = [job.job_id] if job else (incident.jobs if incident else [])
        where = f"node {_short(incident.node)}" if incident else f"job {jobs[0] if jobs else '?'}"
        subject_line = f"[gpu-recovery] {kind.replace('_', ' ')}: {where} ({self.config.cluster_name})"
        message: dict[str, Any] = {
            "kind": kind, "cluster": self.config.cluster_name, "summary": summary, "next_step": next_step,
            "incident_id": incident.id if incident else None, "node_arn": incident.node if incident else None,
            "instance_id": node.instance_id if node else None, "job_ids": jobs,
            "seen": {"xids": incident.xids if incident else [], "verdict": incident.verdict if incident else None,
                     "reason": incident.reason if incident else (job.reason if job else "")},
            "done": sorted(k for k in (incident.outcomes if incident else {}) if k != "reports"),
            "at": fx.now,
        }
        key = f"notify:{kind}:{incident.id if incident else ''}:{job.job_id if job else ''}:{fx.now}"
        subject = Subject(node=incident.node if incident else None, job=jobs[0] if jobs else None,
                          incident=incident.id if incident else None)
        fx.emit(NotificationSent(kind=kind, subject=subject_line[:100], message=message,
                                 incident_id=incident.id if incident else None, job_id=jobs[0] if jobs else None,
                                 node_arn=incident.node if incident else None), subject, key)
        fx.decide(key, Action(type="Publish", target="notifications",
                              params={"subject": subject_line[:100], "message": message}),
                  step="notify", reason=summary, subject=subject, incident_id=incident.id if incident else None,
                  job_id=jobs[0] if jobs else None)

    def _set_deadline(self, state: RecoveryState, deadline_id: str, kind: str, now: str, delta: Any, *,
                      incident: Incident | None = None, job_id: str | None = None) -> None:
        due = iso(parse_iso(now) + delta)
        state.put(Deadline(id=deadline_id, kind=kind, due_at=due, incident_id=incident.id if incident else None,
                           job_id=job_id, node=incident.node if incident else None))

    def _drop_deadline(self, state: RecoveryState, deadline_id: str) -> None:
        state.drop("deadline", deadline_id)


def _short(arn: str | None) -> str:
    return (arn or "?").rsplit("/", 1)[-1][:12]
