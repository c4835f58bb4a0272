"""One recovery worker of the burst benchmark, in a process of its own (as a KCL worker would be).

The production consumer (``gpu_recovery.wiring.build_recovery``) on its own boto3 session, reading only
its shards (``LocalReader(shards=...)``) with the daemon's ``maxRecords`` (10,000), polling every
``poll_s`` while the stream is quiet. A probe on the session reports, with the time, every AWS call the
consumer makes (ECS, EC2, SSM, SNS: the fleet simulator reacts to them) and every event it appends to
the stream; DynamoDB and Kinesis reads are the consumer's own business and are not reported.

Timestamps are ``time.perf_counter()``: CLOCK_MONOTONIC on Linux, one clock for every process on the
machine, so the driver compares them with its own.
"""

from __future__ import annotations

import json
import time
import traceback
from dataclasses import dataclass
from typing import Any

RECORDS_PER_GET = 10_000  # the KCL daemon's maxRecords (docs/kcl.md)
IDLE_TICK_S = 1.0  # at least this often the worker notices deadlines on a quiet stream (empty batches)
TRACKED = ("DecisionRecorded", "IncidentOpened", "IncidentClosed", "JobStateChanged", "NodeStateChanged",
           "DeadlineExpired", "NotificationSent")


@dataclass(frozen=True)
class WorkerSpec:
    index: int
    owner: str
    shards: tuple[str, ...]
    settings: dict[str, Any]
    poll_s: float = 0.02


