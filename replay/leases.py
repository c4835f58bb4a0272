"""Is a consumer writing the live tables right now? Asked before ``--target live`` overwrites them.

Two kinds of consumer write the projections:
- KCL workers (MultiLangDaemon): their lease table is named after the application. A lease is *held*
  when it has an owner and its ``leaseCounter`` moves: workers renew their leases every third of the
  failover time (10 s by default), so watching the counters for ``wait_s`` tells a live worker from
  the stale owner a crashed one leaves behind.
- the in-process local reader: it keeps no leases, only checkpoints (``application#shard``); it is
  active when a checkpoint advances while we watch.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from consumers.adapters.dynamodb import from_attribute_map

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

Snapshot = dict[tuple[str, str], tuple[str | None, int]]  # (table, shard) -> (owner, counter)


@dataclass
class ConsumerCheck:
    held: list[str] = field(default_factory=list)  # why we believe a consumer is active
    notes: list[str] = field(default_factory=list)  # what we found that does not block

    @property
    def busy(self) -> bool:
        return bool(self.held)


def check_consumers(
    dynamodb: DynamoDBClient,
    *,
    lease_tables: Sequence[str],
    checkpoint_table: str,
    applications: Sequence[str],
    wait_s: float,
    sleep: Callable[[float], None] = time.sleep,
) -> ConsumerCheck:
    check = ConsumerCheck()
    leases = _leases(dynamodb, lease_tables, check)
    checkpoints = _checkpoints(dynamodb, checkpoint_table, applications, check)
    owned = {where: lease for where, lease in leases.items() if lease[0]}
    if not owned and not checkpoints:
        return check
    if wait_s <= 0:
        for (table, shard), (owner, _) in sorted(owned.items()):
            check.held.append(f"lease table {table}: shard {shard} is owned by worker {owner!r} "
                              "(not watched: --lease-wait 0 counts every owned lease as held)")
        return check
    sleep(wait_s)
    _compare_leases(owned, _leases(dynamodb, lease_tables, None), wait_s, check)
    _compare_checkpoints(checkpoints, _checkpoints(dynamodb, checkpoint_table, applications, None), wait_s, check)
    return check


def _leases(dynamodb: DynamoDBClient, tables: Sequence[str], check: ConsumerCheck | None) -> Snapshot:
    found: Snapshot = {}
    for table in tables:
        rows = _scan(dynamodb, table)
        if rows is None:
            if check is not None:
                check.notes.append(f"no lease table {table}: no KCL worker of that application has run here")
            continue
        for row in rows:
            owner = row.get("leaseOwner")
            found[(table, str(row.get("leaseKey")))] = (str(owner) if owner else None, int(row.get("leaseCounter", 0)))
        if check is not None:
            owners = sorted({str(r["leaseOwner"]) for r in rows if r.get("leaseOwner")})
            check.notes.append(f"lease table {table}: {len(rows)} lease(s), owners: {', '.join(owners) or 'none'}")
    return found


def _checkpoints(
    dynamodb: DynamoDBClient, table: str, applications: Sequence[str], check: ConsumerCheck | None
) -> dict[str, str]:
    rows = _scan(dynamodb, table)
    if rows is None:
        if check is not None:
            check.notes.append(f"no checkpoint table {table}: the local reader has not run here")
        return {}
    prefixes = tuple(f"{app}#" for app in applications)
    found = {
        str(r["application_shard"]): str(r.get("sequence_number", ""))
        for r in rows if str(r.get("application_shard", "")).startswith(prefixes)
    }
    if check is not None and found:
        check.notes.append(f"checkpoint table {table}: {len(found)} local-reader checkpoint(s)")
    return found


def _compare_leases(before: Snapshot, after: Snapshot, wait_s: float, check: ConsumerCheck) -> None:
    for (table, shard), (owner, counter) in sorted(before.items()):
        now_owner, now_counter = after.get((table, shard), (None, counter))
        if now_owner and now_counter != counter:
            check.held.append(
                f"lease table {table}: shard {shard} is held by worker {now_owner!r} "
                f"(renewed while we watched for {wait_s:g} s: leaseCounter {counter} -> {now_counter})"
            )
        else:
            check.notes.append(
                f"lease table {table}: shard {shard} names owner {owner!r} but was not renewed in "
                f"{wait_s:g} s (a stopped worker's stale lease): not counted"
            )


def _compare_checkpoints(before: dict[str, str], after: dict[str, str], wait_s: float, check: ConsumerCheck) -> None:
    moved = [key for key, position in sorted(after.items()) if before.get(key) != position]
    for key in moved:
        application, _, shard = key.partition("#")
        check.held.append(
            f"checkpoint table: the local reader of {application} advanced shard {shard} while we watched "
            f"for {wait_s:g} s ({before.get(key) or 'none'} -> {after[key]})"
        )
    if before and not moved:
        check.notes.append(f"local-reader checkpoints did not move in {wait_s:g} s: no reader is running")


def _scan(dynamodb: DynamoDBClient, table: str) -> list[dict[str, Any]] | None:
    try:
        pages = dynamodb.get_paginator("scan").paginate(TableName=table, ConsistentRead=True)
        return [from_attribute_map(row) for page in pages for row in page.get("Items", [])]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
            return None
        raise
