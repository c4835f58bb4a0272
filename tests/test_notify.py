"""``gpu-recovery notify test`` on the embedded stack: an event on the stream, then the same messages as a real
notification, on the topic and the chat topic, marked as a test everywhere."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest

from consumers.adapters.kinesis_reader import list_shards, read_shard
from events_schema.events import NOTICE_SEVERITY, REGISTRY, NotificationSent
from gpu_recovery.aws import AwsClients
from gpu_recovery.cli import main
from gpu_recovery.commands.notify import kinds_to_test
from gpu_recovery.settings import load_settings
from local.provision import provision


@dataclass(frozen=True)
class Stack:
    endpoint: str
    stream: str
    kinesis: Any
    sqs: Any
    topic_queue: str
    chat_queue: str


def _queue_on(sns: Any, sqs: Any, topic_arn: str, name: str) -> str:
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=arn, Attributes={"RawMessageDelivery": "true"})
    return str(url)


@pytest.fixture
def stack(moto_server: str, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Iterator[Stack]:
    """The embedded AWS, provisioned as the local stack does, with names of this test's own."""
    suffix = request.node.name[-40:].replace("[", "-").replace("]", "")
    names = {"GPU_RECOVERY_STREAM_NAME": f"events-{suffix}", "SNS_TOPIC_NAME": f"notes-{suffix}",
             "GPU_RECOVERY_SNS_CHAT_TOPIC_NAME": f"chat-{suffix}", "GPU_RECOVERY_STREAM_SHARDS": "1",
             "ECS_CLUSTER_NAME": "gpu-research"}
    for name, value in names.items():
        monkeypatch.setenv(name, value)
    provisioned = provision(AwsClients(load_settings(endpoint_url=moto_server)))
    clients = {name: boto3.client(name, endpoint_url=moto_server, region_name="us-east-1")
               for name in ("sns", "sqs", "kinesis")}
    yield Stack(moto_server, provisioned.stream_name, clients["kinesis"], clients["sqs"],
                _queue_on(clients["sns"], clients["sqs"], provisioned.topic_arn, f"q-{suffix}"),
                _queue_on(clients["sns"], clients["sqs"], str(provisioned.chat_topic_arn), f"c-{suffix}"))


def stream_events(stack: Stack) -> list[NotificationSent]:
    events = []
    for shard in list_shards(stack.kinesis, stack.stream):
        for batch in read_shard(stack.kinesis, stack.stream, shard["ShardId"]):
            events += [REGISTRY.decode_json(record.data) for record in batch.records]
    assert all(event.envelope.source == "gpu-recovery/notify" for event in events)
    return [event.data for event in events if isinstance(event.data, NotificationSent)]


def messages(stack: Stack, url: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    while batch := stack.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10,
                                             MessageAttributeNames=["All"]).get("Messages", []):
        found += batch
        for message in batch:
            stack.sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return found


def test_notify_test_sends_each_kind_as_an_event_and_a_marked_notification(stack: Stack,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    # WHEN a team runs the routing check against the embedded stack
    code = main(["notify", "test", "--endpoint-url", stack.endpoint])
    # THEN it succeeds with one line per kind
    out = capsys.readouterr().out.splitlines()
    assert code == 0
    kinds = kinds_to_test()
    assert len(kinds) == len(NOTICE_SEVERITY) - 1 and [line.split()[2] for line in out] == kinds
    # AND each kind is a NotificationSent on the stream, marked as a test, with its own severity
    events = stream_events(stack)
    assert [(e.kind, e.severity, e.message.test, e.message.cluster) for e in events] == [
        (kind, NOTICE_SEVERITY[kind], True, "gpu-research") for kind in kinds]
    assert events[0].subject == f"[gpu-recovery] TEST {kinds[0]}: routing check (gpu-research)"
    # AND the same notices reached the topic (our JSON) and the chat topic (the chat card), with attributes
    for_programs, for_chat = messages(stack, stack.topic_queue), messages(stack, stack.chat_queue)
    bodies = [json.loads(m["Body"]) for m in for_programs]
    assert sorted((b["kind"], b["severity"], b["test"]) for b in bodies) == sorted(
        (kind, NOTICE_SEVERITY[kind], True) for kind in kinds)
    assert all(m["MessageAttributes"]["test"]["StringValue"] == "true" for m in for_programs + for_chat)
    cards = [json.loads(m["Body"]) for m in for_chat]
    assert sorted(card["metadata"]["eventType"] for card in cards) == sorted(kinds)
    assert all(card["content"]["title"].startswith(":test_tube: TEST") for card in cards)


def test_one_kind_naming_a_job_reaches_a_job_filter(stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    # WHEN one kind is tested, naming a job
    code = main(["notify", "test", "--endpoint-url", stack.endpoint, "--kind", "job_failed", "--job", "job:llm"])
    # THEN one event and one message, keyed and attributed with the job
    assert code == 0 and len(capsys.readouterr().out.splitlines()) == 1
    (event,) = stream_events(stack)
    assert (event.kind, event.severity, event.job_id, event.message.job_ids) == ("job_failed", "page", "job:llm",
                                                                                ["job:llm"])
    (message,) = messages(stack, stack.topic_queue)
    assert message["MessageAttributes"]["job"] == {"DataType": "String.Array", "StringValue": '["job:llm"]'}
    assert message["MessageAttributes"]["severity"]["StringValue"] == "page"


def test_an_unknown_kind_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    # WHEN a kind is misspelt THEN one line names it and the kinds to use, exit 2, nothing sent
    assert main(["notify", "test", "--kind", "node_quarantine"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("gpu-recovery: error: unknown notification kind 'node_quarantine' (use one of: job_failed,")


def test_a_missing_topic_is_one_line_and_exit_1(moto_server: str, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("SNS_TOPIC_NAME", "no-such-topic")
    assert main(["notify", "test", "--endpoint-url", moto_server, "--kind", "job_failed"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no SNS topic named 'no-such-topic'" in err
