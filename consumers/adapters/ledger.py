"""The idempotency ledger: every side effect is claimed with a conditional write before its call.

Entries expire (``expires_at``, DynamoDB TTL) after the retention period: a decision is never made again
that long after (its deadline would have ended it).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError

from consumers.adapters.dynamodb import call, from_attribute_map, to_attribute_map
from consumers.core.ports import Claim

RETENTION_S = 30 * 86_400


class InMemoryLedger:
    """The same contract in memory (entries carry the same ``expires_at``; nothing deletes them here)."""

    def __init__(self, *, wall: Callable[[], float] = time.time, retention_s: int = RETENTION_S) -> None:
        self.entries: dict[str, dict[str, Any]] = {}
        self._wall = wall
        self._retention_s = retention_s

    def claim(self, key: str, action_type: str, at: str) -> Claim:
        entry = self.entries.get(key)
        if entry is None:
            self.entries[key] = {"state": "claimed", "action": action_type, "claimed_at": at,
                                 "expires_at": int(self._wall()) + self._retention_s}
            return Claim("new")
        return Claim(entry["state"], entry.get("status"), entry.get("detail"), entry.get("error"),
                     entry.get("error_kind"))

    def done(self, key: str, status: str, detail: dict[str, Any], error: str | None,
             error_kind: str | None = None) -> None:
        self.entries[key].update(state="done", status=status, detail=detail, error=error, error_kind=error_kind)


class DynamoLedger:
    def __init__(self, client: Any, table_name: str, *, wall: Callable[[], float] = time.time,
                 retention_s: int = RETENTION_S) -> None:
        self._client = client
        self._table = table_name
        self._wall = wall
        self._retention_s = retention_s

    def claim(self, key: str, action_type: str, at: str) -> Claim:
        item = {"idempotency_key": key, "state": "claimed", "action": action_type, "claimed_at": at,
                "expires_at": int(self._wall()) + self._retention_s}
        try:
            call(self._client.put_item, TableName=self._table, Item=to_attribute_map(item),
                 ConditionExpression="attribute_not_exists(idempotency_key)")
            return Claim("new")
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
        found = from_attribute_map(call(self._client.get_item, TableName=self._table,
                                        Key={"idempotency_key": {"S": key}}, ConsistentRead=True)["Item"])
        return Claim(found["state"], found.get("status"), found.get("detail"), found.get("error"),
                     found.get("error_kind"))

    def done(self, key: str, status: str, detail: dict[str, Any], error: str | None,
             error_kind: str | None = None) -> None:
        call(self._client.update_item, TableName=self._table, Key={"idempotency_key": {"S": key}},
             UpdateExpression="SET #s = :done, #st = :status, #d = :detail, #e = :error, #k = :kind",
             ExpressionAttributeNames={"#s": "state", "#st": "status", "#d": "detail", "#e": "error",
                                       "#k": "error_kind"},
             ExpressionAttributeValues=to_attribute_map({":done": "done", ":status": status, ":detail": detail,
                                                         ":error": error, ":kind": error_kind}))

    def entries(self) -> list[dict[str, Any]]:
        """Every entry (tests and audits only: a paginated scan, never on the consumers' path)."""
        pages = self._client.get_paginator("scan").paginate(TableName=self._table, ConsistentRead=True)
        return [from_attribute_map(row) for page in pages for row in page.get("Items", [])]
