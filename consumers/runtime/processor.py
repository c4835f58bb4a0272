"""The amazon-kclpy v3 record processor every consumer runs in, under the KCL daemon or locally.

amazon-kclpy catches a processor's exception, prints it and moves on to the next batch: a record would
be skipped. We never let that happen. Transient errors are retried here with backoff; malformed records
are parked by the handler; anything else stops this processor without a checkpoint, so the batch is
delivered again (to us after a restart, or to the worker that takes the lease).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from amazon_kclpy.checkpoint_error import CheckpointError
from amazon_kclpy.v3.processor import RecordProcessorBase

from consumers.core.errors import TransientError
from consumers.core.ports import BatchContext, StreamRecord

log = logging.getLogger("gpu_recovery.processor")


class BatchHandler(Protocol):
    def handle_batch(self, records: Sequence[StreamRecord]) -> object: ...


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 8
    base_s: float = 0.2
    cap_s: float = 10.0

    def delay(self, attempt: int) -> float:
        return float(min(self.cap_s, self.base_s * (2**attempt)))


class FatalProcessorError(Exception):
    """Raised where the processor must stop so that the batch is redelivered, never skipped."""


def to_stream_record(shard_id: str, record: Any) -> StreamRecord:
    return StreamRecord(
        shard_id=shard_id,
        sequence_number=str(record.sequence_number),
        partition_key=str(record.partition_key),
        data=bytes(record.binary_data),
        arrival=datetime.fromtimestamp(record.timestamp_millis / 1000.0, tz=UTC),
    )


class ShardProcessor(RecordProcessorBase):  # type: ignore[misc]
    """One shard's processor; ``on_fatal`` defaults to exiting the process (the daemon restarts it)."""

    def __init__(
        self,
        handler: BatchHandler,
        *,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        on_fatal: Callable[[BaseException], None] | None = None,
    ) -> None:
        self._handler = handler
        self._retry = retry or RetryPolicy()
        self._sleep = sleep
        self._on_fatal = on_fatal or _exit_process
        self.shard_id = ""
        self.lease_held = False
        self.last_checkpoint: str | None = None

    def initialize(self, initialize_input: Any) -> None:
        self.shard_id = str(initialize_input.shard_id)
        self.lease_held = True
        log.info("processor initialized shard=%s", self.shard_id)
        start = getattr(self._handler, "initialize", None)
        if start is not None:
            # The recovery consumer finishes what the shard's previous owner committed but did not do.
            self._with_retry(lambda: start(self.shard_id))

    def process_records(self, process_records_input: Any) -> None:
        if not self.lease_held:
            return  # the lease is gone: another worker owns these records now
        records = [to_stream_record(self.shard_id, r) for r in process_records_input.records]
        behind = int(getattr(process_records_input, "millis_behind_latest", 0) or 0)
        context = BatchContext(self.shard_id, behind)
        try:
            # Empty batches reach the handler too (callProcessRecordsEvenForEmptyRecordList): the
            # recovery consumer notices expired deadlines on them.
            self._handle_with_retry(records, context)
            if records:
                self._checkpoint(process_records_input.checkpointer, records[-1].sequence_number)
        except _LeaseGone:
            self.lease_held = False
        except Exception as exc:
            log.exception("processor stopping without checkpoint shard=%s", self.shard_id)
            self._on_fatal(exc)
            raise FatalProcessorError(str(exc)) from exc

    def lease_lost(self, lease_lost_input: Any) -> None:
        self.lease_held = False
        log.info("lease lost shard=%s", self.shard_id)

    def shard_ended(self, shard_ended_input: Any) -> None:
        ended = getattr(self._handler, "shard_ended", None)
        if ended is not None:
            self._with_retry(lambda: ended(self.shard_id))
        self._checkpoint(shard_ended_input.checkpointer, None)

    def shutdown_requested(self, shutdown_requested_input: Any) -> None:
        # Every batch was checkpointed when it became durable; this is a last, harmless confirmation.
        try:
            self._checkpoint(shutdown_requested_input.checkpointer, self.last_checkpoint)
        except _LeaseGone:
            self.lease_held = False

    def _handle_with_retry(self, records: list[StreamRecord], context: BatchContext) -> None:
        if _takes_context(self._handler):
            self._with_retry(lambda: self._handler.handle_batch(records, context))  # type: ignore[call-arg]
        else:
            self._with_retry(lambda: self._handler.handle_batch(records))

    def _with_retry(self, step: Callable[[], object]) -> None:
        for attempt in range(self._retry.attempts):
            try:
                step()
                return
            except TransientError as exc:
                delay = self._retry.delay(attempt)
                log.warning("transient error shard=%s attempt=%d, retry in %.1fs: %s",
                            self.shard_id, attempt + 1, delay, exc)
                self._sleep(delay)
        step()  # the last try raises what it raises

    def _checkpoint(self, checkpointer: Any, sequence_number: str | None) -> None:
        for attempt in range(self._retry.attempts):
            try:
                checkpointer.checkpoint(sequence_number)
                self.last_checkpoint = sequence_number
                return
            except CheckpointError as exc:
                name = str(exc.value)
                if name in ("ShutdownException", "InvalidStateException"):
                    raise _LeaseGone(name) from exc
                if name != "ThrottlingException":
                    raise
                self._sleep(self._retry.delay(attempt))
        raise TransientError(f"checkpoint throttled {self._retry.attempts} times")


def _takes_context(handler: BatchHandler) -> bool:
    import inspect

    return "context" in inspect.signature(handler.handle_batch).parameters


class _LeaseGone(Exception):
    """Checkpointing is no longer ours to do; a later owner resumes from the last checkpoint."""


def _exit_process(exc: BaseException) -> None:
    # Under the daemon, exiting makes it restart the shard's processor from the last checkpoint.
    logging.shutdown()
    os._exit(70)
