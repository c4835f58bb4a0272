"""DynamoDB adapters: the projection store (conditional on a revision), parked records, provisioning."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeVar

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectionError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

from consumers.adapters.table_specs import PARKED, TABLE_SPECS
from consumers.core.errors import TransientError, UnwritableItem
from consumers.core.ports import ItemWrite, ParkedRecord, StoredItem
from consumers.core.projection import KEY_ATTRIBUTE, EntityKey, Item

REV = "rev"
TRANSIENT_CODES = frozenset({
    "ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded",
    "InternalServerError", "ServiceUnavailable", "TransactionConflictException",
})
# botocore's own retryable failures of the connection: worth another try once its retries are spent.
RETRYABLE_CONNECTION_ERRORS = (
    ConnectionError, ConnectionClosedError, ConnectTimeoutError, EndpointConnectionError, ReadTimeoutError,
)
# DynamoDB's limits (Service, account, and table quotas in Amazon DynamoDB): what an item may hold.
MAX_ITEM_BYTES = 400 * 1024
MAX_PARTITION_KEY_BYTES = 2048
MAX_NESTING = 32
T = TypeVar("T")
log = logging.getLogger("gpu_recovery.dynamodb")

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
    """Call boto3, turning throttling, server and connection errors into TransientError."""
    try:
        return fn(**kwargs)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in TRANSIENT_CODES:
            raise TransientError(str(exc)) from exc
        raise
    except RETRYABLE_CONNECTION_ERRORS as exc:
        raise TransientError(str(exc)) from exc


# --- what DynamoDB can hold -----------------------------------------------------------------------


def check_key(key: EntityKey) -> None:
    """A partition key DynamoDB accepts: non-empty, valid UTF-8, at most 2,048 bytes."""
    value = key[1]
    if not isinstance(value, str) or not value:
        raise UnwritableItem(key, "the key is empty")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise UnwritableItem(key, "the key is not valid UTF-8 (a lone surrogate)") from None
    if size > MAX_PARTITION_KEY_BYTES:
        raise UnwritableItem(key, f"the key is {size} bytes (DynamoDB allows {MAX_PARTITION_KEY_BYTES})")


def checked_attribute_map(key: EntityKey, item: Mapping[str, Any]) -> dict[str, Any]:
    """The item as DynamoDB attributes, or UnwritableItem saying why DynamoDB would refuse it."""
    check_key(key)
    try:
        attributes = to_attribute_map(item)
    except (TypeError, ValueError, ArithmeticError) as exc:  # decimal.Rounded for 10**40, floats, ...
        raise UnwritableItem(key, f"not a DynamoDB value ({type(exc).__name__}: {str(exc)[:200]})") from None
    try:
        text = json.dumps(attributes, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    except UnicodeEncodeError:
        raise UnwritableItem(key, "a string is not valid UTF-8 (a lone surrogate)") from None
    # The JSON is never smaller than DynamoDB's count; only an item near the limit is measured exactly.
    if len(text) > MAX_ITEM_BYTES and (size := item_size(item)) > MAX_ITEM_BYTES:
        raise UnwritableItem(key, f"the item is {size} bytes (DynamoDB allows {MAX_ITEM_BYTES})")
    if problem := shape_problem(item):
        raise UnwritableItem(key, problem)
    return attributes


def item_size(item: Mapping[str, Any]) -> int:
    """DynamoDB's item size: names and values in UTF-8, numbers ~1 byte per 2 digits, 3+1/element for
    lists and maps (Amazon DynamoDB Developer Guide, "Item sizes and formats")."""
    return sum(len(name.encode("utf-8")) + _value_size(value) for name, value in item.items())


def _value_size(value: Any) -> int:
    if isinstance(value, str):
        return len(value.encode("utf-8"))
    if isinstance(value, bool) or value is None:
        return 1
    if isinstance(value, int | Decimal):
        return min(21, len(str(value).lstrip("-")) // 2 + 2)
    if isinstance(value, bytes | bytearray):
        return len(value)
    if isinstance(value, Mapping):
        return 3 + sum(len(str(k).encode("utf-8")) + 1 + _value_size(v) for k, v in value.items())
    if isinstance(value, list | tuple | set | frozenset):
        return 3 + sum(1 + _value_size(v) for v in value)
    return len(str(value).encode("utf-8"))


def shape_problem(value: Any, depth: int = 0) -> str | None:
    """What DynamoDB refuses in the shape of a value: maps and lists nested past 32 levels, an empty map key
    (an empty attribute name, at any depth)."""
    if depth > MAX_NESTING:
        return f"attributes nest deeper than DynamoDB's {MAX_NESTING} levels"
    if isinstance(value, Mapping):
        if "" in value:
            return "a map has an empty key (DynamoDB refuses an empty attribute name at any depth)"
        children: Any = value.values()
    elif isinstance(value, list):
        children = value
    else:
        return None
    for child in children:
        if isinstance(child, Mapping | list) and (problem := shape_problem(child, depth + 1)):
            return problem
    return None


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
        for entity in keys:
            check_key(entity)  # a key DynamoDB would refuse is the record's fault, not a failed call
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
        """Check every item first (UnwritableItem, nothing written), then write them conditionally."""
        prepared = [(write, checked_attribute_map(write.key, {**write.item, REV: write.expected_rev + 1}))
                    for write in writes]
        if len(prepared) <= 1 or self._threads <= 1:
            results = [self._put(*pair) for pair in prepared]
        else:
            with ThreadPoolExecutor(max_workers=min(self._threads, len(prepared))) as pool:
                results = list(pool.map(lambda pair: self._put(*pair), prepared))
        return [key for key in results if key is not None]

    def _put(self, write: ItemWrite, attributes: dict[str, Any]) -> EntityKey | None:
        table, _ = write.key
        key_name = KEY_ATTRIBUTE[table]
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
                Item=attributes,
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
    """Parked records keyed by consumer and shard, sorted by sequence number, raw bytes kept.

    A record up to 64 KB is kept whole; a bigger one (Kinesis allows 1 MB, an item 400 KB) keeps its first
    64 KB, its size and SHA-256 here, and the whole record in the archive bucket when one is configured.
    Text is stored as valid UTF-8 whatever the record held, so parking itself cannot fail on the record.
    """

    def __init__(self, client: Any, table_name: str, *, s3: Any = None, archive_bucket: str | None = None) -> None:
        self._client = client
        self._table = table_name
        self._s3 = s3
        self._bucket = archive_bucket

    def park(self, records: Sequence[ParkedRecord]) -> None:
        for record in records:
            # A redelivered bad record overwrites its own entry (parking is idempotent by key), unless
            # that entry was redriven: its mark must survive, or it could be redriven twice.
            try:
                call(self._client.put_item, TableName=self._table, Item=to_attribute_map(self._item(record)),
                     ConditionExpression="attribute_not_exists(redriven_at)")
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                    raise

    def _item(self, record: ParkedRecord) -> dict[str, Any]:
        data = record.data
        item: dict[str, Any] = {
            "consumer_shard": f"{record.consumer}#{record.shard_id}",
            "sequence_number": record.sequence_number,
            "consumer": record.consumer,
            "shard_id": record.shard_id,
            "partition_key": valid_text(record.partition_key),
            "reason_kind": valid_text(record.reason_kind),
            "reason": valid_text(record.reason)[:2000],
            "error_type": valid_text(record.error_type),
            "position": valid_text(record.position)[:200],
            "data_b64": base64.b64encode(data[:INLINE_BYTES]).decode(),
            "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
            "truncated": len(data) > INLINE_BYTES,
            "parked_at": record.parked_at,
        }
        if item["truncated"]:
            item.update(self._archive(record))
        return item

    def _archive(self, record: ParkedRecord) -> dict[str, str]:
        """The whole record in the archive bucket; a failure leaves the head, size and hash, and says so."""
        if self._s3 is None or not self._bucket:
            return {}
        key = f"parked/{record.consumer}/{record.shard_id}/{record.sequence_number}"
        try:
            call(self._s3.put_object, Bucket=self._bucket, Key=key, Body=record.data)
        except ClientError as exc:
            log.error("could not archive parked record %s: %s", key, exc)
            return {"archive_error": str(exc)[:500]}
        return {"archive_uri": f"s3://{self._bucket}/{key}"}

    def of_shard(self, consumer: str, shard_id: str) -> list[dict[str, Any]]:
        """What one consumer parked from one shard, in sequence order (one partition: a query, not a scan)."""
        paginator = self._client.get_paginator("query")
        pages = paginator.paginate(
            TableName=self._table, ConsistentRead=True, KeyConditionExpression="consumer_shard = :cs",
            ExpressionAttributeValues={":cs": {"S": f"{consumer}#{shard_id}"}},
        )
        rows = [from_attribute_map(row) for page in pages for row in page.get("Items", [])]
        return sorted(rows, key=lambda r: int(r["sequence_number"]))

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

    def raw_data(self, row: Mapping[str, Any]) -> bytes | None:
        """The record's whole bytes: inline, or from the archive; None when only its head was kept."""
        head = base64.b64decode(row.get("data_b64", ""))
        if not row.get("truncated"):
            return head
        uri = str(row.get("archive_uri") or "")
        if not uri or self._s3 is None:
            return None
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        body: bytes = call(self._s3.get_object, Bucket=bucket, Key=key)["Body"].read()
        return body if hashlib.sha256(body).hexdigest() == row.get("sha256") else None

    def claim_redrive(self, row: Mapping[str, Any], at: datetime | None = None) -> bool:
        """Mark a parked record as being put back on the stream; False if it already was (never twice)."""
        moment = (at or datetime.now(UTC)).isoformat()
        try:
            self._update(row, "SET redriven_at = :at", {":at": moment},
                         "attribute_exists(consumer_shard) AND attribute_not_exists(redriven_at)")
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def redriven_as(self, row: Mapping[str, Any], sequence_number: str) -> None:
        """The sequence number the redriven copy got on the stream."""
        self._update(row, "SET redriven_as = :seq", {":seq": sequence_number}, None)

    def release_redrive(self, row: Mapping[str, Any]) -> None:
        """The put failed: the record may be redriven again."""
        self._update(row, "REMOVE redriven_at", {}, None)

    def _update(self, row: Mapping[str, Any], expression: str, values: dict[str, Any], condition: str | None) -> None:
        kwargs: dict[str, Any] = {"ConditionExpression": condition} if condition else {}
        if values:
            kwargs["ExpressionAttributeValues"] = to_attribute_map(values)
        call(self._client.update_item, TableName=self._table, UpdateExpression=expression,
             Key=to_attribute_map({"consumer_shard": row["consumer_shard"],
                                   "sequence_number": row["sequence_number"]}), **kwargs)


INLINE_BYTES = 64 * 1024


def valid_text(text: str) -> str:
    """Text DynamoDB accepts: a lone surrogate (from JSON's "\\ud800") becomes its escape."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


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
