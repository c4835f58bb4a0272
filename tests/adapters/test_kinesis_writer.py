"""The Kinesis writer's raw path (the local bridge's): records Kinesis rejects inside a successful PutRecords
answer are put again, and only those. moto never rejects a record, so botocore's Stubber plays Kinesis
here with the exact requests checked; the happy path runs on moto."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from consumers.adapters.kinesis import PUT_TRIES, KinesisStreamWriter
from consumers.adapters.kinesis_reader import list_shards, read_shard
from consumers.core.errors import TransientError

THROTTLED = {"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": "Rate exceeded"}


def _request(*records: tuple[bytes, str]) -> dict[str, Any]:
    return {"StreamName": "s", "Records": [{"Data": data, "PartitionKey": key} for data, key in records]}


def _answer(*results: dict[str, str]) -> dict[str, Any]:
    failed = sum("ErrorCode" in r for r in results)  # Kinesis leaves the count out when it is 0
    return {"Records": list(results), **({"FailedRecordCount": failed} if failed else {})}


def _ok(sequence: str) -> dict[str, str]:
    return {"SequenceNumber": sequence, "ShardId": "shardId-000000000000"}


def test_put_raw_puts_every_record_on_moto(kinesis: Any) -> None:
    kinesis.create_stream(StreamName="s", ShardCount=1)
    sequences = KinesisStreamWriter(kinesis, "s").put_raw([(b"a", "k1"), (b"b", "k2")])
    shard = list_shards(kinesis, "s")[0]["ShardId"]
    assert [r.sequence_number for b in read_shard(kinesis, "s", shard) for r in b.records] == sequences


def test_only_the_rejected_records_are_put_again_after_a_backoff() -> None:
    # GIVEN Kinesis throttles the second of three records once
    client = boto3.client("kinesis", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    a, b, c = (b"a", "k1"), (b"b", "k2"), (b"c", "k3")
    sleeps: list[float] = []
    with Stubber(client) as stub:
        stub.add_response("put_records", _answer(_ok("1"), THROTTLED, _ok("3")), _request(a, b, c))
        stub.add_response("put_records", _answer(_ok("2")), _request(b))
        # WHEN the three are put
        sequences = KinesisStreamWriter(client, "s", sleep=sleeps.append).put_raw([a, b, c])
        stub.assert_no_pending_responses()
    # THEN the second call carried only the rejected record, after one pause, and every record got its number
    assert sequences == ["1", "3", "2"]
    assert len(sleeps) == 1 and sleeps[0] > 0


def test_a_record_rejected_every_time_is_a_transient_error_after_the_last_try() -> None:
    client = boto3.client("kinesis", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    record = (b"a", "k1")
    sleeps: list[float] = []
    with Stubber(client) as stub:
        for _ in range(PUT_TRIES):
            stub.add_response("put_records", _answer(THROTTLED), _request(record))
        with pytest.raises(TransientError, match=f"1 records still rejected by Kinesis after {PUT_TRIES} tries"):
            KinesisStreamWriter(client, "s", sleep=sleeps.append).put_raw([record])
    assert len(sleeps) == PUT_TRIES - 1
    assert sleeps == sorted(sleeps)  # exponential backoff
