"""``gpu-recovery demo``: the whole pipeline on an embedded local AWS."""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from gpu_recovery.commands.common import add_aws_options, fail, progress, settings_from


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "demo", help="run the pipeline end to end on an embedded local AWS (no account needed)",
        description="Starts moto's server on 127.0.0.1 (unless --endpoint-url is given), creates the stream, "
        "tables and topic, plays a scenario (a GPU fleet, training jobs, injected faults) through the local "
        "EventBridge rules, runs the projector and the recovery consumer, and shows what happened.",
    )
    add_aws_options(parser)
    parser.add_argument("--scenario", default="02-xid48-reboot",
                        help="a scenario name from scenarios/ (a prefix is enough, e.g. 01) or a YAML/JSON path")
    parser.add_argument("--list", action="store_true", help="list the shipped scenarios and exit")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    parser.add_argument("--record", metavar="PATH",
                        help="also write every stream record (JSON lines with shard, sequence number, partition "
                        "key and arrival time) to PATH, for 'gpu-recovery replay --source file:PATH'")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if args.list:
        from local.scenario import load_scenario, scenario_names

        for name in scenario_names():
            print(f"{name:32s} {load_scenario(name).title}")
        return 0
    if args.record and os.path.isdir(args.record):
        return fail(f"--record {args.record} is a folder", f"name a file in it, e.g. {args.record}/stream.jsonl")
    from local.demo import run_demo

    settings = settings_from(args)
    say = progress(quiet=args.json)
    from gpu_recovery import wiring

    result = run_demo(settings, say, wiring, args.scenario, record=args.record)
    if args.json:
        out = result.as_json()
        if args.record:
            out["recorded_to"] = args.record
        print(json.dumps(out, indent=2, sort_keys=True, default=str))
    else:
        from gpu_recovery.render import demo_tables

        demo_tables(result)
    return 0 if result.ok else 1
