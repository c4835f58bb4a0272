"""What ``gpu-recovery tail`` prints: decoded, filtered events as human lines or JSON lines, and when it stops.

The stream is read by ``consumers.adapters.kinesis_reader`` (polling) or ``kinesis_fanout`` (enhanced fan-out).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from analytics.view import EventFilter, EventView, line_of, view_of
from consumers.core.ports import StreamRecord
from consumers.core.projection import ProjectionConfig
from events_schema.decode import MalformedRecord, decode


@dataclass(frozen=True, slots=True)
class Shown:
    record: StreamRecord
    view: EventView


@dataclass(frozen=True, slots=True)
class Unreadable:
    record: StreamRecord
    error: MalformedRecord


def tail_events(records: Iterable[StreamRecord], event_filter: EventFilter,
                config: ProjectionConfig | None = None) -> Iterator[Shown | Unreadable]:
    """Every record that matches the filter, and every record that is not an event (never dropped silently)."""
    for record in records:
        try:
            event = decode(record.data)
        except MalformedRecord as exc:
            yield Unreadable(record, exc)
            continue
        view = view_of(event, config)
        if event_filter.matches(view):
            yield Shown(record, view)


def json_line(item: Shown) -> str:
    """One JSON object per line: where the record sits, what it is about, and the event as it was written."""
    view, record = item.view, item.record
    return json.dumps({
        "type": view.type,
        "time": view.time.isoformat().replace("+00:00", "Z"),
        "node": view.node,
        "job": view.job,
        "incident": view.incident,
        "summary": view.summary,
        "shard_id": record.shard_id,
        "sequence_number": record.sequence_number,
        "event": view.body,
    }, sort_keys=True, separators=(",", ":"), default=str)


def human_line(item: Shown) -> str:
    return line_of(item.view)


def unreadable_line(item: Unreadable) -> str:
    return f"! {item.record.shard_id} {item.record.sequence_number}: not an event ({item.error})"


def stop_after(*, max_events: int | None, timeout_s: float | None,
               clock: Callable[[], float] = time.monotonic) -> tuple[Callable[[], bool], Callable[[], None]]:
    """A ``should_stop`` for the followers and a ``count()`` to call per emitted event."""
    deadline = clock() + timeout_s if timeout_s is not None else None
    emitted = [0]

    def should_stop() -> bool:
        if max_events is not None and emitted[0] >= max_events:
            return True
        return deadline is not None and clock() >= deadline

    def count() -> None:
        emitted[0] += 1

    return should_stop, count
