"""The event stream: the source of truth. Every other unit reads it or writes it."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_kinesis as kinesis
from aws_cdk import aws_kms as kms
from constructs import Construct

from infra.config import InfraConfig


class EventStream(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, stream_name: str, shards: int,
                 config: InfraConfig, key: kms.IKey) -> None:
        super().__init__(scope, construct_id)
        provisioned = config.stream_mode == "provisioned"
        self.stream = kinesis.Stream(
            self,
            "Stream",
            stream_name=stream_name,
            stream_mode=kinesis.StreamMode.PROVISIONED if provisioned else kinesis.StreamMode.ON_DEMAND,
            shard_count=shards if provisioned else None,
            retention_period=Duration.hours(config.retention_hours),
            encryption=kinesis.StreamEncryption.KMS,
            encryption_key=key,
            # The tables are projections of this stream: losing it loses the history.
            removal_policy=RemovalPolicy.RETAIN,
        )
