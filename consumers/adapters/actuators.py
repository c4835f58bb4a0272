"""The only module that changes the world: ECS, EC2, SSM, Auto Scaling and SNS calls for decisions.

Replay never imports this module (a test keeps it out of replay's import graph).
"""

from __future__ import annotations

from typing import Any, Protocol

from consumers.adapters.sns_message import notice_of, publish_requests, sibling_topic_arn
from events_schema.events import Action

ECS_ACTIONS = frozenset({"StopTask", "StartTask", "UpdateContainerInstancesState", "PutAttributes",
                         "ListTagsForResource"})
# Calls that change nothing, so a repeat is harmless; everything else needs the ledger.
READ_ONLY = frozenset({"ListTagsForResource"})
# Calls whose repeat changes nothing more: redone after an ambiguous stop.
IDEMPOTENT = frozenset({"StopTask", "UpdateContainerInstancesState", "PutAttributes", "ListTagsForResource",
                        "TerminateInstanceInAutoScalingGroup", "Publish"})


class ActionFailed(Exception):
    """AWS refused the call; the message says why. Recorded as a failed outcome, never retried blindly."""


class Actuator(Protocol):
    def execute(self, action: Action, key: str) -> dict[str, Any]: ...

    def find_done(self, action: Action, key: str) -> dict[str, Any] | None:
        """After an ambiguous stop, evidence that the call already happened (e.g. the task it started)."""
        ...


class AwsActuator:
    def __init__(self, clients: Any, *, cluster: str, topic_arn: str) -> None:
        self._clients = clients
        self._cluster = cluster
        self._topic_arn = topic_arn
        self._chat_topic_arn = sibling_topic_arn(topic_arn, clients.settings.sns_chat_topic_name)

    def _client(self, name: str) -> Any:
        return self._clients.client(name)

    def execute(self, action: Action, key: str) -> dict[str, Any]:
        from botocore.exceptions import BotoCoreError, ClientError

        handler = getattr(self, f"_{action.type}", None)
        if handler is None:
            raise ActionFailed(f"unknown action type {action.type}")
        try:
            result: dict[str, Any] = handler(action, key)
            return result
        except ClientError as exc:
            error = exc.response.get("Error", {})
            raise ActionFailed(f"{error.get('Code')}: {error.get('Message')}") from exc
        except BotoCoreError as exc:
            raise ActionFailed(str(exc)) from exc

    def find_done(self, action: Action, key: str) -> dict[str, Any] | None:
        if action.type != "StartTask":
            return None
        ecs = self._client("ecs")
        arns = ecs.list_tasks(cluster=self._cluster, containerInstance=action.target).get("taskArns", [])
        if not arns:
            return None
        tasks = ecs.describe_tasks(cluster=self._cluster, tasks=arns, include=["TAGS"]).get("tasks", [])
        for task in tasks:
            if {"key": "gpu-recovery:key", "value": key} in task.get("tags", []):
                return {"task_arn": task["taskArn"], "found_after_restart": True}
        return None

    # --- ECS ------------------------------------------------------------------------------------

    def _StopTask(self, action: Action, key: str) -> dict[str, Any]:
        self._client("ecs").stop_task(cluster=self._cluster, task=action.target,
                                      reason=str(action.params.get("reason", "gpu-recovery"))[:255])
        return {}

    def _StartTask(self, action: Action, key: str) -> dict[str, Any]:
        p = action.params
        kwargs: dict[str, Any] = {
            "cluster": self._cluster, "taskDefinition": p["task_definition"], "containerInstances": [action.target],
            "overrides": p.get("overrides") or {},
        }
        for name, param in (("group", "group"), ("startedBy", "started_by")):
            if p.get(param):
                kwargs[name] = p[param]
        if p.get("tags"):
            kwargs["tags"] = p["tags"]
        response = self._client("ecs").start_task(**kwargs)
        failures = response.get("failures") or []
        if failures or not response.get("tasks"):
            raise ActionFailed(f"StartTask placed nothing: {failures}")
        return {"task_arn": response["tasks"][0]["taskArn"]}

    def _UpdateContainerInstancesState(self, action: Action, key: str) -> dict[str, Any]:
        self._client("ecs").update_container_instances_state(
            cluster=self._cluster, containerInstances=[action.target], status=action.params["status"])
        return {}

    def _PutAttributes(self, action: Action, key: str) -> dict[str, Any]:
        self._client("ecs").put_attributes(cluster=self._cluster, attributes=[{
            # A full ARN as targetId needs no targetType (the short id would).
            "name": action.params["name"], "value": action.params["value"], "targetId": action.target,
        }])
        return {}

    def _ListTagsForResource(self, action: Action, key: str) -> dict[str, Any]:
        tags = self._client("ecs").list_tags_for_resource(resourceArn=action.target).get("tags", [])
        return {"tags": tags}

    # --- nodes ----------------------------------------------------------------------------------

    def _RebootInstances(self, action: Action, key: str) -> dict[str, Any]:
        self._client("ec2").reboot_instances(InstanceIds=[action.target])
        return {}

    def _SendCommand(self, action: Action, key: str) -> dict[str, Any]:
        response = self._client("ssm").send_command(
            InstanceIds=[action.target], DocumentName=action.params.get("document", "AWS-RunShellScript"),
            Parameters={"commands": list(action.params.get("commands", ["reboot"]))}, Comment=key[:100],
        )
        return {"command_id": response["Command"]["CommandId"]}

    def _TerminateInstanceInAutoScalingGroup(self, action: Action, key: str) -> dict[str, Any]:
        self._client("autoscaling").terminate_instance_in_auto_scaling_group(
            InstanceId=action.target, ShouldDecrementDesiredCapacity=False)
        return {}

    # --- people ---------------------------------------------------------------------------------

    def _Publish(self, action: Action, key: str) -> dict[str, Any]:
        # The renderer (consumers/adapters/sns_message.py) makes the main topic's request and, with a chat
        # topic configured (SNS chat topic setting), the chat card's.
        try:
            notice = notice_of(action.params["message"])
            requests = publish_requests(notice, topic_arn=self._topic_arn, subject=action.params.get("subject"),
                                        chat_topic_arn=self._chat_topic_arn)
        except ValueError as exc:  # pydantic's ValidationError included
            raise ActionFailed(f"notice cannot be published: {exc}") from exc
        ids = [self._client("sns").publish(**request)["MessageId"] for request in requests]
        return {"message_id": ids[0], **({"chat_message_id": ids[1]} if len(ids) > 1 else {})}
