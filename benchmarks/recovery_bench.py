"""Recovery on the embedded setup, in wall-clock time: decision latency and the pipeline's own time in
an incident.

Scenarios run with the local runner (``local.scenario_runner.ScenarioRun``): the fleet simulator, the
local EventBridge, the projector and the recovery consumer on one virtual clock, against a fresh embedded
AWS each. Only time is simulated (the DCGM run, the reboot, the back-off); every record, table write and
AWS call is real, so the wall time of the consumers is the pipeline's own cost.

* Decision latency: for every decision whose AWS call was made, from the moment the record that caused
  it was in the stream (the PutRecord(s) call that wrote it returned) to the moment the actuator's first
  AWS call for it is issued (botocore ``before-call``). The cause is followed back through our own events'
  ``causation_id`` (decision <- outcome <- decision ...) to the first record that the recovery consumer
  did not write itself: an ECS event put by the local EventBridge, or a health report put by the check.
  Decisions whose chain starts at a deadline the consumer noticed itself (``DeadlineExpired``, e.g. the
  restart back-off) are counted apart: their "event in the stream" is written by the consumer and acted
  on at once.
* Incident overhead (scenario 2): between the fault and the recovery recording the job RUNNING again,
  the wall time spent inside the consumers: the projector's and the recovery's polls of the stream
  (reading, deciding, writing tables, recording, acting) and the recovery's idle ticks. The simulator's
  own work (emitting ECS events, playing DCGM and the reboot, advancing the virtual clock) is not counted.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast
from unittest import mock

from benchmarks.stats import TAIL_MIN_SAMPLES, Figure, Target, figure, percentile, progress, rounded, tail

if TYPE_CHECKING:
    from boto3.session import Session

    from gpu_recovery.settings import Settings

if TYPE_CHECKING:
    from consumers.runtime.local_reader import LocalReader

LATENCY_SCENARIOS = ("01-xid79-quarantine", "02-xid48-reboot", "10-breaker")
OVERHEAD_SCENARIO = "02-xid48-reboot"
TARGET_TAIL_MS = Target("<", 1000)  # was set for the p99; held to the max while a round is too small for one
TARGET_OVERHEAD_S = Target("<", 5)
_STREAM_WRITES = ("PutRecord", "PutRecords")


@dataclass
class Timeline:
    """What went into the stream and which AWS calls were made, with wall-clock times."""

    external: dict[str, float] = field(default_factory=dict)  # event id -> first time it was in the stream
    ours: dict[str, tuple[float, str, str | None]] = field(default_factory=dict)  # id -> (time, type, cause)
    decisions: dict[str, str] = field(default_factory=dict)  # idempotency key -> decision event id
    calls: dict[str, tuple[float, str]] = field(default_factory=dict)  # key -> (time, operation), first call
    current_key: Callable[[], str | None] = lambda: None

    def hook(self, session: Session, *, recovery: bool) -> None:
        for operation in _STREAM_WRITES:
            session.events.register(f"before-parameter-build.kinesis.{operation}", self._stash)
            session.events.register(f"after-call.kinesis.{operation}",
                                    self._written_by_recovery if recovery else self._written_by_fleet)
        if recovery:
            session.events.register("before-call.*.*", self._call)

    def _stash(self, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["bench_records"] = [params["Data"]] if "Data" in params else [r["Data"] for r in params["Records"]]

    def _records(self, context: dict[str, Any]) -> Iterator[dict[str, Any]]:
        for data in context.get("bench_records", ()):
            yield json.loads(data)

    def _written_by_fleet(self, context: dict[str, Any], **_: Any) -> None:
        now = time.perf_counter()
        for record in self._records(context):
            self.external.setdefault(str(record.get("id") or record.get("event_id")), now)

    def _written_by_recovery(self, context: dict[str, Any], **_: Any) -> None:
        now = time.perf_counter()
        for record in self._records(context):
            event_id = str(record["event_id"])
            self.ours.setdefault(event_id, (now, record["type"], record.get("causation_id")))
            if record["type"] == "DecisionRecorded":
                self.decisions.setdefault(record["data"]["idempotency_key"], event_id)

    def _call(self, model: Any, **_: Any) -> None:
        key = self.current_key()
        if key is None or model.service_model.service_name in ("dynamodb", "kinesis"):
            return
        self.calls.setdefault(key, (time.perf_counter(), model.name))

    def latencies(self) -> tuple[list[float], list[float], int]:
        """Milliseconds from the triggering record to the call: (from ECS events and health reports,
        from the consumer's own deadlines, calls whose cause could not be traced)."""
        external, deadline, untraced = [], [], 0
        for key, (called, _) in self.calls.items():
            cause = self.decisions.get(key)
            origin: float | None = None
            while cause is not None and cause in self.ours:
                written, kind, parent = self.ours[cause]
                if parent is None:
                    origin = written if kind == "DeadlineExpired" else None
                    break
                cause = parent
            if cause is not None and cause in self.external:
                external.append((called - self.external[cause]) * 1000)
            elif origin is not None:
                deadline.append((called - origin) * 1000)
            else:
                untraced += 1
        return external, deadline, untraced


STEP_KINDS = ("polls_with_records", "empty_polls", "idle_ticks")


@dataclass
class Overhead:
    """Wall time inside the consumers between the fault and the job running again (scenario 2), by kind
    of step: stream polls that delivered records, polls that found none, the recovery's idle ticks."""

    parts: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STEP_KINDS, 0.0))
    fault_at: float | None = None
    recovered_at: float | None = None
    _step_started: float | None = None

    @property
    def active(self) -> bool:
        return self.fault_at is not None and self.recovered_at is None

    def begin_step(self) -> None:
        self._step_started = time.perf_counter()

    def end_step(self, kind: str) -> None:
        if self.active and self._step_started is not None:
            self.parts[kind] += time.perf_counter() - self._step_started
        self._step_started = None

    def fault(self) -> None:
        if self.fault_at is None:
            self.fault_at = time.perf_counter()

    def recovered(self) -> None:
        """Called inside the recovery's poll that records the job RUNNING: that poll counts up to here."""
        if self.active:
            self.end_step("polls_with_records")
            self.recovered_at = time.perf_counter()

    @property
    def seconds(self) -> float | None:
        return sum(self.parts.values()) if self.recovered_at is not None else None

    @property
    def window_s(self) -> float | None:
        if self.fault_at is None or self.recovered_at is None:
            return None
        return self.recovered_at - self.fault_at


