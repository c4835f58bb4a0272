"""The in-process shard reader: drives ShardProcessor exactly as the KCL daemon would, without Java.

It speaks amazon-kclpy's own message classes to the processor, keeps one processor per shard,
checkpoints into a DynamoDB table (or memory), and resumes after the last checkpoint on restart.
Shards are read by ``consumers.adapters.kinesis_reader``; every batch carries the ``millisBehindLatest``
that GetRecords gave, as the daemon's does.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from amazon_kclpy import messages
from amazon_kclpy.checkpoint_error import CheckpointError

from consumers.adapters.dynamodb import from_attribute_map, to_attribute_map
from consumers.adapters.kinesis_reader import FROM_START, ShardBatch, ShardPoller, StartAt, drain, list_shards
from consumers.core.ports import StreamRecord

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_kinesis import KinesisClient


class RecordProcessor(Protocol):
    """What the reader drives: amazon-kclpy's v3 processor interface (``ShardProcessor`` is one)."""

    def initialize(self, initialize_input: Any) -> None: ...

    def process_records(self, process_records_input: Any) -> None: ...

    def shutdown_requested(self, shutdown_requested_input: Any) -> None: ...


class CheckpointStore(Protocol):
    def get(self, application: str, shard_id: str) -> str | None: ...

    def put(self, application: str, shard_id: str, sequence_number: str) -> None: ...


@dataclass
class MemoryCheckpoints:
    positions: dict[tuple[str, str], str] = field(default_factory=dict)

    def get(self, application: str, shard_id: str) -> str | None:
        return self.positions.get((application, shard_id))

    def put(self, application: str, shard_id: str, sequence_number: str) -> None:
        self.positions[(application, shard_id)] = sequence_number


class DynamoCheckpoints:
    def __init__(self, client: DynamoDBClient, table_name: str) -> None:
        self._client = client
        self._table = table_name

    def get(self, application: str, shard_id: str) -> str | None:
        response = self._client.get_item(
            TableName=self._table, Key={"application_shard": {"S": f"{application}#{shard_id}"}},
            ConsistentRead=True,
        )
        item = response.get("Item")
        return str(from_attribute_map(item)["sequence_number"]) if item else None

    def put(self, application: str, shard_id: str, sequence_number: str) -> None:
        self._client.put_item(
            TableName=self._table,
            Item=to_attribute_map(
                {"application_shard": f"{application}#{shard_id}", "sequence_number": sequence_number}
            ),
        )


class _Checkpointer:
    """The checkpointer amazon-kclpy hands a processor, backed by a CheckpointStore."""

    def __init__(self, store: CheckpointStore, application: str, shard_id: str, last_delivered: str) -> None:
        self._store = store
        self._application = application
        self._shard_id = shard_id
        self._last = last_delivered

    def checkpoint(self, sequence_number: str | None = None, sub_sequence_number: int | None = None) -> None:
        position = sequence_number or self._last
        if not position:
            raise CheckpointError("InvalidStateException")
        self._store.put(self._application, self._shard_id, position)


@dataclass
class _Shard:
    processor: RecordProcessor
    poller: ShardPoller


class LocalReader:
    def __init__(
        self,
        kinesis: KinesisClient,
        stream_name: str,
        application: str,
        processor_factory: Callable[[], RecordProcessor],
        checkpoints: CheckpointStore,
        *,
        batch_limit: int = 1000,
        shards: Collection[str] | None = None,
    ) -> None:
        self._kinesis = kinesis
        self._stream = stream_name
        self._application = application
        self._factory = processor_factory
        self._checkpoints = checkpoints
        self._limit = batch_limit
        # The shards this reader owns (a worker's leases when several share a stream); None: every shard.
        self._owned = frozenset(shards) if shards is not None else None
        self._shards: dict[str, _Shard] = {}

    def poll(self) -> int:
        """One pass over every shard, draining each up to its current tip; returns records delivered."""
        delivered = 0
        for shard in list_shards(self._kinesis, self._stream):
            if self._owned is None or shard["ShardId"] in self._owned:
                delivered += self._drain(shard["ShardId"])
        return delivered

    def run_until_idle(self, idle_polls: int = 1) -> int:
        total, quiet = 0, 0
        while quiet < idle_polls:
            count = self.poll()
            total += count
            quiet = quiet + 1 if count == 0 else 0
        return total

    def shutdown(self) -> None:
        for shard_id, shard in self._shards.items():
            last = self._checkpoints.get(self._application, shard_id) or ""
            checkpointer = _Checkpointer(self._checkpoints, self._application, shard_id, last)
            if last:
                shard.processor.shutdown_requested(
                    _Input(messages.ShutdownRequestedInput({"action": "shutdownRequested"}), checkpointer)
                )
        self._shards.clear()

    def _drain(self, shard_id: str) -> int:
        shard = self._shards.get(shard_id) or self._open(shard_id)
        delivered = 0
        for batch in drain(shard.poller):
            self._deliver(shard.processor, batch)
            delivered += len(batch.records)
        return delivered

    def _open(self, shard_id: str) -> _Shard:
        after = self._checkpoints.get(self._application, shard_id)
        start = StartAt.after(after) if after else FROM_START
        poller = ShardPoller(self._kinesis, self._stream, shard_id, start, limit=self._limit)
        processor = self._factory()
        processor.initialize(
            messages.InitializeInput(
                {"action": "initialize", "shardId": shard_id, "sequenceNumber": after, "subSequenceNumber": 0}
            )
        )
        shard = _Shard(processor, poller)
        self._shards[shard_id] = shard
        return shard

    def _deliver(self, processor: RecordProcessor, batch: ShardBatch) -> None:
        message = messages.ProcessRecordsInput(
            {
                "action": "processRecords",
                "millisBehindLatest": batch.millis_behind_latest or 0,
                "records": [_kcl_record(r) for r in batch.records],
            }
        )
        checkpointer = _Checkpointer(
            self._checkpoints, self._application, batch.shard_id, batch.records[-1].sequence_number
        )
        message.dispatch(checkpointer, processor)


def _kcl_record(record: StreamRecord) -> messages.Record:
    arrival = record.arrival
    return messages.Record(
        {
            "action": "record",
            "sequenceNumber": record.sequence_number,
            "subSequenceNumber": 0,
            "approximateArrivalTimestamp": int(arrival.timestamp() * 1000) if arrival else 0,
            "partitionKey": record.partition_key,
            "data": base64.b64encode(record.data).decode(),
        }
    )


class _Input:
    """Wraps a kclpy input so a checkpointer can be attached outside dispatch()."""

    def __init__(self, inner: Any, checkpointer: _Checkpointer) -> None:
        self._inner = inner
        self.checkpointer = checkpointer
