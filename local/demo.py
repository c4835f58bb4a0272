"""``gpu-recovery demo``: the whole pipeline on the embedded local AWS, no account needed.

It plays a scenario (default: XID 48 on one node of a 4-node job) through the real stream, the real
consumers and moto's AWS APIs, with the fleet simulator answering as ECS and EC2 would.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

from gpu_recovery.settings import Settings
from local.embedded_aws import EmbeddedAws
from local.scenario import DEFAULT_SCENARIO, load_scenario
from local.scenario_runner import ScenarioResult, ScenarioRun, Wiring

Say = Callable[[str], None]


@contextlib.contextmanager
def aws_endpoint(settings: Settings, say: Say) -> Iterator[Settings]:
    """Use the configured endpoint, or start the embedded one for the duration."""
    if settings.endpoint_url:
        say(f"using AWS endpoint {settings.endpoint_url}")
        yield settings
        return
    with EmbeddedAws() as aws:
        say(f"started embedded AWS (moto server) on {aws.endpoint_url}")
        yield settings.model_copy(update={"endpoint_url": aws.endpoint_url})


def run_demo(settings: Settings, say: Say, wiring: Wiring, scenario: str = DEFAULT_SCENARIO,
             record: str | Path | None = None) -> ScenarioResult:
    """Play the scenario; ``record``: then write every record of the stream there (``demo --record``)."""
    plan = load_scenario(scenario)
    say(f"scenario {plan.name}: {plan.title}")
    with aws_endpoint(settings, say) as local:
        run = ScenarioRun(plan, local, say, wiring=wiring)
        result = run.run()
        if record is not None:
            say(f"recorded {record_run(run, record):,} stream records to {record}")
        return result


def record_run(run: ScenarioRun, path: str | Path) -> int:
    """Every record of the run's stream, with arrival times on the run's virtual clock."""
    from local.recording import record_stream

    def virtual(arrival: datetime) -> datetime:
        return run.clock.at_wall(arrival.timestamp())

    return record_stream(run.sim_clients.client("kinesis"), run.settings.stream_name, path, arrival=virtual)
