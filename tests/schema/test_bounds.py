"""Bounded decode (issue 15): each hostile class is ``invalid`` or ``not_json`` naming its field, never another
exception; values just inside the bounds still decode."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from events_schema.aws import AwsHealthEvent, TaskStateChange, parse_health_time
from events_schema.bounds import MAX_DEPTH, MAX_RECORD_BYTES, NUMBER_LIMIT, OutOfBounds, check_tree
from events_schema.decode import MalformedRecord, decode, decode_mapping
from tests.schema.hostile import HEALTH, HOSTILE, TASK, Hostile, load, mutated, nested, setting

FIXTURES = Path(__file__).parent.parent / "fixtures"


@pytest.mark.parametrize("case", HOSTILE.values(), ids=lambda case: case.name)
def test_each_hostile_record_is_refused_naming_what_is_wrong(case: Hostile) -> None:
    # GIVEN a record of a class that crashed the consumers on main WHEN it is decoded
    with pytest.raises(MalformedRecord) as caught:
        decode(case.data)
    # THEN it is refused with the kind and the field (or reason) named, and nothing else escapes
    assert caught.value.kind == case.kind
    assert case.names.lower() in caught.value.detail.lower()


@pytest.mark.parametrize("case", [c for c in HOSTILE.values() if c.kind == "invalid" and c.name != "record_over_1_mib"],
                         ids=lambda case: case.name)
def test_a_parsed_hostile_record_gets_the_same_answer(case: Hostile) -> None:
    # GIVEN the same record parsed by the standard library (replay's file source, tests) THEN the same answer
    with pytest.raises(MalformedRecord) as caught:
        decode_mapping(json.loads(case.data))
    assert caught.value.kind == case.kind and case.names.lower() in caught.value.detail.lower()


@pytest.mark.parametrize(
    ("where", "value"),
    [
        ("detail.updatedAt", "2000-01-01T00:00:00Z"),
        ("detail.updatedAt", "2099-12-31T23:59:59.999999Z"),
        ("detail.updatedAt", "2026-01-01T09:00:00+09:00"),
        ("detail.version", NUMBER_LIMIT - 1),
        ("detail.version", 0),
        ("detail.containers.0.exitCode", -(NUMBER_LIMIT - 1)),
        ("detail.group", "g" * 255),
        ("detail.group", "é" * 255),
        ("detail.overrides.containerOverrides.0.cpu", 1.5e37),
        ("detail.x", nested(MAX_DEPTH - 3)),
    ],
)
def test_values_just_inside_the_bounds_decode(where: str, value: object) -> None:
    event = decode(mutated(TASK, setting(where, value)))
    assert isinstance(event, TaskStateChange)


def test_the_time_bounds_hold_in_every_timezone_and_without_one() -> None:
    # 2000-01-01T00:30+01:00 is 1999-12-31T23:30Z (out); 2099-12-31T23:30-01:00 is 2100-01-01T00:30Z (out)
    for outside in ("2000-01-01T00:30:00+01:00", "2099-12-31T23:30:00-01:00", "1999-12-31T23:59:59"):
        with pytest.raises(MalformedRecord, match=r"detail\.updatedAt"):
            decode(mutated(TASK, setting("detail.updatedAt", outside)))
    # A time without a zone is UTC, as the fold and replay read it.
    event = decode(mutated(TASK, setting("detail.updatedAt", "2099-12-31T23:59:59")))
    assert isinstance(event, TaskStateChange) and event.detail.updatedAt == datetime(2099, 12, 31, 23, 59, 59)


def test_health_times_read_rfc_1123_and_iso_8601_within_the_bounds() -> None:
    assert parse_health_time("Thu, 27 Aug 2026 13:19:03 GMT") == datetime(2026, 8, 27, 13, 19, 3, tzinfo=UTC)
    assert parse_health_time("2026-08-27T13:19:03Z") == datetime(2026, 8, 27, 13, 19, 3, tzinfo=UTC)
    assert parse_health_time("Sun, 05 Jun 2016 15:10:09 -0000") == datetime(2016, 6, 5, 15, 10, 9, tzinfo=UTC)
    for bad in ("Mon, 1 Jan 9999 00:00:00 +9999", "Sat, 1 Jan 1999 00:00:00 GMT", "", "tomorrow"):
        with pytest.raises(ValueError):
            parse_health_time(bad)
    event = decode(mutated(HEALTH, setting("detail.endTime", "2025-06-17T04:00:00+00:00")))
    assert isinstance(event, AwsHealthEvent) and event.detail.end_time == datetime(2025, 6, 17, 4, tzinfo=UTC)


def test_nesting_one_level_past_the_bound_is_refused_by_either_parser() -> None:
    # GIVEN a record nested exactly MAX_DEPTH deep, and one a level deeper
    def record(depth: int) -> bytes:
        return json.dumps(dict(load(TASK), x=nested(depth - 1))).encode()  # the record itself is a level
    assert isinstance(decode(record(MAX_DEPTH)), TaskStateChange)
    # THEN the deeper one is refused, from its bytes and from the parsed dict alike
    with pytest.raises(MalformedRecord, match=f"deeper than {MAX_DEPTH}"):
        decode(record(MAX_DEPTH + 1))
    with pytest.raises(MalformedRecord, match=f"deeper than {MAX_DEPTH}"):
        decode_mapping(json.loads(record(MAX_DEPTH + 1)))


def test_a_record_of_exactly_the_kinesis_limit_is_read() -> None:
    base = mutated(TASK, setting("detail.padding", ""))
    padded = base.replace(b'"padding": ""', b'"padding": "' + b"x" * (MAX_RECORD_BYTES - len(base)) + b'"')
    assert len(padded) == MAX_RECORD_BYTES
    assert isinstance(decode(padded), TaskStateChange)


def test_text_input_with_a_lone_surrogate_is_not_json() -> None:
    text = (FIXTURES / TASK).read_text().replace("llama-70b", "llama-\ud800")
    with pytest.raises(MalformedRecord) as caught:
        decode(text)
    assert caught.value.kind == "not_json"


def test_the_tree_check_names_the_place_and_refuses_what_json_cannot_hold() -> None:
    with pytest.raises(OutOfBounds, match=r"^a\.1\.b: string is not valid UTF-8"):
        check_tree({"a": [1, {"b": "\udc80"}]})
    with pytest.raises(OutOfBounds, match="datetime is not a JSON value"):
        check_tree({"when": datetime(2026, 1, 1, tzinfo=UTC)})
    with pytest.raises(OutOfBounds, match="keys must be strings"):
        check_tree({1: "x"})
    check_tree({"a": [None, True, 1, 1.5, "ok", {"b": []}]})
