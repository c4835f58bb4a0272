"""Restarts: the budget per window, the backoff, placement from capacity, and the launch itself.

A job restarts exactly as it was launched (task definition revision, overrides, group, startedBy, tags,
plus a ``gpu-recovery:key`` tag), on its own nodes where they are healthy and free, else on spares.
Every decided restart holds its nodes' GPUs (a reservation), so two restarts decided at once never
double-book a node, and a recovering job's idle nodes stay reserved for it.
"""

from __future__ import annotations

from datetime import timedelta

from consumers.core.clocktext import iso, parse_iso
from consumers.core.facts import STOPPED
from consumers.core.recovery import fleet, notices, placement
from consumers.core.recovery.context import Ctx
from consumers.core.recovery.job_steps import fail, history, key, state_changed, stop_live_ranks
from consumers.core.recovery.model import RECOVERY_STOP_BIT, Job, Node, TaskRecord
from consumers.core.recovery.view import FLEET_KEY
from events_schema.commands import RESTART_TAG, StartTask
from events_schema.envelope import Subject
from events_schema.events import ActionOutcome


def budget_left(ctx: Ctx, job: Job) -> int:
    """Restarts left in the budget window (``max_job_restarts`` per ``restart_budget_window``)."""
    since = iso(parse_iso(ctx.now) - ctx.config.restart_budget_window)
    job.plan.restarts = [t for t in job.plan.restarts if t > since][-ctx.config.max_job_restarts:]
    return ctx.config.max_job_restarts - len(job.plan.restarts)


def begin(ctx: Ctx, job: Job) -> None:
    """Every incident the job waited on is closed: restart it (after the backoff), if the budget allows."""
    plan = job.plan
    if not plan.round_counted and budget_left(ctx, job) <= 0:
        hours = ctx.config.restart_budget_window.total_seconds() / 3600
        fail(ctx, job, f"restart budget exhausted ({len(plan.restarts)} restarts within {hours:g} h)",
             kind="budget_exhausted")
        return
    delay = ctx.config.backoff(len(plan.restarts) + 1)
    if delay.total_seconds() > 0 and not plan.round_counted:
        plan.timer = ctx.timer("backoff", delay, f"backoff:{plan.generation}:{plan.restart_total}")
        ctx.changed(key(job.job_id))
        return
    place(ctx, job)


def place(ctx: Ctx, job: Job) -> None:
    ranks = list(job.facts.ranks.items())
    ctx.view.need([("task", arn) for arn, _ in ranks])
    tasks = {arn: ctx.view.task(arn) for arn, _ in ranks}
    needs = [placement.RankNeed(arn, t.node_arn if t else None, _gpus(job, t)) for arn, t in tasks.items()]
    nodes = ctx.view.all_nodes()
    recent = iso(parse_iso(ctx.now) - ctx.config.fault_window)
    chosen = placement.assign(needs, _candidates(ctx, job, nodes), recent) if needs else None
    if chosen is None:
        wait_for_capacity(ctx, job, "not enough healthy GPU capacity for every rank" if needs else
                          "no rank known to restart")
        return
    launch(ctx, job, needs, chosen, tasks)


def _gpus(job: Job, task: TaskRecord | None) -> int:
    return (task.gpus if task and task.gpus else 0) or job.facts.gpus_per_rank or 1


def _candidates(ctx: Ctx, job: Job, nodes: list[Node]) -> list[placement.Candidate]:
    holders = sorted({j for n in nodes for j in n.plan.holds if j != job.job_id})
    ctx.view.need([("job", j) for j in holders])
    out = []
    for node in nodes:
        if not eligible(ctx, node) or _suspected(ctx, node):
            continue
        used = sum(h.gpus for j, h in node.plan.holds.items() if j != job.job_id and _valid(ctx, j, h.generation))
        free = node.facts.gpus_total - used
        if node.facts.gpus_remaining is not None and job.job_id not in node.plan.holds:
            free = min(free, node.facts.gpus_remaining)
        last_fault = node.plan.fault_times[-1] if node.plan.fault_times else ""
        out.append(placement.Candidate(node.arn, free, job.job_id in node.plan.holds, last_fault))
    return out


