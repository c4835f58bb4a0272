"""Every AWS call the recovery consumer makes, as AWS saw it: a botocore hook on its session.

The fleet simulator reacts to these calls the way ECS and EC2 would, and the demo reports them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from boto3.session import Session

CHANGING = frozenset({
    "StopTask", "StartTask", "UpdateContainerInstancesState", "PutAttributes", "RebootInstances", "SendCommand",
    "TerminateInstanceInAutoScalingGroup", "Publish",
})


@dataclass
class Call:
    service: str
    operation: str
    params: dict[str, Any]
    response: dict[str, Any]
    ok: bool
    idempotency_key: str | None

    @property
    def target(self) -> str:
        p = self.params
        for name in ("task", "InstanceId"):
            if name in p:
                return str(p[name])
        for name in ("containerInstances", "InstanceIds"):
            if p.get(name):
                return str(p[name][0])
        if self.operation == "PutAttributes":
            return str(p["attributes"][0].get("targetId"))
        return str(p.get("TopicArn", ""))

    def as_json(self) -> dict[str, Any]:
        return {"type": self.operation, "service": self.service, "target": self.target,
                "idempotency_key": self.idempotency_key, "ok": self.ok}


@dataclass
class CallLog:
    calls: list[Call] = field(default_factory=list)
    current_key: str | None = None
    _read: int = 0

    def attach(self, session: Session) -> None:
        session.events.register("before-parameter-build.*.*", self._before)
        session.events.register("after-call.*.*", self._after)

    def _before(self, params: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
        context["gpu_recovery_params"] = dict(params)

    def _after(self, http_response: Any, parsed: dict[str, Any], model: Any, context: dict[str, Any],
               **_: Any) -> None:
        if model.name not in CHANGING:
            return
        status = getattr(http_response, "status_code", 500)
        self.calls.append(Call(model.service_model.service_name, model.name,
                               dict(context.get("gpu_recovery_params", {})), dict(parsed), status < 300,
                               self.current_key))

    def unread(self) -> list[Call]:
        fresh = self.calls[self._read:]
        self._read = len(self.calls)
        return fresh

    def changes(self) -> list[Call]:
        return [c for c in self.calls if c.ok]


class RecordingActuator:
    """Wraps the real actuator so each recorded call carries the decision's idempotency key."""

    def __init__(self, inner: Any, log: CallLog) -> None:
        self._inner = inner
        self._log = log

    def execute(self, action: Any, key: str) -> dict[str, Any]:
        self._log.current_key = key
        try:
            result: dict[str, Any] = self._inner.execute(action, key)
            return result
        finally:
            self._log.current_key = None

    def find_done(self, action: Any, key: str) -> dict[str, Any] | None:
        found: dict[str, Any] | None = self._inner.find_done(action, key)
        return found
