"""One shard served under the KCL MultiLangDaemon: a batch handler wrapped in ``ShardProcessor`` (a fatal
error exits the process, so the daemon starts a new processor from the last checkpoint), speaking
amazon-kclpy's protocol with the daemon.

stdout *is* that protocol: a stray ``print`` from any library would corrupt it. So ``serve`` keeps the real
stdout for the protocol, points ``sys.stdout`` at stderr, and logs to stderr (the daemon copies a
processor's stderr into its own log).

The executable (``python -m gpu_recovery.kcl_worker``) is the composition root that builds the handler
and calls ``serve``; this module knows no settings, clients or wiring.
"""

from __future__ import annotations

import argparse
import inspect
import logging
import sys
import time
from collections.abc import Callable, Sequence
from typing import IO, Any

from consumers.core.ports import BatchContext, StreamRecord
from consumers.runtime.processor import BatchHandler, ShardProcessor

CONSUMERS = ("projector", "recovery")
log = logging.getLogger("gpu_recovery.kcl_entry")


class LoggedHandler:
    """Logs one line per non-empty batch (shard, records, seconds): per-worker throughput from logs."""

    def __init__(self, inner: BatchHandler, clock: Callable[[], float] = time.monotonic) -> None:
        self._inner = inner
        self._clock = clock

    def handle_batch(self, records: Sequence[StreamRecord], context: BatchContext | None = None) -> object:
        started = self._clock()
        inner: Any = self._inner
        result = inner.handle_batch(records, context) if _takes_context(inner) else inner.handle_batch(records)
        if records:
            log.info(
                "batch shard=%s records=%d last_seq=%s seconds=%.3f",
                records[0].shard_id, len(records), records[-1].sequence_number, self._clock() - started,
            )
        return result

    def __getattr__(self, name: str) -> Any:
        # initialize / shard_ended / on_idle, when the consumer has them.
        return getattr(self._inner, name)


def _takes_context(handler: Any) -> bool:
    return "context" in inspect.signature(handler.handle_batch).parameters


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="gpu_recovery.kcl_worker",
                                     description="The record processor the KCL MultiLangDaemon runs per shard lease.")
    parser.add_argument("consumer", choices=CONSUMERS)
    parser.add_argument("--log-level", default="INFO", help="Python log level (default: INFO)")
    return parser.parse_args(argv)


def configure_logging(level: str, stream: IO[str]) -> None:
    logging.basicConfig(
        level=level.upper(), stream=stream, force=True,
        format="%(asctime)s %(levelname)s %(name)s pid=%(process)d %(message)s",
    )
    for noisy in ("botocore", "boto3", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def run(
    consumer: str,
    *,
    stdin: IO[str],
    protocol_out: IO[str],
    stderr: IO[str],
    handler_factory: Callable[[str], BatchHandler],
) -> None:
    """Serve one shard until the daemon closes stdin."""
    from amazon_kclpy.kcl import KCLProcess

    processor = ShardProcessor(LoggedHandler(handler_factory(consumer)))
    KCLProcess(processor, input_file=stdin, output_file=protocol_out, error_file=stderr).run()


def serve(argv: Sequence[str] | None, handler_factory: Callable[[str], BatchHandler]) -> int:
    """The executable's body: parse, keep stdout for the protocol, log to stderr, serve until stdin closes."""
    args = parse_args(argv)
    protocol_out = sys.stdout
    sys.stdout = sys.stderr  # anything printed by accident goes to the log, not into the protocol
    configure_logging(args.log_level, sys.stderr)
    run(args.consumer, stdin=sys.stdin, protocol_out=protocol_out, stderr=sys.stderr, handler_factory=handler_factory)
    return 0
