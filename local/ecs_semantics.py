"""What real ECS and AWS do that moto does not, applied to the recovery consumer's own calls.

* ``ListTasks`` without ``desiredStatus`` lists RUNNING tasks only (moto lists every task, so code that
  forgot STOPPED tasks would pass locally and fail in AWS);
* ``StartTask`` on a container instance without enough free GPUs places nothing and answers a failure
  with reason ``RESOURCE:GPU`` (moto does not account GPUs; the fleet simulator does);
* ``TerminateInstanceInAutoScalingGroup`` on an instance in no Auto Scaling group answers AWS's
  ``ValidationError`` (moto answers an HTTP 500 page botocore cannot parse);
* errors a scenario injects (throttling, a 5xx, a validation error, no room) on the next calls of an
  action, as AWS would answer after botocore's own retries.

These are botocore hooks on the recovery's session: the consumer runs unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from events_schema.aws import family_of


@dataclass
class InjectedError:
    at: datetime
    action: str
    error: str
    count: int


@dataclass(frozen=True)
class _Http:
    status_code: int
    headers: dict[str, str]
    content: bytes = b""


ERRORS = {
    "ThrottlingException": (400, "ThrottlingException", "Rate exceeded"),
    "ServerError": (500, "ServerException", "We encountered an internal error. Please try again."),
    "ValidationError": (400, "InvalidParameterException", "The request is not valid"),
}


class EcsSemantics:
    def __init__(self, free_gpus: Callable[[str], int | None], family_gpus: Callable[[str], int],
                 clock: Callable[[], datetime], in_auto_scaling_group: Callable[[str], bool] = lambda _: True) -> None:
        self._free_gpus = free_gpus
        self._in_auto_scaling_group = in_auto_scaling_group
        self._family_gpus = family_gpus
        self._clock = clock
        self.injected: list[InjectedError] = []
        self.refused: list[tuple[str, str]] = []  # (container instance, why): StartTasks that found no room

    def attach(self, session: Any) -> None:
        session.events.register("before-parameter-build.ecs.ListTasks", self._list_running_by_default)
        session.events.register("before-parameter-build.*.*", self._keep_api_params)
        session.events.register("before-call.*.*", self._before_call)

    @staticmethod
    def _keep_api_params(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        # before-call sees the serialized request (a JSON or query body), not the call's parameters.
        context["gpu_recovery_api_params"] = params  # the same dict: later hooks' defaults show

    def _list_running_by_default(self, params: dict[str, Any], **_: Any) -> None:
        params.setdefault("desiredStatus", "RUNNING")

    def _before_call(self, model: Any, context: dict[str, Any], **_: Any) -> tuple[_Http, dict[str, Any]] | None:
        params: dict[str, Any] = context.get("gpu_recovery_api_params", {})
        injected = self._injected(model.name)
        if injected is not None:
            return self._answer(model.name, params, injected)
        if model.name == "StartTask":
            return self._room_for(params)
        if model.name == "TerminateInstanceInAutoScalingGroup" and \
                not self._in_auto_scaling_group(str(params.get("InstanceId", ""))):
            message = f"Instance Id not found - No managed instance found for instance ID: {params.get('InstanceId')}"
            return _Http(400, {}), {"Error": {"Code": "ValidationError", "Message": message},
                                    "ResponseMetadata": {"HTTPStatusCode": 400}}
        return None

    def _injected(self, action: str) -> InjectedError | None:
        now = self._clock()
        for spec in self.injected:
            if spec.action == action and spec.count > 0 and spec.at <= now:
                spec.count -= 1
                return spec
        return None

    def _answer(self, action: str, params: dict[str, Any], spec: InjectedError) -> tuple[_Http, dict[str, Any]]:
        if spec.error == "RESOURCE:GPU":
            return self._no_room(params, injected=True)
        status, code, message = ERRORS[spec.error]
        return _Http(status, {}), {"Error": {"Code": code, "Message": message},
                                   "ResponseMetadata": {"HTTPStatusCode": status}}

    def _room_for(self, params: dict[str, Any]) -> tuple[_Http, dict[str, Any]] | None:
        instance = str((params.get("containerInstances") or [""])[0])
        needed = self._family_gpus(family_of(str(params.get("taskDefinition", ""))))
        free = self._free_gpus(instance)
        if free is None or free >= needed:
            return None
        return self._no_room(params, injected=False)

    def _no_room(self, params: dict[str, Any], *, injected: bool) -> tuple[_Http, dict[str, Any]]:
        instance = str((params.get("containerInstances") or [""])[0])
        if not injected:
            self.refused.append((instance, "RESOURCE:GPU"))
        return _Http(200, {}), {"tasks": [], "failures": [{"arn": instance, "reason": "RESOURCE:GPU"}],
                                "ResponseMetadata": {"HTTPStatusCode": 200}}
