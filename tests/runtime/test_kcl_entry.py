"""The per-shard executable, driven by a transcript of the daemon's protocol through in-memory streams."""

from __future__ import annotations

import base64
import io
import json
import logging
from collections.abc import Sequence
from typing import Any

import pytest

from consumers.core.ports import StreamRecord
from consumers.runtime import kcl_entry


class RecordingHandler:
    def __init__(self) -> None:
        self.batches: list[list[StreamRecord]] = []

    def handle_batch(self, records: Sequence[StreamRecord]) -> None:
        self.batches.append(list(records))


def _line(message: dict[str, Any]) -> str:
    return json.dumps(message) + "\n"


def _record(seq: str, data: bytes) -> dict[str, Any]:
    return {
        "action": "record", "sequenceNumber": seq, "subSequenceNumber": 0, "partitionKey": f"pk-{seq}",
        "approximateArrivalTimestamp": 1_795_000_000_000, "data": base64.b64encode(data).decode(),
    }


def _run(transcript: list[dict[str, Any]], handler: RecordingHandler) -> list[dict[str, Any]]:
    stdin = io.StringIO("".join(_line(m) for m in transcript))
    protocol_out, stderr = io.StringIO(), io.StringIO()
    kcl_entry.run("projector", stdin=stdin, protocol_out=protocol_out, stderr=stderr,
                  handler_factory=lambda consumer: handler)
    return _messages(protocol_out.getvalue())


def _messages(text: str) -> list[dict[str, Any]]:
    # amazon-kclpy surrounds each line with newlines, so that stray output cannot glue onto it
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_a_batch_reaches_the_handler_and_is_checkpointed_at_its_last_record() -> None:
    # GIVEN the daemon's messages for one shard: initialize, a batch of two records, the checkpoint reply
    handler = RecordingHandler()
    transcript: list[dict[str, Any]] = [
        {"action": "initialize", "shardId": "shardId-000000000001", "sequenceNumber": "TRIM_HORIZON",
         "subSequenceNumber": 0},
        {"action": "processRecords", "millisBehindLatest": 0,
         "records": [_record("101", b'{"a":1}'), _record("102", b'{"b":2}')]},
        {"action": "checkpoint", "sequenceNumber": "102", "subSequenceNumber": None, "error": None},
    ]
    # WHEN the executable serves it
    replies = _run(transcript, handler)
    # THEN the handler got both records of the shard, and the processor checkpointed at 102 before
    # acknowledging the batch
    assert [[r.sequence_number for r in batch] for batch in handler.batches] == [["101", "102"]]
    assert handler.batches[0][0].shard_id == "shardId-000000000001"
    assert handler.batches[0][1].data == b'{"b":2}'
    assert replies == [
        {"action": "status", "responseFor": "initialize"},
        {"action": "checkpoint", "sequenceNumber": "102", "subSequenceNumber": None},
        {"action": "status", "responseFor": "processRecords"},
    ]


def test_an_empty_batch_reaches_the_handler_without_a_checkpoint() -> None:
    # GIVEN an empty batch (callProcessRecordsEvenForEmptyRecordList, used by the recovery)
    handler = RecordingHandler()
    transcript = [
        {"action": "initialize", "shardId": "s", "sequenceNumber": "TRIM_HORIZON", "subSequenceNumber": 0},
        {"action": "processRecords", "millisBehindLatest": 0, "records": []},
    ]
    # WHEN it is served
    replies = _run(transcript, handler)
    # THEN the handler saw it, and nothing was checkpointed
    assert handler.batches == [[]]
    assert [r["action"] for r in replies] == ["status", "status"]


def test_logged_handler_reports_non_empty_batches_only(caplog: pytest.LogCaptureFixture) -> None:
    # GIVEN a handler wrapped for per-batch log lines, with a clock that advances 0.25 s per call
    ticks = iter([10.0, 10.25, 20.0, 20.0])
    logged = kcl_entry.LoggedHandler(RecordingHandler(), clock=lambda: next(ticks))
    record = StreamRecord(shard_id="shardId-7", sequence_number="9", partition_key="k", data=b"{}")
    # WHEN a batch and then an empty batch go through
    with caplog.at_level(logging.INFO, logger="gpu_recovery.kcl_entry"):
        logged.handle_batch([record])
        logged.handle_batch([])
    # THEN one line names the shard, the count, the last sequence number and the time taken
    assert [r.getMessage() for r in caplog.records] == [
        "batch shard=shardId-7 records=1 last_seq=9 seconds=0.250"
    ]


@pytest.fixture
def root_logging() -> Any:
    # main() reconfigures the root logger (its process is the processor's); give it back afterwards.
    handlers, level = list(logging.root.handlers), logging.root.level
    yield
    logging.root.handlers[:] = handlers
    logging.root.setLevel(level)


@pytest.mark.usefixtures("root_logging")
def test_main_keeps_stdout_for_the_protocol(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a consumer whose construction prints (a library writing to stdout by accident)
    stdin, stdout, stderr = io.StringIO(_line({"action": "initialize", "shardId": "s",
                                                "sequenceNumber": "TRIM_HORIZON", "subSequenceNumber": 0})),\
        io.StringIO(), io.StringIO()
    monkeypatch.setattr("sys.stdin", stdin)
    monkeypatch.setattr("sys.stdout", stdout)
    monkeypatch.setattr("sys.stderr", stderr)

    def noisy_factory(consumer: str) -> RecordingHandler:
        print("hello from a library")
        return RecordingHandler()

    # WHEN the executable serves with it
    assert kcl_entry.serve(["projector", "--log-level", "WARNING"], noisy_factory) == 0
    # THEN stdout carries only protocol lines; the print went to stderr
    assert _messages(stdout.getvalue()) == [
        {"action": "status", "responseFor": "initialize"}
    ]
    assert "hello from a library" in stderr.getvalue()
