"""Kinesis writer: append our events to the stream (reading is ``kinesis_reader``'s and ``kinesis_fanout``'s)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from consumers.adapters.dynamodb import TRANSIENT_CODES
from consumers.core.errors import TransientError
from events_schema.envelope import Envelope
from events_schema.partition import partition_key_for

if TYPE_CHECKING:
    from mypy_boto3_kinesis import KinesisClient

PUT_TRIES = 8
KINESIS_TRANSIENT = TRANSIENT_CODES | {"KMSThrottlingException", "LimitExceededException"}


def envelope_bytes(envelope: Envelope) -> bytes:
    return json.dumps(envelope.model_dump(mode="json"), separators=(",", ":"), sort_keys=True).encode()


class KinesisStreamWriter:
    """PutRecords in order; records that Kinesis rejects are retried by the caller as a TransientError."""

    def __init__(self, client: KinesisClient, stream_name: str, *, sleep: Callable[[float], None] = time.sleep) -> None:
        self._client = client
        self._stream = stream_name
        self._sleep = sleep

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
        """PutRecords for (data, partition key) pairs: the local bridge's path. Records Kinesis rejects inside
        a successful answer (botocore does not retry those) are put again, with backoff, up to 8 tries."""
        from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential  # [local]

        pending, sequence_numbers = list(records), list[str]()
        retrying = Retrying(stop=stop_after_attempt(PUT_TRIES), wait=wait_exponential(multiplier=0.05, max=2.0),
                            retry=retry_if_exception_type(_Rejected), sleep=self._sleep, reraise=True)
        try:
            for attempt in retrying:
                with attempt:
                    pending = self._put_records(pending, sequence_numbers)
                    if pending:
                        raise _Rejected(len(pending))
        except _Rejected as exc:
            raise TransientError(f"{exc} records still rejected by Kinesis after {PUT_TRIES} tries") from exc
        return sequence_numbers

    def _put_records(self, records: list[tuple[bytes, str]], sequence_numbers: list[str]) -> list[tuple[bytes, str]]:
        """One PutRecords; the sequence numbers of the records put go to ``sequence_numbers``, the rejected
        records come back."""
        response = self._client.put_records(
            StreamName=self._stream, Records=[{"Data": data, "PartitionKey": key} for data, key in records])
        rejected = []
        for record, result in zip(records, response["Records"], strict=True):
            if "ErrorCode" in result:
                rejected.append(record)
            else:
                sequence_numbers.append(str(result["SequenceNumber"]))
        return rejected


class _Rejected(Exception):
    """Some records of a PutRecords were rejected (throttled); the message is how many."""
