"""``burst``: every rank of a large job stops within one second (a fabric failure), on the embedded AWS.

The job (2,048 ranks on 2,048 nodes of 8 GPUs; ``--quick``: 256) runs in moto's ECS, launched and run to
RUNNING by the fleet simulator (``local.reactive_fleet``); the recovery consumer runs as 1 or 2 workers,
each a process of its own on its own shards (``benchmarks.burst_worker``), sharing the recovery's tables
as KCL workers do (optimistic concurrency per record, no lock). moto's server serves one request at a
time (``local.moto_server``, as the KCL scale test uses it), so a conditional write is atomic as on AWS.

Then every rank exits with an NCCL timeout, in ten PutRecords spread over one second, each rank's task
event with its container instance's (the GPUs it freed). Measured, in wall time from the moment the first
STOPPED record was in the stream (its PutRecords returned):

* ``last_sibling_stop``: the last StopTask the recovery made (to every rank it had not yet seen stop);
* ``restart_decision``: the recovery appended the ``DecisionRecorded`` of the job's first restart
  StartTask. On the way the job's suspect (the node of the first failed rank: no rank named a GPU
  fault) gets an incident and a DCGM check, which passes (a fabric fault leaves the GPUs healthy). The
  check's run, the back-off and ECS's own delays are simulated time: the driver skips them, all
  processes at once (``fleet_setup.SharedClock``), only while every worker is idle, so what remains is
  the consumers' work plus the simulator's reactions (``simulator_s``);
* ``all_restarted``: the last restart StartTask call.

The floor of each: the same AWS calls the recovery made up to that moment (StopTask, UpdateContainer-
InstancesState, PutAttributes, StartTask, ...), with the same parameters, made bare one after another
from one client on the same server in the same run, after the round. ``ratio = seconds / floor``.
"""

from __future__ import annotations

import bisect
import contextlib
import math
import queue
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from benchmarks.burst_worker import WorkerSpec, run_worker
from benchmarks.stats import Figure, Target, baseline, figure, percentile, progress, rounded, tail

JOB = "job:burst"
TARGET = Target("<=", 2)
TARGET_TAIL_MS = Target("<", 1000)  # the recovery benchmark's decision-latency tail target
CHUNKS, BURST_S = 10, 1.0
NCCL_TIMEOUT = ("[Rank {rank}] Watchdog caught collective operation timeout: WorkNCCL(SeqNum=81, "
                "OpType=ALLREDUCE) ran for 600000 milliseconds before timing out")
MAX_JUMP_S = 3_600  # the driver never skips more simulated time than this at once
ROUND_TIMEOUT_S = 900


@dataclass
class Call:
    """One AWS call a worker made (the shape ``local.reactive_fleet.ReactiveFleet.react`` reads)."""

    service: str
    operation: str
    params: dict[str, Any]
    response: dict[str, Any]
    ok: bool
    at: float
    worker: int
    idempotency_key: str | None = None


@dataclass
class Event:
    at: float
    worker: int
    data: dict[str, Any]


@dataclass
class Round:
    workers: int
    ranks: int
    t0: float = 0.0
    burst_put_s: float = 0.0
    calls: list[Call] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    simulator_s: float = 0.0
    worker_stats: dict[int, dict[str, Any]] = field(default_factory=dict)
    catch_up_s: float = 0.0
    skipped_s: float = 0.0
    batches: list[tuple[float, int, int, float]] = field(default_factory=list)  # at, worker, records, seconds


