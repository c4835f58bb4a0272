"""The node watcher (``gpu-recovery healthcheck --watch``): an ECS daemon task on every GPU node that tells
the stream when something on the node degrades, before a job dies of it.

It listens for NVML XID events (``XidSource``; ``healthcheck.nvml_events`` is the real one) and every
``watch_interval_s`` asks ``dcgmi health -c -j`` and NVML's counters. It puts one ``GpuHealthSignal`` on the
stream per new degradation, not one per poll: a condition seen by a poll is signalled when it appears, and
again only after it cleared; the same XID on the same GPU is signalled once per ``watch_xid_repeat_s``.
A signal is a reason for a check, never for a repair (DESIGN, principle 9).

``Watcher`` is the pure part (conditions in, signals out); ``run_watch`` is the loop, which runs until
``stop`` is set (the command sets it on SIGTERM) and never lets a failed probe or put end it.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol, TextIO

from consumers.core.ports import StreamWriter
from consumers.core.xid_catalog import classify_xid
from events_schema.envelope import Envelope, Subject, make_envelope
from events_schema.events import GpuHealthSignal, SignalKind
from healthcheck import dcgm, nvml
from healthcheck.config import AgentConfig
from healthcheck.findings import HealthOutcome, HealthReport, NvmlOutcome, NvmlReport
from healthcheck.identity import Identity
from healthcheck.process import Runner

log = logging.getLogger(__name__)
SOURCE = "gpu-recovery/node-watcher"
MAX_PENDING = 500  # signals kept while the stream cannot be reached; the oldest go first (logged)
FELL_OFF_BUS_XID = 79


@dataclass(frozen=True, slots=True)
class XidEvent:
    """One NVML XID event: the XID and the GPU index (None when NVML could not name it)."""

    xid: int
    gpu: int | None
    gpu_instance: int | None = None


class XidSource(Protocol):
    def wait(self, timeout_s: float) -> list[XidEvent]:
        """Block at most ``timeout_s``; the events that came, or none."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Condition:
    """A degradation a poll saw; ``key`` says which one it is, so a repeat is recognised."""

    key: tuple[str, ...]
    kind: SignalKind
    severity: Literal["warn", "fail"]
    detail: str
    gpus: tuple[int, ...] = ()
    xids: tuple[int, ...] = ()


@dataclass
class Watcher:
    """Conditions and XID events in, the signals to send out. No I/O, no clock of its own."""

    node_arn: str
    instance_id: str | None
    xid_repeat_s: float
    active: dict[tuple[str, ...], Condition] = field(default_factory=dict)
    xids_seen: dict[tuple[int, int | None], float] = field(default_factory=dict)

    def on_poll(self, conditions: Iterable[Condition]) -> list[GpuHealthSignal]:
        current = {c.key: c for c in conditions}
        new = [c for key, c in current.items() if key not in self.active]
        self.active = current
        return [self.signal(c) for c in new]

    def on_xids(self, events: Iterable[XidEvent], at: float) -> list[GpuHealthSignal]:
        out = []
        for event in events:
            key = (event.xid, event.gpu)
            last = self.xids_seen.get(key)
            if last is not None and at - last < self.xid_repeat_s:
                continue
            self.xids_seen[key] = at
            out.append(self.signal(xid_condition(event)))
        return out

    def signal(self, condition: Condition) -> GpuHealthSignal:
        return GpuHealthSignal(node_arn=self.node_arn, ec2_instance_id=self.instance_id, kind=condition.kind,
                               severity=condition.severity, xids=list(condition.xids), gpus=list(condition.gpus),
                               detail=condition.detail)


