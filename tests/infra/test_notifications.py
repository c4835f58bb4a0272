"""The chat channel configuration (Amazon Q Developer in chat applications): off by default; with Slack and
Teams ids, a chat topic, both channels subscribed to it and to the alarms, and a channel that can do nothing
but receive notifications.

Uses the shared syntheses: ``default_synth`` (no chat) and ``turned`` (a Slack and a Teams channel).
"""

from __future__ import annotations

from typing import Any

import pytest
from aws_cdk.assertions import Match

from consumers.core.errors import ConfigError
from gpu_recovery.settings import load_settings
from infra.config import load_infra_config
from infra.notifications import CHAT_LOGGING_LEVEL, chat_topic_name
from tests.infra.support import TURNED_CONTEXT, Synth, by_sid, role_statements

CHATBOT_TYPES = ("AWS::Chatbot::SlackChannelConfiguration", "AWS::Chatbot::MicrosoftTeamsChannelConfiguration")


def recovery_env(synth: Synth) -> dict[str, Any]:
    (recovery,) = [d for d in synth.resources("AWS::ECS::TaskDefinition").values()
                   if d["Properties"]["Family"] == "gpu-recovery-recovery"]
    return {e["Name"]: e["Value"] for e in recovery["Properties"]["ContainerDefinitions"][0]["Environment"]}


def ref(synth: Synth, construct: Any) -> dict[str, str]:
    return {"Ref": synth.logical_id(construct)}


def test_no_chat_by_default(default_synth: Synth) -> None:
    # GIVEN the stack with every default
    # THEN there is one topic, no chat configuration, and the consumers are told of no chat topic
    default_synth.template.resource_count_is("AWS::SNS::Topic", 1)
    for type_name in CHATBOT_TYPES:
        default_synth.template.resource_count_is(type_name, 0)
    assert default_synth.stack.notifications.chat_topic is None
    assert default_synth.stack.notifications.chat is None
    assert "GPU_RECOVERY_SNS_CHAT_TOPIC_NAME" not in recovery_env(default_synth)


def test_a_chat_topic_encrypted_like_the_main_one_and_named_for_the_consumers(turned: Synth) -> None:
    # GIVEN Slack and Teams ids in the configuration
    chat_topic = turned.stack.notifications.chat_topic
    assert chat_topic is not None
    # THEN a second topic, named after the main one, encrypted with the stack's key, HTTPS only
    key = {"Fn::GetAtt": [turned.logical_id(turned.stack.stream.encryption_key), "Arn"]}
    turned.template.has_resource_properties("AWS::SNS::Topic", {
        "TopicName": "gpu-alerts-chat", "KmsMasterKeyId": key})
    turned.template.has_resource_properties("AWS::SNS::TopicPolicy", {
        "Topics": [ref(turned, chat_topic)],
        "PolicyDocument": {"Statement": Match.array_with([Match.object_like({
            "Effect": "Deny", "Condition": {"Bool": {"aws:SecureTransport": "false"}}})])},
    })
    # AND the recovery consumer knows its name and may publish to it (and to nothing else new)
    assert recovery_env(turned)["GPU_RECOVERY_SNS_CHAT_TOPIC_NAME"] == "gpu-alerts-chat"
    statements = by_sid(role_statements(turned, turned.stack.consumers.roles["recovery"]))
    assert statements["NotifyOurTopic"]["Resource"] == [ref(turned, turned.stack.topic), ref(turned, chat_topic)]


def test_slack_and_teams_channels_read_the_chat_topic_with_the_guardrail(turned: Synth) -> None:
    chat = turned.stack.notifications
    assert chat.chat_topic is not None and chat.chat is not None
    common = {
        "SnsTopicArns": [ref(turned, chat.chat_topic)],
        "IamRoleArn": {"Fn::GetAtt": [turned.logical_id(chat.chat.role), "Arn"]},
        "GuardrailPolicies": [ref(turned, chat.chat.guardrail)],
        "LoggingLevel": CHAT_LOGGING_LEVEL,
        "UserRoleRequired": False,
    }
    # THEN the Slack channel is the configured workspace and channel
    turned.template.resource_count_is("AWS::Chatbot::SlackChannelConfiguration", 1)
    turned.template.has_resource_properties("AWS::Chatbot::SlackChannelConfiguration", {
        "ConfigurationName": "gpu-recovery-slack", "SlackWorkspaceId": TURNED_CONTEXT["slack_workspace_id"],
        "SlackChannelId": TURNED_CONTEXT["slack_channel_id"], **common})
    # AND the Teams channel is the configured team, channel and tenant
    turned.template.resource_count_is("AWS::Chatbot::MicrosoftTeamsChannelConfiguration", 1)
    turned.template.has_resource_properties("AWS::Chatbot::MicrosoftTeamsChannelConfiguration", {
        "ConfigurationName": "gpu-recovery-teams", "TeamId": TURNED_CONTEXT["teams_team_id"],
        "TeamsChannelId": TURNED_CONTEXT["teams_channel_id"], "TeamsTenantId": TURNED_CONTEXT["teams_tenant_id"],
        **common})


