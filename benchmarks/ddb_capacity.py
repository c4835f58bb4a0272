"""DynamoDB capacity units, counted the way DynamoDB bills them, from the requests a consumer makes.

moto (5.2.5) answers ``ReturnConsumedCapacity`` with a constant per operation (PutItem 1.0,
TransactWriteItems 2.0 per table, whatever the item sizes), so the units are computed here from the item
sizes, with the rules of the Amazon DynamoDB Developer Guide ("DynamoDB item sizes and formats",
"DynamoDB read and write operations"):

* an item's size: attribute names and values in UTF-8, a number ~1 byte per two significant digits + 1,
  binary its raw bytes, null and booleans 1 byte, a list or map 3 bytes + 1 byte per element;
* a write: 1 unit per KB (rounded up) of the larger of the item before and after (PutItem, UpdateItem),
  of the item deleted (DeleteItem); each item of a BatchWriteItem alone; each item of a
  TransactWriteItems twice; a write whose condition fails consumes the existing item's size (1 unit
  when there is none);
* a read: 1 unit per 4 KB (rounded up) strongly consistent, half of it eventually consistent; each item
  of a BatchGetItem alone (a key not found costs the minimum); a Query the sum of the items it read,
  rounded up once; a read of nothing still costs the minimum.

``Accountant.attach(session)`` counts what one session's clients do (one consumer each); the item sizes
it needs for "before" are tracked across every attached session (``SizeBook``), an UpdateItem's result
is read back with a client of its own, outside any count.
"""

from __future__ import annotations

import math
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

KB = 1024
READ_BLOCK = 4 * KB

AttributeValue = Mapping[str, Any]
WireItem = Mapping[str, AttributeValue]


def number_size(text: str) -> int:
    """A number's bytes: 1 per two significant digits, + 1 (leading and trailing zeros trimmed)."""
    digits = str(Decimal(text).normalize()).lstrip("-").replace(".", "")
    if "E" in digits:
        digits = digits.split("E", 1)[0]
    significant = digits.strip("0") or "0"
    return math.ceil(len(significant) / 2) + 1


def value_size(value: AttributeValue) -> int:
    """The size of one attribute value in DynamoDB's wire form ({"S": ...}, {"M": {...}}, ...)."""
    (kind, data), = value.items()
    if kind == "S":
        return len(str(data).encode("utf-8"))
    if kind == "N":
        return number_size(str(data))
    if kind == "B":
        return len(data)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(str(s).encode("utf-8")) for s in data)
    if kind == "NS":
        return sum(number_size(str(n)) for n in data)
    if kind == "BS":
        return sum(len(b) for b in data)
    if kind == "L":
        return 3 + sum(1 + value_size(v) for v in data)
    if kind == "M":
        return 3 + sum(1 + len(k.encode("utf-8")) + value_size(v) for k, v in data.items())
    raise ValueError(f"unknown DynamoDB attribute type {kind!r}")


def item_size(item: WireItem) -> int:
    return sum(len(name.encode("utf-8")) + value_size(value) for name, value in item.items())


def write_units(size: int) -> int:
    return max(1, math.ceil(size / KB))


def read_units(size: int, *, consistent: bool) -> float:
    blocks = max(1, math.ceil(size / READ_BLOCK))
    return float(blocks) if consistent else blocks / 2


@dataclass
class Usage:
    """Units and requests by (table, operation)."""

    wcu: dict[tuple[str, str], float] = field(default_factory=lambda: defaultdict(float))
    rcu: dict[tuple[str, str], float] = field(default_factory=lambda: defaultdict(float))
    requests: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))

    @property
    def total_wcu(self) -> float:
        return sum(self.wcu.values())

    @property
    def total_rcu(self) -> float:
        return sum(self.rcu.values())

    @property
    def total_requests(self) -> int:
        return sum(self.requests.values())

    def by_table(self, names: Mapping[str, str] | None = None) -> dict[str, dict[str, float]]:
        """``{table: {"wcu": .., "rcu": .., "requests": ..}}``; ``names`` renames physical tables."""
        out: dict[str, dict[str, float]] = {}
        for (table, operation) in sorted(set(self.wcu) | set(self.rcu) | set(self.requests)):
            row = out.setdefault((names or {}).get(table, table), {"wcu": 0.0, "rcu": 0.0, "requests": 0})
            row["wcu"] += self.wcu.get((table, operation), 0.0)
            row["rcu"] += self.rcu.get((table, operation), 0.0)
            row["requests"] += self.requests.get((table, operation), 0)
        return out


