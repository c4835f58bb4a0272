"""Notices as SNS messages: each protocol's body and the attributes, on moto's SNS, and filter policies.

The chat card follows the custom notification schema of Amazon Q Developer in chat applications
(https://docs.aws.amazon.com/chatbot/latest/adminguide/custom-notifs.html): version "1.0", source "custom",
content {textType, title, description, nextSteps, keywords}, metadata {threadId, summary, eventType,
relatedResources, additionalContext}.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from moto import mock_aws
from moto.core import DEFAULT_ACCOUNT_ID
from moto.sns.models import sns_backends
from pydantic import ValidationError

from consumers.adapters.actuators import AwsActuator
from consumers.adapters.sns_message import (
    ATTRIBUTE_VALUES_MAX,
    CHAT_LIST_MAX,
    MESSAGE_MAX_BYTES,
    SUBJECT_MAX,
    TEXT_LIST_MAX,
    attributes_size,
    chat_body,
    default_body,
    email_body,
    message_attributes,
    notice_of,
    publish_requests,
    sibling_topic_arn,
    subject_line,
)
from events_schema.commands import Publish
from events_schema.events import NOTICE_SEVERITY, Notice, Seen
from gpu_recovery.aws import AwsClients
from gpu_recovery.settings import load_settings
from tests.factories import node_arn

REGION = "us-east-1"
CLUSTER = "gpu-training"


def quarantined(**changes: Any) -> Notice:
    """A notice as the recovery sends it for an XID 79 quarantine (one node, one job, one incident)."""
    fields: dict[str, Any] = {
        "kind": "node_quarantined", "severity": "action_needed", "cluster": CLUSTER,
        "summary": "XID 79 (GPU fell off the bus): the node is out of service",
        "next_step": "Replace the node, or open a case with AWS Support.", "incident_id": "inc-7",
        "node_arn": node_arn(7), "instance_id": "i-0abc7", "job_ids": ["job:llm-70b"],
        "seen": Seen(xids=[79], verdict="hardware_fault", reason="GPU 3 fell off the bus"),
        "done": ["inc-7:drain:1", "inc-7:check:1", "inc-7:quarantine"], "at": "2026-11-28T10:00:00Z",
    }
    return Notice(**{**fields, **changes})


def fabric_failure(nodes: int = 2048) -> Notice:
    """A grouped notice: one cause, many nodes, as the recovery's grouping sends it for a fabric failure.

    Ids have their real shapes: ECS container instance ids are 32 hex digits, incident ids 12.
    """
    arns = [f"arn:aws:ecs:{REGION}:123456789012:container-instance/{CLUSTER}/{n:032x}" for n in range(nodes)]
    incidents = [f"inc-{n:012x}" for n in range(nodes)]
    return Notice(kind="escalation", severity="page", cluster=CLUSTER, title=f"Fabric failure: {nodes:,} nodes",
                  summary=f"{nodes:,} ranks stopped within a second; the checks found no GPU fault",
                  next_step="Check the EFA fabric and the switches before restarting.", node_arns=arns,
                  incident_ids=incidents, job_ids=["job:llama-405b", "job:eval"],
                  done=[f"{incident}:check:1" for incident in incidents])


def bodies(request: Any) -> dict[str, Any]:
    return dict(json.loads(request["Message"]))


# --- subject and attributes: SNS's rules for any notice ---------------------------------------------

words = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=300)
ids = st.lists(st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=60), max_size=5)
notices = st.builds(
    Notice, kind=st.one_of(st.sampled_from(sorted(NOTICE_SEVERITY)), words), cluster=words, title=words,
    summary=words, next_step=words, severity=st.sampled_from(["info", "action_needed", "page"]),
    node_arn=st.one_of(st.none(), words), job_ids=ids, node_arns=ids, incident_ids=ids, test=st.booleans(),
)


@settings(max_examples=150, deadline=None)
@given(notices, st.one_of(st.none(), words))
def test_any_subject_is_ascii_printable_one_line_under_100(notice: Notice, given_subject: str | None) -> None:
    # GIVEN any notice (unicode, newlines, control characters, long titles) and any subject the caller gives
    subject = subject_line(notice, given_subject)
    # THEN the subject is what SNS accepts: ASCII printable, one line, under 100 characters, never empty
    assert 0 < len(subject) <= SUBJECT_MAX
    assert all(32 <= ord(char) < 127 for char in subject), subject
    # AND a test says so
    assert not notice.test or subject.startswith("TEST") or "TEST" in subject


@settings(max_examples=150, deadline=None)
@given(notices)
def test_attributes_are_never_empty_and_name_every_node_and_job(notice: Notice) -> None:
    # GIVEN any notice WHEN its attributes are made
    attributes = message_attributes(notice)
    # THEN no value is empty (SNS refuses those), and there are at most SNS's 10
    assert all(value["StringValue"] for value in attributes.values())
    assert set(attributes) <= {"kind", "severity", "cluster", "node", "job", "test"}
    # AND kind, cluster, node and job are there exactly when the notice has them
    assert ("kind" in attributes) == bool(notice.kind)
    assert ("cluster" in attributes) == bool(notice.cluster)
    assert attributes["severity"] == {"DataType": "String", "StringValue": notice.severity}
    nodes = [arn for arn in dict.fromkeys([notice.node_arn, *notice.node_arns]) if arn]
    jobs = [job for job in dict.fromkeys(notice.job_ids) if job]
    for name, values in (("node", nodes), ("job", jobs)):
        if values:
            assert attributes[name]["DataType"] == "String.Array"
            assert json.loads(attributes[name]["StringValue"]) == values[:ATTRIBUTE_VALUES_MAX]
        else:
            assert name not in attributes
    assert ("test" in attributes) == notice.test


# --- each body ---------------------------------------------------------------------------------------


def test_default_is_the_notice_unchanged_with_type_and_version() -> None:
    # GIVEN a quarantine notice
    notice = quarantined()
    # WHEN rendered for the main topic
    (request,) = publish_requests(notice, topic_arn="arn:aws:sns:us-east-1:123456789012:t")
    default = json.loads(bodies(request)["default"])
    # THEN the default body is every field of the notice as it was, plus the event type and version
    assert request["MessageStructure"] == "json"
    assert default.pop("type") == "NotificationSent" and default.pop("schema_version") == 2
    assert default == notice.model_dump(mode="json")
    # AND a subscriber reads it back with our model (unknown fields such as `type` are kept, not refused)
    parsed = Notice.model_validate(default_body(notice))
    assert {name: getattr(parsed, name) for name in Notice.model_fields} == dict(notice)


def test_email_says_what_was_seen_done_and_next_and_how_to_audit() -> None:
    # GIVEN a quarantine notice WHEN its email is rendered
    text = email_body(quarantined())
    # THEN it reads in order: what happened, seen, done, next, who, and the audit commands to run
    headings = ["What was seen", "What was done", "What to do next", "Concerned", "The whole story"]
    assert [text.index(heading) for heading in headings] == sorted(text.index(heading) for heading in headings)
    assert text.startswith("Node quarantined: node node0007\nXID 79 (GPU fell off the bus)")
    for line in ("XIDs: 79", "DCGM verdict: hardware_fault", "GPU 3 fell off the bus", "- inc-7:quarantine",
                 "Replace the node, or open a case with AWS Support.", "instance:  i-0abc7",
                 "gpu-recovery audit --incident inc-7", "gpu-recovery audit --job job:llm-70b"):
        assert line in text
    assert "{" not in text  # no JSON for people


def test_chat_card_is_the_documented_custom_notification() -> None:
    # GIVEN a quarantine notice WHEN its chat card is rendered
    card = chat_body(quarantined())
    # THEN it has the documented shape and values
    assert set(card) == {"version", "source", "id", "content", "metadata"}
    assert (card["version"], card["source"]) == ("1.0", "custom")
    content, metadata = card["content"], card["metadata"]
    assert set(content) == {"textType", "title", "description", "nextSteps", "keywords"}
    assert content["textType"] == "client-markdown"
    assert content["title"] == ":warning: Node quarantined: node node0007 (gpu-training)"
    assert "XID 79" in content["description"] and "`node0007`" in content["description"]
    assert content["nextSteps"] == ["Replace the node, or open a case with AWS Support.",
                                    "`gpu-recovery audit --incident inc-7`", "`gpu-recovery audit --job job:llm-70b`"]
    assert content["keywords"] == ["node_quarantined", "action_needed", "gpu-training"]
    assert metadata["threadId"] == "inc-7"  # one thread per incident
    assert metadata["eventType"] == "node_quarantined"
    assert metadata["relatedResources"] == ["i-0abc7", node_arn(7)]
    assert all(isinstance(value, str) for value in metadata["additionalContext"].values())
    # AND the same notice always gets the same id (a retried publish is recognisably the same)
    assert chat_body(quarantined())["id"] == card["id"] != chat_body(quarantined(kind="job_failed"))["id"]


def test_a_page_and_a_test_are_marked_in_chat_and_email() -> None:
    page = chat_body(quarantined(kind="job_failed", severity="page", title="Job failed: job:llm-70b"))
    assert page["content"]["title"].startswith(":rotating_light: Job failed")
    trial = quarantined(test=True, title="TEST node_quarantined: routing check")
    assert chat_body(trial)["content"]["title"] == ":test_tube: TEST node_quarantined: routing check (gpu-training)"
    assert "test" in chat_body(trial)["content"]["keywords"]
    assert email_body(trial).startswith("TEST NOTIFICATION from `gpu-recovery notify test`")


def test_a_grouped_notice_lists_its_nodes_and_fits_in_one_sns_message() -> None:
    # GIVEN a fabric failure: one notice for 2,048 nodes, 2,048 incidents, two jobs
    notice = fabric_failure(2048)
    # WHEN rendered for both topics
    main, chat = publish_requests(notice, topic_arn="arn:aws:sns:us-east-1:1:t", chat_topic_arn="arn:aws:sns:x:1:c")
    # THEN each request fits SNS's 256 KiB with its attributes
    for request in (main, chat):
        assert len(request["Message"].encode()) + attributes_size(request["MessageAttributes"]) <= MESSAGE_MAX_BYTES
    # AND the subject counts the nodes; the email lists the first ones and says how many more
    assert main["Subject"] == "[gpu-recovery] Fabric failure: 2,048 nodes (gpu-training)"
    text = bodies(main)["email"]
    assert "nodes (2,048):" in text and f"... and {2048 - TEXT_LIST_MAX:,} more" in text
    assert "gpu-recovery audit --incident inc-000000000000" in text and "gpu-recovery audit --job job:eval" in text
    # AND the default keeps as much as fits and says what it left out (the stream has it all)
    default = json.loads(bodies(main)["default"])
    kept = len(default["node_arns"])
    assert 0 < kept < 2048 and default["omitted"]["node_arns"] == 2048 - kept
    assert default["node_arns"] == notice.node_arns[:kept] and default["job_ids"] == notice.job_ids
    # AND the chat card names a few and counts the rest; both jobs are attributes for filters
    description = chat_body(notice)["content"]["description"]
    assert "*Nodes (2,048):*" in description and f"and {2048 - CHAT_LIST_MAX:,} more" in description
    assert "threadId" not in chat_body(notice)["metadata"]  # many incidents: no single thread
    assert json.loads(main["MessageAttributes"]["job"]["StringValue"]) == ["job:llama-405b", "job:eval"]


def test_a_small_group_is_rendered_whole() -> None:
    notice = fabric_failure(3)
    default = json.loads(bodies(publish_requests(notice, topic_arn="arn:aws:sns:x:1:t")[0])["default"])
    assert "omitted" not in default and default["node_arns"] == notice.node_arns
    assert f"*Nodes (3):* `{0:032x}`, `{1:032x}`, `{2:032x}`" in chat_body(notice)["content"]["description"]


def test_the_chat_topic_is_beside_the_main_one() -> None:
    assert sibling_topic_arn("arn:aws-cn:sns:cn-north-1:123456789012:alerts", "alerts-chat") == \
        "arn:aws-cn:sns:cn-north-1:123456789012:alerts-chat"
    assert sibling_topic_arn("arn:aws:sns:us-east-1:123456789012:alerts", None) is None


# --- on moto's SNS -------------------------------------------------------------------------------------


@pytest.fixture
def sns_sqs() -> Iterator[tuple[Any, Any]]:
    with mock_aws():
        yield boto3.client("sns", region_name=REGION), boto3.client("sqs", region_name=REGION)


def subscribe_queue(sns: Any, sqs: Any, topic_arn: str, name: str, policy: dict[str, Any] | None = None) -> str:
    """An SQS queue on the topic, raw delivery (the body as published), with a filter policy if given."""
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    attributes = {"RawMessageDelivery": "true"}
    if policy is not None:
        attributes["FilterPolicy"] = json.dumps(policy)
    sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=arn, Attributes=attributes)
    return str(url)


def received(sqs: Any, url: str) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    while batch := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"],
                                       WaitTimeSeconds=0).get("Messages", []):
        messages.extend(batch)
        for message in batch:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return messages


def published(topic_arn: str) -> list[dict[str, Any]]:
    """What SNS itself accepted on the topic (subject, the JSON of every protocol, attributes)."""
    topic = sns_backends[DEFAULT_ACCOUNT_ID][REGION].topics[topic_arn]
    return [{"subject": subject, "message": message, "attributes": attributes}
            for _id, message, subject, attributes, _group in topic.sent_notifications]


def test_the_actuator_publishes_every_body_and_the_attributes(sns_sqs: tuple[Any, Any],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    sns, sqs = sns_sqs
    # GIVEN the topic and a chat topic (configured by name), an SQS subscriber on each
    topic = sns.create_topic(Name="gpu-recovery-notifications")["TopicArn"]
    chat_topic = sns.create_topic(Name="gpu-recovery-chat")["TopicArn"]
    programs, chat = subscribe_queue(sns, sqs, topic, "programs"), subscribe_queue(sns, sqs, chat_topic, "chat")
    actuator = AwsActuator(AwsClients(load_settings()).client, cluster=CLUSTER, topic_arn=topic, check_key=b"k",
                           chat_topic_arn=sibling_topic_arn(topic, "gpu-recovery-chat"))
    notice = quarantined()
    # WHEN the recovery's Publish command runs
    result = actuator.execute(Publish(target="notifications", notice=notice,
                                      subject="[gpu-recovery] node quarantined: node node0007 (gpu-training)"),
                              "notify:node_quarantined:inc-7").detail
    # THEN the program subscriber gets our JSON, the chat subscriber the chat card, both with attributes
    (for_programs,) = received(sqs, programs)
    (for_chat,) = received(sqs, chat)
    assert json.loads(for_programs["Body"]) == default_body(notice)
    assert json.loads(for_chat["Body"]) == chat_body(notice)
    expected = {name: {"DataType": value["DataType"], "StringValue": value["StringValue"]}
                for name, value in message_attributes(notice).items()}
    assert for_programs["MessageAttributes"] == expected == for_chat["MessageAttributes"]
    assert set(expected) == {"kind", "severity", "cluster", "node", "job"}
    # AND SNS got the email and SMS bodies beside the default, and the caller's subject
    (sent,) = published(topic)
    structured = json.loads(sent["message"])
    assert set(structured) == {"default", "email", "sms"}
    assert structured["email"] == email_body(notice)
    assert structured["sms"].startswith("action needed: Node quarantined: node node0007 (gpu-training).")
    assert sent["subject"] == "[gpu-recovery] node quarantined: node node0007 (gpu-training)"
    assert result["message_id"] and result["chat_message_id"]


def test_a_message_without_a_severity_gets_its_kinds(sns_sqs: tuple[Any, Any]) -> None:
    sns, sqs = sns_sqs
    # GIVEN a pager subscribed to pages only, and a job_failed notice written without a severity (v1's shape)
    topic = sns.create_topic(Name="gpu-recovery-notifications")["TopicArn"]
    pager = subscribe_queue(sns, sqs, topic, "pager", PAGES_ONLY)
    message = quarantined(kind="job_failed").model_dump(mode="json", exclude={"severity", "title", "test"})
    # WHEN the actuator publishes it
    actuator = AwsActuator(AwsClients(load_settings()).client, cluster=CLUSTER, topic_arn=topic, check_key=b"k")
    actuator.execute(Publish(target="notifications", subject="s", notice=notice_of(message)), "k")
    # THEN it is a page (NOTICE_SEVERITY), and the pager gets it
    (paged,) = received(sqs, pager)
    assert json.loads(paged["Body"])["severity"] == "page"
    assert notice_of({**message, "kind": "something_new"}).severity == "action_needed"
    assert notice_of({**message, "severity": "info"}).severity == "info"  # a severity given is kept


def test_without_a_chat_topic_one_message_goes_to_the_topic(sns_sqs: tuple[Any, Any]) -> None:
    sns, sqs = sns_sqs
    topic = sns.create_topic(Name="gpu-recovery-notifications")["TopicArn"]
    programs = subscribe_queue(sns, sqs, topic, "programs")
    actuator = AwsActuator(AwsClients(load_settings()).client, cluster=CLUSTER, topic_arn=topic, check_key=b"k")
    result = actuator.execute(Publish(target="notifications", subject="s", notice=quarantined()), "k")
    assert len(received(sqs, programs)) == 1 and set(result.detail) == {"message_id"}


def test_a_message_that_is_not_a_notice_is_refused_before_any_call(sns_sqs: tuple[Any, Any]) -> None:
    sns, _sqs = sns_sqs
    topic = sns.create_topic(Name="gpu-recovery-notifications")["TopicArn"]
    # GIVEN a Publish whose notice lacks its summary: the command cannot even be made
    with pytest.raises(ValidationError, match="summary"):
        Publish.model_validate({"target": "notifications", "subject": "s",
                                "notice": {"kind": "job_failed", "cluster": "c"}})
    assert published(topic) == []


# --- filter policies: who gets what --------------------------------------------------------------

# One team (the GPU-operations team, which handles nodes, in its own cluster), one cluster, pages only,
# and no tests: the policies docs/notifications.md shows, word for word.
HARDWARE_TEAM = {"cluster": ["gpu-training"],
                 "kind": ["node_quarantined", "node_replaced", "replace_failed", "node_misconfigured"]}
ONE_CLUSTER = {"cluster": ["gpu-research"]}
PAGES_ONLY = {"severity": ["page"]}
ONE_JOB = {"job": ["job:llm-70b"]}
NO_TESTS = {"test": [{"exists": False}]}


def test_filter_policies_deliver_only_matching_notifications(sns_sqs: tuple[Any, Any]) -> None:
    sns, sqs = sns_sqs
    # GIVEN one topic and five subscribers, each with one of the documented filter policies
    topic = sns.create_topic(Name="gpu-recovery-notifications")["TopicArn"]
    queues = {name: subscribe_queue(sns, sqs, topic, name, policy) for name, policy in (
        ("team", HARDWARE_TEAM), ("cluster", ONE_CLUSTER), ("pages", PAGES_ONLY), ("job", ONE_JOB),
        ("no-tests", NO_TESTS))}
    # WHEN every kind is published on two clusters, one job per cluster, and one test notification
    sent = []
    for cluster, job in (("gpu-training", "job:llm-70b"), ("gpu-research", "job:vision")):
        for kind, severity in NOTICE_SEVERITY.items():
            notice = quarantined(kind=kind, severity=severity, cluster=cluster, job_ids=[job])
            sent.append(notice)
            for request in publish_requests(notice, topic_arn=topic):
                sns.publish(**request)
    trial = quarantined(test=True, job_ids=[])
    sns.publish(**publish_requests(trial, topic_arn=topic)[0])
    # THEN each subscriber received exactly the notices its policy names
    got = {name: sorted((body["cluster"], body["kind"], body["test"])
                        for body in (json.loads(message["Body"]) for message in received(sqs, url)))
           for name, url in queues.items()}
    everything = [*sent, trial]
    assert got["team"] == sorted((n.cluster, n.kind, n.test) for n in everything
                                 if n.cluster == "gpu-training" and n.kind in HARDWARE_TEAM["kind"])
    assert got["cluster"] == sorted(("gpu-research", kind, False) for kind in NOTICE_SEVERITY)
    assert got["pages"] == sorted((n.cluster, n.kind, False) for n in sent if n.severity == "page")
    assert {kind for _cluster, kind, _test in got["pages"]} == {
        "job_failed", "escalation", "deadline_expired", "budget_exhausted", "out_of_service_cap"}
    assert got["job"] == sorted(("gpu-training", kind, False) for kind in NOTICE_SEVERITY)
    assert got["no-tests"] == sorted((n.cluster, n.kind, False) for n in sent)


def test_a_job_filter_matches_a_grouped_notice_naming_that_job_among_others(sns_sqs: tuple[Any, Any]) -> None:
    sns, sqs = sns_sqs
    # GIVEN a subscriber for job:eval only
    topic = sns.create_topic(Name="gpu-recovery-notifications")["TopicArn"]
    url = subscribe_queue(sns, sqs, topic, "eval", {"job": ["job:eval"]})
    # WHEN a burst naming two jobs is published, and a notice about another job
    sns.publish(**publish_requests(fabric_failure(64), topic_arn=topic)[0])
    sns.publish(**publish_requests(quarantined(), topic_arn=topic)[0])
    # THEN the subscriber gets the burst (job is a String.Array) and nothing else
    (message,) = received(sqs, url)
    assert json.loads(message["Body"])["title"] == "Fabric failure: 64 nodes"


# --- the docs show what the code does ----------------------------------------------------------------

DOCS = Path(__file__).resolve().parents[2] / "docs" / "notifications.md"
DOC_NODE = "arn:aws:ecs:us-west-2:123456789012:container-instance/gpu-training/4f6a0c2e9b1d4c7e8a3f5b6c7d8e9f01"


def doc_blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOCS.read_text(encoding="utf-8"), flags=re.DOTALL)


def test_the_docs_examples_are_what_the_renderer_makes() -> None:
    # GIVEN the notice docs/notifications.md renders, and its code blocks
    notice = quarantined(node_arn=DOC_NODE)
    (main,) = publish_requests(notice, topic_arn="arn:aws:sns:us-west-2:123456789012:gpu-recovery-notifications")
    structured = bodies(main)
    json_blocks = [json.loads(block) for block in doc_blocks("json")]
    text_blocks = [block.rstrip("\n") for block in doc_blocks("text")]
    # THEN the subject, every body and every filter policy shown are exactly the code's
    assert main["Subject"] in text_blocks
    assert json.loads(structured["default"]) in json_blocks
    assert structured["email"] in text_blocks
    assert structured["sms"] in text_blocks
    assert chat_body(notice) in json_blocks
    for policy in (HARDWARE_TEAM, ONE_CLUSTER, PAGES_ONLY, ONE_JOB, NO_TESTS):
        assert policy in json_blocks, policy


def test_the_docs_list_every_kind_with_its_severity() -> None:
    text = DOCS.read_text(encoding="utf-8")
    for kind, severity in NOTICE_SEVERITY.items():
        if kind != "test":
            assert f"| `{kind}` | {severity} |" in text, kind
