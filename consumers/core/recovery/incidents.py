"""Incidents: one per suspect node, its check, its repair (the incident row of the transition table).

| phase     | when                                               | then                                          |
|-----------|----------------------------------------------------|-----------------------------------------------|
| WAITING   | the breaker and the out-of-service cap allow it    | drain, start the DCGM check: CHECKING         |
| WAITING   | they do not                                        | stays SUSPECT and drained; one notice a burst |
| CHECKING  | verified report: healthy / application fault       | back to service: CLOSED                       |
| CHECKING  | verified report: hardware fault, reset class       | REBOOTING (EC2 or SSM)                        |
| CHECKING  | verified: out-of-service class, repeat, ISOLATE    | quarantine (or replace): CLOSED               |
| CHECKING  | verified: misconfigured (DCGM CONFIG)              | MISCONFIGURED, drained, notice with the fix   |
| CHECKING  | inconclusive, no report, check failed to start     | drained, a person paged: CLOSED (escalated)   |
| REBOOTING | the agent disconnected and came back after the ask | VERIFYING: the post-reboot check              |
| REBOOTING | deadline: not back / no proof                      | ask once more, then escalate                  |
| VERIFYING | booted after the request and the check passes      | back to service: CLOSED (recovered)           |
| VERIFYING | booted before the request                          | REBOOTING: not rebooted yet                   |
| VERIFYING | booted after the request and still faulty          | quarantine (or replace): CLOSED               |

Only a report signed with the secret of the check recovery started on that node counts (DESIGN 3.9);
anything else is parked as suspect. Inconclusive is never healthy and never a reason to reboot.
"""

from __future__ import annotations

from consumers.core.clocktext import iso, parse_iso
from consumers.core.recovery import fleet, notices
from consumers.core.recovery.context import Ctx, short, short_hash
from consumers.core.recovery.model import (
    Incident,
    IncidentTrigger,
    Node,
    ReportSummary,
)
from consumers.core.recovery.view import Key
from consumers.core.xid_catalog import action_for_xids, classify_xid
from events_schema.commands import (
    CHECK_CONTAINER,
    RESTART_TAG,
    PutAttributes,
    RebootInstances,
    SendCommand,
    StartTask,
    TerminateInstanceInAutoScalingGroup,
    UpdateContainerInstancesState,
)
from events_schema.envelope import Subject
from events_schema.events import (
    ActionOutcome,
    HealthCheckReported,
    IncidentClosed,
    IncidentOpened,
    IncidentOutcome,
    NodeRepairState,
    NodeStateChanged,
)
from events_schema.proof import check_secret, secret_digest, verify_report


def key(incident_id: str) -> Key:
    return ("incident", incident_id)


def node_of(ctx: Ctx, incident: Incident) -> Node:
    node = ctx.view.node(incident.node_arn)
    if node is None:
        node = Node(arn=incident.node_arn)
        ctx.view.add(("node", node.arn), node)
    return node


# --- opening ----------------------------------------------------------------------------------------


def open_or_join(ctx: Ctx, node_arn: str, job_id: str | None, *, reason: str, trigger: IncidentTrigger,
                 fault_at: str | None = None, xids: list[int] | None = None) -> str:
    node = ctx.view.node(node_arn)
    if node is None:
        node = Node(arn=node_arn)
        ctx.view.add(("node", node_arn), node)
    current = ctx.view.incident(node.plan.incident_id) if node.plan.incident_id else None
    if current is not None and not current.closed:
        if job_id and job_id not in current.jobs:
            current.jobs.append(job_id)
            ctx.changed(key(current.incident_id))
        return current.incident_id
    incident = Incident(incident_id=f"inc-{short_hash(node_arn, trigger, ctx.now, job_id or '')}", node_arn=node_arn,
                        trigger=trigger, opened_at=ctx.now, reason=reason, fault_at=fault_at,
                        jobs=[job_id] if job_id else [], xids=sorted(set(xids or [])))
    ctx.view.add(key(incident.incident_id), incident)
    node.plan.incident_id = incident.incident_id
    ctx.changed(("node", node_arn))
    ctx.emit(IncidentOpened(incident_id=incident.incident_id, node_arn=node_arn, ec2_instance_id=node.facts.instance_id,
                            job_ids=list(incident.jobs), reason=reason),
             Subject(node=node_arn, job=job_id, incident=incident.incident_id), incident.incident_id)
    ctx.mark(key(incident.incident_id))
    return incident.incident_id