class SizeBook:
    """The size of every item written through an attached session, so a write knows the size before it."""

    def __init__(self, key_names: Callable[[str], tuple[str, ...]]) -> None:
        self._key_names = key_names
        self._sizes: dict[tuple[str, tuple[str, ...]], int] = {}
        self._lock = threading.Lock()

    def key(self, table: str, item_or_key: WireItem) -> tuple[str, tuple[str, ...]]:
        return table, tuple(repr(sorted(item_or_key[name].items())) for name in self._key_names(table))

    def get(self, table: str, item_or_key: WireItem) -> int:
        with self._lock:
            return self._sizes.get(self.key(table, item_or_key), 0)

    def put(self, table: str, item: WireItem, size: int) -> None:
        with self._lock:
            self._sizes[self.key(table, item)] = size

    def drop(self, table: str, key: WireItem) -> None:
        with self._lock:
            self._sizes.pop(self.key(table, key), None)


class Accountant:
    """Counts the units of every DynamoDB call one session's clients make (thread-safe: the projector
    writes from 8 threads)."""

    def __init__(self, book: SizeBook, read_back: Callable[[str, WireItem], WireItem | None]) -> None:
        self.book = book
        self.usage = Usage()
        self._read_back = read_back
        self._lock = threading.Lock()

    def attach(self, session: Any) -> None:
        session.events.register("before-parameter-build.dynamodb.*", self._keep_params)
        session.events.register("after-call.dynamodb.*", self._count)

    @staticmethod
    def _keep_params(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["bench_ddb_params"] = dict(params)

    def _count(self, http_response: Any, parsed: dict[str, Any], model: Any, context: dict[str, Any],
               **_: Any) -> None:
        params = context.get("bench_ddb_params", {})
        ok = getattr(http_response, "status_code", 500) < 300
        code = (parsed.get("Error") or {}).get("Code", "")
        handler = getattr(self, f"_{model.name}", None)
        if handler is None or not (ok or code in ("ConditionalCheckFailedException", "TransactionCanceledException")):
            return  # DescribeTable and friends cost nothing; a throttled or refused call is retried
        for table, wcu, rcu in handler(params, parsed, ok):
            self._add(table, model.name, wcu, rcu)
        with self._lock:
            for table in _tables_of(model.name, params):
                self.usage.requests[(table, model.name)] += 1

    def _add(self, table: str, operation: str, wcu: float, rcu: float) -> None:
        with self._lock:
            if wcu:
                self.usage.wcu[(table, operation)] += wcu
            if rcu:
                self.usage.rcu[(table, operation)] += rcu

    # --- writes -----------------------------------------------------------------------------------------

    def _put(self, table: str, item: WireItem, ok: bool, factor: int = 1) -> float:
        before = self.book.get(table, item)
        if not ok:
            return factor * write_units(before)
        after = item_size(item)
        self.book.put(table, item, after)
        return factor * write_units(max(before, after))

    def _delete(self, table: str, key: WireItem, ok: bool, factor: int = 1) -> float:
        before = self.book.get(table, key)
        if ok:
            self.book.drop(table, key)
        return factor * write_units(before)

    def _update(self, table: str, key: WireItem, ok: bool, factor: int = 1) -> float:
        before = self.book.get(table, key)
        if not ok:
            return factor * write_units(before)
        found = self._read_back(table, key)
        after = item_size(found) if found else 0
        if found:
            self.book.put(table, found, after)
        return factor * write_units(max(before, after))

    def _PutItem(self, params: dict[str, Any], parsed: dict[str, Any], ok: bool) -> Iterable[tuple[str, float, float]]:
        yield params["TableName"], self._put(params["TableName"], params["Item"], ok), 0.0

    def _DeleteItem(self, params: dict[str, Any], parsed: dict[str, Any],
                    ok: bool) -> Iterable[tuple[str, float, float]]:
        yield params["TableName"], self._delete(params["TableName"], params["Key"], ok), 0.0

    def _UpdateItem(self, params: dict[str, Any], parsed: dict[str, Any],
                    ok: bool) -> Iterable[tuple[str, float, float]]:
        yield params["TableName"], self._update(params["TableName"], params["Key"], ok), 0.0

    def _BatchWriteItem(self, params: dict[str, Any], parsed: dict[str, Any],
                        ok: bool) -> Iterable[tuple[str, float, float]]:
        unprocessed = parsed.get("UnprocessedItems") or {}
        for table, requests in params["RequestItems"].items():
            left = unprocessed.get(table, [])
            for request in requests:
                if request in left:
                    continue
                if "PutRequest" in request:
                    yield table, self._put(table, request["PutRequest"]["Item"], True), 0.0
                else:
                    yield table, self._delete(table, request["DeleteRequest"]["Key"], True), 0.0

    def _TransactWriteItems(self, params: dict[str, Any], parsed: dict[str, Any],
                            ok: bool) -> Iterable[tuple[str, float, float]]:
        # A cancelled transaction is counted as if it had run: DynamoDB bills the items it checked.
        for entry in params["TransactItems"]:
            (kind, body), = entry.items()
            table = body["TableName"]
            if kind == "Put":
                yield table, self._put(table, body["Item"], ok, factor=2), 0.0
            elif kind == "Delete":
                yield table, self._delete(table, body["Key"], ok, factor=2), 0.0
            elif kind == "Update":
                yield table, self._update(table, body["Key"], ok, factor=2), 0.0
            else:
                yield table, 2.0 * write_units(self.book.get(table, body["Key"])), 0.0

    # --- reads ------------------------------------------------------------------------------------------

    def _GetItem(self, params: dict[str, Any], parsed: dict[str, Any], ok: bool) -> Iterable[tuple[str, float, float]]:
        size = item_size(parsed["Item"]) if parsed.get("Item") else 0
        yield params["TableName"], 0.0, read_units(size, consistent=bool(params.get("ConsistentRead")))

    def _BatchGetItem(self, params: dict[str, Any], parsed: dict[str, Any],
                      ok: bool) -> Iterable[tuple[str, float, float]]:
        responses = parsed.get("Responses") or {}
        unprocessed = parsed.get("UnprocessedKeys") or {}
        for table, request in params["RequestItems"].items():
            consistent = bool(request.get("ConsistentRead"))
            found = responses.get(table, [])
            left = len((unprocessed.get(table) or {}).get("Keys", []))
            missing = max(0, len(request["Keys"]) - len(found) - left)
            units = sum(read_units(item_size(row), consistent=consistent) for row in found)
            yield table, 0.0, units + missing * read_units(0, consistent=consistent)

    def _Query(self, params: dict[str, Any], parsed: dict[str, Any], ok: bool) -> Iterable[tuple[str, float, float]]:
        size = sum(item_size(row) for row in parsed.get("Items", []))
        yield params["TableName"], 0.0, read_units(size, consistent=bool(params.get("ConsistentRead")))

    _Scan = _Query


def _tables_of(operation: str, params: dict[str, Any]) -> list[str]:
    if "TableName" in params:
        return [str(params["TableName"])]
    if operation == "TransactWriteItems":
        return sorted({next(iter(e.values()))["TableName"] for e in params["TransactItems"]})
    return sorted(params.get("RequestItems", {}))


def key_schema_reader(client: Any) -> Callable[[str], tuple[str, ...]]:
    """Each table's key attribute names (DescribeTable, once per table), for a client outside any count."""
    cache: dict[str, tuple[str, ...]] = {}

    def names(table: str) -> tuple[str, ...]:
        if table not in cache:
            schema = client.describe_table(TableName=table)["Table"]["KeySchema"]
            cache[table] = tuple(k["AttributeName"] for k in sorted(schema, key=lambda k: k["KeyType"]))
        return cache[table]

    return names


def item_reader(client: Any) -> Callable[[str, WireItem], WireItem | None]:
    def read(table: str, key: WireItem) -> WireItem | None:
        found: WireItem | None = client.get_item(TableName=table, Key=dict(key), ConsistentRead=True).get("Item")
        return found

    return read