class BurstDriver:
    """The embedded AWS, the fleet with one job, and the recovery workers, on one shared clock."""

    def __init__(self, endpoint: str, ranks: int, *, shards: int = 4, poll_s: float = 0.02) -> None:
        import multiprocessing

        self.ctx = multiprocessing.get_context("spawn")
        self.ranks, self.poll_s = ranks, poll_s
        self.offset = self.ctx.Value("d", 0.0)
        self.generation = self.ctx.Value("i", 0)
        self._buffer: list[dict[str, Any]] = []
        self._puts: list[float] = []
        self._skips: list[float] = []  # when the driver skipped simulated time (a timer may fire): a stimulus
        self._workers: list[Any] = []
        self._round: Round | None = None
        self._setup(endpoint, shards)

    # --- set-up -----------------------------------------------------------------------------------------

    def _setup(self, endpoint: str, shards: int) -> None:
        from benchmarks.fleet_setup import SharedClock
        from consumers.adapters.kinesis import KinesisStreamWriter
        from consumers.adapters.recovery_store import DynamoRecoveryStore
        from events_schema.rules import ingest_rules
        from gpu_recovery.aws import AwsClients
        from gpu_recovery.settings import load_settings
        from local.bridge import EventBridgeBridge
        from local.provision import provision
        from local.reactive_fleet import ReactiveFleet

        self.settings = load_settings(endpoint_url=endpoint, stream_shards=shards)
        self.sim = AwsClients(self.settings)
        self.sim.session.events.register("after-call.kinesis.PutRecords", self._put_done)
        provision(self.sim)
        self.sim.client("ecs").register_task_definition(
            family=self.settings.health_check_task,
            containerDefinitions=[{"name": "healthcheck", "image": "gpu-recovery-healthcheck", "memory": 1024,
                                   "essential": True}])
        self.clock = SharedClock(self.offset)
        writer = KinesisStreamWriter(self.sim.client("kinesis"), self.settings.stream_name)
        self.bridge = EventBridgeBridge(ingest_rules(self.settings.cluster_arn), writer)
        self.fleet = ReactiveFleet(
            self.sim.client("ecs"), self.sim.client("ec2"), self.clock, self._emit,
            cluster_name=self.settings.cluster_name, account_id=self.settings.account_id,
            region=self.settings.region, reports=_Bumping(writer, self._bump),  # type: ignore[arg-type]  # only append() is used
            health_check_family=self.settings.health_check_task)
        self.store = DynamoRecoveryStore(self.sim.client("dynamodb"), self.settings.recovery_table)

    def launch(self) -> None:
        from benchmarks.fleet_setup import add_nodes_bulk, launch_job

        progress(f"burst: {self.ranks} GPU nodes in moto's EC2 and ECS")
        nodes = add_nodes_bulk(self.fleet, self.ranks, progress=lambda line: progress(f"burst: {line}"))
        self._flush()
        progress(f"burst: job {JOB}: {self.ranks} ranks to RUNNING")
        launch_job(self.fleet, JOB, nodes)
        self._flush()

    # --- the stream and the clock ------------------------------------------------------------------------

    def _emit(self, events: Sequence[dict[str, Any]]) -> int:
        self._buffer.extend(events)  # put together at the end of the driver's step (one PutRecords per 500)
        return len(events)

    def _flush(self) -> None:
        if not self._buffer:
            return
        events, self._buffer = self._buffer, []
        for start in range(0, len(events), 500):
            self.bridge.publish(events[start:start + 500])
        self._bump()

    def _bump(self) -> None:
        with self.generation.get_lock():
            self.generation.value += 1

    def _put_done(self, **_: Any) -> None:
        self._puts.append(time.perf_counter())

    # --- workers ------------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def workers(self, count: int, round_: Round) -> Iterator[None]:
        from consumers.adapters.kinesis_reader import list_shards

        shard_ids = sorted(s["ShardId"] for s in list_shards(self.sim.client("kinesis"), self.settings.stream_name))
        self.quiet = self.ctx.Array("i", [-1] * count)
        self.sent = [self.ctx.Value("i", 0) for _ in range(count)]
        self.received = [0] * count
        self.stop = self.ctx.Event()
        self.armed = self.ctx.Value("i", 0)
        self.queue = self.ctx.Queue()
        self._round = round_
        settings = self.settings.model_dump()
        self._workers = []
        for index in range(count):
            spec = WorkerSpec(index, f"burst-w{index}", tuple(shard_ids[index::count]), settings, self.poll_s)
            process = self.ctx.Process(target=run_worker, daemon=True, name=f"recovery-worker-{index}", args=(
                spec, self.offset, self.generation, self.quiet, self.sent[index], self.stop, self.queue, self.armed))
            process.start()
            self._workers.append(process)
        try:
            yield
        finally:
            self._stop_workers()

    def _stop_workers(self) -> None:
        self.stop.set()
        deadline = time.monotonic() + 30
        while len(self._round.worker_stats if self._round else ()) < len(self._workers) \
                and time.monotonic() < deadline and any(p.is_alive() for p in self._workers):
            self._pump(react=False)
            time.sleep(0.05)
        for process in self._workers:
            process.join(timeout=10)
            if process.is_alive():
                process.terminate()
                process.join(timeout=10)
        self._workers = []

    def _pump(self, *, react: bool = True) -> bool:
        """Take the workers' reports; the fleet reacts to their calls as ECS and the node would."""
        from local.call_log import Call as FleetCall

        moved = False
        while True:
            try:
                message = self.queue.get_nowait()
            except queue.Empty:
                break
            moved = True
            kind, worker, at = message[0], message[1], message[2]
            round_ = self._round
            if kind == "error":
                raise RuntimeError(f"recovery worker {worker} failed:\n{message[3]}")
            if kind == "done":
                if round_ is not None:
                    round_.worker_stats[worker] = message[3]
                continue
            if kind == "batch":  # not counted in the worker's ``sent``
                if round_ is not None:
                    round_.batches.append((at, worker, message[3], message[4]))
                continue
            self.received[worker] += 1
            if kind == "event" and round_ is not None:
                round_.events.append(Event(at, worker, message[3]))
            elif kind == "call":
                call = Call(message[3], message[4], message[5], message[6], message[7], at, worker)
                if round_ is not None:
                    round_.calls.append(call)
                if react:
                    started = time.perf_counter()
                    self.fleet.react(FleetCall(call.service, call.operation, call.params, call.response, call.ok,
                                               None))
                    self._note_simulator(started)
        return moved

    def _note_simulator(self, started: float) -> None:
        if self._round is not None and self._round.t0:
            self._round.simulator_s += time.perf_counter() - started

    def _quiescent(self) -> bool:
        current = self.generation.value
        due = self.fleet.next_due()
        return (all(self.quiet[i] == current for i in range(len(self.quiet))) and all(r == s.value for r, s in zip(
            self.received, self.sent, strict=True)) and (due is None or due > self.clock.now()))

    def _next_due(self) -> datetime | None:
        from consumers.core.clocktext import parse_iso

        upcoming = [t for t in (self.fleet.next_due(),) if t is not None]
        due = self.store.due("9999", 1)
        if due:
            upcoming.append(parse_iso(str(due[0][1]["due_at"])))
        return min(upcoming) if upcoming else None

    def drive(self, until: Callable[[], bool], *, what: str, timeout: float = ROUND_TIMEOUT_S,
              skip_time: bool = True) -> float:
        """Pump reports and the fleet's reactions until ``until()``; skip simulated waits while idle."""
        started = time.monotonic()
        while not until():
            if time.monotonic() - started > timeout:
                raise TimeoutError(f"burst: {what}: not within {timeout:.0f} s")
            moved = self._pump()
            begun = time.perf_counter()
            if self.fleet.run_due():
                moved = True
            self._flush()
            self._note_simulator(begun)
            if moved:
                continue
            if skip_time and self._quiescent():
                self._skip(what)
            time.sleep(0.002)
        return time.monotonic() - started

    def _skip(self, what: str) -> None:
        upcoming = self._next_due()
        now = self.clock.now()
        if upcoming is None:
            raise RuntimeError(f"burst: {what}: everything settled, nothing is due, and it did not happen")
        if upcoming > now:
            jump = min((upcoming - now).total_seconds(), MAX_JUMP_S)
            self.clock.advance(jump)
            self._skips.append(time.perf_counter())
            if self._round is not None:
                self._round.skipped_s += jump
            self._bump()

    # --- one round ----------------------------------------------------------------------------------------

    def run_round(self, workers: int, first_rank: int) -> Round:
        round_ = Round(workers, self.ranks)
        with self.workers(workers, round_):
            progress(f"burst: {workers} recovery worker(s) catching up with the stream")
            round_.catch_up_s = self.drive(self._quiescent, what="catching up", skip_time=False)
            self.armed.value = 1  # the workers' DynamoDB units from here on are the burst's
            self._burst(round_, first_rank)
            progress(f"burst: {self.ranks} ranks stopped in {round_.burst_put_s:.2f} s; recovery until the job "
                     "runs again")
            self.drive(lambda: self._running_again(round_), what="the job RUNNING again")
        return round_

    def _burst(self, round_: Round, first_rank: int) -> None:
        live = [t for t in self.fleet.tasks.values() if t.group == JOB and t.last_status == "RUNNING"]
        if len(live) != self.ranks:
            raise RuntimeError(f"burst: {len(live)} ranks RUNNING, expected {self.ranks}")
        order = live[first_rank:] + live[:first_rank]
        size = math.ceil(len(order) / CHUNKS)
        puts_before = len(self._puts)
        started = time.perf_counter()
        for chunk in range(CHUNKS):
            while time.perf_counter() < started + chunk * BURST_S / CHUNKS:
                self._pump()
                time.sleep(0.001)
            self.fleet.emit([self.fleet.advance_task(
                task, "STOPPED", exit_code=1, stop_code="EssentialContainerExited",
                container_reason=NCCL_TIMEOUT.format(rank=first_rank + n + chunk * size),
                stopped_reason="Essential container in task exited")
                for n, task in enumerate(order[chunk * size:(chunk + 1) * size])])
            self._flush()
            if chunk == 0:
                round_.t0 = self._puts[puts_before]
        round_.burst_put_s = self._puts[-1] - round_.t0

    def _running_again(self, round_: Round) -> bool:
        return any(e.data["type"] == "JobStateChanged" and e.data["state"] == "RUNNING"
                   and e.data["job_id"] == JOB and e.at > round_.t0 for e in round_.events)

    # --- the floor -------------------------------------------------------------------------------------------

    def floor(self, calls: Sequence[Call]) -> list[float]:
        """Seconds each call takes made bare, one after another, from one client (the same parameters)."""
        from gpu_recovery.aws import AwsClients

        clients = AwsClients(self.settings)
        made = {c.service: clients.client(c.service) for c in calls}  # type: ignore[call-overload]
        durations = []
        for call in calls:
            method = getattr(made[call.service], _snake(call.operation))
            started = time.perf_counter()
            with contextlib.suppress(Exception):  # a call that failed for the recovery fails here too
                method(**call.params)
            durations.append(time.perf_counter() - started)
        return durations


