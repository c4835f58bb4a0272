"""``gpu-recovery demo --record PATH``: every record of the stream as JSON lines that
``gpu-recovery replay --source file:PATH`` reads (the format: ``replay.sources.recorded``).

Shards in id order, each in sequence order; each line keeps the record's bytes, partition key, shard id,
sequence number and arrival time. A demo runs on a virtual clock, so its records' arrival times are put on
that clock (``arrival``): replay then judges future-dated events against the time the consumers saw, as
the live consumer did.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from consumers.adapters.kinesis_reader import list_shards, read_shard
from consumers.core.ports import StreamRecord
from replay.sources.recorded import record_line

if TYPE_CHECKING:
    from mypy_boto3_kinesis import KinesisClient


def stream_records(kinesis: KinesisClient, stream_name: str) -> Iterator[StreamRecord]:
    """Every record in the stream now: shard by shard (sorted by id), each up to its tip."""
    for shard in sorted(str(s["ShardId"]) for s in list_shards(kinesis, stream_name)):
        for batch in read_shard(kinesis, stream_name, shard):
            yield from batch.records


def record_stream(kinesis: KinesisClient, stream_name: str, path: str | Path, *,
                  arrival: Callable[[datetime], datetime] | None = None) -> int:
    """Write every record of the stream to ``path`` (atomically: a temp file renamed over it); returns how
    many. ``arrival`` maps Kinesis's arrival times (wall clock) to the clock the consumers ran on."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    count = 0
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            for record in stream_records(kinesis, stream_name):
                if arrival is not None and record.arrival is not None:
                    record = replace(record, arrival=arrival(record.arrival))
                out.write(record_line(record) + "\n")
                count += 1
        os.replace(temp, target)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return count
