"""Play a scenario on the embedded AWS: the fleet simulator, the local EventBridge, the projector and
the recovery consumer, on one virtual clock. Everything the consumers do goes through the real stream
and the real (moto) AWS APIs; only time is simulated, so a 15-minute deadline passes at once."""

from __future__ import annotations

import functools
import json
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from consumers.adapters.dynamodb import DynamoParkingLot, DynamoProjectionStore
from consumers.adapters.kinesis import KinesisStreamWriter
from consumers.core.errors import ConfigError
from consumers.core.projection import JOB, NODE, TASK
from consumers.core.recovery.state import REPAIRING
from consumers.recovery import InjectedStop, RecoveryConsumer, no_fault
from consumers.runtime.local_reader import LocalReader
from consumers.runtime.processor import FatalProcessorError
from events_schema.envelope import Envelope
from events_schema.rules import ingest_rules
from gpu_recovery.aws import AwsClients
from gpu_recovery.settings import Settings
from gpu_recovery.wiring import PROJECTOR_APP, RECOVERY_APP, build_projector, build_recovery, local_reader
from local.bridge import EventBridgeBridge
from local.call_log import CallLog, RecordingActuator
from local.clock import VirtualClock
from local.provision import provision
from local.reactive_fleet import ReactiveFleet
from local.scenario import Scenario

Say = Callable[[str], None]
MAX_STEPS = 20_000


@dataclass
class ScenarioResult:
    scenario: str
    title: str
    events: int
    tables: dict[str, list[dict[str, Any]]]
    actions: list[dict[str, Any]]
    notifications: list[dict[str, Any]]
    incidents: list[dict[str, Any]]
    job_states: dict[str, str]
    node_states: dict[str, str]
    restarts: dict[str, int]
    restarted_on: dict[str, list[str]]
    max_in_repair: int
    parked: list[dict[str, Any]]
    expectations: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    virtual_seconds: float = 0.0
    consumer_restarts: int = 0
    consumer_scans: int = 0

    @property
    def ok(self) -> bool:
        return all(e["ok"] for e in self.expectations)

    def action_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for action in self.actions:
            counts[action["type"]] = counts.get(action["type"], 0) + 1
        return counts

    def as_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario, "title": self.title, "events": self.events, "tables": self.tables,
            "actions": self.actions, "notifications": self.notifications, "incidents": self.incidents,
            "job_states": self.job_states, "node_states": self.node_states, "restarts": self.restarts,
            "max_in_repair": self.max_in_repair, "parked": self.parked, "expectations": self.expectations,
            "ok": self.ok, "seconds": round(self.seconds, 3), "virtual_seconds": self.virtual_seconds,
            "consumer_restarts": self.consumer_restarts, "consumer_scans": self.consumer_scans,
        }


