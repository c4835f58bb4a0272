"""Recovery's store in memory, indexed for months of a 2,048-node fleet (``simulate --engine core``).

The same contract as ``consumers.adapters.recovery_store`` (``InMemoryRecoveryStore`` and
``DynamoRecoveryStore``): records with revisions, conditional commits in chunks with their outputs in a
per-owner outbox, a deadline index, the stream's clock. What differs is only how it finds things: the
timers are a sorted index (DynamoDB's Query on ``pk = timer``), nodes a set (the ``node`` partition),
and records whose TTL passed are deleted by ``expire`` as DynamoDB's TTL would, instead of a scan of
every item each time. Bodies are kept as JSON text, as the table keeps them, so a caller can never
change a stored record by changing what it loaded, and ``state_bytes`` is what the table would hold.
"""

from __future__ import annotations

import bisect
import json
import os
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from consumers.adapters.recovery_store import item_key, plan_chunks, timer_sort_key
from consumers.core.ports import Loaded, OutboxEntry, Output, RecordKey, RecordWrite, StateConflict


@dataclass
class _Stored:
    body: str
    rev: int
    expires_at: int | None


class IndexedRecoveryStore:
    def __init__(self) -> None:
        self.records: dict[RecordKey, _Stored] = {}
        self._nodes: set[RecordKey] = set()
        self._instances: dict[str, str] = {}
        self._timer_keys: list[str] = []  # sorted
        self._timers: dict[str, tuple[RecordKey, dict[str, Any]]] = {}
        self._outbox: dict[str, dict[str, OutboxEntry]] = {}
        self._positions: dict[str, str] = {}
        self._seq = 0
        self._secret = os.urandom(32)
        self.commits = 0

    # --- reading -------------------------------------------------------------------------------------

    def load(self, keys: Collection[RecordKey]) -> Loaded:
        bodies: dict[RecordKey, dict[str, Any] | None] = {}
        revs: dict[RecordKey, int] = {}
        for key in keys:
            if key[0] == "nodes":
                continue
            if key[0] == "instance":
                arn = self._instances.get(key[1])
                bodies[key], revs[key] = ({"node_arn": arn} if arn else None), 1 if arn else 0
                continue
            stored = self.records.get(key)
            bodies[key] = json.loads(stored.body) if stored else None
            revs[key] = stored.rev if stored else 0
        return Loaded(bodies, revs)

    def load_nodes(self) -> Loaded:
        loaded = self.load(sorted(self._nodes))
        return Loaded({**loaded.bodies, ("nodes", "*"): {}}, loaded.revs)

    # --- writing -------------------------------------------------------------------------------------

    def commit(self, writes: Sequence[RecordWrite], outputs: Sequence[Output], owner: str) -> list[OutboxEntry]:
        entries: list[OutboxEntry] = []
        for chunk in plan_chunks(writes, outputs):
            conflicts = [w.key for w in chunk.writes if self._rev(w.key) != w.expected_rev]
            if conflicts:
                raise StateConflict(conflicts)
            for write in chunk.writes:
                self._write(write)
            if chunk.outputs:
                self._seq += 1
                entry = OutboxEntry(owner, f"{self._seq:024d}", tuple(chunk.outputs))
                self._outbox.setdefault(owner, {})[entry.seq] = entry
                entries.append(entry)
            self.commits += 1
        return entries

    def _rev(self, key: RecordKey) -> int:
        stored = self.records.get(key)
        return stored.rev if stored else 0

    def _write(self, write: RecordWrite) -> None:
        key = write.key
        self.records[key] = _Stored(json.dumps(write.body, separators=(",", ":")), write.expected_rev + 1,
                                    write.expires_at)
        if key[0] == "node":
            self._nodes.add(key)
        if write.old_timer is not None:
            self._drop_timer(timer_sort_key(key, write.old_timer))
        if write.timer is not None:
            sort_key = timer_sort_key(key, write.timer)
            if sort_key not in self._timers:
                bisect.insort(self._timer_keys, sort_key)
            self._timers[sort_key] = (key, write.timer)
        if write.instance_id:
            self._instances[write.instance_id] = key[1]

    def _drop_timer(self, sort_key: str) -> None:
        if self._timers.pop(sort_key, None) is not None:
            at = bisect.bisect_left(self._timer_keys, sort_key)
            if at < len(self._timer_keys) and self._timer_keys[at] == sort_key:
                del self._timer_keys[at]

    # --- deadlines, outbox, clock ------------------------------------------------------------------

    def due(self, now: str, limit: int) -> list[tuple[RecordKey, dict[str, Any]]]:
        end = bisect.bisect_right(self._timer_keys, f"{now}~")
        return [self._timers[k] for k in self._timer_keys[:min(end, limit)]]

    def pending(self, owner: str) -> list[OutboxEntry]:
        return [entry for _, entry in sorted(self._outbox.get(owner, {}).items())]

    def done(self, entry: OutboxEntry) -> None:
        self._outbox.get(entry.owner, {}).pop(entry.seq, None)

    def publish_position(self, shard: str, at: str) -> None:
        self._positions[shard] = at

    def drop_position(self, shard: str) -> None:
        self._positions.pop(shard, None)

    def positioned_shards(self) -> list[str]:
        return sorted(self._positions)

    def clock(self) -> str | None:
        return min(self._positions.values()) if self._positions else None

    def check_key(self) -> bytes:
        return self._secret

    # --- what the table holds ------------------------------------------------------------------------

    def expire(self, now_epoch: float) -> int:
        """Delete the records whose TTL passed, as DynamoDB's TTL does; returns how many."""
        gone = [k for k, s in self.records.items() if s.expires_at is not None and s.expires_at <= now_epoch]
        for key in gone:
            del self.records[key]
        return len(gone)

    def state_bytes(self) -> tuple[int, int]:
        """(bytes, records): every record item's keys and JSON body, as the table holds them."""
        total = 0
        for key, stored in self.records.items():
            pk, sk = item_key(key)
            total += len(pk) + len(sk) + len(stored.body)
        return total, len(self.records)

    def bodies(self) -> dict[RecordKey, dict[str, Any]]:
        """Every record (the simulation's end state is read whole)."""
        return {key: json.loads(stored.body) for key, stored in self.records.items()}
