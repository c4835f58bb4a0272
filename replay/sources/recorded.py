"""Stream records kept with their Kinesis metadata, one JSON object a line (``gpu-recovery demo --record``).

A line has the shape of a record in Kinesis's ``GetRecords`` answer (``Data`` in base64, ``PartitionKey``,
``SequenceNumber``, ``ApproximateArrivalTimestamp``) plus the ``ShardId`` it was read from, so
``aws kinesis get-records`` output turns into one with a ``jq`` line. File sources unwrap such a line into
the record's own bytes and its arrival time; any other line is a record itself, so plain JSON Lines files
(the Firehose archive, hand-made histories) read as before, and both kinds may be mixed.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, ValidationError

from consumers.core.clocktext import iso
from consumers.core.ports import StreamRecord
from replay.sources.base import RawRecord

# Our envelopes and EventBridge events never carry this name at their top level; a line without it
# anywhere is not parsed here at all (the Firehose archive is read at full speed).
MARKER = b'"SequenceNumber"'


class RecordedRecord(BaseModel):
    """One recorded line (wire names of Kinesis's ``Record``, plus ``ShardId``); fields AWS adds are kept."""

    model_config = ConfigDict(extra="allow")

    SequenceNumber: str
    PartitionKey: str
    Data: str
    ShardId: str | None = None
    ApproximateArrivalTimestamp: datetime | None = None  # ISO 8601 or epoch seconds, as the AWS CLI prints


def record_line(record: StreamRecord) -> str:
    """A stream record as one recorded line (no newline)."""
    line: dict[str, str] = {"ShardId": record.shard_id, "SequenceNumber": record.sequence_number,
                            "PartitionKey": record.partition_key}
    if record.arrival is not None:
        arrival = record.arrival if record.arrival.tzinfo else record.arrival.replace(tzinfo=UTC)
        line["ApproximateArrivalTimestamp"] = iso(arrival)
    line["Data"] = base64.b64encode(record.data).decode("ascii")
    return json.dumps(line, separators=(",", ":"))


def unwrap(line: bytes, position: str) -> RawRecord:
    """A recorded line -> the record it holds (its bytes and arrival time); any other line as it is."""
    if MARKER not in line:
        return RawRecord(position, line)
    try:
        recorded = RecordedRecord.model_validate_json(line)
        data = base64.b64decode(recorded.Data, validate=True)
    except (ValidationError, binascii.Error):
        return RawRecord(position, line)  # not a recorded line after all: the decoder judges it
    arrival = recorded.ApproximateArrivalTimestamp
    if arrival is not None and arrival.tzinfo is None:
        arrival = arrival.replace(tzinfo=UTC)
    return RawRecord(position, data, arrival)
