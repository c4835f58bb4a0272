"""``gpu-recovery demo``: the whole pipeline on the embedded local AWS, no account needed."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from consumers.adapters.dynamodb import DynamoParkingLot, DynamoProjectionStore
from consumers.core.projection import JOB, NODE, TASK
from gpu_recovery.aws import AwsClients
from gpu_recovery.settings import Settings
from gpu_recovery.wiring import PROJECTOR_APP, bridge, build_projector, local_reader
from local.clock import VirtualClock
from local.embedded_aws import EmbeddedAws
from local.fleet import FleetSimulator
from local.provision import provision

Say = Callable[[str], None]


@dataclass
class DemoResult:
    endpoint_url: str
    events: int
    tables: dict[str, list[dict[str, Any]]]
    parked: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    def as_json(self) -> dict[str, Any]:
        return {
            "endpoint_url": self.endpoint_url,
            "events": self.events,
            "tables": self.tables,
            "parked": self.parked,
            "seconds": round(self.seconds, 3),
        }


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


def run_demo(settings: Settings, say: Say) -> DemoResult:
    started = time.monotonic()
    with aws_endpoint(settings, say) as local:
        clients = AwsClients(local)
        provisioned = provision(clients)
        say(f"created stream {provisioned.stream_name} ({local.stream_shards} shards), tables and topic")
        clock = VirtualClock()
        ingest = bridge(clients)
        fleet = FleetSimulator(
            clients.client("ecs"), clients.client("ec2"), clock, ingest.publish,
            cluster_name=local.cluster_name, account_id=local.account_id, region=local.region,
        )
        nodes = fleet.add_nodes(4)
        say(f"registered {len(nodes)} GPU container instances: {', '.join(n.name for n in nodes)}")
        family = fleet.register_training_family()
        tasks = fleet.start_tasks(
            family, nodes, group="job:llama-70b-run-42", started_by="trainer-launcher",
            overrides_for=lambda rank: {"containerOverrides": [{"name": "trainer", "environment": [
                {"name": "RANK", "value": str(rank)}, {"name": "WORLD_SIZE", "value": str(len(nodes))}]}]},
            tags=[{"key": "team", "value": "foundation-models"}, {"key": "run", "value": "42"}],
        )
        fleet.emit([fleet.advance_task(task, "PROVISIONING") for task in tasks])
        fleet.run_to_running(tasks)
        say(f"launched job job:llama-70b-run-42: {len(tasks)} ranks RUNNING; "
            f"{ingest.delivered} events sent through the local EventBridge rules")
        projector = build_projector(clients)
        reader = local_reader(clients, PROJECTOR_APP, projector)
        consumed = reader.run_until_idle()
        reader.shutdown()
        say(f"projector consumed {consumed} records in {projector.stats.batches} batches, "
            f"wrote {projector.stats.items_written} items, parked {projector.stats.parked}")
        store = DynamoProjectionStore(clients.client("dynamodb"), local.projection_tables())
        tables = {table: list(store.scan_table(table)) for table in (TASK, JOB, NODE)}
        parked = DynamoParkingLot(clients.client("dynamodb"), local.parked_table).list()
        return DemoResult(
            endpoint_url=local.endpoint_url or "", events=ingest.delivered, tables=tables,
            parked=[{k: v for k, v in p.items() if k != "data_b64"} for p in parked],
            seconds=time.monotonic() - started,
        )
