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
from datetime import datetime, timedelta
from typing import Any, Protocol

from consumers.adapters.dynamodb import DynamoParkingLot, DynamoProjectionStore
from consumers.adapters.kinesis import KinesisStreamWriter
from consumers.adapters.recovery_store import record_key
from consumers.core.errors import ConfigError
from consumers.core.projection import JOB, NODE, TASK
from consumers.core.recovery.model import Incident, Job, Node, TaskRecord
from consumers.core.recovery.record import summary
from consumers.recovery import InjectedStop, RecoveryConsumer, no_fault
from consumers.runtime.local_reader import LocalReader
from consumers.runtime.processor import FatalProcessorError
from events_schema.envelope import Envelope
from events_schema.rules import ingest_rules
from gpu_recovery.apps import PROJECTOR_APP, RECOVERY_APP
from gpu_recovery.aws import AwsClients
from gpu_recovery.settings import Settings
from local.bridge import EventBridgeBridge
from local.call_log import CallLog, RecordingActuator
from local.clock import VirtualClock
from local.ecs_semantics import EcsSemantics, InjectedError
from local.provision import provision
from local.reactive_fleet import ReactiveFleet
from local.scenario import EventSpec, Scenario, Spares

Say = Callable[[str], None]


class Wiring(Protocol):
    """How the consumers are built: the composition root (``gpu_recovery.wiring``) passes itself in."""

    def build_projector(self, clients: AwsClients) -> Any: ...

    def build_recovery(self, clients: AwsClients, *, clock: Callable[[], datetime] | None = ...,
                       fault: Callable[[str, str | None], None] = ..., wrap_actuator: Callable[[Any], Any] = ...,
                       wrap_writer: Callable[[Any], Any] = ..., owner: str | None = ...) -> RecoveryConsumer: ...

    def local_reader(self, clients: AwsClients, application: str, handler: Any) -> LocalReader: ...


MAX_STEPS = 50_000
IN_REPAIR = frozenset({"CHECKING", "REBOOTING", "VERIFYING"})
OUT_OF_SERVICE = IN_REPAIR | {"QUARANTINED", "REPLACED", "MISCONFIGURED"}


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
    recovery: dict[str, Any] = field(default_factory=dict)
    max_out_of_service: int = 0
    double_bookings: list[str] = field(default_factory=list)
    spares_used: dict[str, int] = field(default_factory=dict)
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
            "restarted_on": self.restarted_on, "max_in_repair": self.max_in_repair,
            "max_out_of_service": self.max_out_of_service, "double_bookings": self.double_bookings,
            "parked": self.parked, "recovery": self.recovery, "expectations": self.expectations,
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

    def append(self, envelopes: Sequence[Envelope], partition_keys: Sequence[str] | None = None) -> list[str]:
        result = self._inner.append(envelopes, partition_keys)
        for envelope in envelopes:
            self._on_event(envelope)
        return result


