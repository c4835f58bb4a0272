"""Run the probes, decide, report: stdout always, the stream unless ``stdout_only``; return the exit code.

Putting the record is retried with backoff; when it still fails the agent exits with the verdict's code
anyway, so the ECS exit code remains a fallback signal (0 node usable, 1 node needs repair, 2 unknown,
3 a setting to change).
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import TextIO

from consumers.core.ports import StreamWriter
from events_schema.envelope import Envelope
from healthcheck import dcgm, kernel_log, nvml
from healthcheck.config import AgentConfig
from healthcheck.findings import Findings, HealthOutcome
from healthcheck.identity import Identity
from healthcheck.process import Runner
from healthcheck.report import build_event
from healthcheck.verdict import Verdict, decide

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Probes:
    """Everything the agent touches outside itself, injected."""

    runner: Runner
    nvml: nvml.NvmlApi
    sleep: Callable[[float], None]
    now: Callable[[], datetime]
    monotonic: Callable[[], float]
    # The zone of the kernel log's local-time stamps (dmesg -T, syslog): the node's own.
    local_tz: tzinfo = UTC


@dataclass(frozen=True)
class Outcome:
    verdict: Verdict
    envelope: Envelope
    published: bool | None  # None: not asked to (stdout only)

    @property
    def exit_code(self) -> int:
        return self.verdict.exit_code


def gather(config: AgentConfig, probes: Probes, *, boot_time: datetime | None = None,
           ) -> tuple[Findings, dict[str, float]]:
    durations: dict[str, float] = {}
    timeout = config.diag_timeout_s or dcgm.DEFAULT_DIAG_TIMEOUT_S[config.level]
    diag, durations["dcgm_diag"] = dcgm.run_diag(config.dcgmi, config.level, timeout_s=timeout,
                                                 runner=probes.runner)
    health: HealthOutcome | None = None
    if not config.skip_health:
        health, durations["dcgm_health"] = dcgm.run_health(
            config.dcgmi, sample_s=config.health_sample_s, timeout_s=config.health_timeout_s,
            runner=probes.runner, sleep=probes.sleep,
        )
    started = probes.monotonic()
    nvml_outcome = nvml.collect(probes.nvml)
    durations["nvml"] = probes.monotonic() - started
    started = probes.monotonic()
    since = config.since - timedelta(seconds=config.since_margin_s) if config.since else None
    # Only this boot's messages, and none older than the look-back before the fault time.
    window = kernel_log.Window(since, boot_time, probes.now(), probes.local_tz)
    if config.kernel_log is not None:
        xids = kernel_log.read_file(config.kernel_log, since=since, window=window)
    else:
        xids = kernel_log.read_kernel(since=since, runner=probes.runner, window=window)
    durations["kernel_log"] = probes.monotonic() - started
    return Findings(config.level, config.expected_gpus, diag, health, nvml_outcome, xids), durations


def run_check(
    config: AgentConfig,
    probes: Probes,
    identity: Identity,
    *,
    writer: Callable[[], StreamWriter] | None,
    out: TextIO,
) -> Outcome:
    started = probes.monotonic()
    findings, durations = gather(config, probes, boot_time=identity.boot_time)
    verdict = decide(findings)
    durations["total"] = probes.monotonic() - started
    envelope = build_event(findings, verdict, identity, durations_s=durations, now=probes.now(),
                           event_id=event_id_for(identity, config.level))
    out.write(json.dumps(envelope.model_dump(mode="json"), sort_keys=True) + "\n")
    out.flush()
    log.warning("verdict %s (action %s, exit %d): %s", verdict.verdict, verdict.action, verdict.exit_code,
                verdict.reason)
    published = None
    if writer is not None and not config.stdout_only:
        published = publish(writer, envelope, attempts=config.put_attempts, sleep=probes.sleep)
    return Outcome(verdict, envelope, published)


def publish(
    writer: Callable[[], StreamWriter],
    envelope: Envelope,
    *,
    attempts: int,
    sleep: Callable[[float], None],
    base_delay_s: float = 1.0,
    max_delay_s: float = 20.0,
) -> bool:
    """Append the event; on any failure wait and try again. Never raises: the exit code must still go out."""
    for attempt in range(1, attempts + 1):
        try:
            sequence = writer().append([envelope])
        # Deliberately broad: whatever stops the put (throttling, no credentials, no route, a bad region),
        # the verdict still leaves as the exit code. Each failure is logged with its type.
        except Exception as exc:
            log.error("put HealthCheckReported failed (attempt %d/%d): %s: %s", attempt, attempts,
                      type(exc).__name__, exc)
            if attempt < attempts:
                sleep(min(max_delay_s, base_delay_s * 2 ** (attempt - 1)))
            continue
        log.info("HealthCheckReported %s written, sequence %s", envelope.event_id, sequence[0])
        return True
    log.error("HealthCheckReported %s not written after %d attempts; the exit code carries the verdict",
              envelope.event_id, attempts)
    return False


def event_id_for(identity: Identity, level: int) -> str:
    """Stable for one check task (a retried put is the same event); random when run by hand."""
    if identity.check_task_arn:
        key = f"healthcheck/{identity.check_task_arn}/{identity.incident_id}/{level}"
        return str(uuid.uuid5(uuid.NAMESPACE_URL, key))
    return str(uuid.uuid4())