class _Bumping:
    """The fleet's report writer: a health report put on the stream is a move of the driver's too."""

    def __init__(self, inner: Any, bump: Callable[[], None]) -> None:
        self._inner = inner
        self._bump = bump

    def append(self, envelopes: Any, partition_keys: Any = None) -> list[str]:
        result: list[str] = self._inner.append(envelopes, partition_keys)
        self._bump()
        return result


def _snake(operation: str) -> str:
    import re

    return re.sub(r"(?<!^)(?=[A-Z])", "_", operation).lower()


# --- figures ------------------------------------------------------------------------------------------------


@dataclass
class Milestones:
    last_sibling_stop: float | None
    incident_opened: float | None
    restart_decision: float | None
    all_restarted: float | None
    stops: int
    duplicate_stops: int
    restart_calls: int
    incidents: int


def milestones(round_: Round, health_check_family: str) -> Milestones:
    after = [c for c in round_.calls if c.at >= round_.t0]
    stops = [c for c in after if c.operation == "StopTask"]
    restarts = [c for c in after if c.operation == "StartTask" and
                health_check_family not in str(c.params.get("taskDefinition", ""))]
    events = [e for e in round_.events if e.at >= round_.t0]
    opened = [e for e in events if e.data["type"] == "IncidentOpened"]
    decisions = [e for e in events if e.data["type"] == "DecisionRecorded" and e.data["step"] == "restart"
                 and e.data["job_id"] == JOB]
    targets = [str(c.params.get("task")) for c in stops]
    return Milestones(
        last_sibling_stop=max((c.at for c in stops), default=None),
        incident_opened=min((e.at for e in opened), default=None),
        restart_decision=min((e.at for e in decisions), default=None),
        all_restarted=max((c.at for c in restarts), default=None),
        stops=len(stops), duplicate_stops=len(targets) - len(set(targets)), restart_calls=len(restarts),
        incidents=len(opened))


