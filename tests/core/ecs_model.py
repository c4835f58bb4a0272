"""A small model of ECS, EC2 and the DCGM check around the pure recovery core, for property tests.

It keeps what AWS keeps (nodes with their GPUs, agent and status; tasks with their node, GPUs, status and
version) and answers the core's orders as AWS does: StopTask stops the task a moment later; StartTask places
a rank only where its GPUs are free (else the actuator's failed outcome for ECS's ``RESOURCE:GPU``); the
check task runs DCGM and sends a report signed with the secret of that attempt, its verdict from the node's
real fault and its boot time from the node's last boot; a reboot kills what runs on the node, drops and
brings back the agent, and clears a reset-class fault (XID 48) but not an isolate-class one (XID 79). Every
placement and stop changes ``remainingResources`` in a container-instance event, as ECS's do.

The core is driven the way the consumer drives it: a batch of stream events (in the order the test picks,
with duplicates) is decided at once, the orders are executed, their outcomes decided at once, then the
deadlines due fire. ``on_decision`` sees every decision before its orders run (the world as it was when
the core decided).
"""

from __future__ import annotations

import heapq
import itertools
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from consumers.core.clocktext import iso
from consumers.core.recovery.config import PolicyConfig
from consumers.core.recovery.context import Effects, Order
from consumers.core.recovery.decide import EcsInput, Input, OutcomeInput, ReportInput, TimerInput, decide
from consumers.core.recovery.model import Fleet, Incident
from consumers.core.recovery.record import fold_event, summary
from consumers.core.recovery.view import View
from events_schema.commands import (
    CHECK_CONTAINER,
    ListTagsForResource,
    Publish,
    PutAttributes,
    RebootInstances,
    StartTask,
    StopTask,
    TerminateInstanceInAutoScalingGroup,
    UpdateContainerInstancesState,
)
from events_schema.decode import decode_mapping
from events_schema.envelope import EventData, OurEvent, Subject, make_envelope
from events_schema.events import ActionOutcome, HealthCheckReported
from events_schema.proof import check_secret, report_proof
from tests.factories import ACCOUNT, CLUSTER, REGION, T0, node_arn, task_arn

Fault = Literal["reset", "isolate"]
FAULT_XID: dict[str, int] = {"reset": 48, "isolate": 79}
REPAIR_ACTION: dict[str, Literal["reboot", "quarantine"]] = {"reset": "reboot", "isolate": "quarantine"}
TRAINING_TD = f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/llm-train:7"
DCGM_SECONDS = {1: 90, 2: 300, 3: 1800, 4: 3600}
# StopTask: ECS sends SIGTERM and, if the container is still up after its stop timeout (30 s by default),
# SIGKILL; a trainer that flushes or ignores SIGTERM stops anywhere in between.
STOP_SECONDS = (2, 30)
START_SECONDS = 20  # a rank from PROVISIONING to RUNNING
REBOOT_DOWN_SECONDS = 10
REBOOT_SECONDS = 180
FAULT_AGAIN_SECONDS = 60  # a rank started on a still-faulty node dies this long after it runs
REPLACE_SECONDS = 30
SUCCESSOR_SECONDS = 300
STEP_LIMIT = 3000


@dataclass
class SimNode:
    n: int
    gpus: int
    booted_at: datetime
    instance_id: str
    status: str = "ACTIVE"
    connected: bool = True
    version: int = 0
    attributes: dict[str, str] = field(default_factory=dict)
    used: dict[str, list[int]] = field(default_factory=dict)  # live task -> its GPU indexes
    fault: Fault | None = None
    rebooting: bool = False
    # Recovery has seen the fault's evidence (a rank's stop naming its XID) and nothing has fixed it yet.
    fault_seen: bool = False

    @property
    def arn(self) -> str:
        return node_arn(self.n)

    @property
    def free(self) -> int:
        return self.gpus - sum(len(g) for g in self.used.values())

    @property
    def registered(self) -> bool:
        return self.status in ("ACTIVE", "DRAINING")


@dataclass
class SimTask:
    arn: str
    node: int
    gpus: list[int]
    job: str | None
    group: str
    family_arn: str
    created: datetime
    overrides: dict[str, Any]
    started_by: str | None
    tags: list[dict[str, str]]
    status: str = "PROVISIONING"
    version: int = 0
    started_at: datetime | None = None
    stopped_at: datetime | None = None
    exit_code: int | None = None
    stop_code: str | None = None
    stopped_reason: str | None = None
    container_reason: str | None = None
    check_key: str | None = None
    incident_id: str | None = None
    check_level: int = 0

    @property
    def live(self) -> bool:
        return self.status != "STOPPED"

    @property
    def is_check(self) -> bool:
        return self.check_key is not None


