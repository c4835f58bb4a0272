"""Options shared by the subcommands, the argument types that validate them, and the one place where a
user's mistake becomes ``gpu-recovery: error: <what> (<how to fix>)`` and exit 2 instead of a traceback."""

from __future__ import annotations

import argparse
import logging
import math
import re
import sys
from collections.abc import Callable
from typing import Any, NoReturn
from urllib.parse import urlsplit

EXIT_USAGE = 2  # argparse's convention for a command line that cannot run as given
_PYDANTIC_CODES = re.compile(r" \[type=[^\]]*\]")
LOG_LEVELS = ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG")


class CliParser(argparse.ArgumentParser):
    """argparse with one-line errors: ``gpu-recovery: error: <what> (see '<command> --help')``."""

    def error(self, message: str) -> NoReturn:
        print(f"gpu-recovery: error: {message} (see '{self.prog} --help')", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def add_aws_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--endpoint-url", type=endpoint_url,
                        help="AWS endpoint for every service (or AWS_ENDPOINT_URL)")
    parser.add_argument("--region", type=non_empty("a region"), help="AWS region (or AWS_REGION); default us-east-1")
    parser.add_argument("--stream-name", type=non_empty("a stream name"),
                        help="Kinesis stream (or GPU_RECOVERY_STREAM_NAME)")


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


# --- argument types: a bad value is refused by argparse, before anything starts ---------------------


def endpoint_url(text: str) -> str:
    """An http(s) URL with a host (and a valid port), as botocore needs it."""
    try:
        parts = urlsplit(text)
        port = parts.port  # raises ValueError when out of range or not a number
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a URL ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise argparse.ArgumentTypeError(f"{text!r} is not an http(s) URL with a host, e.g. http://127.0.0.1:5000")
    if port == 0:
        raise argparse.ArgumentTypeError(f"{text!r}: port 0 cannot be reached")
    return text


def number(low: float | None = None, high: float | None = None, *, integer: bool = False) -> Callable[[str], Any]:
    """A finite number within [low, high] (nan, inf and absurd values are refused, not crashed on later)."""

    def parse(text: str) -> float | int:
        try:
            value: float | int = int(text) if integer else float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if integer else 'a number'}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
        if (low is not None and value < low) or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"{text} is out of range: {_range(low, high)}")
        return value

    return parse


def _range(low: float | None, high: float | None) -> str:
    if low is not None and high is not None:
        return f"from {low:g} to {high:g}"
    return f"at least {low:g}" if low is not None else f"at most {high:g}"


def non_empty(what: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if not text.strip():
            raise argparse.ArgumentTypeError(f"{what} cannot be empty")
        return text

    return parse


def key_value(text: str) -> str:
    key, sep, _ = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"wants KEY=VALUE, got {text!r}")
    return text


# --- exceptions that are a user's mistake ---------------------------------------------------------


def user_error(exc: BaseException, command: str = "") -> str | None:
    """``<what> (<how to fix>)`` for an exception a user's input or environment caused; None for a bug."""
    from consumers.core.errors import ConfigError

    help_hint = f"see 'gpu-recovery {command} --help'".replace("  ", " ")
    if isinstance(exc, ConfigError):
        return with_fix(str(exc), help_hint)
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"{exc.strerror or type(exc).__name__}: {exc.filename} (check the path)"
    if isinstance(exc, UnicodeDecodeError):  # a file given as text is not (a scenario, a source, ...)
        return f"an input file is not UTF-8 text: {exc.reason} at byte {exc.start} (give a UTF-8 file)"
    module = type(exc).__module__.split(".")[0]
    if module == "yaml":
        return f"invalid YAML: {one_line(str(exc))} (fix the file)"
    if module == "botocore":
        return _aws_error(exc)
    return None


def with_fix(message: str, default_fix: str) -> str:
    """A multi-line explanation as ``<what> (<fix>)``: its "fix:" lines become the fix, pydantic's links
    and error codes go."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    fixes = [line.removeprefix("fix:").strip() for line in lines if line.startswith("fix:")]
    what = " ".join(line for line in lines if not line.startswith(("fix:", "For further information")))
    what = _PYDANTIC_CODES.sub("", what).rstrip(". ")
    if fixes:
        return f"{what} ({' '.join(dict.fromkeys(fixes)).rstrip('.')})"
    return what if what.endswith(")") else f"{what} ({default_fix})"


def _aws_error(exc: BaseException) -> str | None:
    from botocore.exceptions import (
        ConnectTimeoutError,
        EndpointConnectionError,
        NoCredentialsError,
        NoRegionError,
        PartialCredentialsError,
    )

    if isinstance(exc, EndpointConnectionError | ConnectTimeoutError):
        return f"{one_line(str(exc))} (check --endpoint-url / AWS_ENDPOINT_URL and that the service runs)"
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return f"{one_line(str(exc))} (set AWS_PROFILE or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"
    if isinstance(exc, NoRegionError):
        return f"{one_line(str(exc))} (set --region or AWS_REGION)"
    return None


def one_line(text: str) -> str:
    return " ".join(part.strip() for part in text.splitlines() if part.strip())


def fail(what: str, fix: str) -> int:
    """Report a user's mistake found by a command itself; returns the exit status."""
    print(f"gpu-recovery: error: {what} ({fix})", file=sys.stderr)
    return EXIT_USAGE