def _measure(driver: BurstDriver, round_: Round) -> dict[str, Any]:
    marks = milestones(round_, driver.settings.health_check_task)
    window = [c for c in round_.calls if c.at >= round_.t0]
    window.sort(key=lambda c: c.at)
    # The floor is replayed up to the restart decision (the figure); the restart's own 2,048 StartTasks
    # are timed (``all_restarted``) but not replayed: that would double the round for no figure.
    end = marks.restart_decision or marks.last_sibling_stop or round_.t0
    replayed = [c for c in window if c.at <= end]
    progress(f"burst: the floor: {len(replayed)} bare calls on the same server")
    durations = driver.floor(replayed)
    out: dict[str, Any] = {"workers": round_.workers, "stops": marks.stops, "duplicate_stops": marks.duplicate_stops,
                           "incidents_opened": marks.incidents, "restart_start_tasks": marks.restart_calls,
                           "burst_put_s": rounded(round_.burst_put_s), "catch_up_s": rounded(round_.catch_up_s),
                           "simulated_s_skipped": rounded(round_.skipped_s), "worker_stats": round_.worker_stats,
                           "calls_by_operation": _count(c.operation for c in replayed)}
    out["all_restarted"] = ({"seconds": rounded(marks.all_restarted - round_.t0)} if marks.all_restarted else None)
    for name, moment in (("last_sibling_stop", marks.last_sibling_stop), ("incident_opened", marks.incident_opened),
                         ("restart_decision", marks.restart_decision)):
        if moment is None:
            out[name] = None
            continue
        calls = sum(1 for c in replayed if c.at <= moment)
        floor_s = sum(durations[:calls])
        seconds = moment - round_.t0
        out[name] = {"seconds": rounded(seconds), "floor_s": rounded(floor_s), "calls": calls,
                     "ratio": rounded(seconds / floor_s) if floor_s else None}
    out["simulator_s"] = rounded(round_.simulator_s)
    out["decision_latency_ms"] = _decision_latencies(driver, round_)
    out["bare_call_ms"] = rounded(1000 * statistics.median(durations)) if durations else None
    out["records_per_s_by_worker"] = _records_per_s(round_)
    out["ddb"] = _ddb(round_)
    out["ok"] = bool(marks.restart_calls == round_.ranks and marks.duplicate_stops == 0
                     and out["restart_decision"] is not None)
    return out


