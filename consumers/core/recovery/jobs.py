"""Jobs: what recovery does when a job's ranks change (the job row of the transition table).

| phase           | when                                                 | then                                      |
|-----------------|------------------------------------------------------|-------------------------------------------|
| RUNNING         | a rank failed (not a stop by a user or by us)        | RECOVERING: stop every other rank         |
| RUNNING         | every rank exited 0 / a user stopped it              | COMPLETED / STOPPED_BY_USER               |
| RECOVERING      | every rank stopped, or the siblings deadline         | suspects -> one incident per suspect node |
| RECOVERING      | every incident it waits on closed                    | budget? backoff, then placement           |
| (placement)     | room for every rank                                  | RESTARTING: StartTask per rank            |
| (placement)     | no room                                              | WAITING_CAPACITY until capacity frees     |
| RESTARTING      | every rank RUNNING                                   | RUNNING                                   |
| RESTARTING      | a rank failed                                        | RECOVERING again                          |
| in recovery     | a user stopped a rank, or `gpu-recovery job cancel`  | STOPPED_BY_USER, nothing restarted        |
| finished        | a new task of the job, created after it finished     | RUNNING: a new run (generation + 1)       |
"""

from __future__ import annotations

from consumers.core.facts import RUNNING, STOPPED, lifecycle
from consumers.core.recovery import incidents, restarts
from consumers.core.recovery.apply import TaskSeen
from consumers.core.recovery.context import Ctx, short
from consumers.core.recovery.job_steps import (
    cancel,
    fail,
    finish,
    fleet_forget,
    history,
    key,
    state_changed,
    stop_live_ranks,
    stop_rank,
)
from consumers.core.recovery.model import IN_RECOVERY, TERMINAL, Hold, Incident, Job, Node
from events_schema.commands import ListTagsForResource
from events_schema.envelope import Subject

HOLDS_KEPT_PER_GPU = 2


# --- reactions to one task event --------------------------------------------------------------------


def on_task(ctx: Ctx, seen: TaskSeen) -> None:
    task = seen.task
    if seen.pending or (seen.rank and task.tags is None and not task.tags_requested):
        _capture_tags(ctx, seen)
    if seen.job_id is None or not (seen.rank or seen.old_generation):
        return
    job = ctx.view.job(seen.job_id)
    if job is None:
        return
    if seen.old_generation and seen.code & 7 < STOPPED:
        if not task.stopped_at:  # an old event of a rank known stopped (redelivered) needs no stop
            stop_rank(ctx, job, task.task_arn, "stale", "a rank of a generation a restart replaced, still running")
        return
    if (seen.placed_now or seen.first_sight) and task.node_arn and not job.finished:
        hold(ctx, job, task.node_arn, task.gpus or job.facts.gpus_per_rank, rank=task.task_arn)
    if seen.new_rank and job.plan.stop_requested and job.phase in ("RECOVERING", "WAITING_CAPACITY") \
            and seen.code & 7 < STOPPED:
        stop_rank(ctx, job, task.task_arn, str(job.plan.generation), "a rank of an interrupted job, seen late")
    ctx.mark(key(job.job_id))


def _capture_tags(ctx: Ctx, seen: TaskSeen) -> None:
    task = seen.task
    task.tags_requested = True
    ctx.view.touch(("task", task.task_arn), "facts")
    ctx.order(f"tags:{task.task_arn}", ListTagsForResource(target=task.task_arn), step="capture_tags",
              reason="keep the tags to restart with and to know the job (task events carry no tags)",
              subject=Subject(node=task.node_arn, task=task.task_arn, job=seen.job_id), job_id=seen.job_id)


def hold(ctx: Ctx, job: Job, node_arn: str, gpus: int, *, rank: str | None = None) -> None:
    """Claim a node's GPUs for this generation of the job (so other jobs' placements leave them): ``gpus``
    for the node, or, with ``rank``, that rank's GPUs added to those of the job's other ranks there."""
    node = ctx.view.node(node_arn)
    if node is None:
        # The task's event came before any event of its node (they travel on different shards): the
        # claim must not be lost, so the node's record starts here and its own event fills the facts.
        node = Node(arn=node_arn)
        ctx.view.add(("node", node_arn), node)
    current = node.plan.holds.get(job.job_id)
    if current is not None and current.generation != job.plan.generation:
        current = None
    ranks = dict(current.ranks) if current else {}
    if rank is not None:
        ranks[rank] = gpus
    wanted = max(gpus if rank is None else 0, sum(ranks.values()), current.gpus if current else 0)
    if current and current.gpus >= wanted and current.ranks == ranks:
        return
    node.plan.holds[job.job_id] = Hold(generation=job.plan.generation, gpus=wanted, at=ctx.now, ranks=ranks)
    # Only as many jobs as GPUs can hold a node: older holds beyond that are long finished.
    kept = max(1, node.facts.gpus_total) * HOLDS_KEPT_PER_GPU
    if len(node.plan.holds) > kept:
        newest = sorted(node.plan.holds.items(), key=lambda kv: (kv[1].at, kv[0]))[-kept:]
        node.plan.holds = dict(newest)
    ctx.changed(("node", node_arn))


