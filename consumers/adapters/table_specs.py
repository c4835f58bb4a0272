"""The DynamoDB tables this system owns: their logical names, keys and TTL attribute.

Provisioning (local), the CDK stack and the adapters all read this, so a key schema lives in one place.
"""

from __future__ import annotations

from dataclasses import dataclass

from consumers.core.projection import JOB, KEY_ATTRIBUTE, NODE, TASK

PARKED = "parked"
RECOVERY = "recovery"
LEDGER = "ledger"
CHECKPOINTS = "checkpoints"


@dataclass(frozen=True)
class TableSpec:
    logical: str
    partition_key: str
    sort_key: str | None = None
    ttl_attribute: str | None = None


TABLE_SPECS: dict[str, TableSpec] = {
    TASK: TableSpec(TASK, KEY_ATTRIBUTE[TASK], ttl_attribute="expires_at"),
    JOB: TableSpec(JOB, KEY_ATTRIBUTE[JOB], ttl_attribute="expires_at"),
    NODE: TableSpec(NODE, KEY_ATTRIBUTE[NODE]),
    # Parked records: one partition per consumer and shard, sorted by sequence number.
    PARKED: TableSpec(PARKED, "consumer_shard", sort_key="sequence_number"),
    # The recovery consumer's own projection (incidents, budgets, pending steps), its lock and its
    # change records (which expire; the entities carry no TTL attribute and never do).
    RECOVERY: TableSpec(RECOVERY, "pk", sort_key="sk", ttl_attribute="expires_at"),
    # Idempotency ledger: one item per side effect, written conditionally before the call.
    LEDGER: TableSpec(LEDGER, "idempotency_key", ttl_attribute="expires_at"),
    # Shard checkpoints of the in-process reader (the KCL daemon keeps its own lease table).
    CHECKPOINTS: TableSpec(CHECKPOINTS, "application_shard"),
}
