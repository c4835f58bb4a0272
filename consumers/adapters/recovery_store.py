"""Persistence of the recovery consumer's state: one DynamoDB item per entity (pk = kind, sk = key).

Several processes may share this state (the KCL runs one processor per shard), one at a time under
``state_lock``. Each save bumps a generation counter, conditionally (a fence: a save from a process
whose copy is older fails), and leaves a change record naming the entities it wrote and removed. A
process that takes the lock catches up by reading only the entities changed since its own generation;
when the change records do not reach back that far it loads everything again.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from botocore.exceptions import ClientError

from consumers.adapters.dynamodb import call
from consumers.core.errors import TransientError
from consumers.core.recovery.state import KINDS, RecoveryState

META_KEY = {"pk": {"S": "_meta"}, "sk": {"S": "generation"}}
CHANGES_PK = "_changes"
CHANGES_KEPT_S = 2 * 86_400  # a process idle for longer than this loads everything again
CHANGE_RECORD_MAX_BYTES = 300_000  # under DynamoDB's 400 KB item limit; beyond it readers reload fully

Key = tuple[str, str]


class StateConflict(TransientError):
    """Another process saved the shared state since this copy was loaded: reload and decide again."""


class RecoveryStore(Protocol):
    def load(self) -> RecoveryState: ...

    def refresh(self, state: RecoveryState) -> RecoveryState: ...

    def save(self, state: RecoveryState) -> None: ...


class InMemoryRecoveryStore:
    """The same contract in memory: consumers sharing one instance behave like processes sharing a table."""

    def __init__(self) -> None:
        self.items: dict[Key, str] = {}
        self.generation = 0

    def load(self) -> RecoveryState:
        state = RecoveryState(generation=self.generation)
        for (kind, key), body in sorted(self.items.items()):
            state.table(kind)[key] = KINDS[kind].from_item(json.loads(body))
        return state

    def refresh(self, state: RecoveryState) -> RecoveryState:
        return state if state.generation == self.generation else self.load()

    def save(self, state: RecoveryState) -> None:
        if not state.dirty and not state.removed:
            return
        if state.generation != self.generation:
            raise StateConflict(f"state saved at generation {self.generation}; this copy is {state.generation}")
        for kind, key in state.removed:
            self.items.pop((kind, key), None)
        for kind, key in state.dirty:
            record = state.record(kind, key)
            if record is not None:
                self.items[(kind, key)] = json.dumps(record.to_item(), sort_keys=True)
        self.generation += 1
        state.generation = self.generation
        state.dirty.clear()
        state.removed.clear()


class DynamoRecoveryStore:
    """Loads with a Query per kind (never a table scan) and writes only what changed, in batches."""

    def __init__(self, client: Any, table_name: str, *, wall: Callable[[], float] = time.time) -> None:
        self._client = client
        self._table = table_name
        self._wall = wall
        self.full_loads = 0
        self.catch_ups = 0

    def load(self) -> RecoveryState:
        state = RecoveryState(generation=self._generation())
        self.full_loads += 1
        paginator = self._client.get_paginator("query")
        for kind, record_type in KINDS.items():
            pages = paginator.paginate(TableName=self._table, KeyConditionExpression="pk = :k",
                                       ExpressionAttributeValues={":k": {"S": kind}}, ConsistentRead=True)
            for page in pages:
                for row in page.get("Items", []):
                    record = record_type.from_item(json.loads(row["body"]["S"]))
                    state.table(kind)[row["sk"]["S"]] = record
        return state

    def refresh(self, state: RecoveryState) -> RecoveryState:
        current = self._generation()
        if current == state.generation:
            return state
        changes = self._changes_after(state.generation)
        expected = list(range(state.generation + 1, current + 1))
        if [generation for generation, _ in changes] != expected or any(c is None for _, c in changes):
            return self.load()  # the change records expired or one was too large to keep
        written: set[Key] = set()
        removed: set[Key] = set()
        for _, change in changes:
            assert change is not None
            for key in change["removed"]:
                written.discard(key)
                removed.add(key)
            for key in change["written"]:
                removed.discard(key)
                written.add(key)
        for kind, name in removed:
            state.table(kind).pop(name, None)
        for (kind, name), body in self._get(sorted(written)):
            state.table(kind)[name] = KINDS[kind].from_item(json.loads(body))
        state.generation = current
        self.catch_ups += 1
        return state

    def save(self, state: RecoveryState) -> None:
        if not state.dirty and not state.removed:
            return
        written = sorted(k for k in state.dirty if state.record(*k) is not None)
        removed = sorted(state.removed)
        generation = self._fence(state.generation)
        self._record_change(generation, written, removed)
        requests: list[dict[str, Any]] = [
            {"DeleteRequest": {"Key": {"pk": {"S": kind}, "sk": {"S": key}}}} for kind, key in removed
        ]
        for kind, key in written:
            record = state.record(kind, key)
            assert record is not None
            body = json.dumps(record.to_item(), sort_keys=True)
            requests.append({"PutRequest": {"Item": {"pk": {"S": kind}, "sk": {"S": key}, "body": {"S": body}}}})
        for start in range(0, len(requests), 25):
            pending = {self._table: requests[start:start + 25]}
            while pending:
                response = call(self._client.batch_write_item, RequestItems=pending)
                pending = response.get("UnprocessedItems") or {}
        state.generation = generation
        state.dirty.clear()
        state.removed.clear()

    # --- the generation and the change records ---------------------------------------------------

    def _generation(self) -> int:
        item = call(self._client.get_item, TableName=self._table, Key=META_KEY, ConsistentRead=True).get("Item")
        return int(item["generation"]["N"]) if item else 0

    def _fence(self, seen: int) -> int:
        """Move the generation from ``seen`` to the next one, or fail if another process moved it."""
        condition = "attribute_not_exists(generation) OR generation = :seen" if seen == 0 else "generation = :seen"
        try:
            call(self._client.update_item, TableName=self._table, Key=META_KEY,
                 UpdateExpression="SET generation = :next", ConditionExpression=condition,
                 ExpressionAttributeValues={":seen": {"N": str(seen)}, ":next": {"N": str(seen + 1)}})
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                raise StateConflict(f"recovery state in {self._table} was saved by another process since "
                                    f"generation {seen}") from exc
            raise
        return seen + 1

    def _record_change(self, generation: int, written: list[Key], removed: list[Key]) -> None:
        body = json.dumps({"written": written, "removed": removed}, separators=(",", ":"))
        item: dict[str, Any] = {"pk": {"S": CHANGES_PK}, "sk": {"S": _sort_key(generation)},
                                "expires_at": {"N": str(int(self._wall()) + CHANGES_KEPT_S)}}
        if len(body) <= CHANGE_RECORD_MAX_BYTES:
            item["change"] = {"S": body}
        call(self._client.put_item, TableName=self._table, Item=item)

    def _changes_after(self, generation: int) -> list[tuple[int, dict[str, list[Key]] | None]]:
        paginator = self._client.get_paginator("query")
        pages = paginator.paginate(
            TableName=self._table, KeyConditionExpression="pk = :p AND sk > :after", ConsistentRead=True,
            ExpressionAttributeValues={":p": {"S": CHANGES_PK}, ":after": {"S": _sort_key(generation)}},
        )
        found: list[tuple[int, dict[str, list[Key]] | None]] = []
        for page in pages:
            for row in page.get("Items", []):
                change = json.loads(row["change"]["S"]) if "change" in row else None
                parsed = None if change is None else {
                    name: [(kind, key) for kind, key in change[name]] for name in ("written", "removed")
                }
                found.append((int(row["sk"]["S"]), parsed))
        return found

    def _get(self, keys: Iterable[Key]) -> list[tuple[Key, str]]:
        wanted = [{"pk": {"S": kind}, "sk": {"S": key}} for kind, key in keys]
        found: list[tuple[Key, str]] = []
        for start in range(0, len(wanted), 100):
            pending: dict[str, Any] = {self._table: {"Keys": wanted[start:start + 100], "ConsistentRead": True}}
            while pending:
                response = call(self._client.batch_get_item, RequestItems=pending)
                for row in response.get("Responses", {}).get(self._table, []):
                    found.append(((row["pk"]["S"], row["sk"]["S"]), row["body"]["S"]))
                pending = response.get("UnprocessedKeys") or {}
        return found


def _sort_key(generation: int) -> str:
    return f"{generation:020d}"