def xid_condition(event: XidEvent) -> Condition:
    advice = classify_xid(event.xid)
    where = f"GPU {event.gpu}" if event.gpu is not None else "a GPU NVML could not name"
    instance = f" (MIG GPU instance {event.gpu_instance})" if event.gpu_instance is not None else ""
    kind: SignalKind = "fell_off_bus" if event.xid == FELL_OFF_BUS_XID else "xid"
    # Application XIDs are recorded, not a reason for a check: the GPU is fine.
    severity: Literal["warn", "fail"] = "warn" if advice.cls == "application" else "fail"
    return Condition(("xid", str(event.xid), str(event.gpu)), kind, severity,
                     f"XID {event.xid} on {where}{instance}: {advice.meaning}",
                     (event.gpu,) if event.gpu is not None else (), (event.xid,))


# ---- what a poll sees (pure) ------------------------------------------------------------------------------
def poll_conditions(health: HealthOutcome, nvml_outcome: NvmlOutcome, baseline_gpus: int | None) -> list[Condition]:
    found: list[Condition] = []
    if isinstance(health, HealthReport):
        found.extend(_health_conditions(health))
    if isinstance(nvml_outcome, NvmlReport):
        found.extend(_nvml_conditions(nvml_outcome, baseline_gpus))
    return found


_SYSTEM_KIND: dict[str, SignalKind] = {"Memory system": "ecc", "Thermal system": "thermal", "Power system": "power"}


def _health_conditions(health: HealthReport) -> Iterable[Condition]:
    for incident in health.incidents:
        kind = _SYSTEM_KIND.get(incident.system, "health_check")
        if kind == "ecc" and "row remap" in incident.message.lower() and "fail" in incident.message.lower():
            kind = "row_remap_failure"
        where = f"GPU {incident.gpu}" if incident.gpu is not None else "the node"
        yield Condition(("health", incident.system, str(incident.gpu), incident.health), kind, incident.health,
                        f"dcgm health {incident.system} {incident.health} on {where}: {incident.message}".rstrip(": "),
                        (incident.gpu,) if incident.gpu is not None else ())


def _nvml_conditions(report: NvmlReport, baseline_gpus: int | None) -> Iterable[Condition]:
    if baseline_gpus is not None and report.device_count < baseline_gpus:
        yield Condition(("gpu_count", str(report.device_count)), "gpu_count_drop", "fail",
                        f"NVML sees {report.device_count} GPU(s), {baseline_gpus} expected")
    for gpu in report.gpus:
        i = (gpu.index,)
        if gpu.lost:
            yield Condition(("lost", str(gpu.index)), "fell_off_bus", "fail", f"GPU {gpu.index} is lost (NVML)", i)
        if gpu.row_remap_failed:
            yield Condition(("row_remap_failed", str(gpu.index)), "row_remap_failure", "fail",
                            f"GPU {gpu.index} row remapping failed (no spare rows left)", i)
        if gpu.uncorrectable_ecc_volatile:
            yield Condition(("ecc", str(gpu.index)), "ecc", "fail",
                            f"GPU {gpu.index} has {gpu.uncorrectable_ecc_volatile} uncorrectable ECC error(s)", i)


# ---- the loop ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class WatchProbes:
    runner: Runner
    nvml: nvml.NvmlApi
    xids: Callable[[], XidSource]
    monotonic: Callable[[], float]
    now: Callable[[], datetime]


@dataclass
class _Outbox:
    writer: Callable[[], StreamWriter] | None
    out: TextIO
    pending: list[Envelope] = field(default_factory=list)
    retry_at: float = 0.0
    backoff_s: float = 1.0

    def add(self, envelope: Envelope) -> None:
        self.out.write(json.dumps(envelope.model_dump(mode="json"), sort_keys=True) + "\n")
        self.out.flush()
        if self.writer is None:
            return
        self.pending.append(envelope)
        if len(self.pending) > MAX_PENDING:
            dropped = self.pending.pop(0)
            log.error("GpuHealthSignal %s dropped: %d signals wait for the stream", dropped.event_id, MAX_PENDING)

    def flush(self, at: float) -> None:
        if self.writer is None or not self.pending or at < self.retry_at:
            return
        try:
            self.writer().append(list(self.pending))
        # Deliberately broad: whatever stops the put, the watcher keeps watching and tries again later.
        except Exception as exc:
            log.error("put of %d GpuHealthSignal(s) failed: %s: %s", len(self.pending), type(exc).__name__, exc)
            self.retry_at, self.backoff_s = at + self.backoff_s, min(60.0, self.backoff_s * 2)
            return
        log.info("%d GpuHealthSignal(s) written", len(self.pending))
        self.pending.clear()
        self.backoff_s = 1.0


