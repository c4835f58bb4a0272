"""The node watcher: one GpuHealthSignal per new degradation (not per poll), from NVML XID events (a fake
source) and `dcgmi health -c -j` (the fake dcgmi replaying a sequence); it runs until told to stop, keeps
going when the stream or a probe fails, exits 0 on SIGTERM, and a bad flag is one line and exit 2."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from consumers.adapters.kinesis import KinesisStreamWriter
from consumers.adapters.kinesis_reader import list_shards, read_shard
from events_schema.decode import decode
from events_schema.envelope import Envelope, OurEvent
from events_schema.events import GpuHealthSignal
from gpu_recovery.cli import main
from healthcheck.config import load_config
from healthcheck.findings import GpuNvml, HealthIncident, HealthReport, Inconclusive, NvmlReport
from healthcheck.identity import Identity
from healthcheck.nvml import NvmlUnavailable
from healthcheck.process import SubprocessRunner
from healthcheck.watch import Condition, Watcher, WatchProbes, XidEvent, poll_conditions, run_watch
from tests.healthcheck.fakes import FAKE_DCGMI_DIR, NODE_ARN, FakeDevice, FakeNvml

ROOT = Path(__file__).resolve().parents[2]
FAKE_DCGMI = str(FAKE_DCGMI_DIR / "dcgmi")


def watcher() -> Watcher:
    return Watcher(NODE_ARN, "i-0123456789abcdef0", xid_repeat_s=3600)


# ---- the pure part ----------------------------------------------------------------------------------------
def test_a_condition_is_signalled_when_it_appears_and_again_only_after_it_cleared() -> None:
    w = watcher()
    ecc = Condition(("ecc", "3"), "ecc", "fail", "GPU 3 has 1 uncorrectable ECC error(s)", (3,))
    polls = [[], [ecc], [ecc], [ecc], [], [ecc]]
    sent = [len(w.on_poll(conditions)) for conditions in polls]
    assert sent == [0, 1, 0, 0, 0, 1]


def test_the_same_xid_on_the_same_gpu_is_one_signal_per_window() -> None:
    w = watcher()
    first = w.on_xids([XidEvent(48, 2), XidEvent(48, 2), XidEvent(48, 5)], at=0.0)
    assert [(s.xids, s.gpus) for s in first] == [([48], [2]), ([48], [5])]
    assert w.on_xids([XidEvent(48, 2)], at=3599.0) == []
    assert len(w.on_xids([XidEvent(48, 2)], at=3600.0)) == 1


def test_xid_signals_carry_kind_and_severity() -> None:
    w = watcher()
    (off,) = w.on_xids([XidEvent(79, 6)], at=0)
    (app,) = w.on_xids([XidEvent(13, 1, gpu_instance=5)], at=0)
    assert (off.kind, off.severity, off.node_arn, off.ec2_instance_id) == \
        ("fell_off_bus", "fail", NODE_ARN, "i-0123456789abcdef0")
    assert (app.kind, app.severity) == ("xid", "warn") and "MIG GPU instance 5" in app.detail


def test_polls_map_health_systems_and_nvml_counters_to_signal_kinds() -> None:
    health = HealthReport("fail", (
        HealthIncident(3, "Memory system", "fail", "GPU 3 had uncorrectable memory errors"),
        HealthIncident(4, "Memory system", "fail", "Row remap failure on GPU 4"),
        HealthIncident(1, "Thermal system", "warn", "GPU 1 thermal violations"),
        HealthIncident(2, "Power system", "fail", "GPU 2 power violations"),
        HealthIncident(0, "PCIe system", "warn", "replays"),
    ))
    nvml = NvmlReport("570", 7, (GpuNvml(5, lost=True), GpuNvml(6, uuid="u", row_remap_failed=True,
                                                                   uncorrectable_ecc_volatile=2)))
    kinds = [(c.kind, c.severity, c.gpus) for c in poll_conditions(health, nvml, baseline_gpus=8)]
    assert kinds == [("ecc", "fail", (3,)), ("row_remap_failure", "fail", (4,)), ("thermal", "warn", (1,)),
                     ("power", "fail", (2,)), ("health_check", "warn", (0,)), ("gpu_count_drop", "fail", ()),
                     ("fell_off_bus", "fail", (5,)), ("row_remap_failure", "fail", (6,)), ("ecc", "fail", (6,))]
    assert poll_conditions(Inconclusive("dcgm_health", "x"), Inconclusive("nvml", "y"), 8) == []


# ---- the loop, with the fake dcgmi and a fake NVML event source on a fake clock ---------------------------
@dataclass
class Clock:
    t: float = 0.0

    def now(self) -> datetime:
        return datetime.fromtimestamp(1_764_324_000 + self.t, UTC)


@dataclass
class FakeXidSource:
    """Time passes only when the watcher waits; ``script`` holds (when, events or an action)."""

    clock: Clock
    stop: threading.Event
    until: float
    script: list[tuple[float, Sequence[XidEvent] | Callable[[], None]]] = field(default_factory=list)
    closed: bool = False

    def wait(self, timeout_s: float) -> list[XidEvent]:
        self.clock.t += max(timeout_s, 0.05)
        due = [item for item in self.script if item[0] <= self.clock.t]
        self.script = [item for item in self.script if item[0] > self.clock.t]
        if self.clock.t >= self.until:
            self.stop.set()
        found: list[XidEvent] = []
        for _when, what in due:
            if callable(what):
                what()
            else:
                found.extend(what)
        return found

    def close(self) -> None:
        self.closed = True


@dataclass
class ListWriter:
    batches: list[list[Envelope]] = field(default_factory=list)
    failures: int = 0

    def append(self, events: Sequence[Envelope]) -> list[str]:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("stream unreachable")
        self.batches.append(list(events))
        return [str(i) for i in range(len(events))]

    @property
    def signals(self) -> list[GpuHealthSignal]:
        found = []
        for batch in self.batches:
            for envelope in batch:
                event = decode(envelope.model_dump_json())
                assert isinstance(event, OurEvent) and isinstance(event.data, GpuHealthSignal)
                found.append(event.data)
        return found


def watch(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, scenario: str, *, until: float,
          script: list[tuple[float, Any]] | None = None, nvml: FakeNvml | None = None,
          writer: Any = None, source_error: bool = False, **settings: Any) -> tuple[int, FakeXidSource, str]:
    monkeypatch.setenv("FAKE_DCGMI_SCENARIO", scenario)
    monkeypatch.setenv("FAKE_DCGMI_STATE", str(tmp_path / "dcgmi-state"))
    config = load_config(**{"dcgmi": FAKE_DCGMI, "watch_interval_s": 60, "stdout_only": writer is None,
                            **settings})
    clock, stop = Clock(), threading.Event()
    source = FakeXidSource(clock, stop, until, list(script or []))

    def factory() -> FakeXidSource:
        if source_error:
            raise NvmlUnavailable("NVML Shared Library Not Found")
        return source

    probes = WatchProbes(runner=SubprocessRunner(grace_s=0.3), nvml=nvml or FakeNvml(), xids=factory,
                         monotonic=lambda: clock.t, now=clock.now)
    out = io.StringIO()
    code = run_watch(config, probes, Identity(NODE_ARN, "i-0123456789abcdef0", None, None), stop=stop,
                     writer=(lambda: writer) if writer is not None else None, out=out)
    return code, source, out.getvalue()


def test_one_signal_per_new_degradation_across_polls_and_xid_events(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # GIVEN dcgmi health answering healthy, Failure, Failure, healthy, Failure on five polls a minute apart,
    # an XID 48 on GPU 2 at 30 s and again at 90 s, and GPU 7 falling out of NVML at 200 s (seen at 240 s)
    nvml = FakeNvml()
    writer = ListWriter()
    script = [(30.0, [XidEvent(48, 2)]), (90.0, [XidEvent(48, 2)]), (200.0, lambda: nvml.devices.pop())]
    # WHEN the watcher runs for five polls
    code, source, printed = watch(monkeypatch, tmp_path, "watch_memory_degrades", until=250.0, script=script,
                                  nvml=nvml, writer=writer)
    # THEN it ended cleanly, closed the NVML source, and sent exactly: the XID once, the memory failure twice
    # (it cleared in between), and the GPU count drop once
    assert code == 0 and source.closed
    sent = [(s.kind, s.severity, s.gpus, s.xids) for s in writer.signals]
    assert sent == [("xid", "fail", [2], [48]), ("ecc", "fail", [3], []), ("ecc", "fail", [3], []),
                    ("gpu_count_drop", "fail", [], [])]
    assert all(s.node_arn == NODE_ARN and s.source == "node-watcher" for s in writer.signals)
    # AND every signal was also printed as a JSON line
    assert printed.count('"type": "GpuHealthSignal"') == 4


def test_the_signals_land_in_the_stream_under_the_nodes_key(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, kinesis: Any
) -> None:
    kinesis.create_stream(StreamName="signals", ShardCount=1)
    watch(monkeypatch, tmp_path, "watch_memory_degrades", until=70.0, writer=KinesisStreamWriter(kinesis, "signals"))
    shard = list_shards(kinesis, "signals")[0]["ShardId"]
    (record,) = [r for batch in read_shard(kinesis, "signals", shard) for r in batch.records]
    event = decode(record.data)
    assert record.partition_key == NODE_ARN
    assert isinstance(event, OurEvent) and isinstance(event.data, GpuHealthSignal) and event.data.kind == "ecc"


def test_a_stream_that_fails_delays_signals_and_loses_none(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    writer = ListWriter(failures=3)
    code, _source, _printed = watch(monkeypatch, tmp_path, "watch_memory_degrades", until=70.0, writer=writer,
                                    script=[(5.0, [XidEvent(79, 4)])])
    assert code == 0 and [s.kind for s in writer.signals] == ["fell_off_bus", "ecc"]


def test_health_watches_lost_are_set_again_and_polling_goes_on(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # GIVEN a host engine that forgot its watches on the first poll
    calls = tmp_path / "calls.jsonl"
    monkeypatch.setenv("FAKE_DCGMI_LOG", str(calls))
    writer = ListWriter()
    watch(monkeypatch, tmp_path, "watch_health_off_then_back", until=70.0, writer=writer)
    # THEN it logged why, set the watches again before the next poll, and the next poll's failure is signalled
    assert "Health watches not enabled" in caplog.text
    asked = [line for line in calls.read_text().splitlines()]
    assert asked == ['["health", "-s", "a"]', '["health", "-c", "-j"]', '["health", "-s", "a"]',
                     '["health", "-c", "-j"]']
    assert [s.kind for s in writer.signals] == ["ecc"]


def test_without_nvml_events_it_still_polls(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # GIVEN no NVML (the library cannot load) and a stop after a moment
    monkeypatch.setenv("FAKE_DCGMI_SCENARIO", "memory_isolate")
    config = load_config(dcgmi=FAKE_DCGMI, watch_interval_s=60, stdout_only=True)
    stop = threading.Event()
    threading.Timer(1.0, stop.set).start()

    def no_source() -> Any:
        raise NvmlUnavailable("NVML Shared Library Not Found")

    probes = WatchProbes(runner=SubprocessRunner(grace_s=0.3), nvml=FakeNvml(missing_library=True), xids=no_source,
                         monotonic=time.monotonic, now=lambda: datetime.now(UTC))
    out = io.StringIO()
    started = time.monotonic()
    code = run_watch(config, probes, Identity(NODE_ARN, None, None, None), stop=stop, writer=None, out=out)
    # THEN the first poll's health failure was reported, and it stopped within a second of being told to
    assert code == 0 and '"kind": "ecc"' in out.getvalue()
    assert time.monotonic() - started < 5


def test_nvml_counters_degrading_between_polls_are_signalled_once(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    nvml = FakeNvml()
    writer = ListWriter()

    def spoil() -> None:
        nvml.devices[1] = FakeDevice(1, ecc=2, remap=(False, True))

    watch(monkeypatch, tmp_path, "all_pass", until=190.0, script=[(30.0, spoil)], nvml=nvml, writer=writer)
    assert [(s.kind, s.gpus) for s in writer.signals] == [("row_remap_failure", [1]), ("ecc", [1])]


# ---- the command ------------------------------------------------------------------------------------------
def test_sigterm_ends_the_watcher_cleanly_with_exit_0(tmp_path: Path) -> None:
    # GIVEN the watcher running as the daemon task would, printing only (no NVIDIA driver on this machine)
    env = {**os.environ, "FAKE_DCGMI_SCENARIO": "memory_isolate", "FAKE_DCGMI_STATE": str(tmp_path / "s"),
           "PYTHONUNBUFFERED": "1"}
    env.pop("ECS_CONTAINER_METADATA_URI_V4", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "gpu_recovery.cli", "healthcheck", "--watch", "--interval-s", "1", "--stdout-only",
         "--node-arn", NODE_ARN, "--dcgmi", FAKE_DCGMI],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()  # the first poll's signal
        assert '"GpuHealthSignal"' in first
        # WHEN ECS stops the task
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    # THEN it stopped on its own, exit 0, saying so
    assert code == 0
    assert "node watcher stopped" in (proc.stderr.read() if proc.stderr else "")


@pytest.mark.parametrize("value", ["0", "soon", "100000"])
def test_a_bad_interval_is_one_line_and_exit_2(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["healthcheck", "--watch", "--interval-s", value])
    err = capsys.readouterr().err
    assert stopped.value.code == 2
    assert err.count("\n") == 1 and err.startswith("gpu-recovery: error: argument --interval-s:")


def test_a_bad_interval_in_the_environment_is_one_line_and_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GPU_RECOVERY_WATCH_INTERVAL_S", "0")
    assert main(["healthcheck", "--watch", "--stdout-only"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "GPU_RECOVERY_WATCH_INTERVAL_S" in err and err.startswith("gpu-recovery: error:")
