"""Raw records (stream, archive or file) -> decoded events, and a count of what could not be decoded."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from events_schema.decode import MalformedRecord, StreamEvent, decode

_AGE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


@dataclass
class Decoded:
    events: list[StreamEvent] = field(default_factory=list)
    unreadable: Counter[str] = field(default_factory=Counter)


def decode_each(payloads: Iterable[bytes], unreadable: Counter[str]) -> Iterator[StreamEvent]:
    """Decode one record at a time (bounded memory); count the records that are not events by reason."""
    for data in payloads:
        try:
            yield decode(data)
        except MalformedRecord as exc:
            unreadable[exc.kind] += 1
        except (RecursionError, ArithmeticError, ValueError):  # whatever one hostile record makes decode raise
            unreadable["decode_error"] += 1


def decode_all(payloads: Iterable[bytes]) -> Decoded:
    out = Decoded()
    out.events.extend(decode_each(payloads, out.unreadable))
    return out


def parse_when(text: str, now: datetime) -> datetime:
    """An ISO 8601 time (UTC when it names no zone) or an age before ``now``: ``90s``, ``15m``, ``2h``, ``7d``."""
    age = _AGE.match(text.strip().lower())
    if age:
        try:
            return now - timedelta(seconds=float(age.group(1)) * _UNIT_S[age.group(2)])
        except OverflowError:  # 99999999999d: before year 1
            raise ValueError(f"{text!r} reaches back before year 1; give a shorter age or an ISO 8601 time")\
                from None
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is neither an ISO 8601 time (2026-11-28T10:00:00Z) nor an age (15m, 2h, 7d)")\
            from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
