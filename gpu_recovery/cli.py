"""The ``gpu-recovery`` command line. Imports stay lazy: ``--help`` must not load boto3, moto or CDK."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from gpu_recovery.commands.common import CliParser, log_level, user_error

# Each entry is a module in gpu_recovery/commands with register(subparsers) and a run(args) handler.
COMMANDS = ("demo", "schema", "healthcheck", "replay", "audit", "consume", "local_stack", "tail", "report",
            "notify", "parked", "node", "job", "simulate")


def build_parser() -> argparse.ArgumentParser:
    parser = CliParser(
        prog="gpu-recovery",
        description="Keep GPU training jobs alive on Amazon ECS: detect, diagnose with DCGM, repair, "
        "restart, notify. Event-sourced on Kinesis.",
    )
    parser.add_argument("--log-level", type=log_level, default="WARNING",
                        help="Python log level: DEBUG, INFO, WARNING, ERROR or CRITICAL (default: WARNING)")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"gpu_recovery.commands.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    import logging

    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        return int(args.handler(args) or 0)
    except ModuleNotFoundError as exc:
        from gpu_recovery.extras import missing_extra

        if (hint := missing_extra(exc)) is None:
            raise
        print(f"gpu-recovery: error: {args.command}: {hint}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        # A user's mistake (a setting, a path, an endpoint) is one line; anything else is a bug: traceback.
        message = user_error(exc, args.command)
        if message is None:
            raise
        print(f"gpu-recovery: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
