"""Small steps every part of a job's recovery takes: stop a rank, say the job changed, end it."""

from __future__ import annotations

from consumers.core.facts import RECOVERY_STOP_REASON, STOPPED
from consumers.core.recovery import notices
from consumers.core.recovery.context import Ctx
from consumers.core.recovery.model import HISTORY_KEPT, USER_STOP_BIT, GenerationSummary, Job, JobPhase
from consumers.core.recovery.view import FLEET_KEY, Key
from events_schema.commands import StopTask
from events_schema.envelope import Subject
from events_schema.events import JobStateChanged


def key(job_id: str) -> Key:
    return ("job", job_id)


def stop_rank(ctx: Ctx, job: Job, task_arn: str, scope: str, reason: str) -> None:
    ctx.order(f"{job.job_id}:{scope}:stop:{task_arn}", StopTask(target=task_arn, reason=RECOVERY_STOP_REASON),
              step="stop_ranks", reason=reason, subject=Subject(job=job.job_id, task=task_arn), job_id=job.job_id)


def stop_live_ranks(ctx: Ctx, job: Job, scope: str, reason: str) -> None:
    for arn, code in job.facts.ranks.items():
        if code & 7 < STOPPED and not code & USER_STOP_BIT:
            stop_rank(ctx, job, arn, scope, reason)


def state_changed(ctx: Ctx, job: Job, step: str, reason: str | None = None) -> None:
    plan = job.plan
    ctx.changed(key(job.job_id))
    ctx.emit(JobStateChanged(job_id=job.job_id, state=plan.phase, reason=reason or plan.reason,
                             restart_count=plan.restart_total,
                             incident_id=plan.incidents[0] if plan.incidents else None,
                             order=ctx.order_of(key(job.job_id), plan.version)),
             Subject(job=job.job_id), f"{job.job_id}:{plan.generation}:{plan.restart_total}:{step}:{ctx.now}",
             partition_key=job.facts.partition_key)


def history(job: Job, ended: str = "") -> None:
    plan = job.plan
    if plan.history and plan.history[-1].generation == plan.generation:
        if ended:
            plan.history[-1].ended = ended
        return
    plan.history.append(GenerationSummary(generation=plan.generation, started_at=plan.generation_at or "",
                                          launched_by=plan.launched_by, ranks=len(job.facts.ranks), ended=ended))
    plan.history = plan.history[-HISTORY_KEPT:]


def fleet_forget(ctx: Ctx, job: Job) -> None:
    fleet = ctx.view.fleet()
    if job.job_id in fleet.waiting_capacity:
        fleet.waiting_capacity.remove(job.job_id)
        ctx.view.touch(FLEET_KEY, "plan")


def finish(ctx: Ctx, job: Job, phase: JobPhase, reason: str, *, notify: bool = False) -> None:
    plan = job.plan
    plan.phase, plan.reason, plan.finished_at = phase, reason, ctx.now
    plan.timer = ctx.timer("retention", ctx.config.retention, f"retention:{plan.generation}")
    plan.stop_requested = False
    fleet_forget(ctx, job)
    history(job, ended=phase)
    state_changed(ctx, job, phase.lower())
    if notify:
        notices.notify(ctx, "job_failed", cause="job_failed", jobs=[job.job_id],
                       summary=f"job {job.job_id} failed: {reason}",
                       next_step="Relaunch the job when the cause is fixed (gpu-recovery audit --job shows why).")
    ctx.mark(FLEET_KEY)  # its GPUs are free for waiting jobs


def cancel(ctx: Ctx, job: Job, reason: str) -> None:
    """A person ended the job during recovery: nothing is restarted; its live ranks are stopped."""
    stop_live_ranks(ctx, job, f"cancel{job.plan.generation}", "the job was stopped by a user during recovery")
    finish(ctx, job, "STOPPED_BY_USER", reason)


def fail(ctx: Ctx, job: Job, reason: str, *, kind: str = "job_failed", next_step: str = "") -> None:
    """Recovery gives up on the job: its live ranks are stopped and a person is told."""
    stop_live_ranks(ctx, job, f"fail{job.plan.generation}", "the job failed; its remaining ranks are stopped")
    if kind != "job_failed":
        notices.notify(ctx, kind, cause=kind, jobs=[job.job_id], summary=f"job {job.job_id}: {reason}",
                       next_step=next_step or "Look for a cause restarts do not fix (code, data, a bad node) "
                       "and relaunch.")
    finish(ctx, job, "FAILED", reason, notify=kind == "job_failed")