def _decision_latencies(driver: BurstDriver, round_: Round) -> list[float]:
    """Per DecisionRecorded after the burst began: ms since the last stimulus before it (a PutRecords of
    the fleet's, or the driver skipping simulated time so a timer could fire)."""
    stimuli = sorted(t for t in (*driver._puts, *driver._skips) if t >= round_.t0)
    out = []
    for event in sorted((e for e in round_.events if e.at >= round_.t0 and e.data["type"] == "DecisionRecorded"),
                        key=lambda e: e.at):
        before = bisect.bisect_right(stimuli, event.at)
        if before:
            out.append(1000 * (event.at - stimuli[before - 1]))
    return out


def _records_per_s(round_: Round) -> dict[str, Any]:
    """Records each worker read after the burst began, over the seconds it spent in the polls that read them."""
    out: dict[str, Any] = {}
    for worker in sorted({b[1] for b in round_.batches}):
        mine = [b for b in round_.batches if b[1] == worker and b[0] >= round_.t0]
        records, seconds = sum(b[2] for b in mine), sum(b[3] for b in mine)
        out[str(worker)] = {"records": records, "busy_s": rounded(seconds),
                            "records_per_s": rounded(records / seconds) if seconds else None}
    return out


def _ddb(round_: Round) -> dict[str, Any]:
    """The burst's DynamoDB units, every worker together, and the records they read meanwhile."""
    usage: list[dict[str, Any]] = [s["ddb_burst"] for s in round_.worker_stats.values() if s.get("ddb_burst")]
    if not usage or len(usage) != len(round_.worker_stats):
        return {}
    tables: dict[str, dict[str, float]] = {}
    for one in usage:
        for table, row in one["by_table"].items():
            mine = tables.setdefault(table, {"wcu": 0.0, "rcu": 0.0, "requests": 0})
            for k, v in row.items():
                mine[k] += v
    records = sum(b[2] for b in round_.batches if b[0] >= round_.t0)
    return {"wcu": sum(u["wcu"] for u in usage), "rcu": sum(u["rcu"] for u in usage),
            "requests": sum(u["requests"] for u in usage), "records": records, "by_table": tables}