# --- the job's transition table ---------------------------------------------------------------------


def reconcile(ctx: Ctx, job_id: str) -> None:
    job = ctx.view.job(job_id)
    if job is None:
        return
    if job.finished:
        if job.facts.since and job.facts.since == job.plan.finished_at and len(job.facts.ranks):
            _new_run(ctx, job)
        else:
            return
    {"RUNNING": _running, "RECOVERING": _recovering, "WAITING_CAPACITY": _waiting,
     "RESTARTING": _restarting}[job.phase](ctx, job)


def _user_stopped(job: Job) -> bool:
    return any(view.user_stop for view in job.facts.ranks.views())


def _all_stopped(job: Job) -> bool:
    return all(view.stage == STOPPED for view in job.facts.ranks.views())


def _running(ctx: Ctx, job: Job) -> None:
    state = lifecycle(job.facts.ranks.views())
    if state in ("COMPLETED", "STOPPED_BY_USER"):
        finish(ctx, job, state, "every rank exited 0" if state == "COMPLETED" else "stopped by a user")
    elif state == "INTERRUPTED" and _user_stopped(job):
        # A user stopped a rank and the others died of it: the user's doing, not a fault.
        if _all_stopped(job):
            finish(ctx, job, "STOPPED_BY_USER", "stopped by a user")
    elif state == "INTERRUPTED" and not job.facts.gpu:
        if _all_stopped(job):
            finish(ctx, job, "FAILED", "a rank failed; not a GPU job, so recovery does not restart it")
    elif state == "INTERRUPTED":
        interrupt(ctx, job)


def interrupt(ctx: Ctx, job: Job) -> None:
    """A rank failed: every other rank is stopped, then the suspects are checked."""
    plan, mark = job.plan, job.facts.first_failure
    plan.phase = "RECOVERING"
    plan.stop_requested, plan.suspects_chosen, plan.incidents = True, False, []
    plan.round_counted, plan.start_failed = False, None
    plan.reason = (f"rank {short(mark.task_arn)} on {short(mark.node_arn)} exited {mark.exit_code}"
                   f"{': ' + mark.reason if mark.reason else ''}" if mark else "a rank failed")
    plan.timer = ctx.timer("siblings", ctx.config.siblings_deadline, f"siblings:{plan.generation}")
    fleet_forget(ctx, job)
    for arn, code in job.facts.ranks.items():
        if code & 7 < STOPPED:
            stop_rank(ctx, job, arn, str(plan.generation),
                      f"sibling of failed rank {short(mark.task_arn if mark else None)}")
    state_changed(ctx, job, "recovering")
    if _all_stopped(job):
        choose_suspects(ctx, job)


def interrupt_for(ctx: Ctx, job: Job, node_arn: str | None, incident: Incident | None, reason: str) -> None:
    """Recovery stops a running job itself: a proactive repair of its node, or its node was lost."""
    plan = job.plan
    plan.phase, plan.reason, plan.at_risk = "RECOVERING", reason, None
    plan.stop_requested, plan.suspects_chosen = True, True
    plan.round_counted, plan.start_failed = False, None
    plan.incidents = [incident.incident_id] if incident else []
    if incident is not None and job.job_id not in incident.jobs:
        incident.jobs.append(job.job_id)
        ctx.changed(("incident", incident.incident_id))
    plan.timer = ctx.timer("siblings", ctx.config.siblings_deadline, f"siblings:{plan.generation}")
    fleet_forget(ctx, job)
    stop_live_ranks(ctx, job, str(plan.generation), reason)
    state_changed(ctx, job, "recovering")


