"""The cluster-wide limits, kept in one record changed with conditional writes (no lock):

* the repair breaker: at most ``breaker_fraction`` of the GPU nodes in repair at once (at least one);
* the out-of-service cap: nodes in repair + quarantined + replaced awaiting a successor never exceed
  max(``min_out_of_service_nodes``, ``max_out_of_service_fraction`` x GPU nodes);
* who waits: incidents for a repair slot, jobs for capacity, each in the order they started waiting.
"""

from __future__ import annotations

from typing import Literal

from consumers.core.recovery.context import Ctx
from consumers.core.recovery.model import Node
from consumers.core.recovery.view import FLEET_KEY

Refusal = Literal["breaker_open", "out_of_service_cap"]


def refusal(ctx: Ctx, node_arn: str) -> Refusal | None:
    """Why a node may not enter repair now (None: it may)."""
    fleet = ctx.view.fleet()
    if node_arn in fleet.in_repair:
        return None
    if len(fleet.in_repair) >= ctx.config.breaker_limit(fleet.gpu_nodes):
        return "breaker_open"
    if node_arn not in fleet.out_of_service and len(fleet.out_of_service) >= ctx.config.out_of_service_cap(
            fleet.gpu_nodes):
        return "out_of_service_cap"
    return None


def enter_repair(ctx: Ctx, node_arn: str, incident_id: str) -> None:
    fleet = ctx.view.fleet()
    _add(fleet.in_repair, node_arn)
    _add(fleet.out_of_service, node_arn)
    if incident_id in fleet.waiting_repair:
        fleet.waiting_repair.remove(incident_id)
    ctx.view.touch(FLEET_KEY, "plan")


def leave_repair(ctx: Ctx, node_arn: str, *, back_in_service: bool) -> None:
    fleet = ctx.view.fleet()
    if node_arn in fleet.in_repair:
        fleet.in_repair.remove(node_arn)
    if back_in_service and node_arn in fleet.out_of_service:
        fleet.out_of_service.remove(node_arn)
    ctx.view.touch(FLEET_KEY, "plan")
    ctx.mark(FLEET_KEY)  # a repair slot, and maybe capacity, freed


def back_in_service(ctx: Ctx, node_arn: str) -> None:
    leave_repair(ctx, node_arn, back_in_service=True)


def replaced(ctx: Ctx, node_arn: str) -> None:
    """Out of service until a successor registers."""
    fleet = ctx.view.fleet()
    _add(fleet.replaced, node_arn)
    ctx.view.touch(FLEET_KEY, "plan")


def successor_registered(ctx: Ctx) -> None:
    fleet = ctx.view.fleet()
    if fleet.replaced:
        gone = fleet.replaced.pop(0)
        if gone in fleet.out_of_service:
            fleet.out_of_service.remove(gone)
        ctx.view.touch(FLEET_KEY, "plan")
        ctx.mark(FLEET_KEY)


def wait_for_repair(ctx: Ctx, incident_id: str) -> None:
    fleet = ctx.view.fleet()
    if incident_id not in fleet.waiting_repair:
        fleet.waiting_repair.append(incident_id)
        ctx.view.touch(FLEET_KEY, "plan")


def forget_incident(ctx: Ctx, incident_id: str) -> None:
    fleet = ctx.view.fleet()
    if incident_id in fleet.waiting_repair:
        fleet.waiting_repair.remove(incident_id)
        ctx.view.touch(FLEET_KEY, "plan")


def wait_for_capacity(ctx: Ctx, job_id: str) -> None:
    fleet = ctx.view.fleet()
    if job_id not in fleet.waiting_capacity:
        fleet.waiting_capacity.append(job_id)
        ctx.view.touch(FLEET_KEY, "plan")


def count_node(ctx: Ctx, node: Node) -> bool:
    """Keep the count of GPU nodes (the base of both limits) in step with the node; True if it is new."""
    if node.facts.gpu_node == node.plan.counted:
        return False
    fleet = ctx.view.fleet()
    fleet.gpu_nodes += 1 if node.facts.gpu_node else -1
    node.plan.counted = node.facts.gpu_node
    ctx.view.touch(FLEET_KEY, "plan")
    ctx.changed(("node", node.arn))
    return node.facts.gpu_node


def reconcile(ctx: Ctx) -> None:
    """Capacity or a repair slot may have freed: let the waiting ones try again, in order."""
    fleet = ctx.view.fleet()
    for incident_id in list(fleet.waiting_repair):
        ctx.mark(("incident", incident_id))
    for job_id in list(fleet.waiting_capacity):
        ctx.mark(("job", job_id))


def _add(names: list[str], name: str) -> None:
    if name not in names:
        names.append(name)
