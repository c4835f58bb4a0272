"""Kinesis adapters: append our events to the stream, and read shards (for replay and the local reader)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

from botocore.exceptions import ClientError

from consumers.adapters.dynamodb import TRANSIENT_CODES
from consumers.core.errors import TransientError
from consumers.core.ports import StreamRecord
from events_schema.envelope import Envelope
from events_schema.partition import partition_key_for

KINESIS_TRANSIENT = TRANSIENT_CODES | {"KMSThrottlingException", "LimitExceededException"}


def envelope_bytes(envelope: Envelope) -> bytes:
    return json.dumps(envelope.model_dump(mode="json"), separators=(",", ":"), sort_keys=True).encode()


class KinesisStreamWriter:
    """PutRecords in order; records that Kinesis rejects are retried by the caller as a TransientError."""

    def __init__(self, client: Any, stream_name: str) -> None:
        self._client = client
        self._stream = stream_name

    def append(self, envelopes: Sequence[Envelope], partition_keys: Sequence[str] | None = None) -> list[str]:
        """``partition_keys``: where each event goes (a record's events share its ECS events' shard, so
        replay folds them in the order live decided); by default the subject's."""
        sequence_numbers: list[str] = []
        keys = list(partition_keys) if partition_keys is not None else [partition_key_for(e) for e in envelopes]
        for envelope, key in zip(envelopes, keys, strict=True):
            # One PutRecord each keeps our events in the order they were decided within a partition.
            try:
                response = self._client.put_record(
                    StreamName=self._stream,
                    Data=envelope_bytes(envelope),
                    PartitionKey=key[:256],
                )
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in KINESIS_TRANSIENT:
                    raise TransientError(str(exc)) from exc
                raise
            sequence_numbers.append(str(response["SequenceNumber"]))
        return sequence_numbers

    def put_raw(self, records: Sequence[tuple[bytes, str]]) -> list[str]:
        """PutRecords for (data, partition key) pairs, retrying the failed ones (the bridge's path)."""
        pending = list(records)
        sequence_numbers: list[str] = []
        for _ in range(8):
            if not pending:
                return sequence_numbers
            response = self._client.put_records(
                StreamName=self._stream,
                Records=[{"Data": data, "PartitionKey": key} for data, key in pending],
            )
            retry = []
            for record, result in zip(pending, response["Records"], strict=True):
                if "ErrorCode" in result:
                    retry.append(record)
                else:
                    sequence_numbers.append(result["SequenceNumber"])
            pending = retry
        raise TransientError(f"{len(pending)} records still rejected by Kinesis after retries")


def list_shards(client: Any, stream_name: str) -> list[dict[str, Any]]:
    shards: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"StreamName": stream_name}
    while True:
        response = client.list_shards(**kwargs)
        shards.extend(response["Shards"])
        token = response.get("NextToken")
        if not token:
            return shards
        kwargs = {"NextToken": token}


def read_shard(
    client: Any,
    stream_name: str,
    shard_id: str,
    *,
    after_sequence: str | None = None,
    limit: int = 10_000,
) -> Iterator[list[StreamRecord]]:
    """Batches from one shard up to its current tip, then stop."""
    if after_sequence:
        iterator = client.get_shard_iterator(
            StreamName=stream_name, ShardId=shard_id,
            ShardIteratorType="AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=after_sequence,
        )["ShardIterator"]
    else:
        iterator = client.get_shard_iterator(
            StreamName=stream_name, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
    while iterator:
        response = client.get_records(ShardIterator=iterator, Limit=limit)
        records = [
            StreamRecord(
                shard_id=shard_id,
                sequence_number=str(r["SequenceNumber"]),
                partition_key=str(r["PartitionKey"]),
                data=bytes(r["Data"]),
                arrival=r.get("ApproximateArrivalTimestamp"),
            )
            for r in response["Records"]
        ]
        if not records:
            return
        yield records
        iterator = response.get("NextShardIterator")
