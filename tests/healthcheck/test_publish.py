"""The event on the stream: it lands in a (moto) Kinesis stream under the node's partition key, decodes as
HealthCheckReported, and the projection reads it; a failing put is retried, and the exit code holds."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from botocore.exceptions import ClientError

from consumers.adapters.kinesis import KinesisStreamWriter
from consumers.adapters.kinesis_reader import list_shards, read_shard
from consumers.core.projection import NODE, ProjectionConfig, ProjectionState, fold
from events_schema.decode import decode
from events_schema.envelope import Envelope, OurEvent
from events_schema.events import HealthCheckReported
from tests.healthcheck.conftest import CheckFn
from tests.healthcheck.fakes import NODE_ARN, TASK_ARN

STREAM = "gpu-recovery-events"


@pytest.fixture
def stream(kinesis: Any) -> Any:
    kinesis.create_stream(StreamName=STREAM, ShardCount=2)
    return kinesis


def records(client: Any) -> list[tuple[str, bytes]]:
    found: list[tuple[str, bytes]] = []
    for shard in list_shards(client, STREAM):
        for batch in read_shard(client, STREAM, shard["ShardId"]):
            found.extend((r.partition_key, r.data) for r in batch.records)
    return found


def test_event_lands_in_the_stream_and_the_projection_reads_it(check: CheckFn, stream: Any) -> None:
    # GIVEN a node whose GPU 3 fails the memory test with ISOLATE severity
    # WHEN the agent runs and writes to the stream
    run = check("memory_isolate", writer=lambda: KinesisStreamWriter(stream, STREAM))
    # THEN exactly one record, keyed by the node, that decodes to the same HealthCheckReported
    assert run.outcome.published is True
    ((key, data),) = records(stream)
    assert key == NODE_ARN
    event = decode(data)
    assert isinstance(event, OurEvent) and isinstance(event.data, HealthCheckReported)
    report = event.data
    assert (report.verdict, report.recommended_action, report.level) == ("hardware_fault", "quarantine", 2)
    assert (report.node_arn, report.ec2_instance_id, report.check_task_arn, report.incident_id) == \
        (NODE_ARN, "i-0123456789abcdef0", TASK_ARN, "inc-7")
    assert report.gpus[3].status == "fail" and report.dcgm_version == "4.4.2"
    assert event.event_id == run.event.event_id  # what was printed is what was written
    # AND the projection's fold puts the report on the node
    state = fold(ProjectionState(), event, ProjectionConfig())
    node = state.get((NODE, NODE_ARN))
    assert node is not None
    assert node["last_health_report"]["verdict"] == "hardware_fault"
    assert node["last_health_report"]["recommended_action"] == "quarantine"
    assert node["last_health_report"]["incident_id"] == "inc-7"


class FlakyWriter:
    """Throttled ``failures`` times, then delegates to the real writer."""

    def __init__(self, real: KinesisStreamWriter | None, failures: int) -> None:
        self.real, self.failures, self.calls = real, failures, 0

    def append(self, envelopes: Sequence[Envelope]) -> list[str]:
        self.calls += 1
        if self.calls <= self.failures or self.real is None:
            raise ClientError({"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}},
                              "PutRecord")
        return self.real.append(envelopes)


def test_put_failures_are_retried_with_backoff(check: CheckFn, stream: Any) -> None:
    # GIVEN a stream that throttles the first two puts
    flaky = FlakyWriter(KinesisStreamWriter(stream, STREAM), failures=2)
    # WHEN the agent reports a healthy node
    run = check("all_pass", writer=lambda: flaky)
    # THEN it tried three times, waiting 1 s then 2 s, and the record is there once
    assert (flaky.calls, run.sleeps, run.outcome.published) == (3, [1.0, 2.0], True)
    assert len(records(stream)) == 1
    assert run.outcome.exit_code == 0


def test_put_that_never_succeeds_still_exits_with_the_verdicts_code(check: CheckFn) -> None:
    # GIVEN a stream that refuses every put, and a node with a hardware fault
    flaky = FlakyWriter(None, failures=99)
    # WHEN the agent runs (three attempts allowed)
    run = check("memory_isolate", writer=lambda: flaky)
    # THEN it gave up after three tries, printed the event anyway, and exits 1 (node needs repair)
    assert (flaky.calls, run.outcome.published, run.outcome.exit_code) == (3, False, 1)
    assert run.report.verdict == "hardware_fault"


def test_a_writer_that_cannot_even_be_built_counts_as_a_failed_put(check: CheckFn) -> None:
    def broken() -> KinesisStreamWriter:
        raise RuntimeError("no credentials")

    run = check("crash", writer=broken)
    assert (run.outcome.published, run.outcome.exit_code) == (False, 2)


def test_stdout_only_writes_nothing(check: CheckFn, stream: Any) -> None:
    run = check("all_pass", writer=lambda: KinesisStreamWriter(stream, STREAM), stdout_only=True)
    assert run.outcome.published is None and records(stream) == []
