"""``gpu-recovery schema export DIR``: a JSON Schema per event type and an index, for subscribers."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("schema", help="the event contract as JSON Schema")
    actions = parser.add_subparsers(dest="schema_command", required=True, metavar="ACTION")
    export = actions.add_parser("export", help="write one JSON Schema per event type and an index.json")
    export.add_argument("directory", help="folder to write into (created if missing)")
    export.set_defaults(handler=run_export)


def run_export(args: argparse.Namespace) -> int:
    from events_schema.json_schema import export_schemas

    index = export_schemas(args.directory)
    print(f"wrote {len(index['event_types'])} schemas and index.json to {args.directory}")
    return 0
