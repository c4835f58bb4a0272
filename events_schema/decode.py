"""One record of the stream -> one typed event, or a precise reason why not.

A record is either an AWS event exactly as EventBridge delivers it, or an envelope of ours. Whatever the
bytes, ``decode`` returns an event or raises MalformedRecord: ``not_json`` (not a UTF-8 JSON object),
``unknown_event`` (JSON, but no event we consume) or ``invalid`` (one of ours or AWS's, with a field out of
its model or out of events_schema.bounds, named in the detail).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, Literal

from pydantic import TypeAdapter, ValidationError

from events_schema.aws import AWS_MODELS, AwsEvent, AwsEventModel, keep_raw, raw_bytes
from events_schema.bounds import (
    MAX_RECORD_BYTES,
    TIME_MAX,
    TIME_MIN,
    OutOfBounds,
    check_identifier,
    check_time,
    check_tree,
)
from events_schema.envelope import EventSchemaError, OurEvent, UnknownEventType
from events_schema.events import REGISTRY

StreamEvent = AwsEventModel | OurEvent

MalformedKind = Literal["not_json", "unknown_event", "invalid"]

_AWS_EVENT: TypeAdapter[AwsEventModel] = TypeAdapter(AwsEvent)
_DETAIL_TYPE = b'"detail-type"'
# What validation (ValueError) or an upcaster fed an old payload of the wrong shape raises: the record is
# bad, not the code (``int("x")``, ``int(float("inf"))``, ``dict(5)``, ``data["missing"]``).
_BAD_PAYLOAD = (ValueError, KeyError, IndexError, TypeError, AttributeError, ArithmeticError)
_MEMBER_TAGS = frozenset({"bool", "str", "int", "float", "constrained-int", "constrained-float"})


class MalformedRecord(ValueError):
    def __init__(self, kind: MalformedKind, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


def decode(data: bytes | str) -> StreamEvent:
    record = _utf8(data)
    if len(record) > MAX_RECORD_BYTES:
        raise MalformedRecord("invalid", f"record: {len(record)} bytes, over Kinesis's {MAX_RECORD_BYTES}")
    event = _decode_fast(record)
    if event is None:
        event = _decode_careful(record)
    return event if isinstance(event, OurEvent) else keep_raw(event, record)


def decode_mapping(raw: Mapping[str, Any]) -> StreamEvent:
    """A record already parsed (by any JSON parser): the same checks and answers as ``decode``, and an AWS
    event keeps the values it was given (``to_wire`` returns them, ``encode`` writes them)."""
    event = _decode_tree(raw)
    return event if isinstance(event, OurEvent) else keep_raw(event, json.dumps(raw, separators=(",", ":")).encode())


def _utf8(data: bytes | str) -> bytes:
    if isinstance(data, bytes):
        return data
    try:
        return data.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise MalformedRecord("not_json", f"not valid UTF-8: {exc.reason}") from exc


def _decode_fast(record: bytes) -> StreamEvent | None:
    """A well-formed record in one pass through pydantic's JSON parser (about half the cost of parsing
    then validating the dict). None sends the record down the careful path, which names the fault.

    What the models do not bound, pydantic's parser does (it refuses lone surrogates, and nesting past
    about 200 levels, within MAX_DEPTH), so a record taken here would pass the careful path too. The
    byte search only picks which model to try first: every EventBridge event has the key, our envelopes
    do not.
    """
    try:
        if _DETAIL_TYPE in record:
            return _AWS_EVENT.validate_json(record)
        event = REGISTRY.decode_json(record)
    except _BAD_PAYLOAD:
        return None  # not silent: the careful path decodes it again and says what is wrong
    _check_our_bounds(event)
    return event


def _decode_careful(record: bytes) -> StreamEvent:
    """The standard library's parser accepts what JSON allows and we do not (lone surrogates, deep
    nesting up to Python's recursion limit), so that the bounds check can name the field."""
    try:
        tree = json.loads(record)
    except (ValueError, RecursionError) as exc:
        raise MalformedRecord("not_json", f"{type(exc).__name__}: {exc}"[:300]) from exc
    if not isinstance(tree, dict):
        raise MalformedRecord("not_json", f"expected a JSON object, got {type(tree).__name__}")
    return _decode_tree(tree)


