"""What every replay source is: ``RawRecord(position, data)`` records, progress, and the error for a
``--source`` we cannot read."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True, slots=True)
class RawRecord:
    position: str
    data: bytes
    # When Kinesis took the record in (the stream, and files recorded with their metadata); None when the
    # source does not keep it (the Firehose archive, plain JSON Lines).
    arrival: datetime | None = None


@dataclass(frozen=True, slots=True)
class Progress:
    """How far a source is: ``done`` of ``total`` in ``unit`` (total None: unknown)."""

    done: float
    total: float | None
    unit: str


class Source(Protocol):
    @property
    def description(self) -> str: ...

    @property
    def reads_window(self) -> bool:
        """Whether --since/--until were applied while reading (the stream, by arrival time);
        archives and files are filtered on the events' own time by the caller instead."""
        ...

    def records(self) -> Iterator[RawRecord]: ...

    def progress(self) -> Progress: ...


class SourceError(ValueError):
    """A --source value we cannot read from, with what to do about it."""
