"""In-memory adapters: the defaults for tests and for replay into a file."""

from __future__ import annotations

import copy
from collections.abc import Collection, Sequence

from consumers.core.ports import ItemWrite, ParkedRecord, StoredItem
from consumers.core.projection import EntityKey
from events_schema.envelope import Envelope


class InMemoryProjectionStore:
    def __init__(self) -> None:
        self.items: dict[EntityKey, StoredItem] = {}
        self.requests = 0

    def load(self, keys: Collection[EntityKey]) -> dict[EntityKey, StoredItem]:
        self.requests += 1
        return {key: copy.deepcopy(self.items[key]) for key in keys if key in self.items}

    def save(self, writes: Sequence[ItemWrite]) -> list[EntityKey]:
        conflicts: list[EntityKey] = []
        for write in writes:
            self.requests += 1
            current = self.items.get(write.key)
            if (current.rev if current else 0) != write.expected_rev:
                conflicts.append(write.key)
                continue
            self.items[write.key] = StoredItem(copy.deepcopy(write.item), write.expected_rev + 1)
        return conflicts

    def table(self, name: str) -> list[dict[str, object]]:
        rows = [stored.item for (table, _), stored in self.items.items() if table == name]
        return sorted(rows, key=lambda item: str(next(iter(item.values()))))


class InMemoryParkingLot:
    def __init__(self) -> None:
        self.records: list[ParkedRecord] = []

    def park(self, records: Sequence[ParkedRecord]) -> None:
        self.records.extend(records)


class InMemoryStreamWriter:
    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []
        self.partition_keys: list[str | None] = []

    def append(self, envelopes: Sequence[Envelope], partition_keys: Sequence[str] | None = None) -> list[str]:
        start = len(self.envelopes)
        self.envelopes.extend(envelopes)
        self.partition_keys.extend(partition_keys if partition_keys is not None else [None] * len(envelopes))
        return [str(start + i) for i in range(len(envelopes))]
