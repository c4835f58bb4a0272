"""One customer managed key for the data at rest: stream, tables, dead-letter queue, topic, archive."""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from constructs import Construct


class Encryption(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, alias: str) -> None:
        super().__init__(scope, construct_id)
        self.key = kms.Key(
            self,
            "Key",
            alias=alias,
            description="gpu-recovery: the event stream, tables, dead-letter queue, topic and archive",
            enable_key_rotation=True,
            # Retained: the archive and backups stay readable after the stack is gone.
            removal_policy=RemovalPolicy.RETAIN,
        )
        # Services that write into our encrypted resources on their own behalf: CloudWatch alarms
        # publish to the topic, EventBridge sends undeliverable events to the dead-letter queue.
        # (In a key policy "*" is this key.)
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AlarmsPublishToEncryptedTopic",
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                resources=["*"],
            )
        )
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="EventBridgeToEncryptedDeadLetterQueue",
                principals=[iam.ServicePrincipal("events.amazonaws.com")],
                actions=["kms:Decrypt", "kms:GenerateDataKey"],
                resources=["*"],
                conditions={"StringEquals": {"aws:SourceAccount": self.key.stack.account}},
            )
        )
