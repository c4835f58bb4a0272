"""One customer managed key for the data at rest: stream, tables, dead-letter queue, topic, archive, logs.

Services that use the key on their own behalf are named in its policy, each with the narrowest
condition it supports: the account and the alarm ARNs for CloudWatch, the account for EventBridge, and
for CloudWatch Logs the log group ARN in the encryption context (the confused-deputy guard the Logs
documentation gives; the service does not pass aws:SourceAccount to KMS).
"""

from __future__ import annotations

from aws_cdk import ArnFormat, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from constructs import Construct

# What CloudWatch Logs asks KMS for when a log group is encrypted with a customer managed key.
LOGS_KEY_ACTIONS = ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"]
_COLON = ArnFormat.COLON_RESOURCE_NAME


class Encryption(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, alias: str) -> None:
        super().__init__(scope, construct_id)
        self.key = kms.Key(
            self,
            "Key",
            alias=alias,
            description="gpu-recovery: the event stream, tables, dead-letter queue, topic, archive and logs",
            enable_key_rotation=True,
            # Retained: the archive and backups stay readable after the stack is gone.
            removal_policy=RemovalPolicy.RETAIN,
        )
        stack = Stack.of(self)
        # (In a key policy "*" is this key.)
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AlarmsPublishToEncryptedTopic",
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                resources=["*"],
                conditions={
                    "StringEquals": {"aws:SourceAccount": stack.account},
                    "ArnLike": {"aws:SourceArn": stack.format_arn(service="cloudwatch", resource="alarm",
                                                                  resource_name="*", arn_format=_COLON)},
                },
            )
        )
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="EventBridgeToEncryptedDeadLetterQueue",
                principals=[iam.ServicePrincipal("events.amazonaws.com")],
                actions=["kms:Decrypt", "kms:GenerateDataKey"],
                resources=["*"],
                conditions={"StringEquals": {"aws:SourceAccount": stack.account}},
            )
        )
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="LogsEncryptOurLogGroups",
                principals=[iam.ServicePrincipal(f"logs.{stack.region}.amazonaws.com")],
                actions=LOGS_KEY_ACTIONS,
                resources=["*"],
                conditions={"ArnLike": {"kms:EncryptionContext:aws:logs:arn": stack.format_arn(
                    service="logs", resource="log-group", resource_name="*", arn_format=_COLON)}},
            )
        )


def log_group(scope: Construct, construct_id: str, *, key: kms.IKey, retention: logs.RetentionDays) -> logs.LogGroup:
    """A log group as every one of ours is: encrypted with the key, kept for ``retention``, and kept with
    the logs in it when the stack is deleted (an incident is investigated after the fact)."""
    return logs.LogGroup(scope, construct_id, encryption_key=key, retention=retention,
                         removal_policy=RemovalPolicy.RETAIN)