class ChaosBridge(EventBridgeBridge):
    """Delivers every event twice and shuffles the order across nodes (each node's own order kept)."""

    def __init__(self, *args: Any, duplicate: bool, shuffle: bool, seed: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._duplicate = duplicate
        self._shuffle = shuffle
        self._random = random.Random(seed)

    def publish(self, events: Sequence[dict[str, Any]]) -> int:
        routed = [record for event in events for record in self.route(event)]
        if self._duplicate:
            routed = [r for record in routed for r in (record, record)]
        if self._shuffle:
            routed = self._interleave(routed)
        if routed:
            self._writer.put_raw(routed)
        self.delivered += len(routed)
        return len(routed)

    def _interleave(self, records: list[tuple[bytes, str]]) -> list[tuple[bytes, str]]:
        queues: dict[str, list[tuple[bytes, str]]] = {}
        for record in records:
            queues.setdefault(record[1], []).append(record)
        out: list[tuple[bytes, str]] = []
        while queues:
            key = self._random.choice(sorted(queues))
            out.append(queues[key].pop(0))
            if not queues[key]:
                del queues[key]
        return out


class _Tee:
    """The recovery consumer's stream writer, also narrating what it records."""

    def __init__(self, inner: KinesisStreamWriter, on_event: Callable[[Envelope], None]) -> None:
        self._inner = inner
        self._on_event = on_event

    def append(self, envelopes: Sequence[Envelope]) -> list[str]:
        result = self._inner.append(envelopes)
        for envelope in envelopes:
            self._on_event(envelope)
        return result


class ScenarioRun:
    def __init__(self, scenario: Scenario, settings: Settings, say: Say, *,
                 fault: Callable[[str, str | None], None] = no_fault) -> None:
        self.scenario = scenario
        self.say = say
        self.fault = fault
        overrides = {**settings.model_dump(), **scenario.settings}
        try:
            self.settings = Settings(**overrides)
        except Exception as exc:
            raise ConfigError(f"scenario {scenario.name} has invalid settings: {exc}") from exc
        self.clock = VirtualClock()
        self.started_virtual = self.clock.now()
        self.calls = CallLog()
        self.in_repair: set[str] = set()
        self.max_in_repair = 0
        self.consumer_restarts = 0
        self._seen_events: set[str] = set()

    # --- set-up -----------------------------------------------------------------------------------

    def _setup(self) -> None:
        import boto3

        self.sim_clients = AwsClients(self.settings)
        recovery_session = boto3.session.Session()
        self.calls.attach(recovery_session)
        self.consumer_scans = 0
        for session in (recovery_session, self.sim_clients.session):
            session.events.register("before-call.dynamodb.Scan", self._count_scan)
        self.recovery_clients = AwsClients(self.settings, session=recovery_session)
        provision(self.sim_clients)
        self.sim_clients.client("ecs").register_task_definition(
            family=self.settings.health_check_task,
            containerDefinitions=[{"name": "healthcheck", "image": "gpu-recovery-healthcheck", "memory": 1024,
                                   "essential": True}],
        )
        delivery = self.scenario.delivery
        writer = KinesisStreamWriter(self.sim_clients.client("kinesis"), self.settings.stream_name)
        self.bridge = ChaosBridge(ingest_rules(self.settings.cluster_arn), writer, duplicate=delivery.duplicate,
                                  shuffle=delivery.shuffle, seed=delivery.seed)
        self.fleet = ReactiveFleet(
            self.sim_clients.client("ecs"), self.sim_clients.client("ec2"), self.clock, self.bridge.publish,
            cluster_name=self.settings.cluster_name, account_id=self.settings.account_id, region=self.settings.region,
            reports=writer, health_check_family=self.settings.health_check_task,
        )
        self.projector = build_projector(self.sim_clients)
        self.projector_reader = local_reader(self.sim_clients, PROJECTOR_APP, self.projector)
        self._start_recovery()

    def _count_scan(self, **_: Any) -> None:
        self.consumer_scans += 1

    def _start_recovery(self) -> None:
        self.recovery: RecoveryConsumer = build_recovery(
            self.recovery_clients, clock=self.clock.now, fault=self.fault,
            wrap_actuator=lambda actuator: RecordingActuator(actuator, self.calls),
            wrap_writer=lambda writer: _Tee(writer, self._narrate),
        )
        self.recovery_reader: LocalReader = local_reader(self.sim_clients, RECOVERY_APP, self.recovery)

    # --- the run ----------------------------------------------------------------------------------

    def run(self) -> ScenarioResult:
        started = time.monotonic()
        self._setup()
        fleet = self.fleet
        external = frozenset(self.scenario.fleet.external)
        nodes = fleet.add_nodes(self.scenario.fleet.nodes, gpus=self.scenario.fleet.gpus, external=external)
        if self.scenario.fleet.auto_scaling_group:
            fleet.join_auto_scaling_group(self.sim_clients.client("autoscaling"), nodes)
        self.say(f"fleet: {len(nodes)} GPU nodes ({self.scenario.fleet.gpus} GPUs each) in cluster "
                 f"{self.settings.cluster_name}")
        for job in self.scenario.jobs:
            self._launch(job.id, job.nodes, job.family, job.tags)
        for fault in self.scenario.faults:
            fleet.at(fault.at, functools.partial(self._inject, fault), f"fault on {fault.node}")
        for event in self.scenario.events:
            fleet.at(event.at, functools.partial(self._scripted, event), event.type)
        self._loop()
        return self._result(time.monotonic() - started)

    def _launch(self, job_id: str, node_names: list[str], family: str, tags: list[dict[str, str]]) -> None:
        fleet = self.fleet
        task_definition = fleet.register_training_family(family, gpus=self.scenario.fleet.gpus)
        nodes = [fleet.node_by_name(name) for name in node_names]
        tasks = fleet.start_tasks(
            task_definition, nodes, group=job_id, started_by="trainer-launcher", tags=tags,
            overrides_for=lambda rank: {"containerOverrides": [{"name": "trainer", "environment": [
                {"name": "RANK", "value": str(rank)}, {"name": "WORLD_SIZE", "value": str(len(nodes))}]}]},
        )
        fleet.emit([fleet.advance_task(task, "PROVISIONING") for task in tasks])
        fleet.run_to_running(tasks)
        self.say(f"job {job_id}: {len(tasks)} ranks RUNNING on {', '.join(node_names)}")

    def _inject(self, fault: Any) -> None:
        self.say(f"{self._t()} FAULT   {fault.node}: XIDs {fault.xids or '-'}, DCGM would say {fault.dcgm}"
                 + (f", reboot {fault.reboot}" if fault.reboot != "ok" else "")
                 + (f", check {fault.check}" if fault.check != "ok" else ""))
        self.fleet.inject_fault(fault)

    def _scripted(self, event: Any) -> None:
        fleet = self.fleet
        self.say(f"{self._t()} EVENT   {event.type} {event.node or event.job}")
        if event.type == "agent_reconnect":
            fleet.agent_reconnect(fleet.node_by_name(event.node))
        elif event.type == "user_stop":
            fleet.user_stop(event.job)
        elif event.type == "stray_check_task":
            fleet.stray_check_task(fleet.node_by_name(event.node))

    def _loop(self) -> None:
        end = self.started_virtual.timestamp() + self.scenario.run_for
        for _ in range(MAX_STEPS):
            if self._pump():
                continue
            upcoming = [t for t in (self.fleet.next_due(), self._next_deadline()) if t is not None]
            if not upcoming or min(upcoming).timestamp() > end:
                return
            self.clock.advance_to(min(upcoming))
            self.fleet.run_due()
            self._guard(self.recovery.on_idle)
        raise RuntimeError(f"scenario {self.scenario.name} did not settle in {MAX_STEPS} steps")

    def _next_deadline(self) -> datetime | None:
        due = self.recovery.policy.next_deadline(self.recovery.state)
        return datetime.fromisoformat(due.replace("Z", "+00:00")) if due else None

    def _pump(self) -> int:
        moved = self.projector_reader.poll()
        moved += self._guard(self.recovery_reader.poll)
        for call in self.calls.unread():
            self.fleet.react(call)
            moved += 1
        return moved

    def _guard(self, step: Callable[[], int | None]) -> int:
        """Run a recovery step; if an injected fault stops the consumer, start a fresh one, as a
        KCL daemon would after the process died: from the saved state and the last checkpoint."""
        try:
            return int(step() or 0)
        except (FatalProcessorError, InjectedStop):
            self.consumer_restarts += 1
            self.say(f"{self._t()} CRASH   recovery consumer stopped; restarting from its checkpoint")
            self._start_recovery()
            return 1

    # --- narration --------------------------------------------------------------------------------

    def _t(self) -> str:
        elapsed = int((self.clock.now() - self.started_virtual).total_seconds())
        return f"+{elapsed // 3600:02d}:{elapsed % 3600 // 60:02d}:{elapsed % 60:02d}"

    def _name(self, arn: str | None) -> str:
        node = self.fleet.nodes.get(arn or "")
        return node.name if node else (arn or "?").rsplit("/", 1)[-1][:12]

    def _narrate(self, envelope: Envelope) -> None:
        if envelope.event_id in self._seen_events:
            return
        self._seen_events.add(envelope.event_id)
        data, kind = envelope.data, envelope.type
        if kind == "NodeStateChanged":
            self._track_repair(data["node_arn"], data["state"])
            self.say(f"{self._t()} NODE    {self._name(data['node_arn'])} -> {data['state']} ({data['reason']})")
        elif kind == "JobStateChanged":
            self.say(f"{self._t()} JOB     {data['job_id']} -> {data['state']} ({data['reason']})")
        elif kind == "IncidentOpened":
            self.say(f"{self._t()} OPEN    incident {data['incident_id']} on {self._name(data['node_arn'])}: "
                     f"{data['reason']}")
        elif kind == "IncidentClosed":
            self.say(f"{self._t()} CLOSE   incident {data['incident_id']}: {data['outcome']} ({data['reason']})")
        elif kind == "DecisionRecorded" and data["action"]["type"] not in ("ListTagsForResource", "PutAttributes"):
            target = data["action"]["target"]
            self.say(f"{self._t()} DECIDE  {data['action']['type']} {self._name(target) if '/' in target else target}"
                     f" - {data['reason']}")
        elif kind == "NotificationSent":
            self.say(f"{self._t()} NOTIFY  {data['subject']}")
        elif kind == "DeadlineExpired":
            self.say(f"{self._t()} EXPIRED {data['kind']} deadline")

    def _track_repair(self, node: str, state: str) -> None:
        if state in REPAIRING - {"SUSPECT"}:
            self.in_repair.add(node)
        else:
            self.in_repair.discard(node)
        self.max_in_repair = max(self.max_in_repair, len(self.in_repair))

    # --- the result -------------------------------------------------------------------------------

    def _result(self, seconds: float) -> ScenarioResult:
        # Drain what is left so the tables show the end state.
        while self._pump():
            pass
        self.recovery.on_idle()
        scans = self.consumer_scans  # the consumers' own; the report below reads whole tables on purpose
        store = DynamoProjectionStore(self.sim_clients.client("dynamodb"), self.settings.projection_tables())
        tables = {name: list(store.scan_table(name)) for name in (TASK, JOB, NODE)}
        parked = DynamoParkingLot(self.sim_clients.client("dynamodb"), self.settings.parked_table).list()
        changes = self.calls.changes()
        notifications = []
        for call in changes:
            if call.operation == "Publish":
                body = json.loads(json.loads(call.params["Message"])["default"])
                notifications.append({"subject": call.params.get("Subject"), **body})
        state = self.recovery.state
        incidents = [
            {"incident_id": i.id, "node": self._name(i.node), "node_arn": i.node, "jobs": i.jobs, "verdict": i.verdict,
             "xids": i.xids, "outcome": i.outcome, "phase": i.phase, "reboots": i.reboot_attempt,
             "checks": i.check_attempt, "opened_at": i.opened_at}
            for i in sorted(state.incidents.values(), key=lambda i: (i.opened_at, i.id))
        ]
        jobs = {row["job_id"]: row for row in tables[JOB]}
        result = ScenarioResult(
            scenario=self.scenario.name, title=self.scenario.title, events=self.bridge.delivered, tables=tables,
            actions=[c.as_json() for c in changes], notifications=notifications, incidents=incidents,
            job_states={job_id: str(row.get("state")) for job_id, row in jobs.items()},
            node_states={self._name(row["container_instance_arn"]): str(row.get("repair_state"))
                         for row in tables[NODE]},
            restarts={job_id: int(row.get("restart_count") or 0) for job_id, row in jobs.items()},
            restarted_on=self._restarted_on(state),
            max_in_repair=self.max_in_repair,
            parked=[{k: v for k, v in p.items() if k != "data_b64"} for p in parked],
            seconds=seconds,
            virtual_seconds=(self.clock.now() - self.started_virtual).total_seconds(),
            consumer_restarts=self.consumer_restarts,
            consumer_scans=scans,
        )
        result.expectations = check_expectations(self.scenario, result)
        return result

    def _restarted_on(self, state: Any) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for job in state.jobs.values():
            if job.restart_count:
                out[job.job_id] = sorted(self._name(state.tasks[a].node) for a in job.tasks if a in state.tasks)
        return out


def check_expectations(scenario: Scenario, result: ScenarioResult) -> list[dict[str, Any]]:
    expect = scenario.expect
    checks: list[tuple[str, Any, Any]] = []
    if expect.incidents is not None:
        checks.append(("incidents", expect.incidents, len(result.incidents)))
    if expect.actions is not None:
        counts = result.action_counts()
        for action, count in expect.actions.items():
            checks.append((f"{action} calls", count, counts.get(action, 0)))
    for job, state in expect.job_states.items():
        checks.append((f"job {job} state", state, result.job_states.get(job)))
    for node, state in expect.node_states.items():
        checks.append((f"node {node} state", state, result.node_states.get(node)))
    for job, count in expect.restarts.items():
        checks.append((f"job {job} restarts", count, result.restarts.get(job)))
    for job, nodes in expect.restarted_on.items():
        checks.append((f"job {job} restarted on", sorted(nodes), result.restarted_on.get(job)))
    kinds = sorted({n["kind"] for n in result.notifications})
    for kind in expect.notifications:
        checks.append((f"notification {kind}", True, kind in kinds))
    if expect.no_notifications:
        checks.append(("no notifications", [], kinds))
    if expect.max_in_repair is not None:
        checks.append(("most nodes in repair at once", f"<= {expect.max_in_repair}",
                       f"<= {expect.max_in_repair}" if result.max_in_repair <= expect.max_in_repair
                       else str(result.max_in_repair)))
    return [{"check": name, "expected": want, "actual": got, "ok": want == got} for name, want, got in checks]