class Probe:
    """botocore hooks on the worker's session: its AWS calls and appended events, onto the driver's queue."""

    def __init__(self, index: int, out: Any, sent: Any) -> None:
        self.index = index
        self.out = out
        self.sent = sent
        self.writes = 0

    def attach(self, session: Any) -> None:
        session.events.register("before-parameter-build.*.*", self._keep_params)
        session.events.register("after-call.*.*", self._after)

    @staticmethod
    def _keep_params(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["bench_params"] = dict(params)

    def _send(self, message: tuple[Any, ...]) -> None:
        with self.sent.get_lock():
            self.sent.value += 1
        self.out.put(message)

    def _after(self, http_response: Any, parsed: dict[str, Any], model: Any, context: dict[str, Any],
               **_: Any) -> None:
        now = time.perf_counter()
        service, operation = model.service_model.service_name, model.name
        params = context.get("bench_params", {})
        if service == "dynamodb" or (service == "kinesis" and operation not in ("PutRecord", "PutRecords")):
            return
        self.writes += 1
        if service == "kinesis":
            datas = [params["Data"]] if "Data" in params else [r["Data"] for r in params.get("Records", [])]
            for data in datas:
                event = json.loads(data)
                if event.get("type") in TRACKED:
                    self._send(("event", self.index, now, _summary(event)))
            return
        ok = getattr(http_response, "status_code", 500) < 300
        tasks = [{"taskArn": t.get("taskArn"), "taskDefinitionArn": t.get("taskDefinitionArn")}
                 for t in parsed.get("tasks", [])] if operation == "StartTask" else []
        self._send(("call", self.index, now, service, operation, params, {"tasks": tasks}, ok))


def _summary(event: dict[str, Any]) -> dict[str, Any]:
    data = event.get("data") or {}
    action = data.get("action") or {}
    return {"type": event["type"], "job_id": data.get("job_id"), "state": data.get("state"),
            "action": action.get("type"), "target": action.get("target"), "step": data.get("step"),
            "incident_id": data.get("incident_id"), "node_arn": data.get("node_arn")}


def run_worker(spec: WorkerSpec, offset: Any, generation: Any, quiet: Any, sent: Any, stop: Any, out: Any,
               armed: Any) -> None:
    """The worker's loop until ``stop``; any failure is reported on ``out`` (and the driver stops).

    ``armed`` is set by the driver just before the burst: the DynamoDB units counted from then on are the
    burst's (the worker keeps a copy of its usage each time it is idle and the burst has not begun)."""
    try:
        _loop(spec, offset, generation, quiet, sent, stop, out, armed)
    except BaseException:  # reported to the driver, which fails the figure with it
        out.put(("error", spec.index, time.perf_counter(), traceback.format_exc()))


def _accountant(settings: Any, session: Any) -> Any:
    """DynamoDB units of this worker's session, counted from item sizes (``benchmarks.ddb_capacity``); the
    key schemas and an UpdateItem's result are read with a session of their own, outside the count."""
    import boto3

    from benchmarks.ddb_capacity import Accountant, SizeBook, item_reader, key_schema_reader
    from gpu_recovery.aws import AwsClients

    aside = AwsClients(settings, session=boto3.session.Session()).client("dynamodb")
    accountant = Accountant(SizeBook(key_schema_reader(aside)), item_reader(aside))
    accountant.attach(session)
    return accountant


def _usage(accountant: Any, names: dict[str, str]) -> dict[str, Any]:
    return {"by_table": accountant.usage.by_table(names), "wcu": accountant.usage.total_wcu,
            "rcu": accountant.usage.total_rcu, "requests": accountant.usage.total_requests}


def _loop(spec: WorkerSpec, offset: Any, generation: Any, quiet: Any, sent: Any, stop: Any, out: Any,
          armed: Any) -> None:
    import boto3

    from benchmarks.fleet_setup import SharedClock
    from consumers.runtime.local_reader import DynamoCheckpoints, LocalReader
    from consumers.runtime.processor import ShardProcessor
    from gpu_recovery import wiring
    from gpu_recovery.aws import AwsClients
    from gpu_recovery.settings import Settings

    settings = Settings(**spec.settings)
    session = boto3.session.Session()
    probe = Probe(spec.index, out, sent)
    probe.attach(session)
    accountant = _accountant(settings, session)
    names = {settings.recovery_table: "recovery", settings.ledger_table: "ledger",
             settings.checkpoint_table: "checkpoints", settings.parked_table: "parked"}
    before_burst = _usage(accountant, names)
    clients = AwsClients(settings, session=session)
    recovery = wiring.build_recovery(clients, clock=SharedClock(offset).now, owner=spec.owner)
    reader = LocalReader(clients.client("kinesis"), settings.stream_name, wiring.RECOVERY_APP,
                         lambda: ShardProcessor(recovery, on_fatal=_surface),
                         DynamoCheckpoints(clients.client("dynamodb"), settings.checkpoint_table),
                         batch_limit=RECORDS_PER_GET, shards=spec.shards)
    idle_generation, idle_at, confirmed = -1, 0.0, -1
    while not stop.is_set():
        current = int(generation.value)
        writes = probe.writes
        began = time.perf_counter()
        delivered = reader.poll()
        if delivered:
            # Not counted in ``sent``: the driver's quiet check is about calls and events, not reads.
            out.put(("batch", spec.index, time.perf_counter(), delivered, time.perf_counter() - began))
            continue
        if current != idle_generation or writes != confirmed or time.monotonic() - idle_at > IDLE_TICK_S:
            recovery.on_idle()  # every shard of this worker is drained: its deadlines, on the stream's clock
            idle_generation, idle_at = current, time.monotonic()
            if probe.writes == writes:
                # Nothing read, called or appended since the driver's last move: the driver may skip time.
                quiet[spec.index] = current
                confirmed = writes
                if not armed.value:
                    before_burst = _usage(accountant, names)
        time.sleep(spec.poll_s)
    after = _usage(accountant, names)
    out.put(("done", spec.index, time.perf_counter(), {
        "actions": recovery.actions, "conflicts": recovery.conflicts, "parked": recovery.parked,
        "ddb_burst": _minus(after, before_burst)}))


def _minus(after: dict[str, Any], before: dict[str, Any]) -> dict[str, Any]:
    """The units and requests between two copies of the usage (the burst's share)."""
    tables = {}
    for table, row in after["by_table"].items():
        base = before["by_table"].get(table, {})
        tables[table] = {k: v - base.get(k, 0) for k, v in row.items()}
    return {"by_table": tables, **{k: after[k] - before[k] for k in ("wcu", "rcu", "requests")}}


def _surface(exc: BaseException) -> None:
    """A fatal processor error propagates to the loop (the daemon would exit and restart the processor)."""