# --- the incident's transition table --------------------------------------------------------------


def reconcile(ctx: Ctx, incident_id: str) -> None:
    incident = ctx.view.incident(incident_id)
    if incident is None or incident.closed or incident.replacing:
        return
    node = node_of(ctx, incident)
    if incident.phase == "WAITING":
        _admit(ctx, incident, node)
    elif incident.phase in ("CHECKING", "VERIFYING") and incident.report is not None:
        _act_on_report(ctx, incident, node, incident.report)
    elif incident.phase == "REBOOTING":
        reboot_progress(ctx, incident, node)


def _admit(ctx: Ctx, incident: Incident, node: Node) -> None:
    from consumers.core.recovery import nodes  # nodes opens incidents: imported here, not at the top

    if incident.trigger == "signal" and not nodes.may_check(ctx, incident, node):
        return
    refusal = fleet.refusal(ctx, node.arn)
    if refusal is not None:
        _wait(ctx, incident, node, refusal)
        return
    fleet.enter_repair(ctx, node.arn, incident.incident_id)
    proactive = incident.trigger in ("signal", "maintenance")
    level = ctx.config.proactive_level if proactive else ctx.config.post_failure_level
    start_check(ctx, incident, node, level)


def _wait(ctx: Ctx, incident: Incident, node: Node, refusal: fleet.Refusal) -> None:
    untold = [j for j in incident.jobs if f"waiting:{j}" not in incident.applied]
    if incident.incident_id in ctx.view.fleet().waiting_repair:
        if untold:  # a job that joined the waiting incident later is told too
            _tell_waiting(ctx, incident, node, refusal, untold)
        return
    fleet.wait_for_repair(ctx, incident.incident_id)
    drain(ctx, incident, node)
    set_node_state(ctx, node, "SUSPECT", incident, f"waiting: {refusal.replace('_', ' ')}")
    _tell_waiting(ctx, incident, node, refusal, untold)


def _tell_waiting(ctx: Ctx, incident: Incident, node: Node, refusal: fleet.Refusal, jobs: list[str]) -> None:
    for job_id in jobs:
        incident.applied[f"waiting:{job_id}"] = refusal
    ctx.changed(key(incident.incident_id))
    f = ctx.view.fleet()
    if refusal == "breaker_open":
        limit = ctx.config.breaker_limit(f.gpu_nodes)
        summary = (f"{len(f.in_repair)} of {f.gpu_nodes} GPU nodes are in repair (limit {limit}); the suspect node "
                   "waits its turn, drained")
    else:
        cap = ctx.config.out_of_service_cap(f.gpu_nodes)
        summary = (f"{len(f.out_of_service)} of {f.gpu_nodes} GPU nodes are out of service (cap {cap}); the suspect "
                   "node waits, drained and unchecked")
    notices.notify(ctx, refusal, cause=refusal, nodes=[node.arn], jobs=jobs, incidents=[incident.incident_id],
                   done=done_steps(incident),
                   summary=summary, next_step="Nothing yet: suspects are checked as repair slots free. Several faults "
                   "at once can mean a shared cause (power, network, a driver rollout): look before releasing nodes.")


# --- checks -----------------------------------------------------------------------------------------


