"""What ``node release`` and ``job cancel`` share: who is asking, the ``OperatorRequested`` event, and its one
append to the stream.

A person's request is an event like any other: the command writes it and returns; the recovery consumer reads
it in stream order with everything else and decides (a release runs a check first; a cancel ends a job's
recovery). Nothing here calls ECS to change anything, so a request can never race recovery's own actions.
"""

from __future__ import annotations

import argparse
import getpass
import sys
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from gpu_recovery.commands.common import fail, non_empty, one_line

if TYPE_CHECKING:  # pydantic and boto3 stay off the --help path
    from events_schema.envelope import Envelope
    from events_schema.events import OperatorRequested

SOURCE = "gpu-recovery/cli"
MAX_REASON = 1000  # a sentence or a ticket link; the event stays small
AWS_FIX = "check --region, --endpoint-url, --stream-name and the AWS credentials' access"


@dataclass(frozen=True)
class Caller:
    """Who the event says asked. ``verified``: from STS; otherwise the OS user, which nothing checks."""

    name: str
    verified: bool
    why_unverified: str = ""


def utc_now() -> datetime:
    """The request's time (a seam: the scenario test sets it to the simulator's virtual clock)."""
    return datetime.now(UTC)


def add_reason_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--reason", type=reason_text, default="", metavar="TEXT",
                        help="why, for the record (audit and tail show it), e.g. a ticket")


def reason_text(text: str) -> str:
    if len(text) > MAX_REASON:
        raise argparse.ArgumentTypeError(f"a reason of {len(text)} characters is too long (at most {MAX_REASON})")
    return " ".join(text.split())  # one line in audit's table


def job_id(text: str) -> str:
    return non_empty("a job id")(text).strip()


def caller(clients: Any) -> Caller:
    """The caller's identity from STS GetCallerIdentity (it needs no permission); the OS user when STS cannot
    answer (no credentials yet, an endpoint without STS). An unreachable endpoint is not caught here: it is
    the user's mistake and fails the command with its fix."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return Caller(str(clients.client("sts").get_caller_identity()["Arn"]), verified=True)
    except (ClientError, BotoCoreError) as exc:
        return Caller(f"{os_user()} (OS user, not verified)", verified=False, why_unverified=one_line(str(exc)))


def os_user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no USER/LOGNAME and no passwd entry (some containers)
        return "unknown user"


def request_event(data: OperatorRequested, *, now: datetime) -> Envelope:
    """The envelope, keyed by the node (a release) or the job (a cancel): the request lands on the shard of
    that node's or job's own events, so recovery reads it in order with them."""
    from events_schema.envelope import Subject, make_envelope

    subject = Subject(node=data.node_arn) if data.node_arn else Subject(job=data.job_id)
    return make_envelope(data, event_id=uuid.uuid4().hex, time=now, source=SOURCE, subject=subject)


def append(settings: Any, envelope: Envelope) -> str:
    """Put the request on the stream (one PutRecord); its sequence number."""
    from consumers.adapters.kinesis import KinesisStreamWriter
    from gpu_recovery.commands.tail import kinesis_client

    return KinesisStreamWriter(kinesis_client(settings), settings.stream_name).append([envelope])[0]


def aws_refused(exc: BaseException) -> int:
    """An AWS answer that stops the command (no such cluster or stream, no access, throttled): one line."""
    return fail(one_line(str(exc)), AWS_FIX)


def say_who(who: Caller) -> None:
    if not who.verified:
        print(f"note: STS could not say who you are ({who.why_unverified}); the request records the OS user "
              f"{who.name.split(' (')[0]!r}, which nothing verifies", file=sys.stderr)


def sent_lines(envelope: Envelope, sequence: str, settings: Any, who: Caller, reason: str) -> list[str]:
    return [
        f"  requested by {who.name}" + (f"; reason: {reason}" if reason else ""),
        f"  event {envelope.event_id} (OperatorRequested) on stream {settings.stream_name}, "
        f"sequence number {sequence}",
    ]