def eligible(ctx: Ctx, node: Node) -> bool:
    facts, plan = node.facts, node.plan
    refused = plan.refused_at is not None and not ctx.older_than(plan.refused_at, ctx.config.restart_deadline)
    return (plan.repair == "HEALTHY" and plan.incident_id is None and not plan.drained and facts.status == "ACTIVE"
            and facts.agent_connected is not False and facts.gpus_total > 0 and not refused
            and facts.ec2_state in (None, "running", "pending"))


def _suspected(ctx: Ctx, node: Node) -> bool:
    """A job's failed rank names this node (its first failure, or XIDs in its stop) and that job has not
    opened its incidents yet (it waits for its other ranks to stop): a suspect nobody checked, not a spare."""
    for job_id, hold in node.plan.holds.items():
        holder = ctx.view.job(job_id)
        if holder is None or holder.finished or holder.plan.generation != hold.generation:
            continue
        facts = holder.facts
        named = node.arn in facts.evidence or bool(facts.first_failure and facts.first_failure.node_arn == node.arn)
        if named and (holder.phase in ("RUNNING", "RESTARTING") or not holder.plan.suspects_chosen):
            return True
    return False


def _valid(ctx: Ctx, job_id: str, generation: int) -> bool:
    holder = ctx.view.job(job_id)
    return holder is not None and not holder.finished and holder.plan.generation == generation


def launch(ctx: Ctx, job: Job, needs: list[placement.RankNeed], chosen: list[str],
           tasks: dict[str, TaskRecord | None]) -> None:
    plan = job.plan
    if not plan.round_counted:
        plan.restarts.append(ctx.now)
        plan.restart_total += 1
        plan.round_counted = True
    plan.generation += 1
    plan.generation_at, plan.launched_by, plan.phase = ctx.now, "recovery", "RESTARTING"
    plan.expected_ranks, plan.start_failed, plan.stop_requested = len(needs), None, False
    plan.reason = f"restart {plan.restart_total} ({len(plan.restarts)} of {ctx.config.max_job_restarts} in the window)"
    job.facts.reset()
    history(job)
    fleet_waiting_done(ctx, job)
    per_node: dict[str, int] = {}
    for rank, (need, node) in enumerate(zip(needs, chosen, strict=True)):
        _start_rank(ctx, job, rank, need, node, tasks.get(need.task_arn))
        per_node[node] = per_node.get(node, 0) + need.gpus
    from consumers.core.recovery.jobs import hold  # jobs imports this module

    for node_arn, gpus in sorted(per_node.items()):
        hold(ctx, job, node_arn, gpus)
    plan.timer = ctx.timer("restart", ctx.config.restart_deadline, f"restart:{plan.generation}")
    state_changed(ctx, job, "restarting")


def _start_rank(ctx: Ctx, job: Job, rank: int, need: placement.RankNeed, node: str, task: TaskRecord | None) -> None:
    spec = task.spec if task else {}
    decision = f"{job.job_id}:restart:{job.plan.generation}:{rank}"
    tags = [t for t in (task.tags or []) if t.get("key") != RESTART_TAG] if task else []
    ctx.order(decision, StartTask(
        target=node, purpose="rank", task_definition=str(spec.get("task_definition_arn") or ""),
        overrides=spec.get("overrides") or {}, group=spec.get("group"), started_by=spec.get("started_by"),
        tags=[*tags, {"key": RESTART_TAG, "value": decision}], restart_of=need.task_arn,
        generation=job.plan.generation, gpus=need.gpus,
    ), step="restart", reason=f"relaunch rank {rank} exactly as launched" + ("" if task and task.tags is not None
                                                                            else " (its tags were never read)"),
        subject=Subject(node=node, job=job.job_id), job_id=job.job_id)


