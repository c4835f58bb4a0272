"""The fake dcgmi on PATH, and a ready-made agent run against it."""

from __future__ import annotations

import io
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from consumers.core.ports import StreamWriter
from events_schema.decode import decode
from events_schema.envelope import OurEvent
from events_schema.events import HealthCheckReported
from healthcheck.agent import Outcome, Probes, run_check
from healthcheck.config import load_config
from healthcheck.identity import Identity
from healthcheck.process import SubprocessRunner
from tests.healthcheck.fakes import FAKE_DCGMI_DIR, KERNEL, NODE_ARN, NOW, TASK_ARN, FakeNvml


@dataclass
class Run:
    outcome: Outcome
    stdout: str
    event: OurEvent
    sleeps: list[float] = field(default_factory=list)

    @property
    def report(self) -> HealthCheckReported:
        assert isinstance(self.event.data, HealthCheckReported)
        return self.event.data


@pytest.fixture
def dcgmi_calls(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Callable[[], list[list[str]]]:
    """Puts the fake dcgmi first on PATH; returns a reader of the argument lists it was called with."""
    monkeypatch.setenv("PATH", f"{FAKE_DCGMI_DIR}{os.pathsep}{os.environ.get('PATH', '')}")
    log = tmp_path / "dcgmi-calls.jsonl"
    monkeypatch.setenv("FAKE_DCGMI_LOG", str(log))

    def calls() -> list[list[str]]:
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

    return calls


CheckFn = Callable[..., Run]


@pytest.fixture
def check(dcgmi_calls: Callable[[], list[list[str]]], monkeypatch: pytest.MonkeyPatch) -> CheckFn:
    def run(
        scenario: str,
        *,
        nvml: FakeNvml | None = None,
        kernel: str = "clean.log",
        writer: Callable[[], StreamWriter] | None = None,
        identity: dict[str, Any] | None = None,
        **settings: Any,
    ) -> Run:
        monkeypatch.setenv("FAKE_DCGMI_SCENARIO", scenario)
        config = load_config(**{"dcgmi": "dcgmi", "kernel_log": KERNEL / kernel, "expected_gpus": 8,
                                "health_sample_s": 0, "kill_grace_s": 0.3, "incident_id": "inc-7",
                                "stdout_only": writer is None, "put_attempts": 3, **settings})
        sleeps: list[float] = []
        probes = Probes(runner=SubprocessRunner(grace_s=config.kill_grace_s), nvml=nvml or FakeNvml(),
                        sleep=sleeps.append, now=lambda: NOW, monotonic=time.monotonic)
        who = Identity(NODE_ARN, "i-0123456789abcdef0", TASK_ARN, config.incident_id, **(identity or {}))
        out = io.StringIO()
        outcome = run_check(config, probes, who, writer=writer, out=out)
        event = decode(out.getvalue())
        assert isinstance(event, OurEvent)
        return Run(outcome, out.getvalue(), event, [s for s in sleeps if s > 0])

    return run
