"""Options shared by the subcommands."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any


def add_aws_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--endpoint-url", help="AWS endpoint for every service (or AWS_ENDPOINT_URL)")
    parser.add_argument("--region", help="AWS region (or AWS_REGION); default us-east-1")
    parser.add_argument("--stream-name", help="Kinesis stream (or GPU_RECOVERY_STREAM_NAME)")


def log_level(text: str) -> str:
    """An argparse type: a level Python's logging knows, upper-cased; anything else is a usage error.

    Checked where it is read, so a bad level fails the command line (exit 2) instead of every process
    it would have been passed to.
    """
    level = text.strip().upper()
    known = logging.getLevelNamesMapping()
    if level not in known:
        names = ", ".join(sorted(known, key=known.__getitem__))
        raise argparse.ArgumentTypeError(f"{text!r} is not a log level (one of {names})")
    return level


def settings_from(args: argparse.Namespace, **extra: Any) -> Any:
    from gpu_recovery.settings import load_settings

    return load_settings(
        endpoint_url=getattr(args, "endpoint_url", None),
        region=getattr(args, "region", None),
        stream_name=getattr(args, "stream_name", None),
        **extra,
    )


def progress(quiet: bool) -> Any:
    """A line printer for people (stderr when stdout carries JSON)."""
    stream = sys.stderr if quiet else sys.stdout

    def say(message: str) -> None:
        print(f"▶ {message}", file=stream, flush=True)

    return say
