"""Where recovery keeps its records: one DynamoDB item per record, written with optimistic concurrency.

No lock: every processor (one per shard under the KCL) loads the records a batch needs, decides, and
writes each changed record only if its revision is unchanged (a transaction of up to 100 items); on a
conflict it reloads those records and decides the batch again. The outputs a change owns (events to
append, commands to run) are written in the same transaction, in an outbox item of the processor's
shard, so a processor that dies after a commit leaves them to whoever takes its shard.

Layout (table ``gpu_recovery_state``, keys ``pk``/``sk``):

| pk                 | sk                         | what                                           |
|--------------------|----------------------------|------------------------------------------------|
| ``job#<id>``       | ``-``                      | a job (``body``: JSON; ``rev``)                |
| ``node``           | ``<container instance>``   | a node (one partition: a placement reads all)  |
| ``incident#<id>``  | ``-``                      | an incident                                    |
| ``task#<arn>``     | ``-``                      | a task's launch spec and tags (TTL)            |
| ``fleet``          | ``-``                      | the cluster's counters                         |
| ``instance#<id>``  | ``-``                      | EC2/managed instance id -> node                |
| ``timer``          | ``<due>#<kind>#<key>``     | the deadline index (a Query, never a scan)     |
| ``outbox#<owner>`` | ``<seq>``                  | outputs not yet done (zlib JSON)               |
| ``clock``          | ``<shard>``                | each shard's position (the stream's clock)     |
| ``secret``         | ``check-key``              | the key per-check secrets derive from          |

Why one module (about 420 lines): the DynamoDB store and its in-memory twin sit together on purpose, so a
change to the layout is made to both at once (tests/adapters/test_recovery_store_contract.py holds them to
the same contract).
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import os
import time
import zlib
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from consumers.adapters.dynamodb import call
from consumers.core.errors import TransientError
from consumers.core.ports import Loaded, OutboxEntry, Output, RecordKey, RecordWrite, StateConflict

MAX_TRANSACTION = 100
CHUNK_ITEMS = 90  # records and their index items; the rest is room for outbox items
OUTBOX_ITEM_BYTES = 300_000
TOMBSTONE_DAYS = 400  # beyond Kinesis's longest retention: no duplicate can come after

Item = dict[str, Any]
PutItem = tuple[RecordKey, Item]


def item_key(key: RecordKey) -> tuple[str, str]:
    kind, name = key
    if kind == "node":
        return "node", name
    if kind == "fleet":
        return "fleet", "-"
    return f"{kind}#{name}", "-"


def record_key(pk: str, sk: str) -> RecordKey:
    if pk == "node":
        return ("node", sk)
    if pk == "fleet":
        return ("fleet", "fleet")
    kind, _, name = pk.partition("#")
    return (kind, name)


def timer_sort_key(key: RecordKey, timer: dict[str, Any]) -> str:
    token = hashlib.sha256(str(timer.get("token")).encode()).hexdigest()[:12]
    return f"{timer['due_at']}#{key[0]}#{key[1]}#{token}"


@dataclass
class Chunk:
    """One transaction: records with their index items, and the outputs those records own."""

    writes: list[RecordWrite] = field(default_factory=list)
    outputs: list[Output] = field(default_factory=list)


def expiry(write: RecordWrite, wall: float) -> int | None:
    """The record's TTL attribute: its own expiry, or a tombstone's (kept past any duplicate's arrival)."""
    if write.expires_at:
        return write.expires_at
    return int(wall) + TOMBSTONE_DAYS * 86_400 if write.body.get("tombstone") else None


def write_cost(write: RecordWrite) -> int:
    """Items a record's write takes in a transaction: itself and its index items."""
    timer_moved = write.timer != write.old_timer
    return 1 + (timer_moved and write.old_timer is not None) + (timer_moved and write.timer is not None) + bool(
        write.instance_id)


def plan_chunks(writes: Sequence[RecordWrite], outputs: Sequence[Output]) -> list[Chunk]:
    """Split a commit into transactions; each output travels with the record that owns it.

    A commit of more than one transaction is not atomic: one may go through and a later one conflict. The
    records that own commands (a job, an incident: the decision's driver) go last, so when any transaction
    conflicts their change, and the commands, are not committed yet and the decision is made again; the
    records before them (a placement's node holds) are written again the same way, or as decided anew.
    """
    drivers = {o.owner for o in outputs if o.kind == "order"}
    ordered = [w for w in writes if w.key not in drivers] + [w for w in writes if w.key in drivers]
    chunks = [Chunk()]
    used = 0
    for write in ordered:
        cost = write_cost(write)
        if used + cost > CHUNK_ITEMS and chunks[-1].writes:
            chunks.append(Chunk())
            used = 0
        chunks[-1].writes.append(write)
        used += cost
    where = {w.key: n for n, chunk in enumerate(chunks) for w in chunk.writes}
    for output in outputs:
        chunks[where.get(output.owner, len(chunks) - 1) if output.owner else len(chunks) - 1].outputs.append(output)
    return chunks


def pack_outputs(outputs: Sequence[Output]) -> list[bytes]:
    """Outputs as zlib JSON blobs of at most OUTBOX_ITEM_BYTES each (2,048 StopTasks compress well)."""
    blobs: list[bytes] = []
    batch: list[dict[str, Any]] = []
    for output in outputs:
        batch.append({"kind": output.kind, "payload": output.payload,
                      "owner": list(output.owner) if output.owner else None})
        if len(batch) % 200 == 0 and len(_compress(batch)) > OUTBOX_ITEM_BYTES * 0.8:
            blobs.append(_compress(batch))
            batch = []
    if batch:
        blobs.append(_compress(batch))
    return blobs


def unpack_outputs(blob: bytes) -> tuple[Output, ...]:
    rows = json.loads(zlib.decompress(blob))
    return tuple(Output(r["kind"], r["payload"], (r["owner"][0], r["owner"][1]) if r["owner"] else None)
                 for r in rows)


def _compress(rows: list[dict[str, Any]]) -> bytes:
    return zlib.compress(json.dumps(rows, separators=(",", ":"), sort_keys=True).encode(), 6)


class _Sequence:
    """Outbox item order within one owner: wall-clock milliseconds, then a counter."""

    def __init__(self, wall: Callable[[], float]) -> None:
        self._wall = wall
        self._count = itertools.count()

    def next(self) -> str:
        return f"{int(self._wall() * 1000):015d}-{next(self._count):09d}"


# --- in memory -----------------------------------------------------------------------------------


class InMemoryRecoveryStore:
    """The same contract in memory; processors sharing one instance behave like processes sharing a table.

    ``before_commit`` lets a test run other work between a processor's load and its commit.
    """

    def __init__(self, *, wall: Callable[[], float] = time.time) -> None:
        self.items: dict[tuple[str, str], Item] = {}
        self.before_commit: Callable[[], None] | None = None
        self.commits = 0
        self.conflicts = 0  # StateConflicts raised (tests assert that concurrency was exercised)
        self._wall = wall
        self._seq = _Sequence(wall)

    def load(self, keys: Collection[RecordKey]) -> Loaded:
        bodies: dict[RecordKey, dict[str, Any] | None] = {}
        revs: dict[RecordKey, int] = {}
        for key in keys:
            if key[0] == "nodes":
                continue
            item = self.items.get(item_key(key))
            bodies[key] = copy.deepcopy(item["body"]) if item else None
            revs[key] = int(item["rev"]) if item else 0
        return Loaded(bodies, revs)

    def load_nodes(self) -> Loaded:
        keys = [record_key(pk, sk) for pk, sk in self.items if pk == "node"]
        loaded = self.load(keys)
        return Loaded({**loaded.bodies, ("nodes", "*"): {}}, loaded.revs)

    def commit(self, writes: Sequence[RecordWrite], outputs: Sequence[Output], owner: str) -> list[OutboxEntry]:
        hook, self.before_commit = self.before_commit, None
        if hook is not None:
            hook()
        entries: list[OutboxEntry] = []
        for chunk in plan_chunks(writes, outputs):
            conflicts = [w.key for w in chunk.writes if int(self.items.get(item_key(w.key), {}).get("rev", 0))
                         != w.expected_rev]
            if conflicts:
                self.conflicts += 1
                raise StateConflict(conflicts)
            for write in chunk.writes:
                self._write(write)
            if chunk.outputs:
                entry = OutboxEntry(owner, self._seq.next(), tuple(chunk.outputs))
                self.items[(f"outbox#{owner}", entry.seq)] = {"entry": entry}
                entries.append(entry)
            self.commits += 1
        return entries

    def _write(self, write: RecordWrite) -> None:
        self.items[item_key(write.key)] = {"body": copy.deepcopy(write.body), "rev": write.expected_rev + 1,
                                           "expires_at": expiry(write, self._wall())}
        if write.old_timer is not None:
            self.items.pop(("timer", timer_sort_key(write.key, write.old_timer)), None)
        if write.timer is not None:
            self.items[("timer", timer_sort_key(write.key, write.timer))] = {"key": write.key, "timer": write.timer}
        if write.instance_id:
            self.items[(f"instance#{write.instance_id}", "-")] = {"body": {"node_arn": write.key[1]}, "rev": 1}

    def due(self, now: str, limit: int) -> list[tuple[RecordKey, dict[str, Any]]]:
        found = sorted((sk, item) for (pk, sk), item in self.items.items() if pk == "timer" and sk <= f"{now}~")
        return [(item["key"], item["timer"]) for _, item in found[:limit]]

    def pending(self, owner: str) -> list[OutboxEntry]:
        return [item["entry"] for (pk, _), item in sorted(self.items.items()) if pk == f"outbox#{owner}"]

    def done(self, entry: OutboxEntry) -> None:
        self.items.pop((f"outbox#{entry.owner}", entry.seq), None)

    def publish_position(self, shard: str, at: str) -> None:
        self.items[("clock", shard)] = {"at": at}

    def drop_position(self, shard: str) -> None:
        self.items.pop(("clock", shard), None)

    def positioned_shards(self) -> list[str]:
        return sorted(sk for (pk, sk) in self.items if pk == "clock")

    def clock(self) -> str | None:
        positions = [str(item["at"]) for (pk, _), item in self.items.items() if pk == "clock"]
        return min(positions) if positions else None

    def check_key(self) -> bytes:
        item = self.items.setdefault(("secret", "check-key"), {"value": os.urandom(32)})
        return bytes(item["value"])

    def bodies(self) -> dict[RecordKey, dict[str, Any]]:
        """Every record (tests and the demo read the live state whole)."""
        return {record_key(pk, sk): item["body"] for (pk, sk), item in self.items.items()
                if "body" in item and not pk.startswith(("instance#",))}


# --- DynamoDB ------------------------------------------------------------------------------------


class DynamoRecoveryStore:
    """Loads with BatchGetItem and Query (never a scan); commits with TransactWriteItems."""

    def __init__(self, client: Any, table_name: str, *, wall: Callable[[], float] = time.time,
                 retention_days: int = 30) -> None:
        self._client = client
        self._table = table_name
        self._wall = wall
        self._seq = _Sequence(wall)
        self._retention_s = retention_days * 86_400
        self.requests = 0

    def load(self, keys: Collection[RecordKey]) -> Loaded:
        wanted = sorted({k for k in keys if k[0] != "nodes"})
        bodies: dict[RecordKey, dict[str, Any] | None] = {k: None for k in wanted}
        revs: dict[RecordKey, int] = {k: 0 for k in wanted}
        for start in range(0, len(wanted), 100):
            chunk = [{"pk": {"S": item_key(k)[0]}, "sk": {"S": item_key(k)[1]}} for k in wanted[start:start + 100]]
            pending: dict[str, Any] = {self._table: {"Keys": chunk, "ConsistentRead": True}}
            while pending:
                self.requests += 1
                response = call(self._client.batch_get_item, RequestItems=pending)
                for row in response.get("Responses", {}).get(self._table, []):
                    self._take(row, bodies, revs)
                pending = response.get("UnprocessedKeys") or {}
        return Loaded(bodies, revs)

    def _take(self, row: dict[str, Any], bodies: dict[RecordKey, dict[str, Any] | None],
              revs: dict[RecordKey, int]) -> None:
        key = record_key(row["pk"]["S"], row["sk"]["S"])
        bodies[key] = json.loads(row["body"]["S"]) if "body" in row else None
        revs[key] = int(row["rev"]["N"]) if "rev" in row else 0

    def load_nodes(self) -> Loaded:
        bodies: dict[RecordKey, dict[str, Any] | None] = {("nodes", "*"): {}}
        revs: dict[RecordKey, int] = {}
        for row in self._query("node"):
            self._take(row, bodies, revs)
        return Loaded(bodies, revs)

    def _query(self, pk: str, until: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        kwargs: dict[str, Any] = {"TableName": self._table, "ConsistentRead": True,
                                  "KeyConditionExpression": "pk = :pk",
                                  "ExpressionAttributeValues": {":pk": {"S": pk}}}
        if until is not None:
            kwargs["KeyConditionExpression"] = "pk = :pk AND sk <= :until"
            kwargs["ExpressionAttributeValues"][":until"] = {"S": until}
        rows: list[dict[str, Any]] = []
        while True:
            self.requests += 1
            response = call(self._client.query, **kwargs)
            rows.extend(response.get("Items", []))
            if (limit is not None and len(rows) >= limit) or "LastEvaluatedKey" not in response:
                return rows[:limit] if limit is not None else rows
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    def commit(self, writes: Sequence[RecordWrite], outputs: Sequence[Output], owner: str) -> list[OutboxEntry]:
        entries: list[OutboxEntry] = []
        for chunk in plan_chunks(writes, outputs):
            items = [self._record_put(w) for w in chunk.writes]
            items += [i for w in chunk.writes for i in self._index_items(w)]
            chunk_entries = []
            for blob in pack_outputs(chunk.outputs) if chunk.outputs else []:
                entry = OutboxEntry(owner, self._seq.next(), unpack_outputs(blob))
                chunk_entries.append(entry)
                items.append({"Put": {"TableName": self._table, "Item": {
                    "pk": {"S": f"outbox#{owner}"}, "sk": {"S": entry.seq}, "outputs": {"B": blob}}}})
            if len(items) > MAX_TRANSACTION:
                raise TransientError(f"a commit of {len(items)} items does not fit one transaction")
            if items:
                self._transact(items, chunk.writes)
            entries.extend(chunk_entries)
        return entries

    def _record_put(self, write: RecordWrite) -> dict[str, Any]:
        pk, sk = item_key(write.key)
        item: dict[str, Any] = {"pk": {"S": pk}, "sk": {"S": sk}, "body": {"S": json.dumps(write.body,
                                separators=(",", ":"), sort_keys=True)}, "rev": {"N": str(write.expected_rev + 1)}}
        expires = expiry(write, self._wall())
        if expires:
            item["expires_at"] = {"N": str(expires)}
        put: dict[str, Any] = {"TableName": self._table, "Item": item}
        if write.expected_rev == 0:
            put["ConditionExpression"] = "attribute_not_exists(pk)"
        else:
            put["ConditionExpression"] = "#rev = :rev"
            put["ExpressionAttributeNames"] = {"#rev": "rev"}
            put["ExpressionAttributeValues"] = {":rev": {"N": str(write.expected_rev)}}
        return {"Put": put}

    def _index_items(self, write: RecordWrite) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        if write.old_timer is not None and write.old_timer != write.timer:
            items.append({"Delete": {"TableName": self._table, "Key": {
                "pk": {"S": "timer"}, "sk": {"S": timer_sort_key(write.key, write.old_timer)}}}})
        if write.timer is not None and write.timer != write.old_timer:
            items.append({"Put": {"TableName": self._table, "Item": {
                "pk": {"S": "timer"}, "sk": {"S": timer_sort_key(write.key, write.timer)},
                "kind": {"S": write.key[0]}, "key": {"S": write.key[1]}, "timer": {"S": json.dumps(write.timer)}}}})
        if write.instance_id:
            items.append({"Put": {"TableName": self._table, "Item": {
                "pk": {"S": f"instance#{write.instance_id}"}, "sk": {"S": "-"},
                "body": {"S": json.dumps({"node_arn": write.key[1]})}, "rev": {"N": "1"}}}})
        return items

    def _transact(self, items: list[dict[str, Any]], writes: Sequence[RecordWrite]) -> None:
        token = hashlib.sha256(json.dumps(items, sort_keys=True, default=str).encode()).hexdigest()[:36]
        self.requests += 1
        try:
            call(self._client.transact_write_items, TransactItems=items, ClientRequestToken=token)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            if error.get("Code") != "TransactionCanceledException":
                raise
            reasons = exc.response.get("CancellationReasons") or []
            conflicts = [w.key for w, r in zip(writes, reasons, strict=False)
                         if r.get("Code") == "ConditionalCheckFailed"]
            if conflicts:
                raise StateConflict(conflicts) from exc
            raise TransientError(f"transaction cancelled: {error.get('Message')}") from exc

    def due(self, now: str, limit: int) -> list[tuple[RecordKey, dict[str, Any]]]:
        rows = self._query("timer", until=f"{now}~", limit=limit)
        return [((row["kind"]["S"], row["key"]["S"]), json.loads(row["timer"]["S"])) for row in rows]

    def pending(self, owner: str) -> list[OutboxEntry]:
        return [OutboxEntry(owner, row["sk"]["S"], unpack_outputs(bytes(row["outputs"]["B"])))
                for row in self._query(f"outbox#{owner}")]

    def done(self, entry: OutboxEntry) -> None:
        self.requests += 1
        call(self._client.delete_item, TableName=self._table,
             Key={"pk": {"S": f"outbox#{entry.owner}"}, "sk": {"S": entry.seq}})

    def publish_position(self, shard: str, at: str) -> None:
        self.requests += 1
        call(self._client.put_item, TableName=self._table, Item={
            "pk": {"S": "clock"}, "sk": {"S": shard}, "at": {"S": at},
            "expires_at": {"N": str(int(self._wall()) + self._retention_s)}})

    def drop_position(self, shard: str) -> None:
        self.requests += 1
        call(self._client.delete_item, TableName=self._table, Key={"pk": {"S": "clock"}, "sk": {"S": shard}})

    def positioned_shards(self) -> list[str]:
        return sorted(row["sk"]["S"] for row in self._query("clock"))

    def clock(self) -> str | None:
        positions = [row["at"]["S"] for row in self._query("clock")]
        return min(positions) if positions else None

    def check_key(self) -> bytes:
        key = {"pk": {"S": "secret"}, "sk": {"S": "check-key"}}
        found = call(self._client.get_item, TableName=self._table, Key=key, ConsistentRead=True).get("Item")
        if found:
            return bytes(found["value"]["B"])
        try:
            call(self._client.put_item, TableName=self._table, Item={**key, "value": {"B": os.urandom(32)}},
                 ConditionExpression="attribute_not_exists(pk)")
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
        return self.check_key()
