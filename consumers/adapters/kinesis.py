"""Kinesis writer: append our events to the stream (reading is ``kinesis_reader``'s and ``kinesis_fanout``'s)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from botocore.exceptions import ClientError

from consumers.adapters.dynamodb import TRANSIENT_CODES
from consumers.core.errors import TransientError
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

    def append(self, envelopes: Sequence[Envelope]) -> list[str]:
        sequence_numbers: list[str] = []
        for envelope in envelopes:
            # One PutRecord each keeps our events in the order they were decided within a partition.
            try:
                response = self._client.put_record(
                    StreamName=self._stream,
                    Data=envelope_bytes(envelope),
                    PartitionKey=partition_key_for(envelope),
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
