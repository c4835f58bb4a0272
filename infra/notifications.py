"""The topic every terminal outcome and every alarm goes to, and the optional chat topic and channels.

Amazon Q Developer in chat applications (formerly AWS Chatbot) posts what is published to a topic mapped
to a Slack or Microsoft Teams channel, when it is an AWS event it knows or its *custom notification*
document. Our notices reach it as that document on a topic of their own (the main topic's JSON is for
programs); docs/notifications.md says why and how.
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import aws_chatbot as chatbot
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

from gpu_recovery.settings import Settings
from infra.config import InfraConfig

CHATBOT = "chatbot.amazonaws.com"
# Delivery failures go to CloudWatch Logs (Chatbot writes them in us-east-1).
CHAT_LOGGING_LEVEL = "ERROR"


def chat_topic_name(settings: Settings, config: InfraConfig) -> str | None:
    """The chat topic's name: the setting, or ``<topic>-chat`` when a channel is configured; None: no chat."""
    if settings.sns_chat_topic_name:
        return settings.sns_chat_topic_name
    return f"{settings.sns_topic_name}-chat" if config.chat_enabled else None


class Notifications(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, topic_name: str, display_name: str,
                 emails: Sequence[str], key: kms.IKey, chat_topic_name: str | None = None,
                 config: InfraConfig | None = None) -> None:
        super().__init__(scope, construct_id)
        # The physical names are settings (SNS_TOPIC_NAME, GPU_RECOVERY_SNS_CHAT_TOPIC_NAME): the
        # consumers address the topics by name.
        self.topic = self._topic("Topic", topic_name, display_name, key)
        for email in emails:
            self.topic.add_subscription(subscriptions.EmailSubscription(email))
        self.chat_topic: sns.Topic | None = None
        self.chat: ChatChannels | None = None
        if chat_topic_name:
            self.chat_topic = self._topic("ChatTopic", chat_topic_name, f"{display_name} (chat)", key)
        if self.chat_topic is not None and config is not None and config.chat_enabled:
            self.chat = ChatChannels(self, "Chat", topic=self.chat_topic, config=config)

    def _topic(self, construct_id: str, name: str, display_name: str, key: kms.IKey) -> sns.Topic:
        return sns.Topic(self, construct_id, topic_name=name, display_name=display_name, master_key=key,
                         enforce_ssl=True)


class ChatChannels(Construct):
    """The configured Slack and/or Teams channel, subscribed to the chat topic, allowed to do nothing else.

    Notifications need no permission; the channel role only bounds what members could run from the
    channel. It has no policy, and the guardrail (the ceiling for every role used from the channel)
    denies every action: a notification channel, not a console.
    """

    def __init__(self, scope: Construct, construct_id: str, *, topic: sns.ITopic, config: InfraConfig) -> None:
        super().__init__(scope, construct_id)
        self.role = iam.Role(self, "ChannelRole", assumed_by=iam.ServicePrincipal(CHATBOT),
                             description="gpu-recovery chat channel: notifications only, no permissions")
        self.guardrail = iam.ManagedPolicy(
            self, "Guardrail", description="gpu-recovery chat channel guardrail: no AWS action from the channel",
            statements=[iam.PolicyStatement(sid="NotificationsOnly", effect=iam.Effect.DENY, actions=["*"],
                                             resources=["*"])],
        )
        self.configurations: list[chatbot.CfnSlackChannelConfiguration
                                  | chatbot.CfnMicrosoftTeamsChannelConfiguration] = []
        if config.slack_workspace_id and config.slack_channel_id:
            self.configurations.append(chatbot.CfnSlackChannelConfiguration(
                self, "Slack", configuration_name=f"{config.name_prefix}-slack",
                slack_workspace_id=config.slack_workspace_id, slack_channel_id=config.slack_channel_id,
                iam_role_arn=self.role.role_arn, sns_topic_arns=[topic.topic_arn],
                guardrail_policies=[self.guardrail.managed_policy_arn], logging_level=CHAT_LOGGING_LEVEL,
                user_role_required=False))
        if config.teams_team_id and config.teams_channel_id and config.teams_tenant_id:
            self.configurations.append(chatbot.CfnMicrosoftTeamsChannelConfiguration(
                self, "Teams", configuration_name=f"{config.name_prefix}-teams", team_id=config.teams_team_id,
                teams_channel_id=config.teams_channel_id, teams_tenant_id=config.teams_tenant_id,
                iam_role_arn=self.role.role_arn, sns_topic_arns=[topic.topic_arn],
                guardrail_policies=[self.guardrail.managed_policy_arn], logging_level=CHAT_LOGGING_LEVEL,
                user_role_required=False))
