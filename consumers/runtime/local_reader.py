"""The in-process shard reader: drives ShardProcessor exactly as the KCL daemon would, without Java.

It speaks amazon-kclpy's own message classes to the processor, keeps one processor per shard,
checkpoints into a DynamoDB table (or memory), and resumes after the last checkpoint on restart.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from amazon_kclpy import messages
from amazon_kclpy.checkpoint_error import CheckpointError

from consumers.adapters.dynamodb import from_attribute_map, to_attribute_map
from consumers.adapters.kinesis import list_shards
from consumers.runtime.processor import ShardProcessor


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
    def __init__(self, client: Any, table_name: str) -> None:
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
    processor: ShardProcessor
    iterator: str | None


class LocalReader:
    def __init__(
        self,
        kinesis: Any,
        stream_name: str,
        application: str,
        processor_factory: Callable[[], ShardProcessor],
        checkpoints: CheckpointStore,
        *,
        batch_limit: int = 1000,
    ) -> None:
        self._kinesis = kinesis
        self._stream = stream_name
        self._application = application
        self._factory = processor_factory
        self._checkpoints = checkpoints
        self._limit = batch_limit
        self._shards: dict[str, _Shard] = {}

    def poll(self) -> int:
        """One pass over every shard, draining each up to its current tip; returns records delivered."""
        delivered = 0
        for shard in list_shards(self._kinesis, self._stream):
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
        while shard.iterator:
            response = self._kinesis.get_records(ShardIterator=shard.iterator, Limit=self._limit)
            records = response["Records"]
            if not records:
                shard.iterator = response.get("NextShardIterator")
                break
            self._deliver(shard_id, shard.processor, records)
            shard.iterator = response.get("NextShardIterator")
            delivered += len(records)
        return delivered

    def _open(self, shard_id: str) -> _Shard:
        after = self._checkpoints.get(self._application, shard_id)
        kwargs: dict[str, Any] = {"StreamName": self._stream, "ShardId": shard_id}
        if after:
            kwargs.update(ShardIteratorType="AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=after)
        else:
            kwargs.update(ShardIteratorType="TRIM_HORIZON")
        iterator = self._kinesis.get_shard_iterator(**kwargs)["ShardIterator"]
        processor = self._factory()
        processor.initialize(
            messages.InitializeInput(
                {"action": "initialize", "shardId": shard_id, "sequenceNumber": after, "subSequenceNumber": 0}
            )
        )
        shard = _Shard(processor, iterator)
        self._shards[shard_id] = shard
        return shard

    def _deliver(self, shard_id: str, processor: ShardProcessor, records: list[dict[str, Any]]) -> None:
        batch = messages.ProcessRecordsInput(
            {
                "action": "processRecords",
                "millisBehindLatest": 0,
                "records": [_kcl_record(r) for r in records],
            }
        )
        checkpointer = _Checkpointer(
            self._checkpoints, self._application, shard_id, str(records[-1]["SequenceNumber"])
        )
        batch.dispatch(checkpointer, processor)


def _kcl_record(record: dict[str, Any]) -> messages.Record:
    arrival = record.get("ApproximateArrivalTimestamp")
    return messages.Record(
        {
            "action": "record",
            "sequenceNumber": str(record["SequenceNumber"]),
            "subSequenceNumber": 0,
            "approximateArrivalTimestamp": int(arrival.timestamp() * 1000) if arrival else 0,
            "partitionKey": record["PartitionKey"],
            "data": base64.b64encode(bytes(record["Data"])).decode(),
        }
    )


class _Input:
    """Wraps a kclpy input so a checkpointer can be attached outside dispatch()."""

    def __init__(self, inner: Any, checkpointer: _Checkpointer) -> None:
        self._inner = inner
        self.checkpointer = checkpointer
