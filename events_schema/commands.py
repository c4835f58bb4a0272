"""The AWS calls recovery decides on: a discriminated union, one model per call, named as AWS names it.

A command travels inside ``DecisionRecorded`` (before the call) and ``ActionOutcome`` (after it), with
the ``step`` of recovery it belongs to; follow-ups are routed by that typed step, never by text.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from events_schema.health_check import CHECK_CONTAINER
from events_schema.notices import Notice

__all__ = ["CHECK_CONTAINER"]

Step = Literal[
    "capture_tags", "stop_ranks", "drain", "mirror_state", "health_check", "return_to_service", "reboot",
    "replace", "restart", "notify", "proactive_stop",
]
StartPurpose = Literal["check", "rank"]
NodeStatus = Literal["ACTIVE", "DRAINING"]
# The tag every task recovery starts carries, with the decision's idempotency key as its value.
RESTART_TAG = "gpu-recovery:key"


class _Command(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)
    target: str = Field(description="What the call acts on: a task or container instance ARN, an instance id, "
                        "or `notifications`.")


class StopTask(_Command):
    type: Literal["StopTask"] = "StopTask"
    reason: str = Field("", description="The reason ECS records on the stopped task (recovery's own marks its stops).")


class StartTask(_Command):
    """A check task or a rank, on exactly one container instance (``target``)."""

    type: Literal["StartTask"] = "StartTask"
    purpose: StartPurpose = Field(description="`check` (the DCGM health check) or `rank` (a restarted rank).")
    task_definition: str = Field(description="The task definition (family or ARN with revision) to start.")
    overrides: dict[str, Any] = Field(default_factory=dict, description="The task overrides, exactly as launched.")
    group: str | None = Field(None, description="The task group, exactly as launched.")
    started_by: str | None = Field(None, description="startedBy, exactly as launched.")
    tags: list[dict[str, str]] = Field(default_factory=list, description="The tags, as launched, plus "
                                       "`gpu-recovery:key`.")
    restart_of: str | None = Field(None, description="The rank this task replaces.")
    generation: int | None = Field(None, description="The job's generation this rank belongs to.")
    gpus: int = Field(0, description="GPUs the rank holds on its node.")
    secret_sha256: str | None = Field(None, description="For a check: the SHA-256 of the secret passed to the "
                                      "task (never the secret itself).")


class UpdateContainerInstancesState(_Command):
    type: Literal["UpdateContainerInstancesState"] = "UpdateContainerInstancesState"
    status: NodeStatus = Field(description="`DRAINING` (keep new work off) or `ACTIVE` (back to service).")


class PutAttributes(_Command):
    type: Literal["PutAttributes"] = "PutAttributes"
    name: str = Field(description="The attribute's name (`gpu-recovery.state` by default).")
    value: str = Field(description="The node's repair state.")


class ListTagsForResource(_Command):
    type: Literal["ListTagsForResource"] = "ListTagsForResource"


class RebootInstances(_Command):
    type: Literal["RebootInstances"] = "RebootInstances"


class SendCommand(_Command):
    """A reboot of an ECS Anywhere node through SSM Run Command."""

    type: Literal["SendCommand"] = "SendCommand"
    document: str = Field("AWS-RunShellScript", description="The SSM document run on the managed instance.")
    commands: list[str] = Field(default_factory=lambda: ["sudo systemctl reboot"], description="Its commands.")


class TerminateInstanceInAutoScalingGroup(_Command):
    type: Literal["TerminateInstanceInAutoScalingGroup"] = "TerminateInstanceInAutoScalingGroup"
    should_decrement_desired_capacity: bool = Field(False, description="Always false: a successor replaces it.")


class Publish(_Command):
    type: Literal["Publish"] = "Publish"
    subject: str = Field(description="The SNS subject line.")
    notice: Notice = Field(description="What is told (the message's JSON body).")


Command = Annotated[
    StopTask | StartTask | UpdateContainerInstancesState | PutAttributes | ListTagsForResource | RebootInstances
    | SendCommand | TerminateInstanceInAutoScalingGroup | Publish,
    Field(discriminator="type"),
]
CommandModel = (StopTask | StartTask | UpdateContainerInstancesState | PutAttributes | ListTagsForResource
                | RebootInstances | SendCommand | TerminateInstanceInAutoScalingGroup | Publish)

# Calls whose repeat changes nothing more: redone when a stop left it unclear whether they happened.
REPEATABLE = frozenset({"StopTask", "UpdateContainerInstancesState", "PutAttributes", "ListTagsForResource",
                        "TerminateInstanceInAutoScalingGroup"})


def command_from_v1(action: dict[str, Any]) -> dict[str, Any]:
    """v1 decisions carried ``{type, target, params}``; v2 carries the typed command."""
    kind = str(action.get("type"))
    params = dict(action.get("params") or {})
    out: dict[str, Any] = {"type": kind, "target": action.get("target", "")}
    if kind == "StartTask":
        tags = list(params.get("tags") or [])
        key = next((t.get("value", "") for t in tags if t.get("key") == RESTART_TAG), "")
        out.update(purpose="check" if ":check:" in key else "rank", task_definition=params.get("task_definition", ""),
                   overrides=params.get("overrides") or {}, group=params.get("group"),
                   started_by=params.get("started_by"), tags=tags, restart_of=params.get("restart_of"))
    elif kind == "Publish":
        message = dict(params.get("message") or {})
        message.setdefault("kind", "unknown")
        message.setdefault("cluster", "")
        message.setdefault("summary", params.get("subject", ""))
        out.update(subject=params.get("subject", ""), notice=message)
    elif kind == "TerminateInstanceInAutoScalingGroup":
        out["should_decrement_desired_capacity"] = bool(params.get("should_decrement_desired_capacity", False))
    else:
        out.update({k: v for k, v in params.items() if k in ("reason", "status", "name", "value", "document",
                                                             "commands")})
    return out
