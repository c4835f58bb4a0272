"""Nodes: what recovery does when a node's facts change, when a signal says it degraded, when a person
releases it, and when AWS plans maintenance on it (the node row of the transition table).

| when                                                   | then                                                  |
|--------------------------------------------------------|-------------------------------------------------------|
| a GPU node registers / leaves                           | the fleet's count (the base of the limits) follows    |
| its agent drops and returns after a reboot request      | the post-reboot check starts (the proof is boot time) |
| a GPU health signal (ECS ACCELERATED_COMPUTE IMPAIRED, | a proactive incident: drained; idle -> checked now;   |
| the node watcher's GpuHealthSignal)                     | busy -> notify the job (or stop it: proactive_action) |
| `gpu-recovery node release`, or the attribute set back  | out of service -> a check; pass -> back to service    |
| AWS Health scheduled change                             | the job's owner told; drained ahead; replaced in ASG  |
| EC2 stopped/terminated, not by recovery                 | its jobs' ranks count as failed; no check on it       |

A signal can at most cost a check (and, with ``proactive_action=stop_job``, a restart): only a verified
report repairs (DESIGN 3.9).
"""

from __future__ import annotations

from consumers.core.clocktext import iso, parse_iso
from consumers.core.recovery import fleet, incidents, notices
from consumers.core.recovery.context import Ctx, short
from consumers.core.recovery.job_steps import stop_live_ranks
from consumers.core.recovery.model import IN_RECOVERY, OUT_OF_SERVICE, Incident, Job, Node, ScheduledChange, Timer
from events_schema.commands import TerminateInstanceInAutoScalingGroup, UpdateContainerInstancesState
from events_schema.envelope import Subject
from events_schema.events import ActionOutcome

GPU_HEALTH_CHECKS = frozenset({"ACCELERATED_COMPUTE"})
IMPAIRED = frozenset({"IMPAIRED", "UNHEALTHY"})
LOST_STATES = frozenset({"stopping", "stopped", "shutting-down", "terminated"})
REPLACEABLE = ("AWS_EC2_INSTANCE_RETIREMENT_SCHEDULED", "AWS_EC2_INSTANCE_STOP_SCHEDULED")


def key(arn: str) -> tuple[str, str]:
    return ("node", arn)


def reconcile(ctx: Ctx, arn: str) -> None:
    node = ctx.view.node(arn)
    if node is None:
        return
    if fleet.count_node(ctx, node):
        fleet.successor_registered(ctx)
        ctx.mark(("fleet", "fleet"))
    incident = ctx.view.incident(node.plan.incident_id) if node.plan.incident_id else None
    if incident is not None and incident.phase == "REBOOTING":
        incidents.reboot_progress(ctx, incident, node)
    _health_signals(ctx, node)
    _operator_attribute(ctx, node)
    _announce(ctx, node)
    _maintenance(ctx, node)
    _lost(ctx, node)


def busy_jobs(ctx: Ctx, node: Node) -> list[Job]:
    """Jobs whose current generation holds this node and still runs there."""
    ctx.view.need([("job", j) for j in node.plan.holds])
    out = []
    for job_id, hold in sorted(node.plan.holds.items()):
        job = ctx.view.job(job_id)
        if job is not None and not job.finished and job.plan.generation == hold.generation \
                and job.phase in ("RUNNING", "RESTARTING"):
            out.append(job)
    return out


# --- signals ----------------------------------------------------------------------------------------


def _health_signals(ctx: Ctx, node: Node) -> None:
    for name in sorted(GPU_HEALTH_CHECKS & node.facts.health.keys()):
        register = node.facts.health[name]
        if register.status in IMPAIRED:
            signal(ctx, node, f"ECS {name} {register.status}", register.since)


def signal(ctx: Ctx, node: Node, what: str, since: str, xids: list[int] | None = None) -> None:
    """Something says the node degraded: keep work off it and check it (never repair on a signal alone)."""
    if node.plan.repair in OUT_OF_SERVICE:
        return
    current = ctx.view.incident(node.plan.incident_id) if node.plan.incident_id else None
    if current is not None and not current.closed:
        return  # already being looked at
    if node.plan.fault_times and since <= node.plan.fault_times[-1]:
        return  # the signal predates the last repair of this node
    incident_id = incidents.open_or_join(ctx, node.arn, None, reason=f"signal: {what}", trigger="signal",
                                         fault_at=since, xids=xids)
    incident = ctx.view.incident(incident_id)
    assert incident is not None
    incident.signal = what
    incidents.drain(ctx, incident, node)
    for job in busy_jobs(ctx, node):
        _at_risk(ctx, job, node, incident, what)


