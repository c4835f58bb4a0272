"""``gpu-recovery notify test``: one clearly-marked test notification of each kind, to check the routing.

Each test is an event like any other: a ``NotificationSent`` with ``message.test = true`` is appended to
the stream first, then published through the same renderer as the recovery's notifications, to the topic
(and the chat topic, when one is configured), with the kind's own severity and attributes, so every
subscription filter policy sees exactly what it will see in a real incident.
"""

from __future__ import annotations

import argparse
import sys
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from gpu_recovery.commands.common import add_aws_options, settings_from

if TYPE_CHECKING:  # pydantic stays off the --help path
    from events_schema.envelope import Envelope
    from events_schema.events import Notice

SOURCE = "gpu-recovery/notify"


class TopicNotFound(Exception):
    """No SNS topic of the configured name in this account and region."""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "notify", help="notifications: send test notifications to check who receives what",
        description="Notifications go to the SNS topic (and the chat topic, when configured) with the "
        "message attributes kind, severity, cluster, node and job; see docs/notifications.md.",
    )
    actions = parser.add_subparsers(dest="notify_action", required=True, metavar="ACTION")
    test = actions.add_parser(
        "test", help="publish one clearly-marked test notification of each kind (or one kind)",
        description="Appends a NotificationSent event (message.test = true) to the stream, then publishes it "
        "like a real notification: each kind with its own severity, plus the attribute test=true. Nothing "
        "else happens; the messages say so.",
    )
    add_aws_options(test)
    test.add_argument("--kind", metavar="KIND", help="only this kind, e.g. node_quarantined (default: every kind "
                      "the recovery sends; docs/notifications.md lists them)")
    test.add_argument("--cluster", metavar="NAME", help="the cluster to name (or ECS_CLUSTER_NAME)")
    test.add_argument("--node", metavar="ARN", help="a container instance ARN to name, to check a node filter")
    test.add_argument("--job", metavar="ID", help="a job id to name, to check a job filter")
    test.set_defaults(handler=run_test)


def kinds_to_test() -> list[str]:
    """Every kind the recovery sends ("test" files a notice of unknown kind: not a kind to test)."""
    from events_schema.events import NOTICE_SEVERITY

    return [kind for kind in NOTICE_SEVERITY if kind != "test"]


def run_test(args: argparse.Namespace) -> int:
    kinds = kinds_to_test()
    if args.kind is not None and args.kind not in kinds:
        print(f"gpu-recovery: error: unknown notification kind {args.kind!r} (use one of: {', '.join(kinds)})",
              file=sys.stderr)
        return 2
    from botocore.exceptions import BotoCoreError, ClientError

    settings = settings_from(args, cluster_name=args.cluster)
    try:
        return _send(args, settings, [args.kind] if args.kind else kinds)
    except (TopicNotFound, ClientError, BotoCoreError) as exc:
        print(f"gpu-recovery notify test: {exc}", file=sys.stderr)
        return 1


def _send(args: argparse.Namespace, settings: Any, kinds: list[str]) -> int:
    from consumers.adapters.kinesis import KinesisStreamWriter
    from consumers.adapters.sns_message import publish_requests
    from gpu_recovery.aws import AwsClients
    from gpu_recovery.commands.tail import kinesis_client

    sns = AwsClients(settings).client("sns")
    topic = find_topic(sns, settings.sns_topic_name)
    chat = find_topic(sns, settings.sns_chat_topic_name) if settings.sns_chat_topic_name else None
    writer = KinesisStreamWriter(kinesis_client(settings), settings.stream_name)
    for kind in kinds:
        now = datetime.now(UTC)
        notice = routing_notice(kind, cluster=settings.cluster_name, node=args.node, job=args.job, now=now)
        event = routing_event(notice, event_id=uuid.uuid4().hex, now=now)
        writer.append([event])  # on the stream first, like every notification
        ids = [sns.publish(**request)["MessageId"]
               for request in publish_requests(notice, topic_arn=topic, chat_topic_arn=chat)]
        where = f"{settings.sns_topic_name}" + (f" and {settings.sns_chat_topic_name}" if chat else "")
        print(f"sent TEST {kind} ({notice.severity}) to {where}: message {ids[0]}, event {event.event_id}")
    return 0


def find_topic(sns: Any, name: str) -> str:
    """The ARN of the topic with this name (ListTopics: no account id or partition to guess)."""
    for page in sns.get_paginator("list_topics").paginate():
        for topic in page.get("Topics", []):
            if str(topic["TopicArn"]).rsplit(":", 1)[-1] == name:
                return str(topic["TopicArn"])
    raise TopicNotFound(f"no SNS topic named {name!r} here (deploy the stack, or set SNS_TOPIC_NAME / "
                        "GPU_RECOVERY_SNS_CHAT_TOPIC_NAME to your topics' names, and --region to theirs)")


def routing_notice(kind: str, *, cluster: str, node: str | None, job: str | None, now: datetime) -> Notice:
    from events_schema.events import NOTICE_SEVERITY, Notice

    severity = NOTICE_SEVERITY[kind]
    return Notice(
        kind=kind, severity=severity, cluster=cluster, title=f"TEST {kind}: routing check",
        summary=f"A test notification of kind `{kind}` (severity {severity}), sent by `gpu-recovery notify test` "
        "to check who receives it. Nothing happened; no action needed.",
        next_step="Nothing to do. If this reached the wrong people, or missed the right ones, fix the "
        "subscription filter policies (docs/notifications.md).",
        node_arn=node, job_ids=[job] if job else [], at=now, test=True,
    )


def routing_event(notice: Notice, *, event_id: str, now: datetime) -> Envelope:
    """The NotificationSent event of a test notice, keyed like any other (node, else job, else its id)."""
    from consumers.adapters.sns_message import subject_line
    from events_schema.envelope import Subject, make_envelope
    from events_schema.events import NotificationSent

    job = notice.job_ids[0] if notice.job_ids else None
    data = NotificationSent(kind=notice.kind, severity=notice.severity, subject=subject_line(notice),
                            message=notice, node_arn=notice.node_arn, job_id=job)
    return make_envelope(data, event_id=event_id, time=now, source=SOURCE,
                         subject=Subject(node=notice.node_arn, job=job))
