"""The idempotency ledger: every side effect is claimed with a conditional write before its call."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from botocore.exceptions import ClientError

from consumers.adapters.dynamodb import call, from_attribute_map, to_attribute_map

ClaimState = Literal["new", "claimed", "done"]


@dataclass(frozen=True)
class Claim:
    state: ClaimState
    status: str | None = None
    detail: dict[str, Any] | None = None
    error: str | None = None


class InMemoryLedger:
    def __init__(self) -> None:
        self.entries: dict[str, dict[str, Any]] = {}

    def claim(self, key: str, action_type: str, at: str) -> Claim:
        entry = self.entries.get(key)
        if entry is None:
            self.entries[key] = {"state": "claimed", "action": action_type, "claimed_at": at}
            return Claim("new")
        return Claim(entry["state"], entry.get("status"), entry.get("detail"), entry.get("error"))

    def done(self, key: str, status: str, detail: dict[str, Any], error: str | None) -> None:
        self.entries[key].update(state="done", status=status, detail=detail, error=error)


class DynamoLedger:
    def __init__(self, client: Any, table_name: str) -> None:
        self._client = client
        self._table = table_name

    def claim(self, key: str, action_type: str, at: str) -> Claim:
        item = {"idempotency_key": key, "state": "claimed", "action": action_type, "claimed_at": at}
        try:
            call(self._client.put_item, TableName=self._table, Item=to_attribute_map(item),
                 ConditionExpression="attribute_not_exists(idempotency_key)")
            return Claim("new")
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
        found = from_attribute_map(call(self._client.get_item, TableName=self._table,
                                        Key={"idempotency_key": {"S": key}}, ConsistentRead=True)["Item"])
        return Claim(found["state"], found.get("status"), found.get("detail"), found.get("error"))

    def done(self, key: str, status: str, detail: dict[str, Any], error: str | None) -> None:
        call(self._client.update_item, TableName=self._table, Key={"idempotency_key": {"S": key}},
             UpdateExpression="SET #s = :done, #st = :status, #d = :detail, #e = :error",
             ExpressionAttributeNames={"#s": "state", "#st": "status", "#d": "detail", "#e": "error"},
             ExpressionAttributeValues=to_attribute_map({":done": "done", ":status": status, ":detail": detail,
                                                         ":error": error}))

    def entries(self) -> list[dict[str, Any]]:
        pages = self._client.get_paginator("scan").paginate(TableName=self._table, ConsistentRead=True)
        return [from_attribute_map(row) for page in pages for row in page.get("Items", [])]
