"""``gpu-recovery demo``: the whole pipeline on an embedded local AWS."""

from __future__ import annotations

import argparse
import json
from typing import Any

from gpu_recovery.commands.common import add_aws_options, progress, settings_from


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "demo", help="run the pipeline end to end on an embedded local AWS (no account needed)",
        description="Starts moto's server on 127.0.0.1 (unless --endpoint-url is given), creates the "
        "stream, tables and topic, plays a 4-node GPU training job through the local EventBridge "
        "rules, runs the consumers and shows the resulting tables.",
    )
    add_aws_options(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from local.demo import run_demo

    settings = settings_from(args)
    say = progress(quiet=args.json)
    result = run_demo(settings, say)
    if args.json:
        print(json.dumps(result.as_json(), indent=2, sort_keys=True, default=str))
    else:
        from gpu_recovery.render import demo_tables

        demo_tables(result)
    return 0