def _recovering(ctx: Ctx, job: Job) -> None:
    plan = job.plan
    if _user_stopped(job):
        cancel(ctx, job, "a user stopped a rank during recovery")
        return
    if not plan.suspects_chosen:
        if _all_stopped(job):
            choose_suspects(ctx, job)
        return
    if not _all_stopped(job) and plan.timer is not None and plan.timer.kind == "siblings":
        return  # restart only once every rank is down (or the siblings deadline passed)
    waiting = [i for i in plan.incidents if (inc := ctx.view.incident(i)) is not None and not inc.closed]
    if waiting != plan.incidents:
        plan.incidents = waiting
        ctx.changed(key(job.job_id))
    if waiting or (plan.timer and plan.timer.kind == "backoff"):
        return
    restarts.begin(ctx, job)


def choose_suspects(ctx: Ctx, job: Job) -> None:
    """The node of the rank that failed first, and every node whose own ranks' stops name a GPU fault."""
    plan, facts = job.plan, job.facts
    suspects = [facts.first_failure.node_arn] if facts.first_failure and facts.first_failure.node_arn else []
    suspects += [node for node in sorted(facts.evidence) if node not in suspects]
    plan.suspects_chosen = True
    plan.timer = None
    plan.incidents = []
    for node_arn in suspects:
        evidence = facts.evidence.get(node_arn, [])
        reason = plan.reason if node_arn == suspects[0] else f"its rank stopped naming XID {evidence}"
        fault_at = facts.first_failure.at if facts.first_failure else ctx.now
        incident_id = incidents.open_or_join(ctx, node_arn, job.job_id, reason=reason, trigger="failure",
                                             fault_at=fault_at, xids=evidence)
        if incident_id:
            plan.incidents.append(incident_id)
    ctx.changed(key(job.job_id))
    if plan.incidents:
        state_changed(ctx, job, "suspects", f"waiting for the check of {len(plan.incidents)} suspect node(s)")


def _waiting(ctx: Ctx, job: Job) -> None:
    if _user_stopped(job):
        cancel(ctx, job, "a user stopped a rank while the job waited for capacity")
    else:
        restarts.place(ctx, job)  # capacity may have freed


def _restarting(ctx: Ctx, job: Job) -> None:
    plan = job.plan
    state = lifecycle(job.facts.ranks.views())
    if plan.start_failed:
        restarts.abandon(ctx, job)
    elif _user_stopped(job):
        cancel(ctx, job, "a user stopped a restarted rank")
    elif state == "INTERRUPTED":
        interrupt(ctx, job)
    elif len(job.facts.ranks) >= plan.expected_ranks and all(
            v.stage == RUNNING for v in job.facts.ranks.views()):
        plan.phase = "RUNNING"
        plan.timer = None
        plan.stop_requested = False
        plan.reason = f"recovered after restart {plan.restart_total}"
        state_changed(ctx, job, "running")


def _new_run(ctx: Ctx, job: Job) -> None:
    """A finished job's group (or tag) started again: a new run, generation + 1."""
    plan = job.plan
    plan.generation += 1
    plan.generation_at = job.facts.since
    plan.launched_by = "user"
    plan.phase, plan.finished_at, plan.timer = "RUNNING", None, None
    plan.stop_requested, plan.suspects_chosen, plan.incidents = False, False, []
    plan.reason = "launched again by a user"
    history(job)
    state_changed(ctx, job, "relaunched")


def timer_due(ctx: Ctx, job: Job, kind: str) -> None:
    """A job's deadline passed (the caller checked it is the armed one and cleared it)."""
    plan = job.plan
    if kind == "siblings" and plan.phase == "RECOVERING" and not plan.suspects_chosen:
        choose_suspects(ctx, job)
    elif kind == "siblings" and plan.phase == "RECOVERING":
        ctx.changed(key(job.job_id))
    elif kind == "backoff" and plan.phase == "RECOVERING":
        restarts.place(ctx, job)
    elif kind == "restart" and plan.phase == "RESTARTING":
        minutes = int(ctx.config.restart_deadline.total_seconds() // 60)
        fail(ctx, job, f"restarted ranks not all RUNNING within {minutes} min", kind="deadline_expired",
             next_step="Check the tasks' stopped reasons and the cluster's capacity; relaunch by hand.")
    elif kind == "capacity" and plan.phase == "WAITING_CAPACITY":
        minutes = int(ctx.config.capacity_deadline.total_seconds() // 60)
        fail(ctx, job, f"no healthy GPU capacity to restart on within {minutes} min ({plan.reason})")
    elif kind == "retention" and plan.phase in TERMINAL:
        ctx.view.retire(key(job.job_id), {"finished_at": plan.finished_at, "generation": plan.generation,
                                          "version": plan.version + 1})
    ctx.mark(key(job.job_id))


def in_recovery(job: Job) -> bool:
    return job.phase in IN_RECOVERY
