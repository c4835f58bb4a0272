"""A tiny amazon-kclpy v3 record processor for the MultiLangDaemon integration test.

For every record it appends one JSON line ``{"shard", "seq", "data", "t"}`` to the file named
by ``$KCL_ECHO_OUTPUT`` (one ``write`` per batch, O_APPEND, so shard processes can share the
file), then checkpoints at the end of the batch. Run by the daemon as
``python <this file>``; it speaks the kclpy protocol on stdin/stdout, so it must never print.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

from amazon_kclpy import kcl
from amazon_kclpy.v3 import processor

OUTPUT_ENV = "KCL_ECHO_OUTPUT"


def _append(path: str, lines: list[str]) -> None:
    if not lines:
        return
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, "".join(lines).encode("utf-8"))
    finally:
        os.close(fd)


class EchoProcessor(processor.RecordProcessorBase):  # type: ignore[misc]
    """Echo each record to a JSON-lines file; checkpoint after each batch."""

    def __init__(self, output_path: str) -> None:
        self._output_path = output_path
        self._shard_id = "unknown"

    def initialize(self, initialize_input: Any) -> None:
        self._shard_id = str(initialize_input.shard_id)

    def process_records(self, process_records_input: Any) -> None:
        now = time.time()
        lines = [
            json.dumps(
                {
                    "shard": self._shard_id,
                    "seq": record.sequence_number,
                    "data": record.binary_data.decode("utf-8"),
                    "t": now,
                }
            )
            + "\n"
            for record in process_records_input.records
        ]
        _append(self._output_path, lines)
        if lines:
            _checkpoint(process_records_input.checkpointer)

    def lease_lost(self, lease_lost_input: Any) -> None:
        """Nothing to do: another worker owns the shard now."""

    def shard_ended(self, shard_ended_input: Any) -> None:
        _checkpoint(shard_ended_input.checkpointer)

    def shutdown_requested(self, shutdown_requested_input: Any) -> None:
        _checkpoint(shutdown_requested_input.checkpointer)


def _checkpoint(checkpointer: Any) -> None:
    try:
        checkpointer.checkpoint()
    except kcl.CheckpointError as error:  # shutdown/lease lost: the next owner re-reads
        sys.stderr.write(f"checkpoint failed: {error}\n")


def main() -> None:
    kcl.KCLProcess(EchoProcessor(os.environ[OUTPUT_ENV])).run()


if __name__ == "__main__":
    main()