def test_the_channel_can_do_nothing_but_receive(turned: Synth) -> None:
    channels = turned.stack.notifications.chat
    assert channels is not None
    role_id = turned.logical_id(channels.role)
    role = turned.resources("AWS::IAM::Role")[role_id]["Properties"]
    # THEN only Amazon Q Developer in chat applications may assume the channel role
    assert role["AssumeRolePolicyDocument"]["Statement"] == [{
        "Action": "sts:AssumeRole", "Effect": "Allow", "Principal": {"Service": "chatbot.amazonaws.com"}}]
    # AND the role holds no permission at all: no inline, attached or managed policy
    assert "Policies" not in role and "ManagedPolicyArns" not in role
    assert role_statements(turned, channels.role) == []
    # AND the guardrail (the ceiling of every role used from the channel) denies every action
    guardrail = turned.resources("AWS::IAM::ManagedPolicy")[turned.logical_id(channels.guardrail)]
    assert guardrail["Properties"]["PolicyDocument"]["Statement"] == [
        {"Sid": "NotificationsOnly", "Effect": "Deny", "Action": "*", "Resource": "*"}]
    assert "Roles" not in guardrail["Properties"]  # a guardrail, attached to no role


def test_alarms_reach_the_chat_channel_too(turned: Synth) -> None:
    chat_topic = turned.stack.notifications.chat_topic
    assert chat_topic is not None
    topics = [ref(turned, turned.stack.topic), ref(turned, chat_topic)]
    alarms = turned.resources("AWS::CloudWatch::Alarm").values()
    assert alarms
    for alarm in alarms:
        assert alarm["Properties"]["AlarmActions"] == topics
        assert alarm["Properties"]["OKActions"] == topics


# --- configuration (pure) ------------------------------------------------------------------------------


def test_the_chat_topic_is_the_setting_or_named_after_the_topic_when_a_channel_is_configured() -> None:
    slack = load_infra_config({"slack_workspace_id": "T0123ABCD", "slack_channel_id": "C0123ABCDEF"}, {})
    assert chat_topic_name(load_settings(), load_infra_config({}, {})) is None
    assert chat_topic_name(load_settings(sns_topic_name="alerts"), slack) == "alerts-chat"
    # A chat topic without a channel here: the team maps it to a channel some other way (console, own stack)
    assert chat_topic_name(load_settings(sns_chat_topic_name="to-slack"), load_infra_config({}, {})) == "to-slack"


@pytest.mark.parametrize(("context", "message"), [
    ({"slack_workspace_id": "T0123ABCD"}, "slack_workspace_id, slack_channel_id go together"),
    ({"teams_team_id": "12345678-90ab-cdef-1234-567890abcdef", "teams_channel_id": "19%3aab%40thread.tacv2"},
     "teams_team_id, teams_channel_id, teams_tenant_id go together"),
    ({"slack_workspace_id": "my-workspace", "slack_channel_id": "C0123ABCDEF"},
     "setting slack_workspace_id (cdk context key slack_workspace_id, environment variable "
     "GPU_RECOVERY_SLACK_WORKSPACE_ID): String should match pattern"),
    ({"teams_channel_id": "19:ab@thread.tacv2"}, "setting teams_channel_id (cdk context key teams_channel_id"),
])
def test_a_half_or_malformed_channel_is_refused_with_what_to_fix(context: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_infra_config(context, {})
    assert message in str(raised.value)


def test_channel_ids_come_from_the_environment_too() -> None:
    environ = {"GPU_RECOVERY_TEAMS_TEAM_ID": "12345678-90ab-cdef-1234-567890abcdef",
               "GPU_RECOVERY_TEAMS_CHANNEL_ID": "19%3aab%40thread.tacv2",
               "GPU_RECOVERY_TEAMS_TENANT_ID": "abcdef12-3456-7890-abcd-ef1234567890"}
    config = load_infra_config({}, environ)
    assert config.chat_enabled and config.teams_channel_id == "19%3aab%40thread.tacv2"
