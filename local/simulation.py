"""``gpu-recovery simulate``: a fault trace played on a GPU fleet, on one of two engines, and what it cost.

* ``embedded``: ``ScenarioRun`` on the embedded AWS (moto): the fleet simulator, the local EventBridge,
  Kinesis, the projector and the recovery consumer with their DynamoDB tables, on a virtual clock;
* ``core``: ``CoreRun``: the same fleet simulator and the same recovery consumer, in process, with no
  moto (``local.core_run``), for fleets of thousands of nodes over months.

Both get the same generated scenario (the fleet, the jobs) and the same ``FleetDriver``: it injects the
trace's interruptions on the nodes running ranks at that moment, plays the people (the owner's planned
stops and relaunches, and a relaunch of a job recovery gave up on, ``human_response_s`` after it failed),
forgets tasks an hour after they stop (as ECS does), and tells the recorder what happened
(``analytics.simulation``). The trace is drawn before the run; the victims are drawn from its ``pick``s.
"""

from __future__ import annotations

import functools
import re
import resource
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol

from analytics.simulation import Injected, RunFacts, SimulationRecorder, SimulationReport, summarize
from consumers.core.errors import ConfigError
from events_schema.envelope import Envelope
from gpu_recovery.settings import Settings
from local.call_log import Call
from local.clock import VirtualClock
from local.core_run import CoreRun, CoreWiring
from local.fault_trace import DAY_S, FaultMix, Interruption, draw_trace, scaled_counts
from local.fleet import SimNode, SimTask
from local.reactive_fleet import TASK_START_SECONDS, ReactiveFleet
from local.scenario import EventSpec, FaultSpec, FleetSpec, JobSpec, NodeHealth, Scenario

Engine = Literal["embedded", "core"]
DRAIN_S = 12 * 3600.0  # after the last simulated day: time for the last interruption to end in a state
RETRY_S = 60.0  # an interruption due while no job runs waits for one to run again
FORGET_S = 3600.0  # ECS forgets a stopped task after about an hour
OUT_OF_SERVICE_ATTRIBUTES = frozenset({"QUARANTINED", "REPLACED", "MISCONFIGURED", "SUSPECT", "CHECKING",
                                       "REBOOTING", "VERIFYING"})
# Simulation settings: no CloudWatch metrics to publish, one shard to poll (the embedded engine's cost).
SIMULATION_SETTINGS: dict[str, Any] = {"metrics": False, "stream_shards": 1}
Say = Callable[[str], None]
Progress = Callable[[float, int], None]  # (virtual seconds done, interruptions injected)


class Wiring(CoreWiring, Protocol):
    """The composition root (``gpu_recovery.wiring``): what both engines need from it."""

    def build_projector(self, clients: Any) -> Any: ...

    def build_recovery(self, clients: Any, **kwargs: Any) -> Any: ...

    def local_reader(self, clients: Any, application: str, handler: Any) -> Any: ...


@dataclass(frozen=True)
class JobShape:
    id: str
    ranks: int


@dataclass(frozen=True)
class SimulationSpec:
    nodes: int
    days: float
    mix: FaultMix
    seed: int = 1
    gpus_per_node: int = 8
    spares: int = 0
    jobs: tuple[JobShape, ...] = ()
    engine: Engine = "embedded"
    settings: dict[str, Any] = field(default_factory=dict)
    checkpoint_s: float = 0.0
    human_response_s: float = 1800.0
    repair_s: float = 86_400.0  # a person replaces a quarantined node this long after (0: never)
    include_planned: bool = True

    def job_shapes(self) -> tuple[JobShape, ...]:
        return self.jobs or (JobShape("job:sim-1", self.nodes),)


