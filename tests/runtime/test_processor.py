"""ShardProcessor discipline: never skip a record, checkpoint only what is durable."""

from __future__ import annotations

import base64
from collections.abc import Sequence

import pytest
from amazon_kclpy import messages
from amazon_kclpy.checkpoint_error import CheckpointError

from consumers.core.errors import TransientError
from consumers.core.ports import BatchContext, StreamRecord
from consumers.runtime.processor import FatalProcessorError, RetryPolicy, ShardProcessor


class Handler:
    def __init__(self, failures: list[Exception] | None = None) -> None:
        self.failures = list(failures or [])
        self.batches: list[list[str]] = []

    def handle_batch(self, records: Sequence[StreamRecord]) -> None:
        if self.failures:
            raise self.failures.pop(0)
        self.batches.append([r.sequence_number for r in records])


class Checkpointer:
    def __init__(self, errors: list[str] | None = None) -> None:
        self.errors = list(errors or [])
        self.positions: list[str | None] = []

    def checkpoint(self, sequence_number: str | None = None, sub_sequence_number: int | None = None) -> None:
        if self.errors:
            raise CheckpointError(self.errors.pop(0))
        self.positions.append(sequence_number)


def batch(*seqs: str, behind: int = 0) -> messages.ProcessRecordsInput:
    return messages.ProcessRecordsInput({
        "action": "processRecords", "millisBehindLatest": behind,
        "records": [messages.Record({"action": "record", "sequenceNumber": s, "subSequenceNumber": 0,
                                     "approximateArrivalTimestamp": 1_700_000_000_000, "partitionKey": "k",
                                     "data": base64.b64encode(b"{}").decode()}) for s in seqs],
    })


def processor(handler: Handler, fatal: list[BaseException] | None = None) -> ShardProcessor:
    sink = fatal if fatal is not None else []
    p = ShardProcessor(handler, retry=RetryPolicy(attempts=3, base_s=0), sleep=lambda s: None,
                       on_fatal=sink.append)
    p.initialize(messages.InitializeInput({"action": "initialize", "shardId": "shardId-1",
                                           "sequenceNumber": None, "subSequenceNumber": None}))
    return p


def test_batch_is_checkpointed_at_its_last_record_after_the_handler_succeeds() -> None:
    handler, checkpointer = Handler(), Checkpointer()
    batch("10", "11", "12").dispatch(checkpointer, processor(handler))
    assert handler.batches == [["10", "11", "12"]]
    assert checkpointer.positions == ["12"]


def test_transient_errors_are_retried_inside_process_records() -> None:
    handler, checkpointer = Handler([TransientError("throttled"), TransientError("timeout")]), Checkpointer()
    batch("10").dispatch(checkpointer, processor(handler))
    assert handler.batches == [["10"]] and checkpointer.positions == ["10"]


def test_a_bug_stops_the_processor_without_checkpoint_so_nothing_is_skipped() -> None:
    # GIVEN a handler that fails with something that is not transient
    fatal: list[BaseException] = []
    handler, checkpointer = Handler([KeyError("bug")]), Checkpointer()
    # WHEN the batch is processed
    with pytest.raises(FatalProcessorError):
        batch("10").dispatch(checkpointer, processor(handler, fatal))
    # THEN nothing is checkpointed and the process is told to stop (the daemon restarts from the checkpoint)
    assert checkpointer.positions == [] and isinstance(fatal[0], KeyError)


def test_retries_exhausted_is_fatal_too() -> None:
    # GIVEN a handler that stays throttled longer than the retry policy (3 retries, then one last try)
    fatal: list[BaseException] = []
    handler, checkpointer = Handler([TransientError(f"throttled {n}") for n in range(5)]), Checkpointer()
    # WHEN the batch is processed
    with pytest.raises(FatalProcessorError, match="throttled 3"):
        batch("10").dispatch(checkpointer, processor(handler, fatal))
    # THEN it was tried 4 times, the last failure stops the process, and nothing is checkpointed or skipped
    assert len(handler.failures) == 1 and handler.batches == []
    assert [str(e) for e in fatal] == ["throttled 3"] and isinstance(fatal[0], TransientError)
    assert checkpointer.positions == []


def test_lease_lost_stops_writing() -> None:
    handler = Handler()
    p = processor(handler)
    p.lease_lost(messages.LeaseLostInput({"action": "leaseLost"}))
    batch("10").dispatch(Checkpointer(), p)
    assert handler.batches == []


def test_shutdown_exception_on_checkpoint_means_the_lease_is_gone() -> None:
    handler, checkpointer = Handler(), Checkpointer(["ShutdownException"])
    p = processor(handler)
    batch("10").dispatch(checkpointer, p)
    assert p.lease_held is False
    batch("11").dispatch(Checkpointer(), p)
    assert handler.batches == [["10"]]