class _TimedPoll:
    def __init__(self, inner: Any, overhead: Overhead) -> None:
        self._inner = inner
        self._overhead = overhead

    def poll(self) -> int:
        self._overhead.begin_step()
        delivered = 0
        try:
            delivered = int(self._inner.poll())
            return delivered
        finally:
            self._overhead.end_step("polls_with_records" if delivered else "empty_polls")


def _measured_run_class() -> type[Any]:
    from local.scenario_runner import ScenarioRun

    class MeasuredRun(ScenarioRun):
        """The runner, timing its consumers and noting the fault and the job's recovery."""

        overhead: Overhead

        def _setup(self) -> None:
            super()._setup()
            self.projector_reader = cast("LocalReader", _TimedPoll(self.projector_reader, self.overhead))

        def _guard(self, step: Callable[[], int | None]) -> int:  # the recovery's polls and idle ticks
            self.overhead.begin_step()
            moved = 0
            try:
                moved = int(super()._guard(step))
                return moved
            finally:
                idle = step == self.recovery.on_idle
                self.overhead.end_step("idle_ticks" if idle else "polls_with_records" if moved else "empty_polls")

        def _inject(self, fault: Any) -> None:
            self.overhead.fault()
            super()._inject(fault)

        def _narrate(self, envelope: Any) -> None:
            if envelope.type == "JobStateChanged" and envelope.data.get("state") == "RUNNING":
                self.overhead.recovered()
            super()._narrate(envelope)

    return MeasuredRun


@dataclass
class ScenarioSample:
    scenario: str
    ok: bool
    wall_s: float
    virtual_s: float
    external_ms: list[float]
    deadline_ms: list[float]
    untraced: int
    overhead_s: float | None
    overhead_window_s: float | None
    overhead_parts: dict[str, float]


def run_scenario(name: str, server: str = "process") -> ScenarioSample:
    """One scenario on a fresh embedded AWS, with its timeline and consumer time."""
    from benchmarks.server import embedded_aws
    from gpu_recovery import wiring
    from gpu_recovery.aws import AwsClients
    from gpu_recovery.settings import load_settings
    from local.scenario import load_scenario

    timeline, overhead = Timeline(), Overhead()

    class HookedClients(AwsClients):
        def __init__(self, settings: Settings, *, session: Session | None = None) -> None:
            super().__init__(settings, session=session)
            timeline.hook(self.session, recovery=session is not None)  # the runner gives recovery its session

    run_class = _measured_run_class()
    with embedded_aws(server) as endpoint, mock.patch("local.scenario_runner.AwsClients", HookedClients):
        run = run_class(load_scenario(name), load_settings(endpoint_url=endpoint), lambda _line: None,
                        wiring=wiring)
        run.overhead = overhead
        timeline.current_key = lambda: run.calls.current_key
        started = time.perf_counter()
        result = run.run()
        wall = time.perf_counter() - started
    external, deadline, untraced = timeline.latencies()
    return ScenarioSample(name, result.ok, wall, result.virtual_seconds, external, deadline, untraced,
                          overhead.seconds, overhead.window_s, dict(overhead.parts))