def parse_jobs(spec: str | None, nodes: int) -> tuple[JobShape, ...]:
    """``RANKS`` or ``COUNTxRANKS``, comma-separated (``2048``, ``4x512``, ``2x256,8x64``): the jobs,
    placed on the first nodes in order; together they take at most ``nodes`` nodes."""
    if spec is None:
        return (JobShape("job:sim-1", nodes),)
    shapes: list[JobShape] = []
    for part in (p.strip() for p in spec.split(",")):
        match = re.fullmatch(r"(?:(\d+)\s*[xX]\s*)?(\d+)", part)
        if not match or int(match.group(2)) < 1 or (match.group(1) is not None and int(match.group(1)) < 1):
            raise ConfigError(f"--jobs {spec!r}: {part!r} is not RANKS or COUNTxRANKS\n"
                              "fix: e.g. --jobs 2048, --jobs 4x512 or --jobs 2x256,8x64")
        for _ in range(int(match.group(1) or 1)):
            shapes.append(JobShape(f"job:sim-{len(shapes) + 1}", int(match.group(2))))
    ranks = sum(s.ranks for s in shapes)
    if ranks > nodes:
        raise ConfigError(f"--jobs {spec!r} needs {ranks} nodes, more than --nodes {nodes}\n"
                          "fix: raise --nodes or give smaller jobs (spares come on top: --spares)")
    return tuple(shapes)


def scenario_for(spec: SimulationSpec) -> Scenario:
    """The fleet (``nodes + spares``, in an Auto Scaling group) and the jobs, one rank per node."""
    jobs, first = [], 1
    for shape in spec.job_shapes():
        jobs.append(JobSpec(id=shape.id, nodes=[f"gpu-node-{n}" for n in range(first, first + shape.ranks)]))
        first += shape.ranks
    title = f"{spec.mix.name} on {spec.nodes} nodes for {spec.days:g} days"
    return Scenario(name=f"simulate-{spec.mix.name}", title=title,
                    fleet=FleetSpec(nodes=spec.nodes + spec.spares, gpus=spec.gpus_per_node, auto_scaling_group=True),
                    jobs=jobs, settings={**SIMULATION_SETTINGS, **spec.settings},
                    run_for=spec.days * DAY_S + DRAIN_S)


# --- the driver: the trace and the people ---------------------------------------------------------------


class _Run(Protocol):
    fleet: ReactiveFleet
    clock: VirtualClock
    observers: list[Callable[[Envelope], None]]


