"""``gpu-recovery audit``: the timeline of a job, node or incident from the stream or its archive.

For each event: when, what ECS said, what the health check found, what was decided and why, what was
done and what came of it. A terminal table by default, ``--json`` for tools, ``--html PATH`` for a
self-contained page with a chart of node health over time.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from gpu_recovery.commands.common import add_aws_options, number, settings_from
from gpu_recovery.commands.replay import add_source_options, open_history, refused

MAX_MARGIN_MINUTES = 7 * 24 * 60  # a week either side is already more than an incident's story


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "audit", help="explain every decision about a job, node or incident (a timeline)",
        description="Reads the stream or its archive (same --source options as replay) and prints what "
        "happened to one job, node or incident: ECS state changes, health checks, decisions with their "
        "reasons, actions and their outcomes.",
    )
    add_aws_options(parser)
    subject = parser.add_mutually_exclusive_group(required=True)
    subject.add_argument("--job", metavar="ID", help="a job id (the tasks' group, e.g. job:llama-70b)")
    subject.add_argument("--node", metavar="ID",
                         help="a container instance ARN, its id, or its EC2 / managed instance id")
    subject.add_argument("--incident", metavar="ID", help="an incident id")
    add_source_options(parser)
    parser.add_argument("--margin-minutes", type=number(0, MAX_MARGIN_MINUTES), default=30.0,
                        help="with --incident: ECS events of its node and jobs this long before and after "
                        "it (default 30)")
    parser.add_argument("--json", action="store_true", help="print the timeline as one JSON object")
    parser.add_argument("--html", metavar="PATH", help="also write a self-contained HTML page")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from botocore.exceptions import BotoCoreError, ClientError

    from replay.sources import SourceError

    try:
        return _run(args)
    except (SourceError, ClientError, BotoCoreError) as exc:
        return refused(exc)


def _run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from gpu_recovery.aws import AwsClients
    from replay.audit import AuditSubject, audit
    from replay.html import render_html
    from replay.rebuild import TimeWindow
    from replay.report import print_timeline

    settings = settings_from(args)
    subject = _subject(args, AuditSubject)
    # AwsClients loads boto3 on the first client only: a file source needs no AWS at all.
    source = open_history(args, settings, datetime.now(UTC), AwsClients(settings).client)
    window = None if source.reads_window else TimeWindow(args.since, args.until)
    from gpu_recovery.apps import projection_config

    timeline = audit(source.records, subject, projection_config(settings),
                     margin=timedelta(minutes=args.margin_minutes), window=window)
    if args.html:
        Path(args.html).write_text(render_html(timeline), encoding="utf-8")
    if args.json:
        print(json.dumps(timeline.as_json(), indent=2, sort_keys=True, default=str))
        return 0
    # Piped to a file or a pager, keep rows on one line rather than folding them at 80 columns.
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
    print_timeline(timeline, console)
    if not timeline.rows:
        console.print(f"no event about {subject.kind} {subject.id} in {source.description}")
    if args.html:
        console.print(f"wrote {args.html}")
    return 0


def _subject(args: argparse.Namespace, make: Any) -> Any:
    for kind in ("job", "node", "incident"):
        value = getattr(args, kind)
        if value:
            return make(kind, value)
    raise SystemExit("gpu-recovery audit: give --job, --node or --incident")
