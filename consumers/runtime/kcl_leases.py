"""Priming a KCL lease table: one lease per shard, as the KCL's first shard sync would write it.

For local stacks and single-worker tools only (``gpu-recovery consume --prime-leases``): in AWS the
stack creates the tables and the workers sync shards themselves.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from consumers.adapters.table_specs import LEASE_KEY
from consumers.runtime.kcl_config import DaemonConfig


def lease_item(shard: Mapping[str, Any], initial_position: str) -> dict[str, dict[str, Any]]:
    """The lease the KCL's first shard sync writes for ``shard`` (a ListShards entry)."""
    hash_range = shard["HashKeyRange"]
    item: dict[str, dict[str, Any]] = {
        LEASE_KEY: {"S": shard["ShardId"]},
        "leaseCounter": {"N": "0"},
        "checkpoint": {"S": initial_position},
        "checkpointSubSequenceNumber": {"N": "0"},
        "ownerSwitchesSinceCheckpoint": {"N": "0"},
        "startingHashKey": {"S": hash_range["StartingHashKey"]},
        "endingHashKey": {"S": hash_range["EndingHashKey"]},
    }
    parents = [shard[key] for key in ("ParentShardId", "AdjacentParentShardId") if shard.get(key)]
    if parents:
        item["parentShardId"] = {"SS": parents}
    return item


def _list_shards(kinesis: Any, stream_name: str) -> list[dict[str, Any]]:
    shards: list[dict[str, Any]] = []
    page: dict[str, Any] = kinesis.list_shards(StreamName=stream_name)
    shards.extend(page["Shards"])
    while page.get("NextToken"):
        page = kinesis.list_shards(NextToken=page["NextToken"])
        shards.extend(page["Shards"])
    return shards


def _create_lease_table(dynamodb: Any, table: str) -> None:
    try:
        dynamodb.create_table(
            TableName=table,
            KeySchema=[{"AttributeName": LEASE_KEY, "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": LEASE_KEY, "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
    except dynamodb.exceptions.ResourceInUseException:
        return
    dynamodb.get_waiter("table_exists").wait(TableName=table, WaiterConfig={"Delay": 1, "MaxAttempts": 60})


def prime_lease_table(config: DaemonConfig, *, dynamodb: Any, kinesis: Any) -> int:
    """Write one lease per shard, as the KCL's first shard sync would; returns leases added.

    A worker that finds the lease table empty waits a random 1-30 s (``Scheduler
    .shouldInitiateLeaseSync``, not configurable) before syncing shards, so that a fleet does
    not sync all at once. Local tests and single-worker tools skip that wait by priming the
    table (created here if the local stack has none yet). Existing leases are left alone.
    ``dynamodb``/``kinesis`` are boto3 clients.
    """
    table = config.tables.lease
    _create_lease_table(dynamodb, table)
    added = 0
    for shard in _list_shards(kinesis, config.stream_name):
        try:
            dynamodb.put_item(
                TableName=table,
                Item=lease_item(shard, config.initial_position),
                ConditionExpression="attribute_not_exists(leaseKey)",
            )
            added += 1
        except dynamodb.exceptions.ConditionalCheckFailedException:
            continue
    return added