class FleetDriver:
    def __init__(self, run: _Run, spec: SimulationSpec, trace: Sequence[Interruption],
                 recorder: SimulationRecorder, say: Say) -> None:
        self.run = run
        self.fleet = run.fleet
        self.clock = run.clock
        self.spec = spec
        self.trace = trace
        self.recorder = recorder
        self.say = say
        self.injected = 0
        self.started = self.clock.now()
        self._jobs = {shape.id: shape for shape in spec.job_shapes()}
        self._launch: dict[str, tuple[str, list[dict[str, str]], int]] = {}
        self._relaunching: set[str] = set()
        self._repairing: set[str] = set()
        self._waiting: set[str] = set()
        self._last_forget = self.started

    def start(self) -> None:
        fleet = self.fleet
        for task in fleet.tasks.values():
            if task.group in self._jobs:
                self._launch.setdefault(task.group, (task.task_definition_arn, list(task.tags), task.gpus))
                self.recorder.task(self.clock.now(), task.group, task.arn, task.last_status)
        for node in fleet.nodes.values():
            self.recorder.node_name(node.arn, node.name)
        inner = fleet.emit

        def emit(events: Sequence[dict[str, Any]]) -> object:
            self._seen(events)
            return inner(events)

        fleet.emit = emit
        self.run.observers.append(self._ours)
        for interruption in self.trace:
            lead = interruption.looks.notice_s if interruption.looks.kind == "maintenance" else 0.0
            fleet.at(max(0.0, interruption.at - lead), functools.partial(self._fire, interruption, 0.0),
                     f"interruption {interruption.index}")

    def _seen(self, events: Sequence[dict[str, Any]]) -> None:
        now = self.clock.now()
        for event in events:
            if event.get("detail-type") == "ECS Task State Change":
                detail = event["detail"]
                self.recorder.task(now, detail.get("group"), detail["taskArn"], detail["lastStatus"])

    def _ours(self, envelope: Envelope) -> None:
        self.recorder.ours(self.clock.now(), envelope.type, envelope.data)
        data = envelope.data
        if envelope.type == "JobStateChanged" and data.get("state") == "FAILED" and data.get("job_id") in self._jobs:
            # A person gets the job_failed page and launches the job again.
            self.recorder.person_actions["relaunch a failed job"] += 1
            self.fleet.at(self.spec.human_response_s, functools.partial(self._relaunch, str(data["job_id"])),
                          "a person relaunches the job")
        elif envelope.type == "NodeStateChanged" and data.get("state") == "QUARANTINED" and self.spec.repair_s > 0 \
                and data.get("node_arn") not in self._repairing:
            # A person takes the node's ticket: the instance goes back to the provider, a new one comes.
            self._repairing.add(str(data["node_arn"]))
            self.fleet.at(self.spec.repair_s, functools.partial(self._replace_quarantined, str(data["node_arn"])),
                          "a person replaces a quarantined node")

    # --- interruptions ----------------------------------------------------------------------------------

    def _fire(self, interruption: Interruption, waited: float) -> None:
        candidates = self._running_nodes()
        if not candidates:
            self.recorder.deferred += waited == 0
            self.fleet.at(RETRY_S, functools.partial(self._fire, interruption, waited + RETRY_S), "deferred")
            return
        node = candidates[min(int(interruption.pick * len(candidates)), len(candidates) - 1)]
        job = next((t.group for t in self.fleet.tasks.values() if t.node_arn == node.arn and t.group in self._jobs
                    and t.last_status == "RUNNING"), None)
        looks = interruption.looks
        hit = self.clock.now() + timedelta(seconds=looks.notice_s if looks.kind == "maintenance" else 0.0)
        self.recorder.inject(Injected(index=interruption.index, at=hit, cause=interruption.cause,
                                      category=interruption.category, hardware=interruption.hardware,
                                      looks=looks.describe(), node_arn=node.arn, node=node.name, job_id=job,
                                      deferred_s=waited))
        self.injected += 1
        self._apply(interruption, node, job)

    def _apply(self, interruption: Interruption, node: SimNode, job: str | None) -> None:
        looks, fleet = interruption.looks, self.fleet
        if looks.kind == "fault":
            after = NodeHealth(dcgm="fail", xids=list(looks.xids)) if looks.after_reboot == "fail" else NodeHealth()
            fleet.inject_fault(FaultSpec(at=0, node=node.name, xids=list(looks.xids), dcgm=looks.dcgm,
                                         after_reboot=after, evidence=looks.evidence))
        elif looks.kind == "instance":
            fleet.instance_stops(node, looks.ec2_state)
            if looks.ec2_state == "terminated" and fleet.in_auto_scaling_group(node.instance_id):
                # The Auto Scaling group replaces a terminated instance (the fleet keeps its size).
                fleet.at(300, lambda: self._replacement(len(node.gpu_ids)), "the group launches a replacement")
        elif looks.kind == "maintenance":
            fleet.scripted(EventSpec(at=0, type="aws_health", node=node.name, code=looks.code, start=looks.notice_s,
                                     end=looks.notice_s + 7200))
        elif job is not None:  # planned: the owner stops the job and launches it again
            self.recorder.person_actions["planned stop and relaunch"] += 1
            fleet.user_stop(job)
            fleet.at(looks.downtime_s, functools.partial(self._relaunch, job), "the owner relaunches the job")

    def _replace_quarantined(self, node_arn: str) -> None:
        node = self.fleet.nodes.get(node_arn)
        self._repairing.discard(node_arn)
        if node is None or node.status == "INACTIVE" or \
                node.attributes.get("gpu-recovery.state", "HEALTHY") != "QUARANTINED":
            return  # released or gone meanwhile
        self.recorder.person_actions["replace a quarantined node"] += 1
        self.fleet.instance_stops(node, "terminated")
        self.fleet.at(300, lambda: self._replacement(len(node.gpu_ids)), "a replacement node joins")

    def _replacement(self, gpus: int) -> None:
        for node in self.fleet.add_nodes(1, gpus=gpus, prefix="gpu-replacement"):
            self.recorder.node_name(node.arn, node.name)

    def _running_nodes(self) -> list[SimNode]:
        arns = {t.node_arn for t in self.fleet.tasks.values() if t.group in self._jobs and t.last_status == "RUNNING"}
        return sorted((self.fleet.nodes[a] for a in arns if a in self.fleet.nodes), key=_node_order)

    # --- people -------------------------------------------------------------------------------------------

    def _relaunch(self, job_id: str) -> None:
        fleet = self.fleet
        if any(t.group == job_id and t.last_status != "STOPPED" for t in fleet.tasks.values()):
            fleet.user_stop(job_id)  # what is left of the old run goes first
        task_definition, tags, gpus = self._launch[job_id]
        nodes = self._free_nodes(gpus)[:self._jobs[job_id].ranks]
        if len(nodes) < self._jobs[job_id].ranks:
            if job_id not in self._waiting:  # counted once per relaunch, however long the wait
                self.recorder.person_actions["wait for capacity to relaunch"] += 1
                self._waiting.add(job_id)
            fleet.at(600, functools.partial(self._relaunch, job_id), "a person waits for capacity")
            return
        self._waiting.discard(job_id)
        tasks = fleet.start_tasks(task_definition, nodes, group=job_id, started_by="trainer-launcher", tags=tags,
                                  gpus=gpus, overrides_for=_rank_overrides(len(nodes)))
        fleet.emit([fleet.advance_task(t, "PROVISIONING") for t in tasks])
        fleet.at(TASK_START_SECONDS / 2, functools.partial(self._advance, tasks, "PENDING"), "relaunch pending")
        fleet.at(TASK_START_SECONDS, functools.partial(self._advance, tasks, "RUNNING"), "relaunch running")

    def _advance(self, tasks: list[SimTask], status: str) -> None:
        live = [t for t in tasks if t.last_status != "STOPPED"]
        if live:
            self.fleet.emit([self.fleet.advance_task(t, status) for t in live])

    def _free_nodes(self, gpus: int) -> list[SimNode]:
        return sorted((n for n in self.fleet.nodes.values()
                       if n.status == "ACTIVE" and n.agent_connected and n.gpus_free >= gpus
                       and n.attributes.get("gpu-recovery.state", "HEALTHY") not in OUT_OF_SERVICE_ATTRIBUTES),
                      key=_node_order)

    # --- housekeeping -------------------------------------------------------------------------------------

    def forget_stopped(self) -> None:
        """ECS forgets a stopped task after about an hour; so does the simulator (and months stay small)."""
        now = self.clock.now()
        if (now - self._last_forget).total_seconds() < FORGET_S:
            return
        self._last_forget = now
        cutoff = now - timedelta(seconds=FORGET_S)
        tasks = self.fleet.tasks
        for arn in [a for a, t in tasks.items() if t.last_status == "STOPPED" and t.stopped_at
                    and _moment(t.stopped_at) < cutoff]:
            del tasks[arn]

    def node_of(self, call: Call) -> str | None:
        """The node a recovery call acted on, by name (None: a topic)."""
        target = call.target
        task = self.fleet.tasks.get(target)
        arn = task.node_arn if task is not None else target
        node = self.fleet.nodes.get(arn or "") or next(
            (n for n in self.fleet.nodes.values() if n.instance_id == target), None)
        return node.name if node else None


