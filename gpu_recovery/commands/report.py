"""``gpu-recovery report``: fleet reliability over a time range, from the stream or its archive."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from gpu_recovery.commands.common import add_aws_options, fail, number, settings_from

DEFAULT_LOOKBACK = "1h"


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "report", help="fleet reliability over a time range: recovery times, XIDs, lemon nodes, goodput lost",
        description="Reads the stream or its archive and reports incidents, mean and p90 time to recovery "
        "(detect, diagnose, repair, restart), the automatic recovery rate, faults by XID, nodes ranked by "
        "faults (lemons flagged), job interruptions and GPU-hours lost. Never acts.",
    )
    add_aws_options(parser)
    parser.add_argument("--source", default="stream",
                        help="stream, s3://BUCKET/PREFIX (the Firehose archive, gzip or plain) or file:PATH "
                        "(a JSON Lines file or a folder of them); default: stream")
    parser.add_argument("--since", metavar="WHEN", help="incidents opened from this time: ISO 8601 (UTC if no "
                        "zone) or an age (2h, 7d); default: the start of the history")
    parser.add_argument("--until", metavar="WHEN", help="ignore events after this time; jobs not back by then "
                        "count as down until it (default: the last event read)")
    parser.add_argument("--lookback", default=DEFAULT_LOOKBACK, metavar="AGE",
                        help="also read this much before --since, so incidents in range find the task "
                        f"failures that opened them (default {DEFAULT_LOOKBACK})")
    parser.add_argument("--lemon-threshold", type=number(1, integer=True), default=2, metavar="N",
                        help="hardware faults in the range that flag a node as a lemon (default 2)")
    parser.add_argument("--html", metavar="PATH", help="also write a self-contained HTML page with charts")
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from analytics.history import parse_when

    now = datetime.now(UTC)
    try:
        since = parse_when(args.since, now) if args.since else None
        until = parse_when(args.until, now) if args.until else None
        lookback = now - parse_when(args.lookback, now)
    except ValueError as exc:
        return fail(str(exc), "--since/--until take an ISO 8601 time or an age (2h, 7d); --lookback an age")
    from botocore.exceptions import BotoCoreError, ClientError

    from replay.sources import SourceError

    try:
        report = _build(args, now, since, until, lookback)
    except SourceError as exc:
        return fail(str(exc), "check --source")
    except (ClientError, BotoCoreError) as exc:  # no such stream or bucket, no access, ...
        print(f"gpu-recovery report: {exc}", file=sys.stderr)
        return 1
    if args.html:
        from pathlib import Path

        from analytics.html import report_html

        Path(args.html).write_text(report_html(report), encoding="utf-8")
    if args.json:
        print(json.dumps(report.model_dump(mode="json"), indent=2, sort_keys=True))
    else:
        from analytics.render import print_report

        print_report(report)
        if args.html:
            print(f"wrote {args.html}")
    return 0


def _build(args: argparse.Namespace, now: Any, since: Any, until: Any, lookback: Any) -> Any:
    from collections import Counter

    from analytics.history import decode_each
    from analytics.report import ReportConfig, build_report
    from gpu_recovery.apps import projection_config
    from gpu_recovery.aws import AwsClients
    from replay.sources import open_source

    settings = settings_from(args)
    # AwsClients loads boto3 on the first client only: a file source needs no AWS at all.
    source = open_source(args.source, clients=AwsClients(settings).client, stream_name=settings.stream_name, now=now,
                         since=since - lookback if since else None, until=until)
    unreadable: Counter[str] = Counter()
    events = decode_each((record.data for record in source.records()), unreadable)
    config = ReportConfig(lemon_threshold=args.lemon_threshold, projection=projection_config(settings))
    return build_report(events, since=since, until=until, config=config, unreadable=unreadable)