def _at_risk(ctx: Ctx, job: Job, node: Node, incident: Incident, what: str) -> None:
    if ctx.config.proactive_action == "stop_job":
        from consumers.core.recovery.jobs import interrupt_for  # jobs imports incidents and this module's users

        interrupt_for(ctx, job, node.arn, incident, f"proactive: {what} on node {short(node.arn)}")
        return
    job.plan.at_risk = node.arn
    ctx.changed(("job", job.job_id))
    notices.notify(ctx, "job_at_risk", cause=what, jobs=[job.job_id], nodes=[node.arn],
                   incidents=[incident.incident_id],
                   summary=f"job {job.job_id} runs on node {short(node.arn)}, which reports {what}",
                   next_step="Checkpoint the job soon; the node is checked as soon as the job stops (or set "
                   "proactive_action=stop_job to have recovery stop, repair and restart it on a spare).")


def may_check(ctx: Ctx, incident: Incident, node: Node) -> bool:
    """A proactive check waits for a busy node's jobs to stop (unless it stops them)."""
    if ctx.config.proactive_action == "notify" and busy_jobs(ctx, node):
        fleet.wait_for_repair(ctx, incident.incident_id)
        return False
    return True


# --- people ----------------------------------------------------------------------------------------


def release(ctx: Ctx, node: Node, who: str, why: str = "") -> None:
    """Back to service, through a check: an out-of-service node gets a check; pass returns it."""
    if node.plan.repair not in OUT_OF_SERVICE:
        return
    reason = f"released by {who}" + (f": {why[:200]}" if why else "")
    incident_id = incidents.open_or_join(ctx, node.arn, None, reason=reason, trigger="operator")
    ctx.mark(("incident", incident_id))


def mirrored(ctx: Ctx, outcome: ActionOutcome, at: str) -> None:
    """ECS has the node's repair state in its attribute from now on (events after this show it)."""
    node = ctx.view.node(outcome.action.target)
    if node is None or outcome.status != "succeeded" or getattr(outcome.action, "value", None) != node.plan.repair:
        return
    node.plan.mirrored_at = at
    ctx.changed(key(node.arn))


def _operator_attribute(ctx: Ctx, node: Node) -> None:
    """A person set the attribute back to HEALTHY: an event newer than the call that set ours shows it (an
    older one may show recovery's own earlier HEALTHY, the attribute as it was before the call)."""
    value = node.facts.attributes.get(ctx.config.node_attribute)
    plan, seen_at = node.plan, node.facts.attributes_at
    after_ours = plan.mirrored_at is not None and bool(seen_at) and parse_iso(seen_at) > parse_iso(plan.mirrored_at)
    if value == "HEALTHY" and plan.repair in OUT_OF_SERVICE and plan.attribute_acted != "HEALTHY" and after_ours:
        node.plan.attribute_acted = "HEALTHY"
        ctx.changed(key(node.arn))
        release(ctx, node, f"the attribute {ctx.config.node_attribute}=HEALTHY")


# --- AWS scheduled maintenance -----------------------------------------------------------------------


