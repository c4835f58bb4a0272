"""Telling people: every notice waits a short window, and notices of one kind and cause in that window
become one message listing every node and job (a fabric failure must not send 2,048 messages)."""

from __future__ import annotations

from collections.abc import Sequence

from consumers.core.clocktext import iso, parse_iso
from consumers.core.recovery.context import Ctx, short
from consumers.core.recovery.model import PendingNotice, Timer
from consumers.core.recovery.view import FLEET_KEY
from events_schema.commands import Publish
from events_schema.envelope import Subject
from events_schema.events import NOTICE_SEVERITY, Notice, NotificationSent, Seen

LISTED = 200  # nodes/jobs named in one message; the count says how many in all


def notify(ctx: Ctx, kind: str, *, cause: str, summary: str, next_step: str, nodes: Sequence[str] = (),
           jobs: Sequence[str] = (), incidents: Sequence[str] = (), xids: Sequence[int] = (),
           verdict: str | None = None, done: Sequence[str] = ()) -> None:
    fleet = ctx.view.fleet()
    window = f"{kind}|{cause}"
    pending = fleet.notices.get(window)
    if pending is None:
        pending = PendingNotice(kind=kind, opened_at=ctx.now, summary=summary, next_step=next_step, verdict=verdict)
        fleet.notices[window] = pending
    pending.count += 1
    if pending.instance_id is None and nodes and not pending.node_arns:
        pending.instance_id = _instance(ctx, nodes[0])
    _add(pending.node_arns, nodes)
    _add(pending.job_ids, jobs)
    _add(pending.incident_ids, incidents)
    _add(pending.done, done)
    pending.xids = sorted(set(pending.xids) | set(xids))
    if summary not in pending.reasons and len(pending.reasons) < 20:
        pending.reasons.append(summary)
    _arm(ctx)
    ctx.view.touch(FLEET_KEY, "plan")


def _add(names: list[str], more: Sequence[str]) -> None:
    for name in more:
        if name not in names and len(names) < LISTED:
            names.append(name)


def _arm(ctx: Ctx) -> None:
    fleet = ctx.view.fleet()
    if not fleet.notices:
        fleet.timer = None
        return
    first = min(fleet.notices.values(), key=lambda n: n.opened_at)
    due = parse_iso(first.opened_at) + ctx.config.notice_window
    fleet.timer = Timer(kind="notices", due_at=iso(due), token=f"notices:{first.opened_at}")


def flush(ctx: Ctx) -> None:
    """Send every notice whose window has closed, one message each."""
    fleet = ctx.view.fleet()
    for window, pending in sorted(fleet.notices.items(), key=lambda kv: (kv[1].opened_at, kv[0])):
        if ctx.older_than(pending.opened_at, ctx.config.notice_window):
            _send(ctx, window, pending)
            del fleet.notices[window]
    _arm(ctx)
    ctx.view.touch(FLEET_KEY, "plan")


def _send(ctx: Ctx, window: str, pending: PendingNotice) -> None:
    cluster = ctx.config.cluster_name
    many = pending.count > 1
    where = (f"{len(pending.node_arns)} nodes" if len(pending.node_arns) > 1 else
             f"node {short(pending.node_arns[0])}" if pending.node_arns else
             f"{len(pending.job_ids)} jobs" if len(pending.job_ids) > 1 else
             f"job {pending.job_ids[0]}" if pending.job_ids else cluster)
    title = f"[gpu-recovery] {pending.kind.replace('_', ' ')}: {where} ({cluster})"[:100]
    summary = (f"{pending.count} times within {int(ctx.config.notice_window.total_seconds())} s: "
               + "; ".join(pending.reasons[:5]) if many else pending.summary)
    notice = Notice(kind=pending.kind, severity=NOTICE_SEVERITY.get(pending.kind, "action_needed"), cluster=cluster,
                    title=title, summary=summary, next_step=pending.next_step,
                    incident_id=pending.incident_ids[0] if pending.incident_ids else None,
                    node_arn=pending.node_arns[0] if pending.node_arns else None,
                    instance_id=pending.instance_id or (_instance(ctx, pending.node_arns[0]) if pending.node_arns
                                                        else None),
                    job_ids=list(pending.job_ids), node_arns=list(pending.node_arns),
                    incident_ids=list(pending.incident_ids),
                    seen=Seen(xids=pending.xids, verdict=pending.verdict, reason=pending.summary),
                    done=list(pending.done), at=parse_iso(ctx.now))
    key = f"notify:{window}:{pending.opened_at}"
    subject = Subject(node=notice.node_arn, job=notice.job_ids[0] if notice.job_ids else None,
                      incident=notice.incident_id)
    ctx.emit(NotificationSent(kind=pending.kind, severity=notice.severity, subject=title, message=notice,
                              incident_id=notice.incident_id, job_id=subject.job, node_arn=notice.node_arn),
             subject, key)
    ctx.order(key, Publish(target="notifications", subject=title, notice=notice), step="notify",
              reason=pending.summary, subject=subject, incident_id=notice.incident_id, job_id=subject.job)


def _instance(ctx: Ctx, node_arn: str) -> str | None:
    node = ctx.view.node(node_arn) if ctx.view.has(("node", node_arn)) else None
    return node.facts.instance_id if node else None
