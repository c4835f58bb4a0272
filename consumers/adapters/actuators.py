"""The only module that changes the world: ECS, EC2, SSM, Auto Scaling and SNS calls for commands.

Every call returns a result and never raises: "failed" means AWS refused it (a 4xx, or ECS placed
nothing); throttling after retries, a 5xx, a timeout or anything unexpected (a parser error on an HTTP
500) is "unknown": it may have taken effect, so recovery checks and asks again at the deadline, and never
reads it as failed. Calls that are not safe to repeat (StartTask, a reboot) go through clients without
botocore's automatic retries: our own retry comes only after checking whether the first one took effect.

Replay never imports this module (a test keeps it out of replay's import graph).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

from consumers.adapters.sns_message import publish_requests
from consumers.core.ports import ActionResult
from events_schema.commands import (
    RESTART_TAG,
    CommandModel,
    ListTagsForResource,
    Publish,
    PutAttributes,
    RebootInstances,
    SendCommand,
    StartTask,
    StopTask,
    TerminateInstanceInAutoScalingGroup,
    UpdateContainerInstancesState,
)
from events_schema.proof import check_secret

log = logging.getLogger("gpu_recovery.actuators")
THROTTLED = frozenset({"ThrottlingException", "Throttling", "RequestLimitExceeded", "TooManyRequestsException",
                       "RequestThrottled", "ProvisionedThroughputExceededException"})
UNAVAILABLE = frozenset({"ServerException", "InternalServerError", "InternalFailure", "ServiceUnavailable",
                         "InternalError", "Unavailable"})
# Clients by service; ``retries=False`` gives one without botocore's automatic retries.
ClientFactory = Callable[..., Any]


class AwsActuator:
    def __init__(self, clients: ClientFactory, *, cluster: str, topic_arn: str, check_key: bytes,
                 chat_topic_arn: str | None = None) -> None:
        self._client = clients
        self._cluster = cluster
        self._topic_arn = topic_arn
        self._chat_topic_arn = chat_topic_arn
        self._check_key = check_key

    def execute(self, command: CommandModel, key: str) -> ActionResult:
        try:
            return ActionResult("succeeded", self._call(command, key))
        except ClientError as exc:
            return _client_error(exc)
        except (ConnectTimeoutError, ReadTimeoutError, EndpointConnectionError) as exc:
            return ActionResult("unknown", {}, str(exc), "timeout")
        except _Refused as exc:
            return ActionResult("failed", {}, str(exc), "refused")
        except Exception as exc:  # the port's promise: a result, never an exception
            # A parser error on an HTTP 500 (botocore's ResponseParserError is no BotoCoreError), a broken
            # connection, a bug below us: the call may have happened, so it is "unknown", never "failed".
            log.warning("unexpected %s from %s %s: %s", type(exc).__name__, command.type, command.target, exc)
            return ActionResult("unknown", {}, f"{type(exc).__name__}: {exc}"[:1000], "unknown")

    def _call(self, command: CommandModel, key: str) -> dict[str, Any]:
        if isinstance(command, StopTask):
            return self._stop_task(command)
        if isinstance(command, StartTask):
            return self._start_task(command, key)
        if isinstance(command, UpdateContainerInstancesState):
            self._client("ecs").update_container_instances_state(
                cluster=self._cluster, containerInstances=[command.target], status=command.status)
            return {}
        if isinstance(command, PutAttributes):
            # A full ARN as targetId needs no targetType (the short id would).
            self._client("ecs").put_attributes(cluster=self._cluster, attributes=[
                {"name": command.name, "value": command.value, "targetId": command.target}])
            return {}
        if isinstance(command, ListTagsForResource):
            return {"tags": self._client("ecs").list_tags_for_resource(resourceArn=command.target).get("tags", [])}
        if isinstance(command, RebootInstances):
            self._client("ec2", retries=False).reboot_instances(InstanceIds=[command.target])
            return {}
        if isinstance(command, SendCommand):
            response = self._client("ssm", retries=False).send_command(
                InstanceIds=[command.target], DocumentName=command.document,
                Parameters={"commands": list(command.commands)}, Comment=key[:100])
            return {"command_id": response["Command"]["CommandId"]}
        if isinstance(command, TerminateInstanceInAutoScalingGroup):
            self._client("autoscaling").terminate_instance_in_auto_scaling_group(
                InstanceId=command.target, ShouldDecrementDesiredCapacity=command.should_decrement_desired_capacity)
            return {}
        assert isinstance(command, Publish)
        return self._publish(command, key)

    # --- ECS --------------------------------------------------------------------------------------

    def _stop_task(self, command: StopTask) -> dict[str, Any]:
        self._client("ecs").stop_task(cluster=self._cluster, task=command.target, reason=command.reason[:255])
        return {}

    def _start_task(self, command: StartTask, key: str) -> dict[str, Any]:
        overrides = command.overrides
        if command.purpose == "check":
            overrides = _with_secret(overrides, check_secret(self._check_key, key))
        kwargs: dict[str, Any] = {"cluster": self._cluster, "taskDefinition": command.task_definition,
                                  "containerInstances": [command.target], "overrides": overrides,
                                  "tags": list(command.tags)}
        if command.group:
            kwargs["group"] = command.group
        # A check task carries its key in startedBy too (ListTasks can filter on it).
        started_by = command.started_by if command.purpose == "rank" else key[-36:]
        if started_by:
            kwargs["startedBy"] = started_by
        response = self._client("ecs", retries=False).start_task(**kwargs)
        failures = response.get("failures") or []
        if failures or not response.get("tasks"):
            raise _Refused(f"StartTask placed nothing: {[f.get('reason') for f in failures]}")
        return {"task_arn": response["tasks"][0]["taskArn"]}

    def find_done(self, command: CommandModel, key: str) -> dict[str, Any] | None:
        """After an unknown StartTask: the task carrying our key, RUNNING or already STOPPED (ECS shows a
        stopped task for about an hour). None: no task carries it. An error means it cannot tell: it raises, and
        the consumer keeps the call "unknown" (never starts it again on a lookup that failed).

        ListTasks without a desired status answers RUNNING tasks only, so both are asked.
        """
        if not isinstance(command, StartTask):
            return None
        ecs = self._client("ecs")
        arns: list[str] = []
        for desired in ("RUNNING", "STOPPED"):
            pages = ecs.get_paginator("list_tasks").paginate(cluster=self._cluster, containerInstance=command.target,
                                                             desiredStatus=desired)
            arns += [arn for page in pages for arn in page.get("taskArns", [])]
        for start in range(0, len(arns), 100):
            for task in ecs.describe_tasks(cluster=self._cluster, tasks=arns[start:start + 100],
                                           include=["TAGS"]).get("tasks", []):
                if {"key": RESTART_TAG, "value": key} in task.get("tags", []):
                    return {"task_arn": task["taskArn"], "found_after_restart": True}
        return None

    # --- people ---------------------------------------------------------------------------------

    def _publish(self, command: Publish, key: str) -> dict[str, Any]:
        """At least once: a retry after an unknown result may send a message twice (SNS standard topics
        do not deduplicate). The main topic gets JSON, email and SMS bodies; the chat topic, when one is
        configured, the chat card (consumers/adapters/sns_message.py)."""
        requests = publish_requests(command.notice, topic_arn=self._topic_arn, subject=command.subject,
                                    chat_topic_arn=self._chat_topic_arn)
        ids = [self._client("sns").publish(**request)["MessageId"] for request in requests]
        return {"message_id": ids[0], **({"chat_message_id": ids[1]} if len(ids) > 1 else {})}


class _Refused(Exception):
    """AWS answered but did nothing (ECS placed no task)."""


def _client_error(exc: ClientError) -> ActionResult:
    error = exc.response.get("Error", {})
    code = str(error.get("Code"))
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    text = f"{code}: {error.get('Message')}"
    if code in THROTTLED:
        return ActionResult("unknown", {}, text, "throttled")
    if code in UNAVAILABLE or status >= 500:
        return ActionResult("unknown", {}, text, "unavailable")
    return ActionResult("failed", {}, text, "refused")


def _with_secret(overrides: dict[str, Any], secret: str) -> dict[str, Any]:
    """The check's secret goes to the task only; the decision on the stream carries its digest."""
    copied = json.loads(json.dumps(overrides))
    for container in copied.get("containerOverrides", []):
        container.setdefault("environment", []).append({"name": "GPU_RECOVERY_CHECK_SECRET", "value": secret})
    return dict(copied)
