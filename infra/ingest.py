"""EventBridge rules into the stream: exactly events_schema.rules.ingest_rules, nothing written here.

The local bridge applies the same rule list, so what reaches the stream locally reaches it in AWS.
"""

from __future__ import annotations

from typing import Any

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kinesis as kinesis
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from events_schema.rules import IngestRule, ingest_rules

# EventBridge's own ceilings: retry for a day, then the dead-letter queue.
RETRY_ATTEMPTS = 185
MAX_EVENT_AGE = Duration.hours(24)

# Top-level pattern fields (wire name -> EventPattern keyword).
_PATTERN_FIELDS = {
    "source": "source", "detail-type": "detail_type", "detail": "detail", "account": "account",
    "region": "region", "resources": "resources", "id": "id", "time": "time", "version": "version",
}


def event_pattern(pattern: dict[str, Any]) -> events.EventPattern:
    """The rules module's pattern as CDK's EventPattern, field for field."""
    unknown = set(pattern) - set(_PATTERN_FIELDS)
    if unknown:
        raise ValueError(f"event pattern field(s) {sorted(unknown)} have no EventPattern equivalent")
    return events.EventPattern(**{_PATTERN_FIELDS[key]: value for key, value in pattern.items()})


class Ingest(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, cluster_arn: str, stream: kinesis.IStream,
                 key: kms.IKey, name_prefix: str) -> None:
        super().__init__(scope, construct_id)
        self.dead_letter_queue = sqs.Queue(
            self,
            "DeadLetterQueue",
            encryption=sqs.QueueEncryption.KMS,
            encryption_master_key=key,
            enforce_ssl=True,
            retention_period=Duration.days(14),
            # Undeliverable events wait here for a redrive: they outlive the stack.
            removal_policy=RemovalPolicy.RETAIN,
        )
        stack = Stack.of(self)
        # The AWS Health and EC2 rules match this account (and region) exactly; the cluster lives here too.
        rules = ingest_rules(cluster_arn, account=stack.account, region=stack.region)
        self.rules = [self._rule(rule, stream, name_prefix) for rule in rules]
        # CDK's Kinesis target (unlike its SQS and Lambda targets) does not let EventBridge into the
        # dead-letter queue: without this statement undeliverable events would be lost, not parked.
        self.dead_letter_queue.add_to_resource_policy(
            iam.PolicyStatement(
                sid="EventBridgeRulesDeadLetters",
                principals=[iam.ServicePrincipal("events.amazonaws.com")],
                actions=["sqs:SendMessage"],
                resources=[self.dead_letter_queue.queue_arn],
                conditions={"ArnEquals": {"aws:SourceArn": [rule.rule_arn for rule in self.rules]}},
            )
        )

    def _rule(self, rule: IngestRule, stream: kinesis.IStream, name_prefix: str) -> events.Rule:
        deployed = events.Rule(
            self,
            rule.name,
            rule_name=f"{name_prefix}-{rule.name}",
            description=rule.description,
            event_pattern=event_pattern(rule.event_pattern),
        )
        deployed.add_target(
            targets.KinesisStream(
                stream,
                partition_key_path=rule.partition_key_path,
                dead_letter_queue=self.dead_letter_queue,
                retry_attempts=RETRY_ATTEMPTS,
                max_event_age=MAX_EVENT_AGE,
            )
        )
        return deployed
