"""The tables: keys and TTL from consumers/adapters/table_specs.py, physical names from the settings."""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_kms as kms
from constructs import Construct

from consumers.adapters.table_specs import LEDGER, PARKED, RECOVERY, TABLE_SPECS, TableSpec
from consumers.core.projection import JOB, NODE, TASK

# The checkpoints table serves only the in-process reader; in AWS the KCL keeps its own lease tables.
DEPLOYED = (TASK, JOB, NODE, RECOVERY, LEDGER, PARKED)


class Tables(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, names: Mapping[str, str], key: kms.IKey) -> None:
        super().__init__(scope, construct_id)
        self.by_logical: dict[str, dynamodb.Table] = {
            logical: self._table(TABLE_SPECS[logical], names[logical], key) for logical in DEPLOYED
        }

    def _table(self, spec: TableSpec, physical: str, key: kms.IKey) -> dynamodb.Table:
        string = dynamodb.AttributeType.STRING
        return dynamodb.Table(
            self,
            spec.logical,
            table_name=physical,
            partition_key=dynamodb.Attribute(name=spec.partition_key, type=string),
            sort_key=dynamodb.Attribute(name=spec.sort_key, type=string) if spec.sort_key else None,
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            encryption=dynamodb.TableEncryption.CUSTOMER_MANAGED,
            encryption_key=key,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            time_to_live_attribute=spec.ttl_attribute,
            # Projections can be rebuilt, but the ledger and the recovery state guard side effects.
            removal_policy=RemovalPolicy.RETAIN,
        )

    def __getitem__(self, logical: str) -> dynamodb.Table:
        return self.by_logical[logical]
