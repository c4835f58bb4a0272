"""The topic every terminal outcome and every alarm goes to."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct


class Notifications(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, topic_name: str, display_name: str,
                 emails: Sequence[str], key: kms.IKey) -> None:
        super().__init__(scope, construct_id)
        # The physical name is the setting (SNS_TOPIC_NAME): the consumers address it by name.
        self.topic = sns.Topic(
            self,
            "Topic",
            topic_name=topic_name,
            display_name=display_name,
            master_key=key,
            enforce_ssl=True,
        )
        for email in emails:
            self.topic.add_subscription(subscriptions.EmailSubscription(email))
