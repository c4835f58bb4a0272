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


# KCL 3.1.3's own names (DynamoDBLeaseRefresher, CoordinatorStateDAO, WorkerMetricStatsDAO): the lease
# table's hash key and its lease-owner index, the coordinator state's and the worker metrics' keys.
LEASE_KEY = "leaseKey"
LEASE_OWNER = "leaseOwner"
LEASE_OWNER_INDEX = "LeaseOwnerToLeaseKeyIndex"
COORDINATOR_STATE_KEY = "key"
WORKER_METRICS_KEY = "wid"


@dataclass(frozen=True)
class KclTables:
    """The three DynamoDB tables of one KCL 3 application.

    The KCL's defaults are the application name and two suffixes; we name all three in the
    properties anyway, so the daemon uses exactly the tables the stack created (with our key and
    PITR) and never creates one of its own in AWS.
    """

    lease: str
    coordinator_state: str
    worker_metrics: str

    @classmethod
    def of(cls, application: str) -> KclTables:
        return cls(lease=application, coordinator_state=f"{application}-CoordinatorState",
                   worker_metrics=f"{application}-WorkerMetricStats")

    def names(self) -> tuple[str, str, str]:
        return (self.lease, self.coordinator_state, self.worker_metrics)