def start_check(ctx: Ctx, incident: Incident, node: Node, level: int) -> None:
    incident.check_attempt += 1
    incident.check_level = level
    incident.check_key = f"{incident.incident_id}:check:{incident.check_attempt}"
    incident.check_task_arn, incident.check_stopped, incident.report = None, None, None
    verifying = incident.reboot_attempt > 0 and level == ctx.config.post_reboot_level
    incident.phase = "VERIFYING" if verifying else "CHECKING"
    secret = check_secret(ctx.config.secret_key, incident.check_key)
    incident.secret_sha256 = secret_digest(secret)
    drain(ctx, incident, node)
    set_node_state(ctx, node, incident.phase, incident, f"DCGM check level {level}")
    environment = [
        {"name": "GPU_RECOVERY_CHECK_LEVEL", "value": str(level)},
        {"name": "GPU_RECOVERY_INCIDENT_ID", "value": incident.incident_id},
        {"name": "GPU_RECOVERY_NODE_ARN", "value": node.arn},
        {"name": "GPU_RECOVERY_CHECK_KEY", "value": incident.check_key},
        # XIDs since the fault (the agent looks back a margin before it).
        {"name": "GPU_RECOVERY_SINCE", "value": incident.fault_at or incident.opened_at},
    ]
    if node.facts.instance_id:
        environment.append({"name": "GPU_RECOVERY_INSTANCE_ID", "value": node.facts.instance_id})
    if node.facts.gpus_total:
        # Without the count the agent cannot see a GPU that fell off the bus entirely.
        environment.append({"name": "GPU_RECOVERY_EXPECTED_GPUS", "value": str(node.facts.gpus_total)})
    ctx.order(incident.check_key, StartTask(
        target=node.arn, purpose="check", task_definition=ctx.config.health_check_family, started_by="gpu-recovery",
        overrides={"containerOverrides": [{"name": CHECK_CONTAINER, "environment": environment}]},
        tags=[{"key": RESTART_TAG, "value": incident.check_key}], secret_sha256=incident.secret_sha256,
    ), step="health_check", reason=f"DCGM diag -r {level} on the suspect node itself",
        subject=Subject(node=node.arn, incident=incident.incident_id), incident_id=incident.incident_id)
    incident.timer = ctx.timer("health_check", ctx.config.health_check_deadline, incident.check_key)
    ctx.changed(key(incident.incident_id))


def accept_report(ctx: Ctx, report: HealthCheckReported, raw: dict[str, object]) -> None:
    """A report counts only if it is signed with the secret of the check recovery started on that node."""
    incident = ctx.view.incident(report.incident_id) if report.incident_id else None
    if incident is not None and report.check_key and f"report:{report.check_key}" in incident.applied:
        return  # the accepted report, delivered again
    why = _unverified(ctx, incident, report, raw)
    if why is not None or incident is None:
        ctx.reject(f"suspect health report for {report.node_arn}: {why}")
        return
    assert report.check_key is not None
    incident.applied[f"report:{report.check_key}"] = "accepted"
    incident.report = ReportSummary(check_key=report.check_key, verdict=report.verdict,
                                    action=report.recommended_action, reason=report.reason[:300],
                                    xids=[x.xid for x in report.xids], fix=report.fix[:300], at=ctx.now,
                                    boot_time=iso(report.boot_time) if report.boot_time else None)
    incident.xids = sorted(set(incident.xids) | {x.xid for x in report.xids})
    ctx.changed(key(incident.incident_id))


def _unverified(ctx: Ctx, incident: Incident | None, report: HealthCheckReported, raw: dict[str, object]) -> str | None:
    if incident is None or incident.closed:
        return f"no open incident {report.incident_id!r}"
    if incident.node_arn != report.node_arn:
        return f"incident {incident.incident_id} is about another node"
    if incident.phase not in ("CHECKING", "VERIFYING") or report.check_key != incident.check_key:
        return f"not the check incident {incident.incident_id} is waiting for ({report.check_key!r})"
    if not verify_report(check_secret(ctx.config.secret_key, incident.check_key or ""), raw):
        return "its proof does not verify (not signed by the check task recovery started)"
    return None


def on_check_task_stopped(ctx: Ctx, incident: Incident, *, failed_to_start: bool, reason: str) -> None:
    node = node_of(ctx, incident)
    if failed_to_start:
        escalate(ctx, incident, node, f"health check task failed to start: {reason}", kind="escalation")
        return
    # The report should be here already; a short grace, then inconclusive (never healthy, never a reboot).
    incident.check_stopped = ctx.now
    incident.timer = ctx.timer("report_grace", ctx.config.report_grace, f"grace:{incident.check_key}")
    ctx.changed(key(incident.incident_id))