def _decode_tree(raw: Mapping[str, Any]) -> StreamEvent:
    try:
        check_tree(raw)
    except OutOfBounds as exc:
        raise MalformedRecord("invalid", str(exc)) from exc
    if "detail-type" in raw:
        return _decode_aws(raw)
    if "schema_version" in raw and "type" in raw:
        return _decode_ours(raw)
    raise MalformedRecord("unknown_event", "neither an EventBridge event nor a gpu-recovery envelope")


def _decode_aws(raw: Mapping[str, Any]) -> AwsEventModel:
    detail_type = raw.get("detail-type")
    model = AWS_MODELS.get(detail_type) if isinstance(detail_type, str) else None
    if model is None:
        raise MalformedRecord("unknown_event", f"detail-type {str(detail_type)[:100]!r} is not one we consume")
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise MalformedRecord("invalid", f"{detail_type}: {_first_error(exc)}") from exc


def _first_error(exc: ValidationError) -> str:
    """The error that says most: a value out of bounds rather than "not a boolean" from each other member
    of a union; the location without pydantic's names for union members."""
    errors = exc.errors()
    error = next((e for e in errors if not e["type"].endswith(("_type", "_parsing"))), errors[0])
    where = ".".join(str(part) for part in error["loc"] if not _union_member(part))
    return f"{where}: {error['msg']}"


def _union_member(part: str | int) -> bool:
    return isinstance(part, str) and (part in _MEMBER_TAGS or part.startswith(("list[", "dict[")))


def _decode_ours(raw: Mapping[str, Any]) -> OurEvent:
    try:
        event = REGISTRY.decode(raw)
    except UnknownEventType as exc:
        raise MalformedRecord("unknown_event", str(exc)) from exc
    except EventSchemaError as exc:
        raise MalformedRecord("invalid", str(exc)) from exc
    except _BAD_PAYLOAD as exc:
        # An upcaster given an old payload of the wrong shape: the record is bad, not the code.
        raise MalformedRecord("invalid", f"{raw.get('type')!s:.100} payload cannot be upcast: "
                                         f"{type(exc).__name__}: {exc}") from exc
    _check_our_bounds(event)
    return event


def _check_our_bounds(event: OurEvent) -> None:
    """The envelope's model predates the bounds: hold its time and keys to them here (the payloads'
    own fields are their models' to bound). The common case costs two comparisons and a length each."""
    envelope = event.envelope
    subject = envelope.subject
    time = envelope.time
    if time.tzinfo is None or not TIME_MIN <= time < TIME_MAX:
        _refuse_ours(event, "time", check_time, time)
    for where, value in (("event_id", envelope.event_id), ("subject.node", subject.node),
                         ("subject.job", subject.job), ("subject.task", subject.task),
                         ("subject.incident", subject.incident)):
        # 1..256 characters always fit MAX_ID_BYTES; anything else gets the full check.
        if value is not None and not 0 < len(value) <= 256:
            _refuse_ours(event, where, check_identifier, value)


def _refuse_ours(event: OurEvent, where: str, check: Callable[[Any], object], value: Any) -> None:
    try:
        check(value)
    except ValueError as exc:
        raise MalformedRecord("invalid", f"{event.type}: {where}: {exc}") from exc


def encode(event: StreamEvent) -> bytes:
    """The record bytes for an event: an AWS event decoded from a record gives back that record unchanged."""
    if isinstance(event, OurEvent):
        body = event.envelope.model_dump(mode="json")
    else:
        raw = raw_bytes(event)
        if raw is not None:
            return raw
        body = event.model_dump(mode="json", by_alias=True, exclude_unset=True)
    return json.dumps(body, separators=(",", ":"), sort_keys=True).encode()
