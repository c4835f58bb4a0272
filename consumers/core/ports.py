"""The small interfaces the core needs from the outside world; adapters implement them."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from consumers.core.projection import EntityKey, Item
from events_schema.envelope import Envelope


@dataclass(frozen=True, slots=True)
class StreamRecord:
    """One Kinesis record as any runtime (KCL daemon, local reader, replay) hands it over."""

    shard_id: str
    sequence_number: str
    partition_key: str
    data: bytes
    arrival: datetime | None = None


@dataclass(frozen=True, slots=True)
class StoredItem:
    item: Item
    rev: int  # optimistic-concurrency revision; 0 means the item does not exist yet


@dataclass(frozen=True, slots=True)
class ItemWrite:
    key: EntityKey
    item: Item
    expected_rev: int


class ProjectionStore(Protocol):
    def load(self, keys: Collection[EntityKey]) -> dict[EntityKey, StoredItem]: ...

    def save(self, writes: Sequence[ItemWrite]) -> list[EntityKey]:
        """Write each item if its revision is still the expected one; return the keys that were not."""
        ...


@dataclass(frozen=True, slots=True)
class ParkedRecord:
    consumer: str
    shard_id: str
    sequence_number: str
    partition_key: str
    reason_kind: str
    reason: str
    data: bytes
    parked_at: str
    error_type: str = ""  # the exception's class when the record failed other than by decoding
    position: str = ""  # where in its batch (or file) the record was


class ParkingLot(Protocol):
    def park(self, records: Sequence[ParkedRecord]) -> None: ...


class StreamWriter(Protocol):
    def append(self, envelopes: Sequence[Envelope]) -> list[str]:
        """Append in order; return the sequence numbers. Raises TransientError when it may be retried."""
        ...