def _node_order(node: SimNode) -> tuple[str, int]:
    prefix, _, number = node.name.rpartition("-")
    return (prefix, int(number)) if number.isdigit() else (node.name, 0)


def _rank_overrides(world: int) -> Callable[[int], dict[str, Any]]:
    def overrides(rank: int) -> dict[str, Any]:
        return {"containerOverrides": [{"name": "trainer", "environment": [
            {"name": "RANK", "value": str(rank)}, {"name": "WORLD_SIZE", "value": str(world)}]}]}

    return overrides


def _moment(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# --- running it -------------------------------------------------------------------------------------------


@dataclass
class Simulation:
    report: SimulationReport
    recorder: SimulationRecorder
    trace: list[Interruption]


def run_simulation(spec: SimulationSpec, settings: Settings, wiring: Wiring, *, say: Say = lambda _: None,
                   progress: Progress | None = None) -> Simulation:
    trace = draw_trace(spec.mix, nodes=spec.nodes, days=spec.days, seed=spec.seed,
                       include_planned=spec.include_planned)
    scenario = scenario_for(spec)
    wall, cpu = time.monotonic(), time.process_time()
    with _engine(spec, scenario, settings, wiring, say) as run:
        recorder = SimulationRecorder({s.id: s.ranks for s in spec.job_shapes()}, run.clock.now(),
                                      checkpoint_s=spec.checkpoint_s)
        holder: list[FleetDriver] = []
        sampler = _Sampler(run, spec, recorder, holder, progress)

        def ready(_: Any) -> None:
            driver = FleetDriver(run, spec, trace, recorder, say)
            holder.append(driver)
            driver.start()
            sampler.started = run.clock.now()

        run.on_ready = ready
        run.on_step = sampler.step
        run.max_steps = 10**9
        if isinstance(run, CoreRun):
            run.on_calls = lambda calls: _record_calls(recorder, holder[0], calls)
        run.run()
        if not isinstance(run, CoreRun):
            _record_calls(recorder, holder[0], run.calls.calls)
        end = sampler.started + timedelta(seconds=spec.days * DAY_S)
        sampler.sample(end, final=True)
        steps = run.steps if isinstance(run, CoreRun) else sampler.steps
    wall_s, cpu_s = time.monotonic() - wall, time.process_time() - cpu
    injected = max(1, holder[0].injected)
    facts = RunFacts(
        engine=spec.engine, nodes=spec.nodes, gpus_per_node=spec.gpus_per_node, spares=spec.spares, days=spec.days,
        seed=spec.seed, started=sampler.started,
        fault_mix={"name": spec.mix.name, "source": spec.mix.source, "nodes": spec.mix.nodes, "days": spec.mix.days,
                   "counts": {k: v for k, v in scaled_counts(spec.mix, spec.nodes, spec.days).items() if v}},
        settings={**SIMULATION_SETTINGS, **spec.settings},
        timing={"wall_s": round(wall_s, 3), "cpu_s": round(cpu_s, 3), "steps": steps,
                "wall_s_per_interruption": round(wall_s / injected, 4),
                "cpu_s_per_interruption": round(cpu_s / injected, 4),
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)})
    return Simulation(summarize(recorder, facts, end), recorder, trace)