def _act_on_report(ctx: Ctx, incident: Incident, node: Node, report: ReportSummary) -> None:
    after_reboot = incident.phase == "VERIFYING"
    incident.report, incident.timer = None, None
    incident.verdict, incident.action = report.verdict, report.action
    ctx.changed(key(incident.incident_id))
    if after_reboot and not _rebooted(incident, node, report):
        _not_rebooted_yet(ctx, incident, node, report)
        return
    if report.verdict in ("healthy", "application_fault"):
        outcome: IncidentOutcome = "recovered" if after_reboot else (
            "healthy" if report.verdict == "healthy" else "application_fault")
        if incident.trigger == "operator" and outcome == "healthy":
            outcome = "released"
        resolve(ctx, incident, node, outcome, f"DCGM {report.verdict}: {report.reason}")
    elif report.verdict == "misconfigured" or report.action == "reconfigure":
        misconfigured(ctx, incident, node, report)
    elif report.verdict == "inconclusive":
        escalate(ctx, incident, node, f"health check inconclusive: {report.reason}", kind="escalation")
    else:
        _hardware_fault(ctx, incident, node, report, after_reboot)


def _rebooted(incident: Incident, node: Node, report: ReportSummary) -> bool:
    """The host booted after we asked (its boot time says so); without a boot time, the agent's
    disconnect and reconnect after the request are the best proof there is."""
    if report.boot_time:
        return report.boot_time > (incident.reboot_requested_at or "")
    return incident.reboot_hint


def _not_rebooted_yet(ctx: Ctx, incident: Incident, node: Node, report: ReportSummary) -> None:
    incident.phase = "REBOOTING"
    incident.reboot_hint = False
    incident.hint_after = ctx.now
    due = incident.reboot_due or ctx.now
    incident.timer = ctx.timer("reboot", ctx.config.reboot_deadline, f"reboot:{incident.reboot_attempt}")
    incident.timer.due_at = max(due, ctx.now)
    set_node_state(ctx, node, "REBOOTING", incident,
                   f"not rebooted yet (boot time {report.boot_time} is before the request)")
    ctx.changed(key(incident.incident_id))


def _hardware_fault(ctx: Ctx, incident: Incident, node: Node, report: ReportSummary, after_reboot: bool) -> None:
    window_start = iso(parse_iso(ctx.now) - ctx.config.fault_window)
    recent = [t for t in node.plan.fault_times if window_start <= t < ctx.now]
    node.plan.fault_times = [*recent, ctx.now][-10:]
    ctx.changed(("node", node.arn))
    text = _xid_text(report.xids)
    if after_reboot:
        out_of_service(ctx, incident, node, f"still faulty after reboot: {report.reason}")
    elif report.action == "quarantine" or action_for_xids(report.xids) == "quarantine":
        out_of_service(ctx, incident, node, f"{text}: {report.reason}")
    elif recent:
        days = ctx.config.fault_window.days
        out_of_service(ctx, incident, node, f"faulted again within {days} days of an earlier fault: {report.reason}")
    else:
        reboot(ctx, incident, node, f"{text}: {report.reason}")


def _xid_text(xids: list[int]) -> str:
    if not xids:
        return "hardware fault"
    return ", ".join(f"XID {x} ({classify_xid(x).meaning})" for x in xids)


# --- reboots ----------------------------------------------------------------------------------------


def reboot(ctx: Ctx, incident: Incident, node: Node, reason: str) -> None:
    if not node.facts.instance_id:
        escalate(ctx, incident, node, f"cannot reboot: no instance id known for the node ({reason})",
                 kind="escalation")
        return
    incident.phase = "REBOOTING"
    incident.reboot_attempt += 1
    incident.reboot_requested_at = incident.hint_after = ctx.now
    incident.reboot_hint = False
    incident.reboot_key = f"{incident.incident_id}:reboot:{incident.reboot_attempt}"
    incident.timer = ctx.timer("reboot", ctx.config.reboot_deadline, f"reboot:{incident.reboot_attempt}")
    incident.reboot_due = incident.timer.due_at
    set_node_state(ctx, node, "REBOOTING", incident, reason)
    command = (SendCommand(target=node.facts.instance_id) if node.facts.external
               else RebootInstances(target=node.facts.instance_id))
    ctx.order(incident.reboot_key, command, step="reboot", reason=reason,
              subject=Subject(node=node.arn, incident=incident.incident_id), incident_id=incident.incident_id)
    ctx.changed(key(incident.incident_id))


