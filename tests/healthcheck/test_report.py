"""The HealthCheckReported v3 event: its proof verifies on exactly the payload that goes on the wire and on
the record read back from the stream; no secret, no proof; the secret never shows; the boot time, the check
key, the fix and what did not run are in it."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

import pytest

from consumers.adapters.kinesis import KinesisStreamWriter
from consumers.adapters.kinesis_reader import list_shards, read_shard
from events_schema.decode import decode
from events_schema.envelope import OurEvent
from events_schema.events import HealthCheckReported
from events_schema.proof import check_secret, verify_report
from healthcheck.identity import Identity
from tests.healthcheck.conftest import CheckFn
from tests.healthcheck.fakes import NODE_ARN, nvml_with

KEY = b"recovery-only-key"
CHECK_KEY = "inc-7:check:1"
SECRET = check_secret(KEY, CHECK_KEY)
BOOTED = datetime(2026, 11, 28, 9, 58, 1, tzinfo=UTC)
SIGNED = {"check_key": CHECK_KEY, "secret": SECRET, "boot_time": BOOTED}


def test_the_proof_verifies_on_the_printed_payload_and_nothing_else(check: CheckFn) -> None:
    # GIVEN a check started with a secret
    run = check("all_pass", identity=SIGNED)
    data = run.event.envelope.data
    # THEN the proof over the payload as printed verifies with that secret only
    assert data["proof"] and verify_report(SECRET, data)
    assert not verify_report(check_secret(KEY, "inc-7:check:2"), data)
    # AND any change to what the report says breaks it
    assert not verify_report(SECRET, {**data, "verdict": "hardware_fault"})
    assert not verify_report(SECRET, {**data, "boot_time": "2026-11-28T10:30:00Z"})
    # AND the event carries the check key and the host's boot time
    assert (run.report.check_key, run.report.boot_time) == (CHECK_KEY, BOOTED)


def test_the_proof_verifies_on_the_record_read_back_from_the_stream(check: CheckFn, kinesis: Any) -> None:
    kinesis.create_stream(StreamName="checks", ShardCount=1)
    check("memory_isolate", identity=SIGNED, writer=lambda: KinesisStreamWriter(kinesis, "checks"))
    shard = list_shards(kinesis, "checks")[0]["ShardId"]
    (record,) = [r for batch in read_shard(kinesis, "checks", shard) for r in batch.records]
    raw = json.loads(record.data)["data"]
    assert verify_report(SECRET, raw)
    event = decode(record.data)
    assert isinstance(event, OurEvent) and isinstance(event.data, HealthCheckReported)
    assert verify_report(SECRET, event.envelope.data)


def test_without_a_secret_there_is_no_proof(check: CheckFn) -> None:
    run = check("all_pass")
    assert run.event.envelope.data["proof"] is None and run.report.check_key is None


def test_the_secret_never_shows(check: CheckFn, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    run = check("memory_isolate", identity=SIGNED)
    assert SECRET not in run.stdout and SECRET not in caplog.text
    assert SECRET not in repr(Identity(NODE_ARN, None, None, None, secret=SECRET))


def test_misconfigured_carries_the_fix_and_untested_lists_what_did_not_run(check: CheckFn) -> None:
    misconfigured = check("gb10_persistence_mode_off", level=1, expected_gpus=1,
                          nvml=nvml_with(1))
    assert (misconfigured.report.verdict, misconfigured.report.recommended_action) == ("misconfigured", "reconfigure")
    assert "nvidia-persistenced" in misconfigured.report.fix and misconfigured.outcome.exit_code == 3
    skipped = check("nvvs_per_gpu_skips", level=3, expected_gpus=4,
                    nvml=nvml_with(4))
    assert skipped.report.verdict == "inconclusive"
    assert "dcgm memory: skipped on GPU 0: ECC memory on GPU 0 is not currently active." in \
        " ".join(skipped.report.untested)
