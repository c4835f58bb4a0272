"""``gpu-recovery node release NODE``: ask recovery to return an out-of-service node to service, through a check.

NODE may be a container instance ARN, its id (the ARN's last part), or the node's EC2 / managed instance id;
it is resolved to the container instance ARN in the cluster (DescribeContainerInstances, or
ListContainerInstances filtered by ``ec2InstanceId``). The command appends an ``OperatorRequested`` event to
the stream and returns; the recovery consumer acts on it (docs/operations.md).
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from gpu_recovery.commands.common import add_aws_options, fail, settings_from
from gpu_recovery.commands.operator import add_reason_option

if TYPE_CHECKING:
    from mypy_boto3_ecs import ECSClient

# What ECS accepts (the ECS API reference's ContainerInstance and EC2's instance ids): an ARN in the old
# (no cluster) or the new (cluster/id) format, a bare id, an EC2 id (8 or 17 hex), an SSM managed-instance id.
CONTAINER_INSTANCE_ARN = re.compile(
    r"^arn:aws[a-z-]*:ecs:[a-z0-9-]+:\d{12}:container-instance/(?:[A-Za-z0-9_-]{1,255}/)?([A-Za-z0-9-]{1,64})$")
INSTANCE_ID = re.compile(r"^(?:i-(?:[0-9a-f]{8}|[0-9a-f]{17})|mi-[0-9a-f]{17})$")
CONTAINER_INSTANCE_ID = re.compile(r"^[A-Za-z0-9-]{1,64}$")
DESCRIBE_BATCH = 100  # DescribeContainerInstances takes at most 100 per call
SHAPES = "a container instance ARN, its id, or an EC2 / managed instance id"
STATE_ATTRIBUTE = "gpu-recovery.state"  # where recovery mirrors a node's repair state (README, notifications)


@dataclass(frozen=True)
class NodeRef:
    """NODE as typed, and which kind of name it is."""

    text: str
    kind: Literal["arn", "id", "instance"]


@dataclass(frozen=True)
class FoundNode:
    arn: str
    instance_id: str | None
    status: str  # ACTIVE, DRAINING, ...
    repair_state: str | None  # the gpu-recovery.state attribute recovery mirrors onto the node


class NodeNotFound(Exception):
    pass


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "node", help="people in the loop: release a quarantined node (through a check)",
        description="Requests to recovery about a node; each is an event on the stream (docs/operations.md).",
    )
    actions = parser.add_subparsers(dest="node_action", required=True, metavar="ACTION")
    release = actions.add_parser(
        "release", help="return a quarantined, misconfigured or replaced node to service, through a check",
        description="Appends an OperatorRequested event (release_node) to the stream. The recovery consumer "
        "then runs a DCGM check on the node; it returns to service only if the check passes. A node in "
        "service is left as it is. Nothing is returned to service without a passing check.",
    )
    release.add_argument("node", type=node_ref, metavar="NODE", help=SHAPES)
    add_reason_option(release)
    release.add_argument("--cluster", metavar="NAME", help="the node's cluster (or ECS_CLUSTER_NAME)")
    add_aws_options(release)
    release.set_defaults(handler=run_release)


def node_ref(text: str) -> NodeRef:
    """An argparse type: NODE in one of the shapes ECS knows, or a usage error that names them."""
    value = text.strip()
    if value.startswith("arn:"):
        if CONTAINER_INSTANCE_ARN.match(value) is None:
            raise argparse.ArgumentTypeError(f"{text!r} is not a container instance ARN "
                                             "(arn:aws:ecs:REGION:ACCOUNT:container-instance/CLUSTER/ID)")
        return NodeRef(value, "arn")
    if INSTANCE_ID.match(value):
        return NodeRef(value, "instance")
    if CONTAINER_INSTANCE_ID.match(value):
        return NodeRef(value, "id")
    raise argparse.ArgumentTypeError(f"{text!r} is not {SHAPES}")


def run_release(args: argparse.Namespace) -> int:
    from botocore.exceptions import BotoCoreError, ClientError

    from consumers.core.errors import TransientError
    from gpu_recovery.aws import AwsClients
    from gpu_recovery.commands.operator import aws_refused

    settings = settings_from(args, cluster_name=args.cluster)
    clients = AwsClients(settings)
    try:
        node = resolve_node(clients.client("ecs"), settings.cluster_name, args.node)
        return _release(settings, clients, node, args.reason)
    except NodeNotFound as exc:
        return fail(str(exc), f"give {SHAPES} of a node in cluster {settings.cluster_name}, or set --cluster / "
                    "ECS_CLUSTER_NAME; aws ecs list-container-instances lists them")
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ClusterNotFoundException":
            return fail(f"no cluster {settings.cluster_name} in {settings.region}",
                        "set --cluster / ECS_CLUSTER_NAME to the node's cluster, and --region to its region")
        return aws_refused(exc)
    except (BotoCoreError, TransientError) as exc:
        return aws_refused(exc)


def _release(settings: Any, clients: Any, node: FoundNode, reason: str) -> int:
    from events_schema.arn import short_arn
    from events_schema.events import OperatorRequested
    from gpu_recovery.commands.operator import append, caller, request_event, say_who, sent_lines, utc_now

    who = caller(clients)
    say_who(who)
    data = OperatorRequested(request="release_node", node_arn=node.arn, requested_by=who.name, reason=reason)
    envelope = request_event(data, now=utc_now())
    sequence = append(settings, envelope)
    instance = f", instance {node.instance_id}" if node.instance_id else ""
    print(f"asked recovery to release node {node.arn} (cluster {settings.cluster_name}{instance})")
    for line in sent_lines(envelope, sequence, settings, who, reason):
        print(line)
    print(f"  ECS shows it {node.status}, gpu-recovery.state={node.repair_state or '(none)'}")
    print("The recovery consumer acts on it: it runs a health check (DCGM) on the node first, and the node returns "
          "to service only if the check passes; a failed check keeps it out, with a notification. A node already "
          "in service is left as it is.")
    print(f"Follow it: gpu-recovery audit --node {short_arn(node.arn)}")
    return 0


# --- finding the node ---------------------------------------------------------------------------------


def resolve_node(ecs: ECSClient, cluster: str, ref: NodeRef) -> FoundNode:
    """The container instance NODE names in the cluster (ACTIVE or DRAINING, as ECS lists them)."""
    if ref.kind == "instance":
        found = [c for c in _describe(ecs, cluster, _listed_for_instance(ecs, cluster, ref.text))
                 if c.get("ec2InstanceId") == ref.text]
    else:
        found = [c for c in _describe(ecs, cluster, [ref.text]) if _named(c["containerInstanceArn"], ref)]
    if not found:
        raise NodeNotFound(f"node {ref.text} is not in cluster {cluster}")
    if len(found) > 1:  # one instance registered twice (a re-registration not yet deregistered)
        arns = ", ".join(sorted(c["containerInstanceArn"] for c in found))
        raise NodeNotFound(f"instance {ref.text} is registered more than once in cluster {cluster}: {arns}")
    return _found(found[0])


def _listed_for_instance(ecs: ECSClient, cluster: str, instance_id: str) -> list[str]:
    """ECS narrows the list by the cluster query language; the caller still checks each answer's id."""
    arns: list[str] = []
    for page in ecs.get_paginator("list_container_instances").paginate(
            cluster=cluster, filter=f"ec2InstanceId == {instance_id}"):
        arns += page.get("containerInstanceArns", [])
    return arns


def _describe(ecs: ECSClient, cluster: str, names: list[str]) -> list[dict[str, Any]]:
    described: list[dict[str, Any]] = []
    for start in range(0, len(names), DESCRIBE_BATCH):
        batch = names[start:start + DESCRIBE_BATCH]
        answer = ecs.describe_container_instances(cluster=cluster, containerInstances=batch)
        described += [dict(c) for c in answer.get("containerInstances", [])]
    return described


def _named(arn: str, ref: NodeRef) -> bool:
    """The described instance is the one NODE names: same ARN (an ARN naming another cluster is not ours),
    or same id (an old-format ARN, without the cluster, names the id alone)."""
    same_id = arn.rsplit("/", 1)[-1] == ref.text.rsplit("/", 1)[-1]
    if ref.kind == "arn":
        return arn == ref.text or (ref.text.count("/") == 1 and same_id)
    return same_id


def _found(instance: dict[str, Any]) -> FoundNode:
    state = next((a.get("value") for a in instance.get("attributes", []) if a.get("name") == STATE_ATTRIBUTE), None)
    return FoundNode(arn=str(instance["containerInstanceArn"]), instance_id=instance.get("ec2InstanceId"),
                     status=str(instance.get("status", "?")), repair_state=state)
