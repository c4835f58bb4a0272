"""Whatever the bytes, ``decode`` returns an event within the bounds or raises MalformedRecord: arbitrary bytes,
arbitrary JSON, real AWS events (and envelopes of ours) with any value anywhere replaced, removed or garbled."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from events_schema.aws import AWS_MODELS, to_wire
from events_schema.bounds import NUMBER_LIMIT, TIME_MAX, TIME_MIN
from events_schema.decode import MalformedRecord, StreamEvent, decode, decode_mapping, encode
from events_schema.envelope import OurEvent

FIXTURES = Path(__file__).parent.parent / "fixtures"
REAL = [json.loads(p.read_text()) for p in sorted((FIXTURES / "aws_events").glob("*.json"))]
REAL += [json.loads(p.read_text()) for p in sorted((FIXTURES / "our_events").glob("*.json"))]
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

surrogates = st.text(st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1, max_size=2)
times = st.one_of(
    st.datetimes(timezones=st.timezones()).map(lambda moment: moment.isoformat()),
    st.datetimes().map(lambda moment: moment.isoformat()),
    st.sampled_from(["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "2026-02-30T00:00:00Z",
                     "Fri, 31 Dec 9999 23:59:59 GMT", "Thu, 27 Aug 2026 13:19:03 GMT", "1e400", ""]),
)
leaves = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=10**37, max_value=10**45).map(lambda n: -n),
    st.integers(min_value=10**37, max_value=10**45), st.floats(), st.text(max_size=40), surrogates,
    st.text(min_size=250, max_size=3000), st.just(""), times,
)
values = st.recursive(leaves, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                                          max_size=3), max_leaves=12)
# Nesting past both parsers' limits (Python's recursion): placed as text, since json.dumps would recurse too.
DEEP = "__deep__"
deep = st.integers(min_value=1, max_value=5000).map(lambda depth: f"{DEEP}{depth}")


def declared_names(model: type[BaseModel], found: set[str] | None = None) -> set[str]:
    """The wire names of every field our AWS models declare, nested models included."""
    found = set() if found is None else found
    for name, info in model.model_fields.items():
        found.add(info.alias or name)
        for inner in _models_in(info.annotation):
            if inner.__name__ not in found:
                found.add(inner.__name__)
                declared_names(inner, found)
    return found


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in getattr(annotation, "__args__", ()) for m in _models_in(arg)]


DECLARED = set().union(*(declared_names(model) for model in AWS_MODELS.values())) | {"time", "subject", "node"}


def paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in a JSON document: object keys and array positions, depth first."""
    found = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, item in node.items():
            found += paths(item, (*prefix, key))
    elif isinstance(node, list):
        for index, item in enumerate(node):
            found += paths(item, (*prefix, index))
    return found


def replaced(document: Any, where: tuple[Any, ...], value: Any, *, remove: bool) -> Any:
    changed = copy.deepcopy(document)
    parent = changed
    for part in where[:-1]:
        parent = parent[part]
    if remove and isinstance(parent, dict):
        del parent[where[-1]]
    else:
        parent[where[-1]] = value
    return changed


@st.composite
def mutated_real_events(draw: st.DrawFn) -> bytes:
    document = draw(st.sampled_from(REAL))
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        everywhere = paths(document)
        # Half the time a field the models read (times, versions, ARNs...), else any place at all.
        declared = [where for where in everywhere if where[-1] in DECLARED]
        where = draw(st.sampled_from(declared if declared and draw(st.booleans()) else everywhere))
        value = draw(st.one_of(values, deep, times))
        document = replaced(document, where, value, remove=draw(st.integers(0, 4)) == 0)
    return deepened(json.dumps(document, ensure_ascii=draw(st.booleans())))


def deepened(text: str) -> bytes:
    """The text with every deep placeholder made into arrays nested that deep."""
    while DEEP in text:
        start = text.index(f'"{DEEP}')
        end = text.index('"', start + 1)
        depth = int(text[start + 1 + len(DEEP):end])
        text = text[:start] + "[" * depth + "]" * depth + text[end + 1:]
    return text.encode("utf-8", "surrogatepass")


@st.composite
def garbled_real_events(draw: st.DrawFn) -> bytes:
    data = bytearray(json.dumps(draw(st.sampled_from(REAL))).encode())
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        at = draw(st.integers(min_value=0, max_value=len(data) - 1))
        action = draw(st.sampled_from(["flip", "insert", "delete"]))
        if action == "flip":
            data[at] = draw(st.integers(min_value=0, max_value=255))
        elif action == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=4))
        else:
            del data[at]
    return bytes(data)


def assert_decodes_within_bounds_or_is_refused(data: bytes) -> None:
    try:
        event = decode(data)
    except MalformedRecord as refused:
        assert refused.kind in ("not_json", "unknown_event", "invalid") and refused.detail
        return
    assert_within_bounds(event)
    # A record taken from its bytes is the record taken from the parsed dict, and writes back unchanged.
    assert decode_mapping(json.loads(data)) == event  # json.loads cannot fail: decode read it
    if not isinstance(event, OurEvent):
        assert encode(event) == data and to_wire(event) == json.loads(data)


def assert_within_bounds(event: StreamEvent) -> None:
    if isinstance(event, OurEvent):
        time = event.envelope.time
        assert TIME_MIN <= (time if time.tzinfo else time.replace(tzinfo=UTC)) < TIME_MAX
        return
    assert_declared_fields_within_bounds(event)
    json.dumps(event.model_dump(mode="json", by_alias=True))  # and it can be written as JSON


def assert_declared_fields_within_bounds(model: BaseModel) -> None:
    for name in type(model).model_fields:
        for value in _items(getattr(model, name)):
            if isinstance(value, datetime):  # without a zone: UTC
                assert TIME_MIN <= (value if value.tzinfo else value.replace(tzinfo=UTC)) < TIME_MAX, (name, value)
            elif isinstance(value, int) and not isinstance(value, bool):
                assert -NUMBER_LIMIT < value < NUMBER_LIMIT, name
            elif isinstance(value, str):
                value.encode("utf-8")
            elif isinstance(value, BaseModel):
                assert_declared_fields_within_bounds(value)


def _items(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else [value]


@FUZZ
@given(st.binary(max_size=3000))
def test_arbitrary_bytes(data: bytes) -> None:
    assert_decodes_within_bounds_or_is_refused(data)


@FUZZ
@given(st.one_of(values, deep))
def test_arbitrary_json(document: Any) -> None:
    assert_decodes_within_bounds_or_is_refused(deepened(json.dumps(document)))


@FUZZ
@given(mutated_real_events())
def test_real_events_with_any_value_replaced_or_removed(data: bytes) -> None:
    assert_decodes_within_bounds_or_is_refused(data)


@FUZZ
@given(garbled_real_events())
def test_real_events_with_garbled_bytes(data: bytes) -> None:
    assert_decodes_within_bounds_or_is_refused(data)


@FUZZ
@given(st.sampled_from(REAL), st.data())
def test_parsed_records_with_any_value_replaced(document: dict[str, Any], data: st.DataObject) -> None:
    # GIVEN a parsed record (replay's file source, tests) with any value replaced, even by a non-JSON object
    where = data.draw(st.sampled_from(paths(document)))
    value = data.draw(st.one_of(values, st.sampled_from([object(), b"bytes", {1: "int key"}, (1, 2)])))
    # THEN decode_mapping returns an event within the bounds or refuses it
    try:
        event = decode_mapping(replaced(document, where, value, remove=False))
    except MalformedRecord:
        return
    assert_within_bounds(event)
