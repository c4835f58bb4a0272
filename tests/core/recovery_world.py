"""A world for the pure recovery core: ECS events in, the core's commands answered the way AWS would.

No AWS, no store, no clock: ``decide`` on a complete in-memory view, times given by the test.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from consumers.core.clocktext import iso
from consumers.core.facts import RECOVERY_STOP_REASON, IdentityRules
from consumers.core.recovery.config import PolicyConfig
from consumers.core.recovery.context import Effects, Order
from consumers.core.recovery.decide import (
    EcsInput,
    Input,
    OperatorInput,
    OutcomeInput,
    ReportInput,
    SignalInput,
    TimerInput,
    decide,
)
from consumers.core.recovery.model import Fleet, Incident, Job, Node, TaskRecord
from consumers.core.recovery.record import fold_event, summary
from consumers.core.recovery.view import View
from events_schema.decode import decode_mapping
from events_schema.envelope import EventData, OurEvent, Subject, make_envelope
from events_schema.events import (
    ActionOutcome,
    GpuHealthSignal,
    HealthCheckReported,
    NotificationSent,
    OperatorRequested,
)
from events_schema.proof import check_secret, report_proof
from tests.factories import CLUSTER, at, node_arn, node_event, task_event

CHECK_FAMILY = "gpu-recovery-healthcheck"
KEY = b"test-check-key"


def config(**overrides: Any) -> PolicyConfig:
    base: dict[str, Any] = dict(cluster_arn=CLUSTER, restart_backoff=timedelta(0), secret_key=KEY,
                                notice_window=timedelta(0), identity=IdentityRules(health_check_family=CHECK_FAMILY))
    return PolicyConfig(**{**base, **overrides})


class World:
    def __init__(self, **overrides: Any) -> None:
        self.config = config(**overrides)
        self.view = View(complete=True)
        self.events: list[EventData] = []
        self.orders: list[Order] = []
        self.answered: set[str] = set()
        self.rejected: list[str] = []
        self.stream: list[Any] = []  # everything, in order: ECS events and our own, for replay
        self.now = at(0)
        self._serial = 0

    # --- inputs ---------------------------------------------------------------------------------

    def run(self, inputs: list[Input], when: datetime | None = None) -> Effects:
        moment = when or max((_moment(i) for i in inputs), default=self.now)
        self.now = max(self.now, moment)
        effects = decide(self.view, self.config, inputs, iso(self.now))
        self.view.settled()
        self.events.extend(e.data for e in effects.emits)
        self.orders.extend(effects.orders)
        self.rejected.extend(effects.rejected)
        for emit in effects.emits:
            self.stream.append(self._ours(emit.data, self.now, emit.event_id))
        if not any(isinstance(i, TimerInput) for i in inputs):
            self.advance(0)  # as the consumer does after each batch: what is due now fires now
        return effects

    def ecs(self, *raw: dict[str, Any]) -> Effects:
        events = [decode_mapping(r) for r in raw]
        for event in events:
            self.stream.append(event)
        return self.run([EcsInput(e, iso(e.time)) for e in events])  # type: ignore[arg-type]

    def nodes(self, count: int, gpus: int = 8) -> None:
        self.ecs(*(node_event(n, gpus=gpus) for n in range(1, count + 1)))

    def job(self, ranks: Iterable[tuple[int, int]], *, group: str = "job:alpha", gpus: int = 8,
            when: float = 2) -> None:
        """Ranks (task, node) of a job, RUNNING."""
        self.ecs(*(task_event(t, node=n, version=2, group=group, gpus=gpus, when=at(when)) for t, n in ranks))

    def fails(self, task: int, node: int, *, when: float, version: int = 3, reason: str | None = None,
              group: str = "job:alpha", gpus: int = 8) -> Effects:
        event = task_event(task, node=node, version=version, status="STOPPED", exit_code=1,
                           stop_code="EssentialContainerExited", when=at(when), group=group, gpus=gpus)
        if reason:
            event["detail"]["containers"][0]["reason"] = reason
        return self.ecs(event)

    def stopped_by_us(self, task: int, node: int, *, when: float, version: int = 3, group: str = "job:alpha",
                      gpus: int = 8) -> Effects:
        event = task_event(task, node=node, version=version, status="STOPPED", exit_code=137,
                           stop_code="UserInitiated", when=at(when), group=group, gpus=gpus)
        event["detail"]["stoppedReason"] = RECOVERY_STOP_REASON
        return self.ecs(event)

    def stopped_by_user(self, task: int, node: int, *, when: float, version: int = 3,
                        group: str = "job:alpha") -> Effects:
        event = task_event(task, node=node, version=version, status="STOPPED", exit_code=143,
                           stop_code="UserInitiated", when=at(when), group=group)
        event["detail"]["stoppedReason"] = "Task stopped by user"
        return self.ecs(event)

    def answer(self, order: Order, status: str = "succeeded", *, when: datetime | None = None,
               error_kind: str | None = None, **detail: Any) -> Effects:
        self.answered.add(order.key)
        outcome = ActionOutcome(idempotency_key=order.key, action=order.command, incident_id=order.incident_id,
                                job_id=order.job_id, step=order.step, status=status,  # type: ignore[arg-type]
                                detail=detail, error=None if status == "succeeded" else "boom",
                                error_kind=error_kind)  # type: ignore[arg-type]
        moment = when or self.now
        ours = self._ours(outcome, moment)
        self.stream.append(ours)
        return self.run([OutcomeInput(outcome, iso(moment), ours.envelope.event_id)], moment)

    def settle_orders(self, *, step: str | None = None) -> None:
        """Answer every unanswered order as AWS would (StartTask gets a task ARN), as the consumer does:
        the outcomes of one round of commands decided together."""
        for _ in range(100):
            pending = [o for o in self.orders if o.key not in self.answered and (step is None or o.step == step)]
            if not pending:
                return
            inputs: list[Input] = []
            for order in pending:
                self.answered.add(order.key)
                detail = {"task_arn": f"arn:aws:ecs:us-west-2:123456789012:task/gpu-training/{order.key[-24:]}"} \
                    if order.command.type == "StartTask" else {}
                outcome = ActionOutcome(idempotency_key=order.key, action=order.command, incident_id=order.incident_id,
                                        job_id=order.job_id, step=order.step, status="succeeded", detail=detail)
                ours = self._ours(outcome, self.now)
                self.stream.append(ours)
                inputs.append(OutcomeInput(outcome, iso(self.now), ours.envelope.event_id))
            self.run(inputs, self.now)

    def report(self, verdict: str, action: str = "none", *, node: int | None = None, xids: Iterable[int] = (),
               boot: datetime | None = None, sign: bool = True, key: str | None = None,
               incident: str | None = None, when: float | None = None, fix: str = "") -> Effects:
        inc = self.incident(node) if incident is None else self.view.incident(incident)
        check_key = key if key is not None else (inc.check_key if inc else "none")
        data = HealthCheckReported(node_arn=node_arn(node) if node else (inc.node_arn if inc else "none"),
                                   incident_id=inc.incident_id if inc else incident, check_key=check_key, level=2,
                                   verdict=verdict, recommended_action=action, reason="test",  # type: ignore[arg-type]
                                   xids=[{"xid": x, "count": 1} for x in xids], boot_time=boot, fix=fix,
                                   check_task_arn=inc.check_task_arn if inc else None)
        raw = data.model_dump(mode="json")
        if sign:
            raw["proof"] = report_proof(check_secret(KEY, check_key or ""), raw)
        moment = at(when) if when is not None else self.now
        report = HealthCheckReported.model_validate(raw)
        envelope = self._ours(report, moment)
        self.stream.append(envelope)
        return self.run([ReportInput(report, raw, iso(moment))], moment)

    def signal(self, node: int, kind: str = "xid", xids: Iterable[int] = (48,), when: float | None = None) -> Effects:
        data = GpuHealthSignal(node_arn=node_arn(node), kind=kind, xids=list(xids))  # type: ignore[arg-type]
        moment = at(when) if when is not None else self.now
        return self.run([SignalInput(data, iso(moment))], moment)

    def operator(self, request: str, *, node: int | None = None, job: str | None = None) -> Effects:
        data = OperatorRequested(request=request, node_arn=node_arn(node) if node else None,  # type: ignore[arg-type]
                                 job_id=job, requested_by="test")
        return self.run([OperatorInput(data, iso(self.now))], self.now)

    def advance(self, seconds: float) -> None:
        """Time passes: every timer due by then fires, in order."""
        until = self.now + timedelta(seconds=seconds)
        for _ in range(1000):
            due = [t for t in self.timers() if t.timer.due_at <= iso(until)]
            if not due:
                break
            first = min(due, key=lambda t: (t.timer.due_at, t.record))
            moment = max(self.now, datetime.fromisoformat(first.timer.due_at.replace("Z", "+00:00")))
            self.run([first], moment)
        self.now = max(self.now, until)

    def run_restarted(self, when: datetime | None = None) -> None:
        """Every rank recovery restarted reports RUNNING, on the node it was started on (one batch)."""
        moment = when or self.now
        events = []
        for order in [o for o in self.orders if o.step == "restart"]:
            arn = f"arn:aws:ecs:us-west-2:123456789012:task/gpu-training/{order.key[-24:]}"
            job = self.view.job(order.job_id or "")
            if job is None or getattr(order.command, "generation", None) != job.plan.generation:
                continue
            event = task_event(1, node=int(order.command.target[-4:]), version=2, when=moment, created=moment,
                               group=order.job_id)
            event["detail"]["taskArn"] = arn
            events.append(event)
        if events:
            self.ecs(*events)

    def timers(self) -> list[TimerInput]:
        found = []
        for key, record in self.view.records().items():
            holder = record if isinstance(record, Incident | Fleet) else getattr(record, "plan", None)
            timer = getattr(holder, "timer", None)
            if timer is not None:
                found.append(TimerInput(key, timer))
        return found

    def _ours(self, data: EventData, moment: datetime, event_id: str | None = None) -> OurEvent:
        self._serial += 1
        envelope = make_envelope(data, event_id=event_id or f"e{self._serial}", time=moment, source="test",
                                 subject=Subject())
        return OurEvent(envelope, data)

    # --- what happened --------------------------------------------------------------------------

    def commands(self, kind: str | None = None, step: str | None = None) -> list[Order]:
        return [o for o in self.orders if (kind is None or o.command.type == kind) and (step is None or o.step == step)]

    def notices(self) -> list[str]:
        return [e.kind for e in self.events if isinstance(e, NotificationSent)]

    def job_of(self, job_id: str = "job:alpha") -> Job:
        job = self.view.job(job_id)
        assert job is not None
        return job

    def node(self, n: int) -> Node:
        node = self.view.node(node_arn(n))
        assert node is not None
        return node

    def incident(self, n: int | None) -> Incident | None:
        incidents = [r for r in self.view.records().values() if isinstance(r, Incident)
                     and (n is None or r.node_arn == node_arn(n))]
        return max(incidents, key=lambda i: (i.opened_at, i.incident_id)) if incidents else None

    def task(self, arn: str) -> TaskRecord | None:
        return self.view.task(arn)

    def summary(self) -> dict[str, Any]:
        return summary(self.view.records())

    def replayed(self) -> dict[str, Any]:
        """The same stream folded as replay folds it (nothing decided)."""
        view = View(complete=True)
        for event in self.stream:
            fold_event(view, event, self.config.identity)
        return summary(view.records())


def _moment(item: Input) -> datetime:
    return datetime.fromisoformat(item.at.replace("Z", "+00:00"))
