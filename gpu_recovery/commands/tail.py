"""``gpu-recovery tail``: follow the stream live, every shard, filtered, one line (or JSON object) per event."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from gpu_recovery.commands.common import add_aws_options, fail, number, settings_from

MAX_SECONDS = 366 * 86400

if TYPE_CHECKING:
    from mypy_boto3_kinesis import KinesisClient

    from consumers.adapters.kinesis_reader import Follower, StartAt


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "tail", help="follow the stream live: every shard, filtered, one line per event",
        description="Follow every shard of the stream (new shards after a reshard too) and print one line "
        "per event. With --consumer-arn it uses enhanced fan-out (SubscribeToShard with a registered "
        "consumer), otherwise it polls GetRecords. Filters combine with AND; a filter given twice matches "
        "either value. Records that are not events are reported on stderr.",
    )
    add_aws_options(parser)
    parser.add_argument("--type", action="append", default=[], metavar="TYPE",
                        help="our event type (IncidentOpened) or an AWS detail-type ('ECS Task State Change', "
                        "or TaskStateChange); repeatable")
    parser.add_argument("--node", action="append", default=[], metavar="NODE",
                        help="container instance ARN, its id, or the EC2 instance id; repeatable")
    parser.add_argument("--job", action="append", default=[], metavar="JOB", help="job id; repeatable")
    start = parser.add_mutually_exclusive_group()
    start.add_argument("--since", metavar="WHEN",
                       help="start at this arrival time (AT_TIMESTAMP): ISO 8601 (UTC if no zone) or an age "
                       "(90s, 15m, 2h, 7d); default: only new records")
    start.add_argument("--from-start", action="store_true", help="start at the oldest record (TRIM_HORIZON)")
    parser.add_argument("--json", action="store_true", help="one JSON object per line, for piping")
    parser.add_argument("--consumer-arn", help="an enhanced fan-out consumer registered on the stream")
    parser.add_argument("--max-events", type=number(1, integer=True), metavar="N",
                        help="stop after N matching events")
    parser.add_argument("--timeout", type=number(0, MAX_SECONDS), metavar="SECONDS",
                        help="stop after this many seconds")
    parser.add_argument("--poll-interval", type=number(0, 3600), default=1.0, metavar="SECONDS",
                        help="polling: wait between empty rounds (default 1; Kinesis allows 5 reads/s/shard)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from analytics.history import parse_when
    from analytics.tail import Shown, human_line, json_line, stop_after, tail_events, unreadable_line
    from analytics.view import EventFilter
    from consumers.adapters.kinesis_reader import StartAt
    from gpu_recovery.apps import projection_config

    settings = settings_from(args)
    if args.since:
        try:
            start = StartAt("AT_TIMESTAMP", parse_when(args.since, datetime.now(UTC)))
        except ValueError as exc:
            return fail(f"--since {exc}", "e.g. --since 15m or --since 2026-11-28T10:00:00Z")
    else:
        start = StartAt("TRIM_HORIZON" if args.from_start else "LATEST")
    should_stop, count = stop_after(max_events=args.max_events, timeout_s=args.timeout)
    follower = _follower(args, settings, start)
    items = tail_events(follower.records(should_stop), EventFilter.of(args.type, args.node, args.job),
                        projection_config(settings))
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        for item in items:
            if isinstance(item, Shown):
                print(json_line(item) if args.json else human_line(item), flush=True)
                count()
            else:
                print(unreadable_line(item), file=sys.stderr, flush=True)
    except BrokenPipeError:  # `gpu-recovery tail | head` closed its end: a normal way to stop
        sys.stderr.close()
    except (ClientError, BotoCoreError) as exc:  # no such stream or consumer, no access, ...
        print(f"gpu-recovery tail: {exc}", file=sys.stderr)
        return 1
    return 0


def kinesis_client(settings: Any) -> KinesisClient:
    """The Kinesis client, at GPU_RECOVERY_KINESIS_ENDPOINT_URL when that is set (e.g. kinesis-local)."""
    from gpu_recovery.aws import AwsClients

    endpoint = settings.kinesis_endpoint_url or settings.endpoint_url
    return AwsClients(settings.model_copy(update={"endpoint_url": endpoint})).client("kinesis")


def _follower(args: argparse.Namespace, settings: Any, start: StartAt) -> Follower:
    client = kinesis_client(settings)
    if args.consumer_arn:
        from consumers.adapters.kinesis_fanout import FanOutFollower, tolerate_missing_initial_response

        return FanOutFollower(tolerate_missing_initial_response(client), settings.stream_name, args.consumer_arn,
                              start)
    from consumers.adapters.kinesis_reader import PollingFollower

    return PollingFollower(client, settings.stream_name, start, idle_sleep=args.poll_interval)