class ScenarioRun:
    def __init__(self, scenario: Scenario, settings: Settings, say: Say, *, wiring: Wiring,
                 fault: Callable[[str, str | None], None] = no_fault) -> None:
        self.wiring = wiring
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
        self.repair_states: dict[str, str] = {}
        self.max_in_repair = 0
        self.max_out_of_service = 0
        self.consumer_restarts = 0
        self._seen_events: set[str] = set()
        self._job_nodes: dict[str, set[str]] = {}
        # For callers that drive a long run (``gpu-recovery simulate``): called once the jobs run, at each
        # step of the virtual clock, and with each event recovery records; and how many steps a run may take.
        self.on_ready: Callable[[ScenarioRun], None] | None = None
        self.on_step: Callable[[datetime], None] | None = None
        self.observers: list[Callable[[Envelope], None]] = []
        self.max_steps = MAX_STEPS

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
        self.writer = KinesisStreamWriter(self.sim_clients.client("kinesis"), self.settings.stream_name)
        self.bridge = ChaosBridge(ingest_rules(self.settings.cluster_arn), self.writer, duplicate=delivery.duplicate,
                                  shuffle=delivery.shuffle, seed=delivery.seed)
        self.fleet = ReactiveFleet(
            self.sim_clients.client("ecs"), self.sim_clients.client("ec2"), self.clock, self.bridge.publish,
            cluster_name=self.settings.cluster_name, account_id=self.settings.account_id, region=self.settings.region,
            reports=self.writer, health_check_family=self.settings.health_check_task,
        )
        self.semantics = EcsSemantics(self.fleet.free_gpus, self.fleet.gpus_of, self.clock.now,
                                      self.fleet.in_auto_scaling_group)
        self.semantics.injected = [InjectedError(self.clock.now() + timedelta(seconds=e.at), e.action, e.error, e.count)
                                   for e in self.scenario.errors]
        self.semantics.attach(recovery_session)
        self.projector = self.wiring.build_projector(self.sim_clients)
        self.projector_reader = self.wiring.local_reader(self.sim_clients, PROJECTOR_APP, self.projector)
        self._start_recovery()

    def _count_scan(self, **_: Any) -> None:
        self.consumer_scans += 1

    def _start_recovery(self) -> None:
        self.recovery: RecoveryConsumer = self.wiring.build_recovery(
            self.recovery_clients, clock=self.clock.now, fault=self.fault, owner="local",
            wrap_actuator=lambda actuator: RecordingActuator(actuator, self.calls),
            wrap_writer=lambda writer: _Tee(writer, self._narrate),
        )
        self.recovery_reader: LocalReader = self.wiring.local_reader(self.sim_clients, RECOVERY_APP, self.recovery)
        self._guard(self.recovery.resume)

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
            self._launch(job.id, job.nodes, job.family, job.tags, job.gpus or self.scenario.fleet.gpus)
        for fault in self.scenario.faults:
            fleet.at(fault.at, functools.partial(self._inject, fault), f"fault on {fault.node}")
        for event in self.scenario.events:
            fleet.at(event.at, functools.partial(self._scripted, event), event.type)
        if self.on_ready is not None:
            self.on_ready(self)
        self._loop()
        return self._result(time.monotonic() - started)

    def _launch(self, job_id: str, node_names: list[str], family: str, tags: list[dict[str, str]],
                gpus: int) -> None:
        fleet = self.fleet
        nodes = [fleet.node_by_name(name) for name in node_names]
        for node in nodes:
            if node.gpus_free < gpus * node_names.count(node.name):
                raise ConfigError(f"scenario {self.scenario.name}: job {job_id} needs {gpus} GPUs per rank; "
                                  f"{node.name} has {node.gpus_free} free")
        self._job_nodes[job_id] = {n.name for n in nodes}
        tasks = fleet.launch_job(job_id, nodes, family, tags, gpus)
        self.say(f"job {job_id}: {len(tasks)} ranks RUNNING on {', '.join(node_names)}")

    def _inject(self, fault: Any) -> None:
        self.say(f"{self._t()} FAULT   {fault.node}: XIDs {fault.xids or '-'}, DCGM would say {fault.dcgm}"
                 + (f", reboot {fault.reboot}" if fault.reboot != "ok" else "")
                 + (f", check {fault.check}" if fault.check != "ok" else ""))
        self.fleet.inject_fault(fault)

    def _scripted(self, event: EventSpec) -> None:
        fleet = self.fleet
        self.say(f"{self._t()} EVENT   {event.type} {event.node or event.job or ''}".rstrip())
        if event.type == "agent_reconnect" and event.node:
            fleet.agent_reconnect(fleet.node_by_name(event.node))
        elif event.type == "user_stop" and event.job:
            fleet.user_stop(event.job)
        elif event.type == "stray_check_task" and event.node:
            fleet.stray_check_task(fleet.node_by_name(event.node))
        elif event.type == "raw" and event.record is not None:
            self._raw(event)
        else:
            fleet.scripted(event)

    def _raw(self, event: EventSpec) -> None:
        """Anyone who may write to the stream puts a record on it: no rule, no check on the way.

        ``${region}``, ``${account}`` and ``${cluster}`` in the record stand for this run's, so a scenario
        names "our" cluster (or another one) whatever region the settings say."""
        text = json.dumps(event.record or {})
        for name, value in (("region", self.settings.region), ("account", self.settings.account_id),
                            ("cluster", self.settings.cluster_name)):
            text = text.replace("${" + name + "}", value)
        record = json.loads(text)
        detail: dict[str, Any] = record["detail"] if isinstance(record.get("detail"), dict) else {}
        subject: dict[str, Any] = record["subject"] if isinstance(record.get("subject"), dict) else {}
        key = (event.partition_key or str(detail.get("containerInstanceArn") or detail.get("taskArn") or "")
               or str(subject.get("node") or subject.get("job") or "") or "raw")
        self.writer.put_raw([(json.dumps(record).encode(), key)])

    def _loop(self) -> None:
        end = self.started_virtual.timestamp() + self.scenario.run_for
        for _ in range(self.max_steps):
            if self._pump():
                continue
            upcoming = [t for t in (self.fleet.next_due(), self.recovery.next_deadline()) if t is not None]
            if not upcoming or min(upcoming).timestamp() > end:
                return
            self.clock.advance_to(min(upcoming))
            if self.on_step is not None:
                self.on_step(self.clock.now())
            self.fleet.run_due()
            self._guard(self.recovery.on_idle)
        raise RuntimeError(f"scenario {self.scenario.name} did not settle in {self.max_steps} steps")

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
        for observe in self.observers:
            observe(envelope)
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
        self.repair_states[node] = state
        states = list(self.repair_states.values())
        self.max_in_repair = max(self.max_in_repair, sum(s in IN_REPAIR for s in states))
        self.max_out_of_service = max(self.max_out_of_service, sum(s in OUT_OF_SERVICE for s in states))

    # --- the result -------------------------------------------------------------------------------

    def _result(self, seconds: float) -> ScenarioResult:
        # Drain what is left so the tables show the end state.
        while self._pump():
            pass
        self._guard(self.recovery.on_idle)
        scans = self.consumer_scans  # the consumers' own; the report below reads whole tables on purpose
        store = DynamoProjectionStore(self.sim_clients.client("dynamodb"), self.settings.projection_tables())
        tables = {name: list(store.scan_table(name)) for name in (TASK, JOB, NODE)}
        parked = DynamoParkingLot(self.sim_clients.client("dynamodb"), self.settings.parked_table).list()
        records = self.live_records()
        changes = self.calls.changes()
        notifications = [self._notice(call) for call in changes if call.operation == "Publish"]
        jobs = {row["job_id"]: row for row in tables[JOB]}
        restarted_on = self._restarted_on(records)
        result = ScenarioResult(
            scenario=self.scenario.name, title=self.scenario.title, events=self.bridge.delivered, tables=tables,
            actions=[c.as_json() for c in changes], notifications=notifications,
            incidents=[self._incident(i) for i in summary(records)["incidents"]],
            job_states={job_id: str(row.get("state")) for job_id, row in jobs.items()},
            node_states={self._name(row["container_instance_arn"]): str(row.get("repair_state"))
                         for row in tables[NODE]},
            restarts={job_id: int(row.get("restart_count") or 0) for job_id, row in jobs.items()},
            restarted_on=restarted_on,
            max_in_repair=self.max_in_repair,
            parked=[{k: v for k, v in p.items() if k != "data_b64"} for p in parked],
            recovery=summary(records),
            max_out_of_service=self.max_out_of_service,
            double_bookings=[f"{self._name(n)}: {why}" for n, why in self.semantics.refused],
            spares_used={job: sum(n not in self._job_nodes.get(job, set()) for n in nodes)
                         for job, nodes in restarted_on.items()},
            seconds=seconds,
            virtual_seconds=(self.clock.now() - self.started_virtual).total_seconds(),
            consumer_restarts=self.consumer_restarts,
            consumer_scans=scans,
        )
        result.expectations = check_expectations(self.scenario, result)
        return result

    def live_records(self) -> dict[tuple[str, str], Any]:
        """Recovery's live state, read whole (a paginated scan: the demo's report, not the consumer's path)."""
        pages = self.sim_clients.client("dynamodb").get_paginator("scan").paginate(
            TableName=self.settings.recovery_table, ConsistentRead=True)
        out: dict[tuple[str, str], Any] = {}
        models: dict[str, Any] = {"job": Job, "node": Node, "incident": Incident, "task": TaskRecord}
        for page in pages:
            for row in page.get("Items", []):
                key = record_key(row["pk"]["S"], row["sk"]["S"])
                if key[0] in models and "body" in row:
                    body = json.loads(row["body"]["S"])
                    if not body.get("tombstone"):
                        out[key] = models[key[0]].model_validate(body)
        return out

    def _incident(self, row: dict[str, Any]) -> dict[str, Any]:
        return {**row, "node": self._name(row["node_arn"])}

    def _notice(self, call: Any) -> dict[str, Any]:
        body = json.loads(json.loads(call.params["Message"])["default"])
        return {"subject": call.params.get("Subject"), **body}

    def _restarted_on(self, records: dict[tuple[str, str], Any]) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for key, job in records.items():
            if key[0] != "job" or not job.plan.restart_total:
                continue
            nodes = []
            for arn, _ in job.facts.ranks.items():
                task = records.get(("task", arn))
                nodes.append(self._name(task.node_arn) if task else "?")
            out[job.job_id] = sorted(nodes)
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
        checks.append(_restarted_check(job, nodes, result))
    kinds = sorted({n["kind"] for n in result.notifications})
    for kind in expect.notifications:
        checks.append((f"notification {kind}", True, kind in kinds))
    if expect.no_notifications:
        checks.append(("no notifications", [], kinds))
    for kind in expect.forbid_notifications:
        checks.append((f"no {kind} notification", False, kind in kinds))
    for kind, count in expect.notification_counts.items():
        checks.append((f"{kind} notifications", count, sum(n["kind"] == kind for n in result.notifications)))
    checks += _bounds(expect.max_in_repair, "in repair", result.max_in_repair)
    checks += _bounds(expect.max_out_of_service, "out of service", result.max_out_of_service)
    if expect.no_double_booking:
        checks.append(("no StartTask refused for lack of GPUs", [], result.double_bookings))
    checks += _incident_outcomes(expect.incident_outcomes, result)
    for kind, count in expect.parked.items():
        checks.append((f"parked {kind}", count, sum(p.get("reason_kind") == kind for p in result.parked)))
    return [{"check": name, "expected": want, "actual": got, "ok": want == got} for name, want, got in checks]


