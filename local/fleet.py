"""The ECS fleet simulator: GPU container instances and multi-node jobs on moto's ECS, and the events
real ECS would emit for them (``detail.version`` increments, exit codes, agent connection changes).

moto keeps the resources (cluster, instances, task definitions, tasks, tags); this class plays the
ECS control plane and agents that moto does not, and emits their events through the local bridge.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from consumers.core.clocktext import iso
from local.clock import VirtualClock

Emit = Callable[[Sequence[dict[str, Any]]], object]
TRAINING_FAMILY = "llm-train"


@dataclass
class SimNode:
    name: str
    instance_id: str
    arn: str
    gpu_ids: list[str]
    instance_type: str
    version: int = 1
    agent_connected: bool = True
    status: str = "ACTIVE"
    attributes: dict[str, str] = field(default_factory=dict)
    registered_at: str = ""
    booted_at: str = ""
    # GPUs given to running tasks (ECS's remainingResources is what is left).
    gpus_used: dict[str, int] = field(default_factory=dict)

    @property
    def external(self) -> bool:
        return self.instance_id.startswith("mi-")

    @property
    def gpus_free(self) -> int:
        return len(self.gpu_ids) - sum(self.gpus_used.values())


@dataclass
class SimTask:
    arn: str
    node_arn: str | None
    task_definition_arn: str
    group: str | None
    started_by: str | None
    overrides: dict[str, Any]
    gpu_ids: list[str]
    tags: list[dict[str, str]]
    created_at: str
    version: int = 1
    last_status: str = "PROVISIONING"
    desired_status: str = "RUNNING"
    exit_code: int | None = None
    container_reason: str | None = None
    stop_code: str | None = None
    stopped_reason: str | None = None
    started_at: str | None = None
    stopped_at: str | None = None
    gpus: int = 0


class FleetSimulator:
    def __init__(
        self,
        ecs: Any,
        ec2: Any,
        clock: VirtualClock,
        emit: Emit,
        *,
        cluster_name: str,
        account_id: str,
        region: str,
    ) -> None:
        self.ecs = ecs
        self.ec2 = ec2
        self.clock = clock
        self.emit = emit
        self.cluster_name = cluster_name
        self.account_id = account_id
        self.region = region
        self.cluster_arn = f"arn:aws:ecs:{region}:{account_id}:cluster/{cluster_name}"
        self.asg_instances: set[str] = set()
        self.nodes: dict[str, SimNode] = {}
        self.tasks: dict[str, SimTask] = {}
        self.events_emitted = 0
        self._health_events = 0

    # --- nodes ----------------------------------------------------------------------------------

    def add_nodes(self, count: int, *, instance_type: str = "p4d.24xlarge", gpus: int = 8,
                  prefix: str = "gpu-node", external: frozenset[str] = frozenset()) -> list[SimNode]:
        added = []
        for _ in range(count):
            index = len(self.nodes) + 1
            reservation = self.ec2.run_instances(
                ImageId="ami-12c6146b", MinCount=1, MaxCount=1, InstanceType=instance_type,
                TagSpecifications=[{"ResourceType": "instance", "Tags": [
                    {"Key": "gpu-recovery:cluster", "Value": self.cluster_name},
                    {"Key": "Name", "Value": f"{prefix}-{index}"},
                ]}],
            )
            instance_id = reservation["Instances"][0]["InstanceId"]
            document = json.dumps({"instanceId": instance_id, "region": self.region,
                                   "instanceType": instance_type, "accountId": self.account_id})
            registered = self.ecs.register_container_instance(
                cluster=self.cluster_name, instanceIdentityDocument=document,
            )["containerInstance"]
            if f"{prefix}-{index}" in external:
                # An ECS Anywhere node reports its SSM managed-instance id (moto needs an EC2 one to register).
                instance_id = f"mi-{uuid.uuid5(uuid.NAMESPACE_URL, f'{prefix}-{index}').hex[:17]}"
            node = SimNode(
                name=f"{prefix}-{index}", instance_id=instance_id, arn=registered["containerInstanceArn"],
                gpu_ids=[f"GPU-{uuid.uuid5(uuid.NAMESPACE_URL, f'{instance_id}/{g}')}" for g in range(gpus)],
                instance_type=instance_type, registered_at=iso(self.clock.now()),
                booted_at=iso(self.clock.now() - timedelta(days=1)),
                attributes={"ecs.instance-type": instance_type, "ecs.os-type": "linux"},
            )
            self.nodes[node.arn] = node
            added.append(node)
        self.emit([self.node_event(node) for node in added])
        return added

    def join_auto_scaling_group(self, autoscaling: Any, nodes: Sequence[SimNode], name: str = "gpu-nodes") -> None:
        """Put the nodes' instances in one Auto Scaling group, so a replaced node gets a successor."""
        autoscaling.create_launch_configuration(LaunchConfigurationName=name, ImageId="ami-12c6146b",
                                                InstanceType=nodes[0].instance_type)
        autoscaling.create_auto_scaling_group(
            AutoScalingGroupName=name, LaunchConfigurationName=name, MinSize=0, MaxSize=len(nodes) * 2,
            DesiredCapacity=0, AvailabilityZones=[f"{self.region}a"],
            Tags=[{"Key": "gpu-recovery:cluster", "Value": self.cluster_name, "PropagateAtLaunch": True}],
        )
        members = [n.instance_id for n in nodes if not n.external]
        autoscaling.attach_instances(InstanceIds=members, AutoScalingGroupName=name)
        self.asg_instances.update(members)

    def in_auto_scaling_group(self, instance_id: str) -> bool:
        return instance_id in self.asg_instances

    def node_by_name(self, name: str) -> SimNode:
        return next(node for node in self.nodes.values() if node.name == name)

    def launch_job(self, job_id: str, nodes: Sequence[SimNode], family: str, tags: list[dict[str, str]],
                   gpus: int) -> list[SimTask]:
        """A training job as a launcher starts it: one rank per node (RANK, WORLD_SIZE), group = the job,
        through PROVISIONING to RUNNING."""
        task_definition = self.register_training_family(family, gpus=gpus)
        tasks = self.start_tasks(
            task_definition, nodes, group=job_id, started_by="trainer-launcher", tags=tags, gpus=gpus,
            overrides_for=lambda rank: {"containerOverrides": [{"name": "trainer", "environment": [
                {"name": "RANK", "value": str(rank)}, {"name": "WORLD_SIZE", "value": str(len(nodes))}]}]},
        )
        self.emit([self.advance_task(task, "PROVISIONING") for task in tasks])
        self.run_to_running(tasks)
        return tasks

    def set_node(self, node: SimNode, **changes: Any) -> None:
        for key, value in changes.items():
            setattr(node, key, value)
        node.version += 1
        self.emit([self.node_event(node)])

    # --- tasks ----------------------------------------------------------------------------------

    def register_training_family(self, family: str = TRAINING_FAMILY, gpus: int = 8) -> str:
        response = self.ecs.register_task_definition(
            family=family,
            containerDefinitions=[{
                "name": "trainer", "image": "public.ecr.aws/example/llm-train:latest", "memory": 4096,
                "essential": True, "resourceRequirements": [{"type": "GPU", "value": str(gpus)}],
            }],
        )
        return str(response["taskDefinition"]["taskDefinitionArn"])

    def start_tasks(
        self,
        task_definition_arn: str,
        nodes: Sequence[SimNode],
        *,
        group: str | None,
        started_by: str | None,
        overrides_for: Callable[[int], dict[str, Any]] | None = None,
        tags: list[dict[str, str]] | None = None,
        gpus: int | None = None,
    ) -> list[SimTask]:
        """Start one task per node through moto's StartTask, as a user's launcher would."""
        started = []
        for rank, node in enumerate(nodes):
            overrides = overrides_for(rank) if overrides_for else {}
            kwargs: dict[str, Any] = {
                "cluster": self.cluster_name, "taskDefinition": task_definition_arn,
                "containerInstances": [node.arn], "overrides": overrides,
            }
            if group:
                kwargs["group"] = group
            if started_by:
                kwargs["startedBy"] = started_by
            if tags:
                kwargs["tags"] = tags
            response = self.ecs.start_task(**kwargs)
            started.append(self.track_task(response["tasks"][0]["taskArn"], node, task_definition_arn,
                                           group, started_by, overrides, tags or [], gpus=gpus))
        return started

    def track_task(self, arn: str, node: SimNode | None, task_definition_arn: str, group: str | None,
                   started_by: str | None, overrides: dict[str, Any], tags: list[dict[str, str]],
                   gpus: int | None = None) -> SimTask:
        count = len(node.gpu_ids) if node and gpus is None else (gpus or 0)
        task = SimTask(
            arn=arn, node_arn=node.arn if node else None, task_definition_arn=task_definition_arn,
            group=group, started_by=started_by, overrides=overrides,
            gpu_ids=[str(g) for g in range(count)], tags=tags, created_at=iso(self.clock.now()), gpus=count,
        )
        self.tasks[arn] = task
        if node is not None and count:
            # ECS gives the task its GPUs at placement and says so in a container-instance event.
            node.gpus_used[arn] = count
            node.version += 1
            self.emit([self.node_event(node)])
        return task

    def release_gpus(self, task: SimTask) -> None:
        node = self.nodes.get(task.node_arn or "")
        if node is not None and node.gpus_used.pop(task.arn, 0):
            node.version += 1
            self.emit([self.node_event(node)])

    def advance_task(self, task: SimTask, status: str, **changes: Any) -> dict[str, Any]:
        """Move a task to a status, bump its version, and return the event ECS emits for it."""
        task.last_status = status
        for key, value in changes.items():
            setattr(task, key, value)
        now = iso(self.clock.now())
        if status == "RUNNING" and task.started_at is None:
            task.started_at = now
        if status == "STOPPED":
            task.desired_status = "STOPPED"
            task.stopped_at = task.stopped_at or now
        task.version += 1
        event = self.task_event(task)
        if status == "STOPPED":
            self.release_gpus(task)
        return event

    def run_to_running(self, tasks: Sequence[SimTask]) -> None:
        for status in ("PENDING", "RUNNING"):
            self.clock.advance(1)
            self.emit([self.advance_task(task, status) for task in tasks])

    # --- the events ECS emits ------------------------------------------------------------------

    def _envelope(self, detail_type: str, resource: str, detail: dict[str, Any]) -> dict[str, Any]:
        self.events_emitted += 1
        return {
            "version": "0",
            "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{resource}/{detail.get('version')}/{detail_type}")),
            "detail-type": detail_type,
            "source": "aws.ecs",
            "account": self.account_id,
            "time": self.clock.now().strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": self.region,
            "resources": [resource],
            "detail": detail,
        }

    def task_event(self, task: SimTask) -> dict[str, Any]:
        container: dict[str, Any] = {
            "containerArn": f"{task.arn.replace(':task/', ':container/')}/trainer",
            "lastStatus": task.last_status if task.last_status in ("RUNNING", "STOPPED") else "PENDING",
            "name": "trainer",
            "taskArn": task.arn,
            "gpuIds": task.gpu_ids,
            "cpu": "0",
            "memory": "4096",
        }
        if task.exit_code is not None:
            container["exitCode"] = task.exit_code
        if task.container_reason:
            container["reason"] = task.container_reason
        detail: dict[str, Any] = {
            "attachments": [],
            "attributes": [{"name": "ecs.cpu-architecture", "value": "x86_64"}],
            "availabilityZone": f"{self.region}a",
            "clusterArn": self.cluster_arn,
            "containers": [container],
            "createdAt": task.created_at,
            "desiredStatus": task.desired_status,
            "lastStatus": task.last_status,
            "launchType": "EXTERNAL" if self._external(task) else "EC2",
            "overrides": task.overrides or {"containerOverrides": [{"name": "trainer"}]},
            "taskArn": task.arn,
            "taskDefinitionArn": task.task_definition_arn,
            "updatedAt": iso(self.clock.now()),
            "version": task.version,
        }
        if task.node_arn:
            detail["containerInstanceArn"] = task.node_arn
        for key, value in (("group", task.group), ("startedBy", task.started_by),
                           ("startedAt", task.started_at), ("stoppedAt", task.stopped_at),
                           ("stopCode", task.stop_code), ("stoppedReason", task.stopped_reason)):
            if value is not None:
                detail[key] = value
        return self._envelope("ECS Task State Change", task.arn, detail)

    def health_event(self, node: SimNode, check: str, status: str) -> dict[str, Any]:
        """An ECS container instance health change (the agent's own checks, e.g. ACCELERATED_COMPUTE)."""
        now = iso(self.clock.now())
        self._health_events += 1
        detail = {
            "clusterArn": self.cluster_arn, "containerInstanceArn": node.arn, "ec2InstanceId": node.instance_id,
            "overallStatus": status,
            "healthChecks": [{"type": check, "status": status, "lastUpdated": now, "lastStatusChange": now}],
        }
        event = self._envelope("ECS Container Instance Health Change", node.arn, detail)
        event["id"] = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{node.arn}/health/{self._health_events}"))
        return event

    def scheduled_change_event(self, node: SimNode, code: str, start: datetime, end: datetime | None) -> dict[str, Any]:
        """An AWS Health event for an EC2 scheduled change on the node's instance (as the docs show it)."""
        def health_time(moment: datetime) -> str:
            return moment.strftime("%a, %d %b %Y %H:%M:%S GMT")

        event_arn = f"arn:aws:health:{self.region}::event/EC2/{code}/{code}_{uuid.uuid4().hex[:12]}"
        detail: dict[str, Any] = {
            "eventArn": event_arn, "service": "EC2", "eventTypeCode": code, "eventTypeCategory": "scheduledChange",
            "eventScopeCode": "ACCOUNT_SPECIFIC", "startTime": health_time(start), "statusCode": "upcoming",
            "lastUpdatedTime": health_time(self.clock.now()), "eventRegion": self.region,
            "eventDescription": [{"language": "en_US", "latestDescription": f"Scheduled {code} for your instance."}],
            "affectedEntities": [{"entityValue": node.instance_id, "status": "PENDING"}],
            "affectedAccount": self.account_id,
        }
        if end is not None:
            detail["endTime"] = health_time(end)
        return {"version": "0", "id": str(uuid.uuid4()), "detail-type": "AWS Health Event", "source": "aws.health",
                "account": self.account_id, "time": self.clock.now().strftime("%Y-%m-%dT%H:%M:%SZ"),
                "region": self.region, "resources": [node.instance_id], "detail": detail}

    def instance_state_event(self, node: SimNode, state: str) -> dict[str, Any]:
        return {"version": "0", "id": str(uuid.uuid4()), "detail-type": "EC2 Instance State-change Notification",
                "source": "aws.ec2", "account": self.account_id,
                "time": self.clock.now().strftime("%Y-%m-%dT%H:%M:%SZ"), "region": self.region,
                "resources": [f"arn:aws:ec2:{self.region}:{self.account_id}:instance/{node.instance_id}"],
                "detail": {"instance-id": node.instance_id, "state": state}}

    def node_event(self, node: SimNode) -> dict[str, Any]:
        detail = {
            "agentConnected": node.agent_connected,
            "attributes": [{"name": k, "value": v} for k, v in sorted(node.attributes.items())],
            "clusterArn": self.cluster_arn,
            "containerInstanceArn": node.arn,
            "ec2InstanceId": node.instance_id,
            "registeredResources": [
                {"name": "CPU", "type": "INTEGER", "integerValue": 98304},
                {"name": "MEMORY", "type": "INTEGER", "integerValue": 1143552},
                {"name": "GPU", "type": "STRINGSET", "stringSetValue": node.gpu_ids},
            ],
            "remainingResources": [
                {"name": "GPU", "type": "STRINGSET", "stringSetValue": node.gpu_ids[sum(node.gpus_used.values()):]},
            ],
            "registeredAt": node.registered_at,
            "status": node.status,
            "updatedAt": iso(self.clock.now()),
            "version": node.version,
            "versionInfo": {"agentVersion": "1.89.0", "dockerVersion": "DockerVersion: 25.0.8"},
        }
        return self._envelope("ECS Container Instance State Change", node.arn, detail)

    def _external(self, task: SimTask) -> bool:
        node = self.nodes.get(task.node_arn or "")
        return bool(node and node.external)
