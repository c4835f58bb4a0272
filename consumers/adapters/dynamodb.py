"""DynamoDB adapters: the projection store (conditional on a revision), parked records, provisioning."""

from __future__ import annotations

import base64
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any, TypeVar

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from consumers.adapters.table_specs import PARKED, TABLE_SPECS
from consumers.core.errors import TransientError
from consumers.core.ports import ItemWrite, ParkedRecord, StoredItem
from consumers.core.projection import KEY_ATTRIBUTE, EntityKey, Item

REV = "rev"
TRANSIENT_CODES = frozenset({
    "ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded",
    "InternalServerError", "ServiceUnavailable", "TransactionConflictException",
})
T = TypeVar("T")

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def to_attribute_map(item: Mapping[str, Any]) -> dict[str, Any]:
    return {key: _serializer.serialize(value) for key, value in item.items()}


def from_attribute_map(attributes: Mapping[str, Any]) -> dict[str, Any]:
    return {key: _plain(_deserializer.deserialize(value)) for key, value in attributes.items()}


def _plain(value: Any) -> Any:
    """DynamoDB numbers come back as Decimal; our items hold only integers."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | set):
        return [_plain(v) for v in value]
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    return value


def call(fn: Callable[..., T], **kwargs: Any) -> T:
    """Call boto3, turning throttling and server errors into TransientError."""
    try:
        return fn(**kwargs)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in TRANSIENT_CODES:
            raise TransientError(str(exc)) from exc
        raise


class DynamoProjectionStore:
    """Items of ecs_task / ecs_job / ecs_node, each written only if its revision is unchanged."""

    def __init__(self, client: Any, table_names: Mapping[str, str], *, write_threads: int = 8) -> None:
        self._client = client
        self._names = dict(table_names)
        self._tables = {physical: logical for logical, physical in self._names.items()}
        self._threads = write_threads
        self.requests = 0

    def load(self, keys: Collection[EntityKey]) -> dict[EntityKey, StoredItem]:
        found: dict[EntityKey, StoredItem] = {}
        for chunk in _chunks(sorted(set(keys)), 100):
            pending: dict[str, Any] = {}
            for table, key in chunk:
                name = self._names[table]
                pending.setdefault(name, {"Keys": [], "ConsistentRead": True})
                pending[name]["Keys"].append({KEY_ATTRIBUTE[table]: {"S": key}})
            while pending:
                self.requests += 1
                response = call(self._client.batch_get_item, RequestItems=pending)
                for name, rows in response.get("Responses", {}).items():
                    table = self._tables[name]
                    for row in rows:
                        item = from_attribute_map(row)
                        rev = int(item.pop(REV, 0))
                        found[(table, str(item[KEY_ATTRIBUTE[table]]))] = StoredItem(item, rev)
                pending = response.get("UnprocessedKeys") or {}
        return found

    def save(self, writes: Sequence[ItemWrite]) -> list[EntityKey]:
        if len(writes) <= 1 or self._threads <= 1:
            results = [self._put(write) for write in writes]
        else:
            with ThreadPoolExecutor(max_workers=min(self._threads, len(writes))) as pool:
                results = list(pool.map(self._put, writes))
        return [key for key in results if key is not None]

    def _put(self, write: ItemWrite) -> EntityKey | None:
        table, _ = write.key
        key_name = KEY_ATTRIBUTE[table]
        item = {**write.item, REV: write.expected_rev + 1}
        if write.expected_rev == 0:
            condition, values = "attribute_not_exists(#k)", {}
            names = {"#k": key_name}
        else:
            condition, values = "#r = :rev", {":rev": {"N": str(write.expected_rev)}}
            names = {"#r": REV}
        self.requests += 1
        try:
            call(
                self._client.put_item,
                TableName=self._names[table],
                Item=to_attribute_map(item),
                ConditionExpression=condition,
                ExpressionAttributeNames=names,
                **({"ExpressionAttributeValues": values} if values else {}),
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return write.key
            raise
        return None

    def scan_table(self, table: str) -> Iterator[Item]:
        """Every item of one table, paginated (for the demo, audits and verify; never on the hot path)."""
        paginator = self._client.get_paginator("scan")
        for page in paginator.paginate(TableName=self._names[table], ConsistentRead=True):
            for row in page.get("Items", []):
                item = from_attribute_map(row)
                item.pop(REV, None)
                yield item


class DynamoParkingLot:
    """Parked records keyed by consumer and shard, sorted by sequence number, raw bytes kept."""

    def __init__(self, client: Any, table_name: str) -> None:
        self._client = client
        self._table = table_name

    def park(self, records: Sequence[ParkedRecord]) -> None:
        for record in records:
            item = {
                "consumer_shard": f"{record.consumer}#{record.shard_id}",
                "sequence_number": record.sequence_number,
                "consumer": record.consumer,
                "shard_id": record.shard_id,
                "partition_key": record.partition_key,
                "reason_kind": record.reason_kind,
                "reason": record.reason[:2000],
                "data_b64": base64.b64encode(record.data).decode(),
                "parked_at": record.parked_at,
            }
            # A redelivered bad record overwrites its own entry: parking is idempotent by key.
            call(self._client.put_item, TableName=self._table, Item=to_attribute_map(item))

    def list(self, consumer: str | None = None) -> list[dict[str, Any]]:
        paginator = self._client.get_paginator("scan")
        rows = [
            from_attribute_map(row)
            for page in paginator.paginate(TableName=self._table, ConsistentRead=True)
            for row in page.get("Items", [])
        ]
        return sorted(
            (r for r in rows if consumer is None or r["consumer"] == consumer),
            key=lambda r: (r["consumer_shard"], int(r["sequence_number"])),
        )


def create_tables(client: Any, table_names: Mapping[str, str]) -> None:
    """Create our tables on-demand where missing (local stack and shadow replays)."""
    existing = set(_all_table_names(client))
    for logical, physical in table_names.items():
        spec = TABLE_SPECS[logical]
        if physical in existing:
            continue
        keys = [{"AttributeName": spec.partition_key, "KeyType": "HASH"}]
        attributes = [{"AttributeName": spec.partition_key, "AttributeType": "S"}]
        if spec.sort_key:
            keys.append({"AttributeName": spec.sort_key, "KeyType": "RANGE"})
            attributes.append({"AttributeName": spec.sort_key, "AttributeType": "S"})
        client.create_table(
            TableName=physical, KeySchema=keys, AttributeDefinitions=attributes, BillingMode="PAY_PER_REQUEST"
        )
        client.get_waiter("table_exists").wait(TableName=physical)
        if spec.ttl_attribute:
            client.update_time_to_live(
                TableName=physical,
                TimeToLiveSpecification={"Enabled": True, "AttributeName": spec.ttl_attribute},
            )


def _all_table_names(client: Any) -> Iterator[str]:
    for page in client.get_paginator("list_tables").paginate():
        yield from page.get("TableNames", [])


def _chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


__all__ = ["PARKED", "DynamoParkingLot", "DynamoProjectionStore", "create_tables"]
