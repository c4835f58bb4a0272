"""An in-process model of the AWS APIs the fleet simulator and the recovery actuator call, for runs
that moto cannot carry in reasonable time (``gpu-recovery simulate --engine core``: 2,048 nodes for months).

It answers the calls that ``local.fleet.FleetSimulator`` makes to set up a fleet (RunInstances,
RegisterContainerInstance, RegisterTaskDefinition, StartTask, ...) and the calls ``AwsActuator`` makes
for recovery's commands (StopTask, StartTask, UpdateContainerInstancesState, PutAttributes,
ListTagsForResource, RebootInstances, SendCommand, TerminateInstanceInAutoScalingGroup, Publish), with the
same answers moto gives plus what ``local.ecs_semantics`` adds on the embedded stack: a StartTask on a
node without enough free GPUs places nothing (``RESOURCE:GPU``), and a terminate of an instance that is in
no Auto Scaling group is refused (``ValidationError``). The recovery's changing calls are written to the
same ``CallLog`` as the botocore hook writes them, so ``ReactiveFleet.react`` answers them unchanged.

Ids are counters, not random: the same run gives the same ARNs.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError

from events_schema.aws import family_of
from local.call_log import CHANGING, Call, CallLog


class MemoryAws:
    """One account and region; ``client(service)`` returns that service's API as plain method calls.

    ``recording()`` gives a client factory whose changing calls go to ``calls`` (the recovery's session);
    ``client`` itself records nothing (the simulator's own session)."""

    def __init__(self, *, region: str, account_id: str, cluster_name: str, calls: CallLog,
                 free_gpus: Callable[[str], int | None], family_gpus: Callable[[str], int],
                 in_auto_scaling_group: Callable[[str], bool]) -> None:
        self.region = region
        self.account_id = account_id
        self.cluster_name = cluster_name
        self.calls = calls
        self._free_gpus = free_gpus
        self._family_gpus = family_gpus
        self._in_auto_scaling_group = in_auto_scaling_group
        self._ids = itertools.count(1)
        self.revisions: dict[str, int] = {}
        self.tags: dict[str, list[dict[str, str]]] = {}
        self.refused: list[tuple[str, str]] = []  # (container instance, why): StartTasks that found no room
        self.published = 0

    def _id(self, width: int) -> str:
        return f"{next(self._ids):0{width}x}"

    def client(self, service: str, retries: bool = True) -> _Client:
        return _Client(self, service, record=False)

    def recording(self) -> Callable[..., _Client]:
        def factory(service: str, retries: bool = True) -> _Client:
            return _Client(self, service, record=True)

        return factory

    # --- ECS -------------------------------------------------------------------------------------------

    def RegisterTaskDefinition(self, family: str, **_: Any) -> dict[str, Any]:
        revision = self.revisions.get(family, 0) + 1
        self.revisions[family] = revision
        return {"taskDefinition": {"taskDefinitionArn": self._task_definition_arn(family, revision),
                                   "family": family, "revision": revision}}

    def _task_definition_arn(self, family: str, revision: int) -> str:
        return f"arn:aws:ecs:{self.region}:{self.account_id}:task-definition/{family}:{revision}"

    def _resolve(self, task_definition: str) -> str:
        """A family, family:revision or ARN, as ECS resolves it (a bare family: its latest revision)."""
        if task_definition.startswith("arn:"):
            return task_definition
        family, _, revision = task_definition.partition(":")
        return self._task_definition_arn(family, int(revision) if revision else self.revisions.get(family, 1))

    def RegisterContainerInstance(self, instanceIdentityDocument: str, **_: Any) -> dict[str, Any]:
        document = json.loads(instanceIdentityDocument)
        arn = f"arn:aws:ecs:{self.region}:{self.account_id}:container-instance/{self.cluster_name}/{self._id(32)}"
        return {"containerInstance": {"containerInstanceArn": arn, "ec2InstanceId": document.get("instanceId")}}

    def StartTask(self, taskDefinition: str, containerInstances: list[str], tags: Any = None,
                  **_: Any) -> dict[str, Any]:
        instance = containerInstances[0]
        td_arn = self._resolve(taskDefinition)
        free = self._free_gpus(instance)
        if free is not None and free < self._family_gpus(family_of(td_arn)):
            self.refused.append((instance, "RESOURCE:GPU"))
            return {"tasks": [], "failures": [{"arn": instance, "reason": "RESOURCE:GPU"}]}
        arn = f"arn:aws:ecs:{self.region}:{self.account_id}:task/{self.cluster_name}/{self._id(32)}"
        self.tags[arn] = list(tags or [])
        return {"tasks": [{"taskArn": arn, "taskDefinitionArn": td_arn, "containerInstanceArn": instance}],
                "failures": []}

    def StopTask(self, task: str, **_: Any) -> dict[str, Any]:
        return {"task": {"taskArn": task, "desiredStatus": "STOPPED"}}

    def UpdateContainerInstancesState(self, containerInstances: list[str], status: str,
                                      **_: Any) -> dict[str, Any]:
        return {"containerInstances": [{"containerInstanceArn": arn, "status": status} for arn in containerInstances],
                "failures": []}

    def PutAttributes(self, attributes: list[dict[str, Any]], **_: Any) -> dict[str, Any]:
        return {"attributes": attributes}

    def ListTagsForResource(self, resourceArn: str, **_: Any) -> dict[str, Any]:
        if resourceArn not in self.tags:
            raise _error("ListTagsForResource", "InvalidParameterException", "The specified task is not found.")
        return {"tags": list(self.tags[resourceArn])}

    def CreateCluster(self, clusterName: str, **_: Any) -> dict[str, Any]:
        return {"cluster": {"clusterArn": f"arn:aws:ecs:{self.region}:{self.account_id}:cluster/{clusterName}"}}

    # --- EC2, SSM, Auto Scaling, SNS ----------------------------------------------------------------

    def RunInstances(self, **_: Any) -> dict[str, Any]:
        return {"Instances": [{"InstanceId": f"i-{self._id(17)}"}]}

    def RebootInstances(self, **_: Any) -> dict[str, Any]:
        return {}

    def SendCommand(self, **_: Any) -> dict[str, Any]:
        return {"Command": {"CommandId": f"{self._id(8)}-0000-4000-8000-{self._id(12)}"}}

    def TerminateInstanceInAutoScalingGroup(self, InstanceId: str, **_: Any) -> dict[str, Any]:
        if not self._in_auto_scaling_group(InstanceId):
            raise _error("TerminateInstanceInAutoScalingGroup", "ValidationError",
                         f"Instance Id not found - No managed instance found for instance ID: {InstanceId}")
        return {"Activity": {"ActivityId": self._id(32), "StatusCode": "InProgress"}}

    def CreateLaunchConfiguration(self, **_: Any) -> dict[str, Any]:
        return {}

    def CreateAutoScalingGroup(self, **_: Any) -> dict[str, Any]:
        return {}

    def AttachInstances(self, **_: Any) -> dict[str, Any]:
        return {}

    def Publish(self, **_: Any) -> dict[str, Any]:
        self.published += 1
        return {"MessageId": f"{self._id(8)}-0000-4000-8000-{self._id(12)}"}


class _Client:
    """boto3's snake_case methods, answered by ``MemoryAws``; a recording client logs changing calls."""

    def __init__(self, aws: MemoryAws, service: str, *, record: bool) -> None:
        self._aws = aws
        self._service = service
        self._record = record

    def __getattr__(self, name: str) -> Callable[..., dict[str, Any]]:
        operation = "".join(part.capitalize() for part in name.split("_"))
        handler = getattr(self._aws, operation, None)
        if handler is None or name.startswith("_"):
            raise AttributeError(f"{self._service}.{name} is not modelled in memory (local.memory_aws)")
        return lambda **params: self._call(operation, handler, params)

    def _call(self, operation: str, handler: Callable[..., dict[str, Any]], params: dict[str, Any]) -> dict[str, Any]:
        try:
            response = handler(**params)
        except ClientError:
            self._log(operation, params, {}, ok=False)
            raise
        self._log(operation, params, response, ok=True)
        return response

    def _log(self, operation: str, params: dict[str, Any], response: dict[str, Any], *, ok: bool) -> None:
        if self._record and operation in CHANGING:
            log = self._aws.calls
            log.calls.append(Call(self._service, operation, dict(params), dict(response), ok, log.current_key))


def _error(operation: str, code: str, message: str) -> ClientError:
    response: Any = {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": 400}}
    return ClientError(response, operation)