def wait_for_capacity(ctx: Ctx, job: Job, reason: str) -> None:
    plan = job.plan
    if plan.phase == "WAITING_CAPACITY":
        return
    plan.phase, plan.reason = "WAITING_CAPACITY", reason
    plan.timer = ctx.timer("capacity", ctx.config.capacity_deadline, f"capacity:{plan.generation}")
    fleet.wait_for_capacity(ctx, job.job_id)
    minutes = int(ctx.config.capacity_deadline.total_seconds() // 60)
    notices.notify(ctx, "waiting_capacity", cause="waiting_capacity", jobs=[job.job_id],
                   summary=f"job {job.job_id} waits for healthy GPU capacity ({reason})",
                   next_step=f"Add or repair GPU nodes; the job restarts by itself as soon as capacity frees, "
                   f"or fails in {minutes} min.")
    state_changed(ctx, job, "waiting")


def fleet_waiting_done(ctx: Ctx, job: Job) -> None:
    f = ctx.view.fleet()
    if job.job_id in f.waiting_capacity:
        f.waiting_capacity.remove(job.job_id)
        ctx.view.touch(FLEET_KEY, "plan")


def on_rank_started(ctx: Ctx, job: Job, outcome: ActionOutcome, at: str) -> None:
    command = outcome.action
    if not isinstance(command, StartTask) or command.generation != job.plan.generation or \
            job.phase != "RESTARTING":
        return
    if outcome.status == "succeeded":
        arn = str(outcome.detail.get("task_arn") or "")
        if arn:
            _remember_started(ctx, job, arn, command)
        if _restart_deadline_from(job, at, ctx.config.restart_deadline):
            ctx.changed(key(job.job_id))
    elif outcome.status == "failed":
        # The rank it was to replace stays in the table (as stopped), so the next placement has it.
        if command.restart_of:
            job.facts.ranks.put(command.restart_of, STOPPED | RECOVERY_STOP_BIT)
        job.plan.start_failed = command.target
        ctx.changed(key(job.job_id))


def _restart_deadline_from(job: Job, started_at: str, deadline: timedelta) -> bool:
    """The deadline counts from when the ranks were really started, not from when it was decided: a
    consumer behind decides at the stream's time and acts at the wall clock's (minutes later)."""
    timer = job.plan.timer
    due = iso(parse_iso(started_at) + deadline)
    if timer is None or timer.kind != "restart" or due <= timer.due_at:
        return False
    timer.due_at = due
    return True


def _remember_started(ctx: Ctx, job: Job, arn: str, command: StartTask) -> None:
    """A rank recovery started: its tags and launch spec are known now (no capture needed)."""
    task = ctx.view.task(arn)
    if task is None:
        task = TaskRecord(task_arn=arn, job_id=job.job_id, identity="restart", node_arn=command.target,
                          created_at=job.plan.generation_at, gpus=command.gpus,
                          spec={"task_definition_arn": command.task_definition, "overrides": command.overrides,
                                "group": command.group, "started_by": command.started_by})
        ctx.view.add(("task", arn), task)
    if task.tags is None:
        task.tags = list(command.tags)
        ctx.view.touch(("task", arn), "facts")


def abandon(ctx: Ctx, job: Job) -> None:
    """A rank could not be started (ECS refused: no room after all): stop what did start, place again."""
    plan = job.plan
    refused = ctx.view.node(plan.start_failed) if plan.start_failed else None
    if refused is not None:
        refused.plan.refused_at = ctx.now
        ctx.changed(("node", refused.arn))
    stop_live_ranks(ctx, job, f"abandon{plan.generation}", "a rank of this restart could not be started")
    plan.phase, plan.start_failed, plan.timer = "RECOVERING", None, None
    plan.suspects_chosen = True
    ctx.changed(key(job.job_id))
    place(ctx, job)
