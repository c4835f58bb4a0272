"""What ``gpu-recovery tail`` prints: decoded, filtered events as human lines or JSON lines. Pure."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
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
