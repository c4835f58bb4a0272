"""The three DynamoDB tables of one KCL 3 application, created by the stack instead of the KCL.

The KCL would create them at start-up with AWS's default encryption and no point-in-time recovery;
created here they get our key, PITR and the same retention as our own tables, and the workers' role
needs no dynamodb:CreateTable or UpdateTable. Keys, the lease-owner index and on-demand billing are
what KCL 3.1.3 creates (DynamoDBLeaseRefresher, CoordinatorStateDAO, WorkerMetricStatsDAO); the daemon's
properties name these exact tables (consumers/runtime/kcl_config.py).
"""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_kms as kms
from constructs import Construct

from consumers.adapters.table_specs import (
    COORDINATOR_STATE_KEY,
    LEASE_KEY,
    LEASE_OWNER,
    LEASE_OWNER_INDEX,
    WORKER_METRICS_KEY,
    KclTables,
)

_STRING = dynamodb.AttributeType.STRING


class KclApplicationTables(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, application: str, key: kms.IKey) -> None:
        super().__init__(scope, construct_id)
        self.names = KclTables.of(application)
        self.lease = self._table("Leases", self.names.lease, LEASE_KEY, key)
        # Workers find their own leases through this index (KCL 3 adds it with UpdateTable when missing).
        self.lease.add_global_secondary_index(
            index_name=LEASE_OWNER_INDEX,
            partition_key=dynamodb.Attribute(name=LEASE_OWNER, type=_STRING),
            sort_key=dynamodb.Attribute(name=LEASE_KEY, type=_STRING),
            projection_type=dynamodb.ProjectionType.KEYS_ONLY,
        )
        self.coordinator_state = self._table("CoordinatorState", self.names.coordinator_state,
                                             COORDINATOR_STATE_KEY, key)
        self.worker_metrics = self._table("WorkerMetricStats", self.names.worker_metrics, WORKER_METRICS_KEY, key)

    @property
    def tables(self) -> list[dynamodb.Table]:
        return [self.lease, self.coordinator_state, self.worker_metrics]

    @property
    def lease_owner_index_arn(self) -> str:
        return f"{self.lease.table_arn}/index/{LEASE_OWNER_INDEX}"

    def _table(self, construct_id: str, name: str, hash_key: str, key: kms.IKey) -> dynamodb.Table:
        return dynamodb.Table(
            self,
            construct_id,
            table_name=name,
            partition_key=dynamodb.Attribute(name=hash_key, type=_STRING),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            encryption=dynamodb.TableEncryption.CUSTOMER_MANAGED,
            encryption_key=key,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            # The checkpoints: losing them replays the stream from its trim horizon.
            removal_policy=RemovalPolicy.RETAIN,
        )