@dataclass(order=True)
class _Scheduled:
    due: datetime
    seq: int
    action: Callable[[], None] = field(compare=False)


@dataclass
class Decision:
    """One call of ``decide``: what went in, what came out, when."""

    inputs: list[Input]
    effects: Effects
    at: datetime


class EcsModel:
    def __init__(self, config: PolicyConfig, rng: random.Random, *, batch_window: int = 0,
                 duplicate_rate: float = 0.0, redelivery_rate: float = 0.0) -> None:
        self.config = config
        self.rng = rng
        self.batch_window = batch_window
        self.duplicate_rate = duplicate_rate
        self.redelivery_rate = redelivery_rate
        self._delivered: list[Input] = []
        self.now = T0
        self.nodes: dict[int, SimNode] = {}
        self.tasks: dict[str, SimTask] = {}
        self.view = View(complete=True)
        self.stream: list[Any] = []
        self.decisions: list[Decision] = []
        self.orders: list[Order] = []
        self.emitted: list[EventData] = []
        self.published: list[Publish] = []
        self.completed: set[str] = set()
        self.on_decision: Callable[[EcsModel, Decision], None] = lambda model, decision: None
        self._inbox: list[Input] = []
        self._queue: list[_Scheduled] = []
        self._seq = itertools.count()
        self._serial = itertools.count(1)
        self._evidence: dict[str, int] = {}  # a fault's evidence event id -> its node
        self._successors: set[int] = set()

    # --- the world's clock ------------------------------------------------------------------------

    def later(self, seconds: float, action: Callable[[], None]) -> None:
        heapq.heappush(self._queue, _Scheduled(self.now + timedelta(seconds=seconds), next(self._seq), action))

    def run_until_quiet(self, horizon: timedelta = timedelta(hours=2)) -> None:
        """Deliver, decide, act and fire deadlines until nothing happens and no deadline is due within
        ``horizon``."""
        for _ in range(STEP_LIMIT):
            if self._inbox:
                self._deliver()
                continue
            world = self._queue[0].due if self._queue else None
            timer = self.next_timer()
            if timer is not None and (world is None or timer[1] <= world) and timer[1] <= self.now + horizon:
                self._fire(timer[0], timer[1])
            elif world is not None:
                self._world_batch(timer[1] if timer else None)
            else:
                return
        raise AssertionError(f"the fleet did not quiet down within {STEP_LIMIT} steps")

    def _world_batch(self, next_timer: datetime | None) -> None:
        """Everything the world does within the batch window (before the next deadline) is one batch."""
        first = self._queue[0].due
        until = first + timedelta(seconds=self.batch_window)
        if next_timer is not None:
            until = min(until, max(first, next_timer - timedelta(seconds=1)))
        while self._queue and self._queue[0].due <= until:
            item = heapq.heappop(self._queue)
            self.now = max(self.now, item.due)
            item.action()

    # --- the core, as the consumer drives it ---------------------------------------------------------

    def _deliver(self) -> None:
        batch, self._inbox = self._inbox, []
        batch = [*batch, *(item for item in batch if self.rng.random() < self.duplicate_rate)]
        if self._delivered and self.rng.random() < self.redelivery_rate:
            # At least once: a reader that restarts reads again from its last checkpoint.
            batch += self._delivered[-self.rng.randint(1, 20):]
        self.rng.shuffle(batch)
        self._delivered = [*self._delivered, *batch][-40:]
        for item in batch:
            if isinstance(item, EcsInput):
                self.stream.append(item.event)
                node = self._evidence.get(item.event.id)
                if node is not None and self.nodes[node].fault is not None:
                    self.nodes[node].fault_seen = True
            elif isinstance(item, ReportInput):
                self.stream.append(self._ours(item.report))
        self.decide(batch)
        self.fire_due()

    def decide(self, inputs: list[Input]) -> None:
        moment = max([self.now, *(_moment(i) for i in inputs)])
        self.now = moment
        effects = decide(self.view, self.config, inputs, iso(moment))
        self.view.settled()
        for emit in effects.emits:
            self.emitted.append(emit.data)
            self.stream.append(self._ours(emit.data, emit.event_id))
        decision = Decision(list(inputs), effects, moment)
        self.decisions.append(decision)
        self.on_decision(self, decision)
        self.orders.extend(effects.orders)
        outcomes = [self.act(order) for order in effects.orders]
        for outcome in outcomes:
            self.stream.append(self._ours(outcome.outcome))
        if outcomes:
            self.decide(outcomes)  # the outcomes of one round of calls, decided together

    def fire_due(self) -> None:
        """The deadlines due by now, each at its time, in order (as the consumer's tick)."""
        for _ in range(STEP_LIMIT):
            timer = self.next_timer()
            if timer is None or timer[1] > self.now:
                return
            self._fire(*timer)

    def _fire(self, timer: TimerInput, due: datetime) -> None:
        self.now = max(self.now, due)
        self.decide([timer])
        self.fire_due()

    def timers(self) -> list[TimerInput]:
        found = []
        for key, record in self.view.records().items():
            holder = record if isinstance(record, Incident | Fleet) else getattr(record, "plan", None)
            timer = getattr(holder, "timer", None)
            if timer is not None:
                found.append(TimerInput(key, timer))
        return found

    def next_timer(self) -> tuple[TimerInput, datetime] | None:
        timers = self.timers()
        if not timers:
            return None
        first = min(timers, key=lambda t: (t.timer.due_at, t.record))
        return first, _parse(first.timer.due_at)

    def replayed(self) -> dict[str, Any]:
        view = View(complete=True)
        for event in self.stream:
            fold_event(view, event, self.config.identity)
        return summary(view.records())

    def summary(self) -> dict[str, Any]:
        return summary(self.view.records())

    def _ours(self, data: EventData, event_id: str | None = None) -> OurEvent:
        envelope = make_envelope(data, event_id=event_id or f"m{next(self._serial)}", time=self.now, source="model",
                                 subject=Subject())
        return OurEvent(envelope, data)

    # --- the fleet ---------------------------------------------------------------------------------

    def add_node(self, gpus: int, *, n: int | None = None) -> SimNode:
        n = n if n is not None else max(self.nodes, default=0) + 1
        node = SimNode(n=n, gpus=gpus, booted_at=self.now - timedelta(days=1), instance_id=f"i-{n:017x}")
        self.nodes[n] = node
        self._node_event(node)
        return node

    def run_rank(self, job: str, node: SimNode, gpus: int) -> SimTask:
        """A rank the user launched, RUNNING."""
        number = next(self._serial)
        task = self._place(task_arn(number), node, gpus, job=job, family_arn=TRAINING_TD, started_by="launcher",
                           overrides={"containerOverrides": [{"name": "trainer",
                                                              "environment": [{"name": "RANK", "value": "0"}]}]},
                           tags=[])
        self._advance(task, "RUNNING")
        return task

    def strike(self, n: int, fault: Fault) -> None:
        """A GPU fault on node n: its ranks die naming the XID; their jobs' other ranks die of the collective
        timeout a moment later. The fault stays until a reboot fixes it (reset class) or for good."""
        node = self.nodes[n]
        if node.fault is None:
            node.fault_seen = False
        node.fault = "isolate" if "isolate" in (node.fault, fault) else fault
        self._fail_ranks_on(node)

    def complete(self, job: str) -> None:
        """The job's work is done: every rank exits 0 (only when all its live ranks run)."""
        ranks = [t for t in self.tasks.values() if t.job == job and t.live]
        if not ranks or any(t.status != "RUNNING" for t in ranks):
            return
        self.completed.add(job)
        for task in ranks:
            self._stop(task, exit_code=0, stop_code="EssentialContainerExited",
                       stopped_reason="Essential container in task exited")

    def agent_reconnect(self, n: int) -> None:
        """The ECS agent's routine reconnect (several an hour): away for a few seconds, nothing wrong."""
        node = self.nodes[n]
        if not node.connected or not node.registered or node.rebooting:
            return
        node.connected = False
        self._node_event(node)

        def back() -> None:
            if not node.rebooting and node.registered:
                node.connected = True
                self._node_event(node)
        self.later(5, back)

    def _fail_ranks_on(self, node: SimNode) -> None:
        assert node.fault is not None
        xid = FAULT_XID[node.fault]
        victims = [t for t in self.tasks.values() if t.node == node.n and t.status == "RUNNING" and not t.is_check]
        for task in victims:
            event = self._stop(task, exit_code=1, stop_code="EssentialContainerExited",
                               stopped_reason="Essential container in task exited",
                               container_reason=f"CUDA error: uncorrectable ECC error encountered (NVRM: Xid "
                               f"(PCI:0000:3b:00): {xid}, pid=4242)")
            self._evidence[event] = node.n
        jobs = {t.job for t in victims}
        others = [t for t in self.tasks.values() if t.job in jobs and t.node != node.n and t.live]
        for offset, task in enumerate(others):
            self.later(1 + offset % 3, self._collective_timeout(task))

    def _collective_timeout(self, task: SimTask) -> Callable[[], None]:
        def run() -> None:
            if task.status == "RUNNING":
                self._stop(task, exit_code=1, stop_code="EssentialContainerExited",
                           stopped_reason="Essential container in task exited",
                           container_reason="NCCL watchdog: collective operation timed out")
        return run

    # --- AWS's answers to the core's orders ---------------------------------------------------------

    def act(self, order: Order) -> OutcomeInput:
        command = order.command
        status, detail, error = "succeeded", {}, None
        if isinstance(command, StopTask):
            self._on_stop_task(command)
        elif isinstance(command, StartTask):
            status, detail, error = self._on_start_task(command, order.key)
        elif isinstance(command, RebootInstances):
            self._on_reboot(self._by_instance(command.target))
        elif isinstance(command, UpdateContainerInstancesState):
            node = self._by_arn(command.target)
            node.status = command.status
            self._node_event(node)
        elif isinstance(command, PutAttributes):
            # The attribute shows in the node's next container-instance event (PutAttributes sends none).
            self._by_arn(command.target).attributes[command.name] = command.value
        elif isinstance(command, ListTagsForResource):
            task = self.tasks.get(command.target)
            detail = {"tags": list(task.tags) if task else []}
        elif isinstance(command, TerminateInstanceInAutoScalingGroup):
            self._on_terminate(self._by_instance(command.target))
        elif isinstance(command, Publish):
            self.published.append(command)
            detail = {"message_id": f"msg-{next(self._serial)}"}
        else:
            raise AssertionError(f"the model does not answer {command.type}")
        outcome = ActionOutcome(idempotency_key=order.key, action=command, incident_id=order.incident_id,
                                job_id=order.job_id, step=order.step, status=status,  # type: ignore[arg-type]
                                detail=detail, error=error, error_kind="refused" if status == "failed" else None)
        return OutcomeInput(outcome, iso(self.now))

    def _on_stop_task(self, command: StopTask) -> None:
        task = self.tasks.get(command.target)
        if task is None or not task.live:
            return  # ECS answers a stopped task's StopTask with the task, and does nothing

        def stop() -> None:
            if task.live:
                self._stop(task, exit_code=137, stop_code="UserInitiated", stopped_reason=command.reason)
        self.later(self.rng.randint(*STOP_SECONDS), stop)

    def _on_start_task(self, command: StartTask, key: str) -> tuple[str, dict[str, Any], str | None]:
        node = self._by_arn(command.target)
        if not node.registered or not node.connected:
            return "failed", {}, "StartTask placed nothing: ['AGENT']"
        if command.purpose == "check":
            return "succeeded", {"task_arn": self._start_check(node, command, key).arn}, None
        if node.free < command.gpus:
            # What the actuator answers when ECS's StartTask returns failures=[{reason: RESOURCE:GPU}].
            return "failed", {}, "StartTask placed nothing: ['RESOURCE:GPU']"
        arn = f"arn:aws:ecs:{REGION}:{ACCOUNT}:task/gpu-training/r{next(self._serial):07d}"
        task = self._place(arn, node, command.gpus, job=command.group, family_arn=command.task_definition,
                           started_by=command.started_by, overrides=command.overrides, tags=list(command.tags))
        self.later(START_SECONDS, lambda: self._advance(task, "RUNNING") if task.live else None)
        if node.fault is not None:
            self.later(START_SECONDS + FAULT_AGAIN_SECONDS, lambda: self._fault_again(node))
        return "succeeded", {"task_arn": arn}, None

    def _fault_again(self, node: SimNode) -> None:
        if node.fault is not None:
            self._fail_ranks_on(node)

    def _start_check(self, node: SimNode, command: StartTask, key: str) -> SimTask:
        env = {e["name"]: e["value"] for c in command.overrides.get("containerOverrides", [])
               if c.get("name") == CHECK_CONTAINER for e in c.get("environment", [])}
        arn = f"arn:aws:ecs:{REGION}:{ACCOUNT}:task/gpu-training/c{next(self._serial):07d}"
        family = f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/{command.task_definition}:1"
        task = self._place(arn, node, 0, job=None, family_arn=family, started_by=key[-36:], overrides=command.overrides,
                           tags=list(command.tags), group=f"family:{command.task_definition}")
        task.check_key, task.incident_id = key, env.get("GPU_RECOVERY_INCIDENT_ID")
        task.check_level = int(env.get("GPU_RECOVERY_CHECK_LEVEL", "2"))
        self.later(5, lambda: self._advance(task, "RUNNING") if task.live else None)
        self.later(5 + DCGM_SECONDS[task.check_level], lambda: self._finish_check(node, task))
        return task

    def _finish_check(self, node: SimNode, task: SimTask) -> None:
        if not task.live:
            return  # killed meanwhile (the node rebooted under it)
        fault = node.fault
        verdict = "hardware_fault" if fault else "healthy"
        data = HealthCheckReported(
            node_arn=node.arn, ec2_instance_id=node.instance_id, check_task_arn=task.arn, incident_id=task.incident_id,
            check_key=task.check_key, level=task.check_level, verdict=verdict,
            recommended_action=REPAIR_ACTION[fault] if fault else "none",
            reason=f"GPU 3: XID {FAULT_XID[fault]}" if fault else "every test passed",
            xids=[{"xid": FAULT_XID[fault], "count": 1}] if fault else [], expected_gpus=node.gpus,  # type: ignore[list-item]
            found_gpus=node.gpus, boot_time=node.booted_at)
        raw = data.model_dump(mode="json")
        raw["proof"] = report_proof(check_secret(self.config.secret_key, task.check_key or ""), raw)
        report = HealthCheckReported.model_validate(raw)
        self._inbox.append(ReportInput(report, raw, iso(self.now)))
        self.later(1, lambda: self._stop(task, exit_code=1 if fault else 0, stop_code="EssentialContainerExited",
                                         stopped_reason="Essential container in task exited")
                   if task.live else None)

    def _on_reboot(self, node: SimNode) -> None:
        def going_down() -> None:
            node.rebooting = True
            for task in [t for t in self.tasks.values() if t.node == node.n and t.live]:
                self._stop(task, exit_code=137, stop_code="EssentialContainerExited",
                           stopped_reason=f"Host EC2 (instance {node.instance_id}) rebooted", event=False)
            node.connected = False
            self._node_event(node)

        def back() -> None:
            if node.fault == "reset":
                node.fault, node.fault_seen = None, False
            node.booted_at = self.now - timedelta(seconds=30)
            node.connected, node.rebooting = True, False
            self._node_event(node)

        self.later(REBOOT_DOWN_SECONDS, going_down)
        self.later(REBOOT_DOWN_SECONDS + REBOOT_SECONDS, back)

    def _on_terminate(self, node: SimNode) -> None:
        def terminated() -> None:
            for task in [t for t in self.tasks.values() if t.node == node.n and t.live]:
                self._stop(task, exit_code=137, stop_code="TerminationNotice",
                           stopped_reason=f"Host EC2 (instance {node.instance_id}) terminated", event=False)
            node.status, node.connected = "INACTIVE", False
            self._node_event(node)

        def successor() -> None:
            new = self.add_node(node.gpus)
            self._successors.add(new.n)

        self.later(REPLACE_SECONDS, terminated)
        self.later(SUCCESSOR_SECONDS, successor)

    # --- tasks and nodes, and their events -------------------------------------------------------------

    def _place(self, arn: str, node: SimNode, gpus: int, *, job: str | None, family_arn: str,
               started_by: str | None, overrides: dict[str, Any], tags: list[dict[str, str]],
               group: str | None = None) -> SimTask:
        taken = {g for used in node.used.values() for g in used}
        ids = [g for g in range(node.gpus) if g not in taken][:gpus]
        assert len(ids) == gpus, f"{node.arn} has {node.free} free GPUs, not {gpus}"
        task = SimTask(arn=arn, node=node.n, gpus=ids, job=job, group=group or job or "", family_arn=family_arn,
                       created=self.now, overrides=overrides, started_by=started_by, tags=tags)
        self.tasks[arn] = task
        node.used[arn] = ids
        assert node.free >= 0, f"{node.arn} holds more GPUs than it has"
        self._task_event(task)
        if gpus:
            self._node_event(node)
        return task

    def _advance(self, task: SimTask, status: str) -> None:
        task.status = status
        if status == "RUNNING" and task.started_at is None:
            task.started_at = self.now
        self._task_event(task)

    def _stop(self, task: SimTask, *, exit_code: int, stop_code: str, stopped_reason: str | None,
              container_reason: str | None = None, event: bool = True) -> str:
        """The task stops and ECS releases its GPUs (the container-instance event follows the task's)."""
        task.status, task.stopped_at = "STOPPED", self.now
        task.exit_code, task.stop_code, task.stopped_reason = exit_code, stop_code, stopped_reason
        task.container_reason = container_reason
        node = self.nodes[task.node]
        released = node.used.pop(task.arn, [])
        event_id = self._task_event(task)
        if released and event:
            self._node_event(node)
        return event_id

    def _task_event(self, task: SimTask) -> str:
        task.version += 1
        node = self.nodes[task.node]
        container: dict[str, Any] = {"containerArn": f"{task.arn}/c", "name": "trainer", "lastStatus": task.status,
                                     "gpuIds": [f"GPU-{g}" for g in task.gpus]}
        if task.exit_code is not None:
            container["exitCode"] = task.exit_code
        if task.container_reason:
            container["reason"] = task.container_reason
        detail: dict[str, Any] = {
            "clusterArn": CLUSTER, "taskArn": task.arn, "containerInstanceArn": node.arn,
            "taskDefinitionArn": task.family_arn, "lastStatus": task.status,
            "desiredStatus": "STOPPED" if task.status == "STOPPED" else "RUNNING", "version": task.version,
            "containers": [container], "overrides": task.overrides, "launchType": "EC2",
            "group": task.group,
            "createdAt": _stamp(task.created), "updatedAt": _stamp(self.now),
        }
        if task.started_by:
            detail["startedBy"] = task.started_by
        if task.started_at:
            detail["startedAt"] = _stamp(task.started_at)
        if task.status == "STOPPED":
            detail.update(stopCode=task.stop_code, stoppedReason=task.stopped_reason,
                          stoppedAt=_stamp(task.stopped_at or self.now))
        return self._aws("ECS Task State Change", task.arn, detail)

    def _node_event(self, node: SimNode) -> str:
        node.version += 1
        taken = {g for used in node.used.values() for g in used}
        detail = {
            "clusterArn": CLUSTER, "containerInstanceArn": node.arn, "ec2InstanceId": node.instance_id,
            "agentConnected": node.connected, "status": node.status, "version": node.version,
            "attributes": [{"name": "ecs.instance-type", "value": "p4d.24xlarge"},
                           *({"name": k, "value": v} for k, v in sorted(node.attributes.items()))],
            "registeredResources": [{"name": "GPU", "type": "STRINGSET",
                                     "stringSetValue": [f"GPU-{g}" for g in range(node.gpus)]}],
            "remainingResources": [{"name": "GPU", "type": "STRINGSET",
                                    "stringSetValue": [f"GPU-{g}" for g in range(node.gpus) if g not in taken]}],
            "updatedAt": _stamp(self.now),
        }
        return self._aws("ECS Container Instance State Change", node.arn, detail)

    def _aws(self, detail_type: str, resource: str, detail: dict[str, Any]) -> str:
        raw = {"version": "0", "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{resource}/{detail['version']}")),
               "detail-type": detail_type, "source": "aws.ecs", "account": ACCOUNT,
               "time": self.now.strftime("%Y-%m-%dT%H:%M:%SZ"), "region": REGION, "resources": [resource],
               "detail": detail}
        event = decode_mapping(raw)
        self._inbox.append(EcsInput(event, iso(self.now)))  # type: ignore[arg-type]
        return str(raw["id"])

    def _by_arn(self, arn: str) -> SimNode:
        return next(n for n in self.nodes.values() if n.arn == arn)

    def _by_instance(self, instance_id: str) -> SimNode:
        return next(n for n in self.nodes.values() if n.instance_id == instance_id)

    # --- what the test reads -------------------------------------------------------------------------------

    def gpu_nodes(self) -> int:
        return sum(1 for n in self.nodes.values() if n.registered)

    def successor_seen(self, n: int) -> bool:
        return n in self._successors and self.view.node(node_arn(n)) is not None


def _moment(item: Input) -> datetime:
    return _parse(item.at)


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