def _record_calls(recorder: SimulationRecorder, driver: FleetDriver, calls: Sequence[Call]) -> None:
    for call in calls:
        recorder.call(call.operation, call.ok, call.idempotency_key, driver.node_of(call))


class _Sampler:
    """On every step of the clock: progress, housekeeping, and the state's size at every virtual day."""

    def __init__(self, run: Any, spec: SimulationSpec, recorder: SimulationRecorder, holder: list[FleetDriver],
                 progress: Progress | None) -> None:
        self.run = run
        self.spec = spec
        self.recorder = recorder
        self.holder = holder
        self.progress = progress
        self.started = run.clock.now()
        self.next_day = 1
        self.steps = 0

    def step(self, now: datetime) -> None:
        self.steps += 1
        if not self.holder:
            return
        self.holder[0].forget_stopped()
        while self.next_day <= self.spec.days and now >= self.started + timedelta(days=self.next_day):
            self.sample(self.started + timedelta(days=self.next_day))
            self.next_day += 1
        if self.progress is not None:
            self.progress(min((now - self.started).total_seconds(), self.spec.days * DAY_S), self.holder[0].injected)

    def sample(self, at: datetime, final: bool = False) -> None:
        day = (at - self.started).total_seconds() / DAY_S
        if final and self.recorder.state and self.recorder.state[-1][0] >= day - 1e-9:
            return
        self.recorder.sample_state(round(day, 4), _state_bytes(self.run, at))


def _state_bytes(run: Any, at: datetime) -> tuple[int, int]:
    if isinstance(run, CoreRun):
        return run.state_bytes()
    pages = run.sim_clients.client("dynamodb").get_paginator("scan").paginate(
        TableName=run.settings.recovery_table, ConsistentRead=True)
    total = records = 0
    for page in pages:
        for item in page.get("Items", []):
            expires = item.get("expires_at", {}).get("N")
            if "body" not in item or (expires is not None and float(expires) <= at.timestamp()):
                continue
            total += len(item["pk"]["S"]) + len(item["sk"]["S"]) + len(item["body"]["S"])
            records += 1
    return total, records


@contextmanager
def _engine(spec: SimulationSpec, scenario: Scenario, settings: Settings, wiring: Wiring, say: Say) -> Iterator[Any]:
    if spec.engine == "core":
        yield CoreRun(scenario, settings, say, wiring=wiring)
        return
    from local.demo import aws_endpoint
    from local.scenario_runner import ScenarioRun

    with aws_endpoint(settings, say) as local:
        yield ScenarioRun(scenario, local, say, wiring=wiring)


__all__ = ["FleetDriver", "JobShape", "Simulation", "SimulationSpec", "parse_jobs", "run_simulation", "scenario_for"]
