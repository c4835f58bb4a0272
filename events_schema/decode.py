"""One record of the stream -> one typed event, or a precise reason why not.

A record is either an ECS event exactly as EventBridge delivers it, or an envelope of ours.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import TypeAdapter, ValidationError

from events_schema.aws import (
    AwsEvent,
    ContainerInstanceHealthChange,
    ContainerInstanceStateChange,
    TaskStateChange,
)
from events_schema.envelope import EventSchemaError, OurEvent, UnknownEventType
from events_schema.events import REGISTRY

AwsEventModel = TaskStateChange | ContainerInstanceStateChange | ContainerInstanceHealthChange
StreamEvent = AwsEventModel | OurEvent

MalformedKind = Literal["not_json", "unknown_event", "invalid"]

_AWS_MODELS: dict[str, type[AwsEventModel]] = {
    "ECS Task State Change": TaskStateChange,
    "ECS Container Instance State Change": ContainerInstanceStateChange,
    "ECS Container Instance Health Change": ContainerInstanceHealthChange,
}
_ANY_JSON: TypeAdapter[Any] = TypeAdapter(Any)
_AWS_EVENT: TypeAdapter[AwsEventModel] = TypeAdapter(AwsEvent)
_DETAIL_TYPE_BYTES = b'"detail-type"'
_DETAIL_TYPE_TEXT = '"detail-type"'


class MalformedRecord(ValueError):
    def __init__(self, kind: MalformedKind, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


def decode(data: bytes | str) -> StreamEvent:
    fast = _decode_json(data)
    if fast is not None:
        return fast
    try:
        raw = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MalformedRecord("not_json", str(exc)) from exc
    if not isinstance(raw, dict):
        raise MalformedRecord("not_json", f"expected a JSON object, got {type(raw).__name__}")
    return decode_mapping(raw)


def _decode_json(data: bytes | str) -> StreamEvent | None:
    """A well-formed record in one pass through pydantic's JSON parser (about half the cost of
    json.loads then validating the dict). None sends the record down the path below, which names the fault.

    The byte search only picks which model to try first: every EventBridge event has the key, our
    envelopes do not, and a wrong guess fails validation and falls through.
    """
    aws = _DETAIL_TYPE_BYTES in data if isinstance(data, bytes) else _DETAIL_TYPE_TEXT in data
    try:
        if aws:
            return _AWS_EVENT.validate_json(data)
        return REGISTRY.decode_json(data)
    except (ValidationError, EventSchemaError):
        return None


def decode_mapping(raw: Mapping[str, Any]) -> StreamEvent:
    if "detail-type" in raw:
        return _decode_aws(raw)
    if "schema_version" in raw and "type" in raw:
        return _decode_ours(raw)
    raise MalformedRecord("unknown_event", "neither an EventBridge event nor a gpu-recovery envelope")


def _decode_aws(raw: Mapping[str, Any]) -> AwsEventModel:
    detail_type = raw.get("detail-type")
    model = _AWS_MODELS.get(detail_type) if isinstance(detail_type, str) else None
    if model is None:
        raise MalformedRecord("unknown_event", f"detail-type {detail_type!r} is not one we consume")
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"])
        raise MalformedRecord("invalid", f"{detail_type}: {where}: {error['msg']}") from exc


def _decode_ours(raw: Mapping[str, Any]) -> OurEvent:
    try:
        return REGISTRY.decode(raw)
    except UnknownEventType as exc:
        raise MalformedRecord("unknown_event", str(exc)) from exc
    except EventSchemaError as exc:
        raise MalformedRecord("invalid", str(exc)) from exc


def encode(event: StreamEvent) -> bytes:
    """The record bytes for an event, AWS events byte-for-byte in their wire names."""
    if isinstance(event, OurEvent):
        body = event.envelope.model_dump(mode="json")
    else:
        body = event.model_dump(mode="json", by_alias=True, exclude_unset=True)
    return json.dumps(body, separators=(",", ":"), sort_keys=True).encode()