def _count(items: Iterator[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for item in items:
        counts[item] = counts.get(item, 0) + 1
    return counts


def bench_burst(ranks: int, worker_counts: Sequence[int] = (1, 2), runs: int = 1) -> dict[str, Figure]:
    """``burst.ratio_vs_floor``: the worst ratio (restart decision and last sibling stop) over worker counts."""
    from local.stack import MotoProcess

    rounds: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="gpu-recovery-burst-") as work:
        moto = MotoProcess(Path(work) / "moto.log").start()
        try:
            driver = BurstDriver(moto.endpoint_url, ranks)
            launched = time.perf_counter()
            driver.launch()
            launch_s = time.perf_counter() - launched
            for run in range(runs):
                for n, workers in enumerate(worker_counts):
                    first = (run * len(worker_counts) + n) * ranks // (runs * len(worker_counts) + 1)
                    progress(f"burst: run {run + 1}/{runs}, {workers} worker(s): rank {first} fails first")
                    rounds.append(_measure(driver, driver.run_round(workers, first)))
            job_item = _job_item_bytes(driver)
        finally:
            moto.stop()
    return _figures(rounds, ranks, runs, worker_counts, launch_s, job_item)


def _job_item_bytes(driver: BurstDriver) -> int | None:
    from benchmarks.ddb_capacity import item_size

    found = driver.sim.client("dynamodb").get_item(
        TableName=driver.settings.recovery_table, Key={"pk": {"S": f"job#{JOB}"}, "sk": {"S": "-"}},
        ConsistentRead=True).get("Item")
    return item_size(found) if found else None


def _figures(rounds: list[dict[str, Any]], ranks: int, runs: int, worker_counts: Sequence[int], launch_s: float,
             job_item: int | None) -> dict[str, Figure]:
    ratios = [max(r[m]["ratio"] for m in ("last_sibling_stop", "restart_decision") if r.get(m) and r[m]["ratio"])
              for r in rounds]
    by_workers: dict[str, Any] = {}
    for workers in worker_counts:
        mine = [r for r in rounds if r["workers"] == workers]
        by_workers[str(workers)] = {
            m: _median_of(mine, m) for m in ("last_sibling_stop", "incident_opened", "restart_decision")}
        by_workers[str(workers)]["all_restarted_s"] = _median_of(mine, "all_restarted")
    inputs = {
        "ranks": ranks, "nodes": ranks, "gpus_per_node": 8, "runs": runs, "worker_counts": list(worker_counts),
        "shards": 4, "burst": f"every rank STOPPED (exit 1, NCCL watchdog timeout) in {CHUNKS} PutRecords over "
        f"{BURST_S:g} s, each with its node's GPUs-freed event", "launch_s": rounded(launch_s),
        "server": "moto server in its own process, one request at a time (local.moto_server)",
        "job_item_bytes_after": job_item, "per_round": rounds,
        "all_ok": all(r["ok"] for r in rounds),
        "what": "per round, max(ratio to the last sibling StopTask, ratio to the restart decision); figure = the "
                "median over rounds of the worst; floor = the same AWS calls made bare, sequentially, same server",
    }
    out = figure(ratios, unit="ratio", inputs=inputs, target=TARGET,
                 baseline={"what": "the same AWS calls (StopTask, StartTask, UpdateContainerInstancesState, "
                           "PutAttributes...) made bare one after another on the same server in the same run",
                           "label": "bare calls", **_floor_summary(rounds), "unit": "s"},
                 note="seconds from the first STOPPED record in the stream to the last sibling StopTask and to the "
                      "restart decision, over the floor")
    out["by_workers"] = by_workers
    return {"burst.ratio_vs_floor": out, **_latency_figures(rounds, inputs), **_rate_figure(rounds, inputs),
            **ddb_figures(rounds, ranks, job_item)}


def _latency_figures(rounds: list[dict[str, Any]], common: dict[str, Any]) -> dict[str, Figure]:
    """Decision latency pooled over every round: p50, and p99 over >= 1,000 samples (else the max, so named)."""
    every = [ms for r in rounds for ms in r["decision_latency_ms"]]
    bare = [r["bare_call_ms"] for r in rounds if r.get("bare_call_ms")]
    if not every or not bare:
        raise RuntimeError("burst: no decision was timed")
    name, value = tail(every)
    inputs = {"ranks": common["ranks"], "rounds": len(rounds), "runs": len(rounds), "samples": len(every),
              "worker_counts": common["worker_counts"], "tail_is": name,
              "what": "per DecisionRecorded after the first STOPPED record: ms since the last stimulus before it "
                      "(a PutRecords of the fleet's, or a skip of simulated time that lets a timer fire)"}
    base = baseline("one bare AWS call on the same server (the median of the floor's calls)", bare, "ms",
                    "one bare AWS call")
    p50 = figure([percentile(every, 50)], unit="ms", inputs=inputs, baseline=base)
    p50["ratio_vs_bare_call"] = rounded(p50["value"] / statistics.median(bare))
    high = figure([value], unit="ms", inputs=inputs, target=TARGET_TAIL_MS, baseline=base,
                  note=f"{name} of {len(every)} decisions" + ("" if name == "p99" else " (too few for a p99)"))
    high["stat"] = name
    high["ratio_vs_bare_call"] = rounded(value / statistics.median(bare))
    return {"burst.decision_latency_ms.p50": p50, "burst.decision_latency_ms.tail": high}


def _rate_figure(rounds: list[dict[str, Any]], common: dict[str, Any]) -> dict[str, Figure]:
    """Records/s per worker with the most workers, as a ratio of the one-worker round's (same run, same job)."""
    def rates(workers: int) -> list[float]:
        return [row["records_per_s"] for r in rounds if r["workers"] == workers
                for row in r["records_per_s_by_worker"].values() if row["records_per_s"]]

    most, fewest = max(common["worker_counts"]), min(common["worker_counts"])
    mine, single = rates(most), rates(fewest)
    if not mine or not single:
        raise RuntimeError("burst: no worker read a record after the burst")
    inputs = {"workers": most, "baseline_workers": fewest, "runs": len(mine), "ranks": common["ranks"],
              "by_round": [{"workers": r["workers"], **r["records_per_s_by_worker"]} for r in rounds],
              "what": "records a worker read after the burst over the seconds its polls took (deciding included)"}
    out = figure(mine, unit="records/s", inputs=inputs,
                 baseline=baseline(f"{fewest} worker reading every shard, same burst, same run", single,
                                   "records/s", f"{fewest} worker"))
    out["ratio_vs_one_worker"] = rounded(statistics.median(mine) / statistics.median(single))
    return {"burst.records_per_s_per_worker": out}


# DynamoDB on-demand throughput, US East (N. Virginia), Standard table class: $0.625 per million write request
# units and $0.125 per million read request units, the prices since the 50% reduction of 2024-11-01 (AWS
# What's New, 2024-11-14; https://aws.amazon.com/dynamodb/pricing/on-demand/, read 2026-11-29). A
# transactional write costs 2 units per KB and a strongly consistent read 1 per 4 KB (counted so in
# ``benchmarks.ddb_capacity``).
USD_PER_MILLION_WRU = 0.625
USD_PER_MILLION_RRU = 0.125
PRICE_SOURCE = ("https://aws.amazon.com/dynamodb/pricing/on-demand/ (us-east-1, Standard; the prices since the "
                "2024-11-01 reduction; read 2026-11-29)")
# Llama 3 405B: 419 unexpected interruptions in 54 days on 2,048 nodes (The Llama 3 Herd of Models, 2024, Table 5).
LLAMA3_FAULTS_PER_MONTH = 419 / 54 * 30.4


def ddb_figures(rounds: list[dict[str, Any]], ranks: int, job_item: int | None) -> dict[str, Figure]:
    """Units per event and per recovered fault (the burst is one fault) and the month's bill at the Llama 3 rate.

    Counted on the one-worker rounds: a worker knows the size of every item it wrote before (a write's units
    depend on the larger of before and after); two workers would each miss the other's writes."""
    single = [r["ddb"] for r in rounds if r["workers"] == 1 and r.get("ddb")]
    if not single:
        raise RuntimeError("burst: no DynamoDB usage from a one-worker round")
    wcu_event = [d["wcu"] / d["records"] for d in single]
    rcu_event = [d["rcu"] / d["records"] for d in single]
    wcu_fault, rcu_fault = [d["wcu"] for d in single], [d["rcu"] for d in single]
    usd = [LLAMA3_FAULTS_PER_MONTH * (w * USD_PER_MILLION_WRU + r * USD_PER_MILLION_RRU) / 1e6
           for w, r in zip(wcu_fault, rcu_fault, strict=True)]
    inputs = {"ranks": ranks, "runs": len(single), "per_round": single, "price_source": PRICE_SOURCE,
              "usd_per_million_wru": USD_PER_MILLION_WRU, "usd_per_million_rru": USD_PER_MILLION_RRU,
              "faults_per_month": rounded(LLAMA3_FAULTS_PER_MONTH),
              "what": "the recovery consumer's DynamoDB units (state, ledger, checkpoints, parked) from the first "
                      "STOPPED record until the job runs again, from item sizes (moto's ConsumedCapacity is a "
                      "constant); events = the stream records the worker read meanwhile"}
    per_event = baseline("one write unit per event: a per-event conditional UpdateItem of <= 1 KB (the "
                         "projector benchmark's baseline)", [1.0] * len(single), "WCU/event", "1 WCU per event")
    out = {
        "dynamodb.wcu_per_event": figure(wcu_event, unit="WCU/event", inputs=inputs, baseline=per_event,
                                         note="ratio to the baseline = the value (1 unit per event)"),
        "dynamodb.rcu_per_event": figure(rcu_event, unit="RCU/event", inputs=inputs),
        "dynamodb.wcu_per_fault": figure(wcu_fault, unit="WCU/fault", inputs=inputs,
                                         note=f"one fault = a {ranks}-rank job's burst, stopped and restarted"),
        "dynamodb.rcu_per_fault": figure(rcu_fault, unit="RCU/fault", inputs=inputs),
        "dynamodb.usd_per_month": figure(usd, unit="USD/month", inputs=inputs,
                                         note=f"{LLAMA3_FAULTS_PER_MONTH:.0f} faults a month (Llama 3's rate), each "
                                              f"like this {ranks}-rank burst, at on-demand prices"),
    }
    if job_item is not None:
        out["dynamodb.job_item_bytes"] = figure([float(job_item)], unit="bytes", inputs={"ranks": ranks, "runs": 1},
                                                target=Target("<", 400 * 1024),
                                                note="the job's record after the restart (DynamoDB's item limit: "
                                                     "400 KB)")
    return out


def _median_of(rounds: list[dict[str, Any]], milestone: str) -> dict[str, Any] | None:
    rows = [r[milestone] for r in rounds if r.get(milestone)]
    if not rows:
        return None
    return {key: rounded(statistics.median(row[key] for row in rows)) for key in ("seconds", "floor_s", "ratio")
            if all(row.get(key) is not None for row in rows)} | {"calls": rows[0].get("calls")}


def _floor_summary(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    floors = [r["restart_decision"]["floor_s"] for r in rounds if r.get("restart_decision")]
    if not floors:
        return {"median": None, "min": None, "max": None, "runs": []}
    from benchmarks.stats import summary

    return summary(floors)