def bench_recovery(rounds: int = 2, scenarios: tuple[str, ...] = LATENCY_SCENARIOS,
                   server: str = "process") -> dict[str, Figure]:
    """``recovery.decision_latency_ms.p50``/``.max`` and ``recovery.incident_overhead_s``.

    A round has tens of decisions, far from the 1,000 a p99 needs: its tail is reported as what it is,
    the round's slowest decision (``stats.tail``)."""
    samples: list[ScenarioSample] = []
    for round_ in range(rounds):
        for name in scenarios:
            progress(f"recovery: round {round_ + 1}/{rounds}: scenario {name} on a fresh embedded AWS")
            samples.append(run_scenario(name, server))
    by_round = [samples[i:i + len(scenarios)] for i in range(0, len(samples), len(scenarios))]
    p50s, maxima, counts = [], [], []
    for round_samples in by_round:
        pooled = [ms for s in round_samples for ms in s.external_ms]
        if pooled:
            p50s.append(percentile(pooled, 50))
            maxima.append(max(pooled))
            counts.append(len(pooled))
    every = [ms for s in samples for ms in s.external_ms]
    deadline = [ms for s in samples for ms in s.deadline_ms]
    inputs: dict[str, Any] = {
        "scenarios": list(scenarios), "rounds": rounds,
        "server": f"EmbeddedAws (moto server on 127.0.0.1) in a {'child process' if server == 'process' else 'thread'}",
        "decisions_timed": len(every), "untraced_calls": sum(s.untraced for s in samples),
        "scenarios_ok": all(s.ok for s in samples),
        "per_run": [{"scenario": s.scenario, "ok": s.ok, "wall_s": rounded(s.wall_s), "virtual_s": s.virtual_s,
                     "decisions": len(s.external_ms),
                     "max_ms": rounded(max(s.external_ms)) if s.external_ms else None} for s in samples],
        "what": "per round, the p50 and the slowest decision over every decision of every scenario (a p99 "
                f"needs {TAIL_MIN_SAMPLES:,} samples; a round has far fewer); figure = median over rounds",
    }
    pooled_stats: dict[str, Any] = {}
    if every:
        name, value = tail(every)  # a p99 only once the pooled rounds reach 1,000 samples
        pooled_stats = {"p50": rounded(percentile(every, 50)), name: rounded(value), "max": rounded(max(every)),
                        "samples": len(every)}
    deadline_stats = ({"p50": rounded(percentile(deadline, 50)), "max": rounded(max(deadline)),
                       "samples": len(deadline)} if deadline else {})
    figures: dict[str, Figure] = {}
    if p50s:
        figures["recovery.decision_latency_ms.p50"] = figure(p50s, unit="ms", inputs=inputs,
                                                             note="ECS event or health report in the stream -> "
                                                             "the actuator's AWS call issued")
        figures["recovery.decision_latency_ms.max"] = figure(
            maxima, unit="ms", inputs=inputs, target=TARGET_TAIL_MS,
            note=f"per round, the slowest of {min(counts)}..{max(counts)} decisions (too few for a p99, which "
            f"needs {TAIL_MIN_SAMPLES:,}); figure = median over rounds")
        figures["recovery.decision_latency_ms.max"]["samples_per_round"] = counts
        for key in ("recovery.decision_latency_ms.p50", "recovery.decision_latency_ms.max"):
            figures[key]["all_rounds_pooled"] = pooled_stats
            figures[key]["triggered_by_own_deadlines_ms"] = deadline_stats
    overheads = [s for s in samples if s.scenario == OVERHEAD_SCENARIO and s.overhead_s is not None]
    if overheads:
        figures["recovery.incident_overhead_s"] = figure(
            [s.overhead_s for s in overheads if s.overhead_s is not None], unit="s", target=TARGET_OVERHEAD_S,
            inputs={"scenario": OVERHEAD_SCENARIO, "runs": len(overheads),
                    "window_wall_s": [rounded(s.overhead_window_s or 0) for s in overheads],
                    "by_step_s": [{k: rounded(v) for k, v in s.overhead_parts.items()} for s in overheads],
                    "virtual_s": overheads[0].virtual_s,
                    "what": "wall time inside the projector's and the recovery's polls and idle ticks, from the "
                    "fault to the recovery recording the job RUNNING; DCGM, the reboot and back-off are virtual"},
        )
    return figures