def run_watch(config: AgentConfig, probes: WatchProbes, identity: Identity, *, stop: threading.Event,
              writer: Callable[[], StreamWriter] | None, out: TextIO) -> int:
    """Watch until ``stop`` is set; 0 when it ends that way."""
    watcher = Watcher(identity.node_arn, identity.instance_id, config.watch_xid_repeat_s)
    outbox = _Outbox(writer if not config.stdout_only else None, out)
    source = _open_source(probes.xids)
    baseline = config.expected_gpus
    watches_set, next_poll = False, probes.monotonic()
    log.warning("watching %s: dcgmi health every %.0fs, NVML XID events %s", identity.node_arn,
                config.watch_interval_s, "on" if source is not None else "off")
    try:
        while not stop.is_set():
            if probes.monotonic() >= next_poll:
                watches_set, baseline, signals = _poll(config, probes, watcher, watches_set, baseline)
                _emit(signals, identity, probes, outbox)
                next_poll = probes.monotonic() + config.watch_interval_s
            wait_s = max(0.0, min(1.0, next_poll - probes.monotonic()))
            events = source.wait(wait_s) if source is not None else _idle(stop, wait_s)
            _emit(watcher.on_xids(events, probes.monotonic()), identity, probes, outbox)
            outbox.flush(probes.monotonic())
    finally:
        if source is not None:
            source.close()
        outbox.flush(float("inf"))
    log.warning("node watcher stopped")
    return 0


def _poll(config: AgentConfig, probes: WatchProbes, watcher: Watcher, watches_set: bool, baseline: int | None,
          ) -> tuple[bool, int | None, list[GpuHealthSignal]]:
    if not watches_set:
        failed, _took = dcgm.set_health_watches(config.dcgmi, timeout_s=config.health_timeout_s,
                                                runner=probes.runner)
        watches_set = failed is None
        if failed is not None:
            log.error("dcgmi health watches not set (will retry): %s", failed.reason)
    health = dcgm.interpret_health(probes.runner([config.dcgmi, "health", "-c", "-j"], config.health_timeout_s))
    if not isinstance(health, HealthReport):
        log.error("dcgmi health could not tell: %s", health.reason)
        watches_set = False  # a restarted host engine forgets its watches
    counters = nvml.collect(probes.nvml)
    if isinstance(counters, NvmlReport) and baseline is None:
        baseline = counters.device_count
    elif not isinstance(counters, NvmlReport):
        log.error("NVML could not tell: %s", counters.reason)
    return watches_set, baseline, watcher.on_poll(poll_conditions(health, counters, baseline))


def _emit(signals: list[GpuHealthSignal], identity: Identity, probes: WatchProbes, outbox: _Outbox) -> None:
    for signal in signals:
        log.warning("signal %s (%s): %s", signal.kind, signal.severity, signal.detail)
        outbox.add(make_envelope(signal, event_id=str(uuid.uuid4()), time=probes.now(), source=SOURCE,
                                 subject=Subject(node=identity.node_arn)))


def _open_source(factory: Callable[[], XidSource]) -> XidSource | None:
    try:
        return factory()
    except nvml.NvmlUnavailable as exc:
        log.error("no NVML XID events (polling only): %s", exc)
        return None


def _idle(stop: threading.Event, seconds: float) -> list[XidEvent]:
    stop.wait(seconds)
    return []