def _bounds(limit: int | None, what: str, actual: int) -> list[tuple[str, Any, Any]]:
    if limit is None:
        return []
    return [(f"most nodes {what} at once", f"<= {limit}", f"<= {limit}" if actual <= limit else str(actual))]


def _restarted_check(job: str, want: list[str] | set[str] | Spares, result: ScenarioResult) -> tuple[str, Any, Any]:
    got = result.restarted_on.get(job)
    if isinstance(want, Spares):
        return (f"job {job} restarted on spares", want.spares, result.spares_used.get(job))
    if isinstance(want, set):
        return (f"job {job} restarted within", True, bool(got) and set(got or []) <= want)
    return (f"job {job} restarted on", sorted(want), got)


def _incident_outcomes(want: dict[str, str] | list[str] | None, result: ScenarioResult) -> list[tuple[str, Any, Any]]:
    if want is None:
        return []
    if isinstance(want, list):
        return [("incident outcomes", sorted(want), sorted(str(i["outcome"]) for i in result.incidents))]
    by_node: dict[str, list[str]] = {}
    for incident in result.incidents:
        by_node.setdefault(incident["node"], []).append(str(incident["outcome"]))
    return [(f"incident outcome on {node}", outcome, by_node[node][-1] if by_node.get(node) else None)
            for node, outcome in want.items()]

