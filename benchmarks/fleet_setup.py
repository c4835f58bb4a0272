"""A fleet and its jobs on the embedded AWS for the scale benchmarks: thousands of GPU nodes in moto's
EC2 and ECS, and jobs launched on them, with the ECS events real ECS would emit (``local.fleet``).

``local.fleet.FleetSimulator.add_nodes`` makes one RunInstances call per node (~60 ms each on moto);
``add_nodes_bulk`` makes one for all of them, then registers each container instance, and fills in the
simulator's nodes as ``add_nodes`` does. Clocks: ``SharedClock`` is wall time plus an offset that several
processes share, so a simulated wait (a DCGM run, a back-off) can be skipped by all at once.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from consumers.core.clocktext import iso
from local.clock import VirtualClock

if TYPE_CHECKING:
    from local.fleet import FleetSimulator, SimNode, SimTask

INSTANCE_TYPE = "p4d.24xlarge"
RUN_INSTANCES_CHUNK = 500


class SharedClock(VirtualClock):
    """Wall-clock time plus an offset held in ``offset`` (a ``multiprocessing.Value('d')`` or anything with
    a ``value``): every process that reads the same offset sees the same time, and advancing it skips
    simulated time for all of them."""

    def __init__(self, offset: Any) -> None:
        super().__init__()
        self._offset = offset

    def now(self) -> datetime:
        return datetime.now(UTC) + timedelta(seconds=float(self._offset.value))

    def advance(self, seconds: float) -> datetime:
        self._offset.value = float(self._offset.value) + max(0.0, seconds)
        return self.now()

    def advance_to(self, moment: datetime) -> datetime:
        return self.advance((moment - self.now()).total_seconds())


class Offset:
    """An offset for one process (``SharedClock`` reads ``.value``)."""

    def __init__(self) -> None:
        self.value = 0.0


def add_nodes_bulk(fleet: FleetSimulator, count: int, *, gpus: int = 8, prefix: str = "gpu-node",
                   progress: Callable[[str], None] = lambda _: None) -> list[SimNode]:
    """``count`` GPU container instances: RunInstances in chunks, then RegisterContainerInstance each."""
    from local.fleet import SimNode

    instance_ids: list[str] = []
    for start in range(0, count, RUN_INSTANCES_CHUNK):
        size = min(RUN_INSTANCES_CHUNK, count - start)
        reservation = fleet.ec2.run_instances(
            ImageId="ami-12c6146b", MinCount=size, MaxCount=size, InstanceType=INSTANCE_TYPE,
            TagSpecifications=[{"ResourceType": "instance", "Tags": [
                {"Key": "gpu-recovery:cluster", "Value": fleet.cluster_name}]}])
        instance_ids += [i["InstanceId"] for i in reservation["Instances"]]
        progress(f"{len(instance_ids)}/{count} instances")
    added: list[SimNode] = []
    for instance_id in instance_ids:
        document = json.dumps({"instanceId": instance_id, "region": fleet.region, "instanceType": INSTANCE_TYPE,
                               "accountId": fleet.account_id})
        registered = fleet.ecs.register_container_instance(cluster=fleet.cluster_name,
                                                          instanceIdentityDocument=document)["containerInstance"]
        name = f"{prefix}-{len(fleet.nodes) + 1}"
        node = SimNode(
            name=name, instance_id=instance_id, arn=registered["containerInstanceArn"],
            gpu_ids=[f"GPU-{uuid.uuid5(uuid.NAMESPACE_URL, f'{instance_id}/{g}')}" for g in range(gpus)],
            instance_type=INSTANCE_TYPE, registered_at=iso(fleet.clock.now()),
            booted_at=iso(fleet.clock.now() - timedelta(days=1)),
            attributes={"ecs.instance-type": INSTANCE_TYPE, "ecs.os-type": "linux"},
        )
        fleet.nodes[node.arn] = node
        added.append(node)
        if len(added) % 500 == 0:
            progress(f"{len(added)}/{count} container instances registered")
    fleet.emit([fleet.node_event(node) for node in added])
    return added


def launch_job(fleet: FleetSimulator, job_id: str, nodes: Sequence[SimNode], *, gpus: int = 8,
               family: str = "llm-train") -> list[SimTask]:
    """One rank per node, started through moto's StartTask as a launcher would, then PROVISIONING,
    PENDING and RUNNING (as ``local.scenario_runner`` launches a scenario's jobs)."""
    task_definition = fleet.register_training_family(family, gpus=gpus)
    tasks = fleet.start_tasks(
        task_definition, nodes, group=job_id, started_by="trainer-launcher", gpus=gpus,
        tags=[{"key": "team", "value": "foundation-models"}],
        overrides_for=lambda rank: {"containerOverrides": [{"name": "trainer", "environment": [
            {"name": "RANK", "value": str(rank)}, {"name": "WORLD_SIZE", "value": str(len(nodes))}]}]},
    )
    fleet.emit([fleet.advance_task(task, "PROVISIONING") for task in tasks])
    fleet.run_to_running(tasks)
    return tasks


def chunked_emit(put: Callable[[Sequence[dict[str, Any]]], object], size: int = 500) -> Callable[
        [Sequence[dict[str, Any]]], int]:
    """An emit function that hands the bridge at most ``size`` events at a time (PutRecords takes 500)."""

    def emit(events: Sequence[dict[str, Any]]) -> int:
        for start in range(0, len(events), size):
            put(events[start:start + size])
        return len(events)

    return emit


def wait_until(condition: Callable[[], bool], *, timeout: float, what: str, interval: float = 0.05) -> float:
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"{what}: not within {timeout:.0f} s")
        time.sleep(interval)
    return time.monotonic() - started
