"""Scenario runs on a fresh embedded AWS each, kept open so tests can look at what AWS holds."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from gpu_recovery import wiring
from gpu_recovery.settings import load_settings
from local.embedded_aws import EmbeddedAws
from local.scenario import load_scenario
from local.scenario_runner import ScenarioResult, ScenarioRun


@contextmanager
def scenario_run(name: str, fault: Callable[[str, str | None], None] | None = None,
                 lines: list[str] | None = None) -> Iterator[tuple[ScenarioRun, ScenarioResult]]:
    sink: list[str] = lines if lines is not None else []
    with EmbeddedAws() as aws:
        settings = load_settings(endpoint_url=aws.endpoint_url)
        kwargs: dict[str, Any] = {"fault": fault} if fault else {}
        run = ScenarioRun(load_scenario(name), settings, sink.append, wiring=wiring, **kwargs)
        result = run.run()
        yield run, result
