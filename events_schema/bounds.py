"""The bounds every record on the stream must meet before anything reads it (issue 15).

A value that passes JSON parsing can still break a consumer far from the parser: a year-9999 time
overflows datetime arithmetic, a 40-digit integer does not fit DynamoDB's Number, an empty ARN is not a
DynamoDB key, a lone surrogate cannot be encoded, deep nesting exhausts Python's recursion limit. The
decoder checks these once, at the edge, and answers ``invalid`` naming the field:

- the record: at most MAX_RECORD_BYTES, UTF-8 without lone surrogates, nesting at most MAX_DEPTH;
- the fields the models declare: times within TIME_MIN .. TIME_MAX (a time without a timezone is UTC, as the
  fold and replay read it), integers within +-10^38 (and versions >= 0), identifiers non-empty and small
  enough for a DynamoDB key;
- the parts of an event that are kept to act on it later (a task's overrides, a node's health checks),
  unknown fields included: numbers within +-10^38, never NaN or Infinity (``BoundedJson``).

Other unknown fields are kept as AWS sent them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, Union

from pydantic import Field, Strict, StringConstraints
from typing_extensions import TypeAliasType

# Times: a record's times describe a fleet that exists now; 2000..2100 leaves room for every real event
# and keeps datetime arithmetic (deadlines, offsets, timestamps) far from year 1 and year 9999.
TIME_MIN = datetime(2000, 1, 1, tzinfo=UTC)
TIME_MAX = datetime(2100, 1, 1, tzinfo=UTC)
# DynamoDB's Number holds 38 significant digits.
NUMBER_DIGITS = 38
NUMBER_LIMIT = 10**NUMBER_DIGITS
# DynamoDB keys: a sort key holds at most 1,024 bytes (a partition key 2,048); any identifier may be one.
MAX_ID_BYTES = 1024
# ECS's own limit on a task group (RunTask/StartTask ``group``).
MAX_GROUP_CHARS = 255
# Kinesis records carry at most 1 MiB of data.
MAX_RECORD_BYTES = 1024 * 1024
# Nesting: deep enough for anything AWS sends (ECS events nest about 6 levels), far from Python's
# recursion limit. pydantic's JSON parser stops at about 200 levels; a bound above it gives one answer
# whichever parser read a record.
MAX_DEPTH = 256
# Identifiers are ASCII in every AWS API we read; any 256 characters fit 1,024 bytes of UTF-8.
_ID_PATTERN = r"(?s)^(?:[\x00-\x7f]{1,1024}|.{1,256})$"


class OutOfBounds(ValueError):
    """A value outside the bounds above; ``where`` names it (``detail.group``)."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{where or '(root)'}: {message}")
        self.where = where


def check_time(value: datetime) -> datetime:
    """``value`` as an aware time, if it is within TIME_MIN .. TIME_MAX (a time without a zone is UTC)."""
    if value.tzinfo is None or value.utcoffset() is None:
        value = value.replace(tzinfo=UTC)
    # The year test first: comparing aware times shifts them by their offsets, which must stay in range.
    if not TIME_MIN.year - 1 <= value.year <= TIME_MAX.year or not TIME_MIN <= value < TIME_MAX:
        raise ValueError(f"time {value.isoformat()} is outside {TIME_MIN.date()} .. {TIME_MAX.date()} (UTC)")
    return value


def check_identifier(value: str) -> str:
    """``value`` unchanged if it is non-empty, valid UTF-8 and fits a DynamoDB key."""
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise ValueError("not valid UTF-8 (a lone surrogate)") from None
    if not 0 < size <= MAX_ID_BYTES:
        raise ValueError(f"identifier must be 1..{MAX_ID_BYTES} bytes of UTF-8, got {size}")
    return value


# All checked in pydantic-core (Rust): cheap on every record; times compare across offsets without leaving
# datetime's range, and one without a zone compares as UTC.
BoundedTime = Annotated[datetime, Field(ge=TIME_MIN, lt=TIME_MAX)]
BoundedInt = Annotated[int, Field(gt=-NUMBER_LIMIT, lt=NUMBER_LIMIT)]
Version = Annotated[int, Field(ge=0, lt=NUMBER_LIMIT)]
# 1..1,024 ASCII characters, or 1..256 of any: both fit a DynamoDB sort key.
Identifier = Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID_BYTES, pattern=_ID_PATTERN)]
Group = Annotated[str, StringConstraints(min_length=1, max_length=MAX_GROUP_CHARS)]
# Any JSON value whose numbers fit DynamoDB: integers (never coerced) and finite floats within +-10^38.
if TYPE_CHECKING:  # mypy cannot follow a recursive TypeAliasType
    BoundedJson = Any
else:
    BoundedJson = TypeAliasType(
        "BoundedJson",
        Union[  # noqa: UP007  (a recursive alias: the | form cannot name itself before it exists)
            bool, Annotated[int, Strict(), Field(gt=-NUMBER_LIMIT, lt=NUMBER_LIMIT)],
            Annotated[float, Field(allow_inf_nan=False, gt=-float(NUMBER_LIMIT), lt=float(NUMBER_LIMIT))],
            str, list["BoundedJson"], dict[str, "BoundedJson"], None,
        ],
    )


def check_tree(value: Any) -> None:
    """Raise OutOfBounds for the first part of a parsed JSON document that is nested too deep, is not a
    JSON value, or is a string that is not valid UTF-8 (the standard library's parser lets lone
    surrogates through; pydantic's refuses them)."""
    try:
        _check(value, 0)
    except _Refused as refused:
        path = refused.path[::-1]
        where = ".".join(path) if len(path) <= 12 else ".".join(path[:8]) + f"... ({len(path)} levels)"
        raise OutOfBounds(where, refused.message) from None


class _Refused(Exception):
    """Raised at the bad value; each enclosing level adds its key on the way out (no path built otherwise)."""

    def __init__(self, message: str) -> None:
        self.message = message
        self.path: list[str] = []


def _check(value: Any, depth: int) -> None:
    kind = type(value)
    if kind is dict:
        _check_object(value, depth + 1)
    elif kind is list:
        _check_array(value, depth + 1)
    elif kind is str:
        _check_text(value)
    elif value is not None and kind not in (bool, int, float):
        raise _Refused(f"{kind.__name__} is not a JSON value")


def _check_object(value: Mapping[Any, Any], depth: int) -> None:
    if depth > MAX_DEPTH:
        raise _Refused(f"nested deeper than {MAX_DEPTH} levels")
    for key, item in value.items():
        try:
            if type(key) is not str:
                raise _Refused("object keys must be strings")
            _check_text(key)
            _check(item, depth)
        except _Refused as refused:
            refused.path.append(str(key))
            raise


def _check_array(value: Sequence[Any], depth: int) -> None:
    if depth > MAX_DEPTH:
        raise _Refused(f"nested deeper than {MAX_DEPTH} levels")
    for index, item in enumerate(value):
        try:
            _check(item, depth)
        except _Refused as refused:
            refused.path.append(str(index))
            raise


def _check_text(value: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise _Refused("string is not valid UTF-8 (a lone surrogate)") from None