def reboot_progress(ctx: Ctx, incident: Incident, node: Node) -> None:
    """The agent's disconnect and reconnect after the request say when to run the post-reboot check;
    the check's boot time is the proof (an hourly reconnect proves nothing)."""
    facts = node.facts
    after = incident.hint_after or incident.reboot_requested_at or ""
    if not incident.reboot_hint and facts.last_disconnect_at and facts.last_disconnect_at >= after:
        incident.reboot_hint = True
        ctx.changed(key(incident.incident_id))
    if incident.reboot_hint and facts.agent_connected and (facts.last_connect_at or "") >= (
            facts.last_disconnect_at or ""):
        start_check(ctx, incident, node, ctx.config.post_reboot_level)


def reboot_deadline(ctx: Ctx, incident: Incident, node: Node) -> None:
    minutes = int(ctx.config.reboot_deadline.total_seconds() // 60)
    if node.facts.agent_connected is False:
        escalate(ctx, incident, node, f"not back within {minutes} min after the reboot request",
                 kind="deadline_expired", next_step="Check the instance's console and status checks; replace it "
                 "if it does not boot.")
    elif incident.reboot_attempt < 2:
        reboot(ctx, incident, node, f"no proof of a reboot within {minutes} min; asking once more")
    else:
        escalate(ctx, incident, node, f"the reboot could not be proven after {incident.reboot_attempt} requests",
                 kind="deadline_expired")


# --- outcomes of our own calls ----------------------------------------------------------------------


def on_outcome(ctx: Ctx, incident: Incident, outcome: ActionOutcome, at: str) -> None:
    if outcome.idempotency_key in incident.applied or (incident.closed and outcome.step != "replace"):
        return
    incident.applied[outcome.idempotency_key] = outcome.status
    ctx.changed(key(incident.incident_id))
    node = node_of(ctx, incident)
    if outcome.step == "health_check" and outcome.idempotency_key == incident.check_key:
        _check_started(ctx, incident, node, outcome, at)
    elif outcome.step == "reboot" and outcome.idempotency_key == incident.reboot_key:
        _reboot_sent(ctx, incident, node, outcome, at)
    elif outcome.step == "replace":
        _replace_done(ctx, incident, node, outcome)


def _check_started(ctx: Ctx, incident: Incident, node: Node, outcome: ActionOutcome, at: str) -> None:
    if outcome.status == "succeeded":
        incident.check_task_arn = str(outcome.detail.get("task_arn") or "") or None
        # The deadline counts from when the check really started, not from when it was decided.
        incident.timer = ctx.timer("health_check", ctx.config.health_check_deadline, incident.check_key or "")
        incident.timer.due_at = max(incident.timer.due_at, iso(parse_iso(at) + ctx.config.health_check_deadline))
    elif outcome.status == "failed":
        escalate(ctx, incident, node, f"health check task could not be started: {outcome.error}", kind="escalation")


def _reboot_sent(ctx: Ctx, incident: Incident, node: Node, outcome: ActionOutcome, at: str) -> None:
    if outcome.status == "failed":
        escalate(ctx, incident, node, f"reboot request refused: {outcome.error}", kind="escalation")
    elif outcome.status == "succeeded":
        due = iso(parse_iso(at) + ctx.config.reboot_deadline)
        incident.reboot_due = max(incident.reboot_due or "", due)
        if incident.timer and incident.timer.kind == "reboot":
            incident.timer.due_at = incident.reboot_due
    # "unknown": it may or may not have happened; the deadline checks the node and asks again.


def _replace_done(ctx: Ctx, incident: Incident, node: Node, outcome: ActionOutcome) -> None:
    incident.replacing = False
    reason = incident.reason
    if outcome.status == "succeeded":
        set_node_state(ctx, node, "REPLACED", incident, "terminated in its Auto Scaling group; a successor registers")
        fleet.leave_repair(ctx, node.arn, back_in_service=False)
        fleet.replaced(ctx, node.arn)
        notices.notify(ctx, "node_replaced", cause="replaced", nodes=[node.arn], jobs=incident.jobs,
                       incidents=[incident.incident_id], xids=incident.xids, verdict=incident.verdict,
                           done=done_steps(incident),
                       summary=f"node {short(node.arn)} replaced: {reason}",
                       next_step="Nothing: its Auto Scaling group launches a successor. RMA the old host if it "
                       "keeps coming back.")
        close(ctx, incident, "replaced", reason)
        return
    notices.notify(ctx, "replace_failed", cause="replace_failed", nodes=[node.arn], jobs=incident.jobs,
                   incidents=[incident.incident_id], xids=incident.xids, verdict=incident.verdict,
                       done=done_steps(incident),
                   summary=f"could not replace node {short(node.arn)} ({outcome.error}); it is quarantined instead",
                   next_step="Replace the instance by hand, or put it in an Auto Scaling group.")
    quarantine(ctx, incident, node, f"replace failed ({outcome.error}); quarantined: {reason}", notify=False)


# --- endings ----------------------------------------------------------------------------------------


def resolve(ctx: Ctx, incident: Incident, node: Node, outcome: IncidentOutcome, reason: str) -> None:
    undrain(ctx, incident, node)
    set_node_state(ctx, node, "HEALTHY", incident, reason)
    fleet.back_in_service(ctx, node.arn)
    close(ctx, incident, outcome, reason)


def out_of_service(ctx: Ctx, incident: Incident, node: Node, reason: str) -> None:
    replace = ctx.config.replace_instances and not node.facts.external and bool(node.facts.instance_id)
    if not replace:
        quarantine(ctx, incident, node, reason)
        return
    incident.replacing = True
    incident.reason = reason
    set_node_state(ctx, node, "QUARANTINED", incident, f"being replaced: {reason}")
    ctx.order(f"{incident.incident_id}:replace",
              TerminateInstanceInAutoScalingGroup(target=node.facts.instance_id or node.arn), step="replace",
              reason=reason, subject=Subject(node=node.arn, incident=incident.incident_id),
              incident_id=incident.incident_id)
    ctx.changed(key(incident.incident_id))


def done_steps(incident: Incident) -> list[str]:
    """What recovery did on this node, as the steps' idempotency keys (a notice's ``done``)."""
    iid = incident.incident_id
    return [f"{iid}:check:{n}" for n in range(1, incident.check_attempt + 1)] + [
        f"{iid}:reboot:{n}" for n in range(1, incident.reboot_attempt + 1)]


def quarantine(ctx: Ctx, incident: Incident, node: Node, reason: str, *, notify: bool = True) -> None:
    set_node_state(ctx, node, "QUARANTINED", incident, reason)
    fleet.leave_repair(ctx, node.arn, back_in_service=False)
    if notify:
        notices.notify(ctx, "node_quarantined", cause="quarantined", nodes=[node.arn], jobs=incident.jobs,
                       incidents=[incident.incident_id], xids=incident.xids, verdict=incident.verdict,
                           done=done_steps(incident),
                       summary=f"node {short(node.arn)} quarantined: {reason}",
                       next_step="Inspect the node (nvidia-smi -q, dcgmi diag -r 3); RMA it, or return it to service "
                       "with `gpu-recovery node release NODE` (or the attribute gpu-recovery.state=HEALTHY): "
                       "a check runs first.")
    close(ctx, incident, "quarantined", reason)


def escalate(ctx: Ctx, incident: Incident, node: Node, reason: str, *, kind: str,
             next_step: str = "Look at the health-check task's logs on the node; release the node when it is fine "
             "(`gpu-recovery node release NODE`).") -> None:
    """Automation cannot tell: the node stays drained and a person is paged."""
    set_node_state(ctx, node, "QUARANTINED", incident, reason)
    fleet.leave_repair(ctx, node.arn, back_in_service=False)
    notices.notify(ctx, kind, cause=kind, nodes=[node.arn], jobs=incident.jobs, incidents=[incident.incident_id],
                   done=done_steps(incident),
                   xids=incident.xids, verdict=incident.verdict, summary=f"node {short(node.arn)}: {reason}",
                   next_step=next_step)
    close(ctx, incident, "escalated", reason)


def misconfigured(ctx: Ctx, incident: Incident, node: Node, report: ReportSummary) -> None:
    """A configuration fault: a reboot would not change it. Drained until someone fixes it."""
    set_node_state(ctx, node, "MISCONFIGURED", incident, report.reason)
    fleet.leave_repair(ctx, node.arn, back_in_service=False)
    notices.notify(ctx, "node_misconfigured", cause="misconfigured", nodes=[node.arn], jobs=incident.jobs,
                   incidents=[incident.incident_id], done=done_steps(incident), verdict=report.verdict,
                   summary=f"node {short(node.arn)} is misconfigured: {report.reason}",
                   next_step=report.fix or "Fix the node's configuration, then `gpu-recovery node release NODE`.")
    close(ctx, incident, "misconfigured", report.reason)


def close(ctx: Ctx, incident: Incident, outcome: IncidentOutcome, reason: str) -> None:
    if incident.closed:
        return
    incident.phase, incident.outcome, incident.closed_at = "CLOSED", outcome, ctx.now
    incident.timer = ctx.timer("retention", ctx.config.retention, f"retention:{incident.incident_id}")
    node = node_of(ctx, incident)
    if node.plan.incident_id == incident.incident_id:
        node.plan.incident_id = None
        ctx.changed(("node", node.arn))
    fleet.forget_incident(ctx, incident.incident_id)
    ctx.emit(IncidentClosed(incident_id=incident.incident_id, node_arn=incident.node_arn, outcome=outcome,
                            reason=reason), Subject(node=incident.node_arn, incident=incident.incident_id),
             incident.incident_id)
    for job_id in incident.jobs:
        ctx.mark(("job", job_id))
    ctx.changed(key(incident.incident_id))


def timer_due(ctx: Ctx, incident: Incident, kind: str) -> None:
    if kind == "retention" and incident.closed:
        ctx.view.retire(key(incident.incident_id), {"closed_at": incident.closed_at, "version": incident.version + 1})
        return
    if incident.closed:
        return
    node = node_of(ctx, incident)
    minutes = int(ctx.config.health_check_deadline.total_seconds() // 60)
    if kind == "health_check" and incident.phase in ("CHECKING", "VERIFYING"):
        escalate(ctx, incident, node, f"no health report within {minutes} min", kind="deadline_expired")
    elif kind == "report_grace" and incident.phase in ("CHECKING", "VERIFYING"):
        escalate(ctx, incident, node, "the check task stopped and sent no report", kind="escalation")
    elif kind == "reboot" and incident.phase == "REBOOTING":
        reboot_deadline(ctx, incident, node)


# --- the node's own state -------------------------------------------------------------------------


def drain(ctx: Ctx, incident: Incident, node: Node) -> None:
    if node.plan.drained:
        return
    node.plan.drained = True
    ctx.changed(("node", node.arn))
    ctx.order(f"{incident.incident_id}:drain", UpdateContainerInstancesState(target=node.arn, status="DRAINING"),
              step="drain", reason="keep new work off a suspect node",
              subject=Subject(node=node.arn, incident=incident.incident_id), incident_id=incident.incident_id)


def undrain(ctx: Ctx, incident: Incident, node: Node) -> None:
    node.plan.drained = False
    ctx.changed(("node", node.arn))
    ctx.order(f"{incident.incident_id}:undrain", UpdateContainerInstancesState(target=node.arn, status="ACTIVE"),
              step="return_to_service", reason="the node is fine: back to service",
              subject=Subject(node=node.arn, incident=incident.incident_id), incident_id=incident.incident_id)


def set_node_state(ctx: Ctx, node: Node, state: NodeRepairState, incident: Incident | None, reason: str) -> None:
    """The node's repair state, recorded and mirrored into an ECS attribute (placement constraints read it)."""
    if node.plan.repair == state and node.plan.reason == reason:
        return
    node.plan.repair, node.plan.reason = state, reason
    node.plan.attribute_acted, node.plan.mirrored_at = state, None
    ctx.changed(("node", node.arn))
    scope = f"{incident.incident_id}:{incident.check_attempt}:{incident.reboot_attempt}" if incident else ctx.now
    subject = Subject(node=node.arn, incident=incident.incident_id if incident else None)
    ctx.emit(NodeStateChanged(node_arn=node.arn, state=state, reason=reason,
                              incident_id=incident.incident_id if incident else None,
                              ec2_instance_id=node.facts.instance_id,
                              order=ctx.order_of(("node", node.arn), node.plan.version)), subject, f"{scope}:{state}")
    ctx.order(f"{scope}:attr:{state}", PutAttributes(target=node.arn, name=ctx.config.node_attribute, value=state),
              step="mirror_state", reason="placement constraints can keep jobs off the node", subject=subject,
              incident_id=incident.incident_id if incident else None)