def _announce(ctx: Ctx, node: Node) -> None:
    """Tell the owners of the node's jobs once per scheduled change, when to checkpoint."""
    for change in sorted(node.facts.maintenance.values(), key=lambda c: (c.start or "", c.event_arn)):
        if change.event_arn in node.plan.maintenance_notified:
            continue
        node.plan.maintenance_notified = [*node.plan.maintenance_notified, change.event_arn][-20:]
        ctx.changed(key(node.arn))
        jobs = [j.job_id for j in busy_jobs(ctx, node)]
        lead = int(ctx.config.maintenance_lead.total_seconds() // 60)
        notices.notify(ctx, "maintenance_scheduled", cause=change.code, nodes=[node.arn], jobs=jobs,
                       summary=f"AWS scheduled {change.code} on node {short(node.arn)} ({node.facts.instance_id}) "
                       f"from {change.start or '?'} to {change.end or '?'}",
                       next_step=f"Checkpoint before {change.start or 'the window'}; recovery drains the node {lead} "
                       "min ahead" + (" and replaces it" if ctx.config.replace_instances else "") + ".")


def _maintenance(ctx: Ctx, node: Node) -> None:
    due = [c for c in node.facts.maintenance.values() if c.event_arn not in node.plan.maintenance_acted]
    for change in sorted(due, key=lambda c: (c.start or "", c.event_arn)):
        ahead = iso(parse_iso(change.start) - ctx.config.maintenance_lead) if change.start else ctx.now
        if ahead > ctx.now:
            _arm(ctx, node, ahead, change.event_arn)
            continue
        _before_window(ctx, node, change)
    for change in node.facts.maintenance.values():
        if change.event_arn in node.plan.maintenance_acted:
            _replace_ahead(ctx, node, change)


def _arm(ctx: Ctx, node: Node, due: str, token: str) -> None:
    if node.plan.timer is None or node.plan.timer.due_at > due:
        node.plan.timer = Timer(kind="maintenance", due_at=due, token=token)
        ctx.changed(key(node.arn))


def _before_window(ctx: Ctx, node: Node, change: ScheduledChange) -> None:
    node.plan.maintenance_acted.append(change.event_arn)
    node.plan.maintenance_acted = node.plan.maintenance_acted[-20:]
    if node.plan.timer and node.plan.timer.token == change.event_arn:
        node.plan.timer = None
    ctx.changed(key(node.arn))
    scope = f"maint:{change.event_arn}"
    if not node.plan.drained:
        node.plan.drained = True
        ctx.order(f"{scope}:drain", UpdateContainerInstancesState(target=node.arn, status="DRAINING"), step="drain",
                  reason=f"AWS {change.code} starts {change.start}", subject=Subject(node=node.arn))
    _replace_ahead(ctx, node, change)


def _replace_ahead(ctx: Ctx, node: Node, change: ScheduledChange) -> None:
    """Retired or stopped hardware is replaced before the window, once no job runs on it (a busy node
    is replaced when its job leaves; a running job is never killed for a planned event)."""
    plan = node.plan
    if not change.code.startswith(REPLACEABLE) or not ctx.config.replace_instances or not node.facts.instance_id \
            or node.facts.external or change.event_arn in plan.replace_tried or plan.repair != "HEALTHY" \
            or (change.start is not None and change.start <= ctx.now) or busy_jobs(ctx, node):
        return
    # The node is REPLACED only once Auto Scaling said yes (maintenance_replaced, on the outcome).
    plan.replacing = change.event_arn
    plan.replace_tried = [*plan.replace_tried, change.event_arn][-20:]
    ctx.changed(key(node.arn))
    ctx.order(f"maint:{change.event_arn}:replace", TerminateInstanceInAutoScalingGroup(target=node.facts.instance_id),
              step="replace", reason=f"replaced ahead of AWS {change.code} at {change.start}",
              subject=Subject(node=node.arn))


def maintenance_replaced(ctx: Ctx, node: Node, outcome: ActionOutcome) -> None:
    """The outcome of a replace ahead of a scheduled change: replaced, or left drained with a notice."""
    change = node.facts.maintenance.get(node.plan.replacing or "")
    node.plan.replacing = None
    ctx.changed(key(node.arn))
    what = f"AWS {change.code} at {change.start}" if change else "AWS scheduled maintenance"
    if outcome.status == "succeeded":
        incidents.set_node_state(ctx, node, "REPLACED", None, f"replaced ahead of {what}")
        fleet.replaced(ctx, node.arn)
        notices.notify(ctx, "node_replaced", cause="replaced", nodes=[node.arn],
                       summary=f"node {short(node.arn)} replaced ahead of {what}",
                       next_step="Nothing: its Auto Scaling group launches a successor.")
        return
    notices.notify(ctx, "replace_failed", cause="replace_failed", nodes=[node.arn],
                   summary=f"could not replace node {short(node.arn)} ahead of {what} ({outcome.error}); "
                   "it stays drained, so no new work lands on it",
                   next_step="Replace or stop the instance by hand before the window, or put it in an Auto Scaling "
                   "group.")


def timer_due(ctx: Ctx, node: Node, kind: str) -> None:
    if kind == "maintenance":
        node.plan.timer = None
        ctx.changed(key(node.arn))
        _maintenance(ctx, node)


# --- nodes lost outside recovery --------------------------------------------------------------------


def _lost(ctx: Ctx, node: Node) -> None:
    state = node.facts.ec2_state
    if state not in LOST_STATES or node.plan.lost_handled == node.facts.ec2_state_at \
            or node.plan.repair in OUT_OF_SERVICE:
        return
    incident = ctx.view.incident(node.plan.incident_id) if node.plan.incident_id else None
    if incident is not None and (incident.phase == "REBOOTING" or incident.replacing):
        return  # we caused it
    node.plan.lost_handled = node.facts.ec2_state_at
    ctx.changed(key(node.arn))
    for job in busy_jobs(ctx, node):
        if job.phase not in IN_RECOVERY:
            from consumers.core.recovery.jobs import interrupt_for

            interrupt_for(ctx, job, None, None, f"instance {node.facts.instance_id} {state} outside recovery")


def stop_job_ranks(ctx: Ctx, job: Job, reason: str) -> None:
    stop_live_ranks(ctx, job, f"proactive{job.plan.generation}", reason)