def test_throttled_checkpoint_is_retried() -> None:
    checkpointer = Checkpointer(["ThrottlingException"])
    batch("10").dispatch(checkpointer, processor(Handler()))
    assert checkpointer.positions == ["10"]


def test_shard_end_checkpoints() -> None:
    checkpointer = Checkpointer()
    shard_end = messages.ShardEndedInput({"action": "shardEnded"})
    shard_end.dispatch(checkpointer, processor(Handler()))
    assert checkpointer.positions == [None]


def test_kclpy_transcript_drives_the_processor() -> None:
    """The daemon's own protocol, through amazon-kclpy's KCLProcess, in memory."""
    import io
    import json

    from amazon_kclpy import kcl

    record = {"action": "record", "sequenceNumber": "7", "subSequenceNumber": 0,
              "approximateArrivalTimestamp": 1_700_000_000_000, "partitionKey": "k",
              "data": base64.b64encode(b"{}").decode()}
    lines = [
        {"action": "initialize", "shardId": "shardId-9", "sequenceNumber": None, "subSequenceNumber": None},
        {"action": "processRecords", "millisBehindLatest": 0, "records": [record]},
        {"action": "checkpoint", "sequenceNumber": "7", "subSequenceNumber": 0, "error": None},
        {"action": "shutdownRequested"},
        {"action": "checkpoint", "sequenceNumber": "7", "subSequenceNumber": 0, "error": None},
    ]
    stdin = io.StringIO("".join(json.dumps(line) + "\n" for line in lines))
    stdout, stderr = io.StringIO(), io.StringIO()
    handler = Handler()
    kcl.KCLProcess(processor(handler), stdin, stdout, stderr).run()
    sent = [json.loads(line) for line in stdout.getvalue().splitlines() if line.strip()]
    assert handler.batches == [["7"]]
    assert {"action": "checkpoint", "sequenceNumber": "7", "subSequenceNumber": None} in sent
    assert stderr.getvalue() == ""


# --- what the recovery consumer needs from its processor ------------------------------------------------


class RecoveryLike:
    """A handler with the recovery consumer's optional calls: initialize, the batch's context, shard_ended."""

    def __init__(self, failures: list[Exception] | None = None) -> None:
        self.failures = list(failures or [])
        self.initialized: list[str] = []
        self.contexts: list[tuple[list[str], str, int]] = []
        self.ended: list[str] = []

    def initialize(self, shard_id: str) -> None:
        if self.failures:
            raise self.failures.pop(0)
        self.initialized.append(shard_id)

    def handle_batch(self, records: Sequence[StreamRecord], context: BatchContext | None = None) -> None:
        assert context is not None
        self.contexts.append(([r.sequence_number for r in records], context.shard_id, context.millis_behind_latest))

    def shard_ended(self, shard_id: str) -> None:
        self.ended.append(shard_id)


def test_a_processor_that_takes_a_shard_lets_the_handler_finish_what_the_last_owner_left() -> None:
    # GIVEN a handler whose start-up (finishing the shard's outbox) is throttled twice
    handler = RecoveryLike([TransientError("throttled"), TransientError("throttled")])
    # WHEN the processor is initialized for a shard
    processor(handler)  # type: ignore[arg-type]
    # THEN the handler was told the shard, after the retries
    assert handler.initialized == ["shardId-1"]


def test_each_batch_carries_how_far_behind_the_shard_is_and_empty_batches_too() -> None:
    # GIVEN a handler that reads the batch's context (the recovery's clock does)
    handler, checkpointer = RecoveryLike(), Checkpointer()
    p = processor(handler)  # type: ignore[arg-type]
    # WHEN a batch behind the tip, then an empty one at the tip, arrive
    batch("10", "11", behind=90_000).dispatch(checkpointer, p)
    batch(behind=0).dispatch(checkpointer, p)
    # THEN both reached the handler with the shard and millisBehindLatest; only the first is checkpointed
    assert handler.contexts == [(["10", "11"], "shardId-1", 90_000), ([], "shardId-1", 0)]
    assert checkpointer.positions == ["11"]


def test_a_shard_that_ends_is_told_to_the_handler_before_the_last_checkpoint() -> None:
    handler, checkpointer = RecoveryLike(), Checkpointer()
    messages.ShardEndedInput({"action": "shardEnded"}).dispatch(checkpointer, processor(handler))  # type: ignore[arg-type]
    assert handler.ended == ["shardId-1"] and checkpointer.positions == [None]
