"""Persistence of the recovery consumer's state: one DynamoDB item per entity (pk = kind, sk = key)."""

from __future__ import annotations

import json
from typing import Any, Protocol

from consumers.adapters.dynamodb import call
from consumers.core.recovery.state import KINDS, RecoveryState


class RecoveryStore(Protocol):
    def load(self) -> RecoveryState: ...

    def save(self, state: RecoveryState) -> None: ...


class InMemoryRecoveryStore:
    def __init__(self) -> None:
        self.items: dict[tuple[str, str], str] = {}

    def load(self) -> RecoveryState:
        state = RecoveryState()
        for (kind, key), body in sorted(self.items.items()):
            state.table(kind)[key] = KINDS[kind].from_item(json.loads(body))
        return state

    def save(self, state: RecoveryState) -> None:
        for kind, key in state.removed:
            self.items.pop((kind, key), None)
        for kind, key in state.dirty:
            record = state.record(kind, key)
            if record is not None:
                self.items[(kind, key)] = json.dumps(record.to_item(), sort_keys=True)
        state.dirty.clear()
        state.removed.clear()


class DynamoRecoveryStore:
    """Loads with a Query per kind (never a table scan) and writes only what changed, in batches."""

    def __init__(self, client: Any, table_name: str) -> None:
        self._client = client
        self._table = table_name

    def load(self) -> RecoveryState:
        state = RecoveryState()
        paginator = self._client.get_paginator("query")
        for kind, record_type in KINDS.items():
            pages = paginator.paginate(TableName=self._table, KeyConditionExpression="pk = :k",
                                       ExpressionAttributeValues={":k": {"S": kind}}, ConsistentRead=True)
            for page in pages:
                for row in page.get("Items", []):
                    record = record_type.from_item(json.loads(row["body"]["S"]))
                    state.table(kind)[row["sk"]["S"]] = record
        return state

    def save(self, state: RecoveryState) -> None:
        requests: list[dict[str, Any]] = [
            {"DeleteRequest": {"Key": {"pk": {"S": kind}, "sk": {"S": key}}}} for kind, key in sorted(state.removed)
        ]
        for kind, key in sorted(state.dirty):
            record = state.record(kind, key)
            if record is not None:
                body = json.dumps(record.to_item(), sort_keys=True)
                requests.append({"PutRequest": {"Item": {"pk": {"S": kind}, "sk": {"S": key}, "body": {"S": body}}}})
        for start in range(0, len(requests), 25):
            pending = {self._table: requests[start:start + 25]}
            while pending:
                response = call(self._client.batch_write_item, RequestItems=pending)
                pending = response.get("UnprocessedItems") or {}
        state.dirty.clear()
        state.removed.clear()
