"""Replay sources: files, folders, gzip, Firehose's concatenated records, S3 (moto) and the stream
(every shard, on the embedded moto server), with their cut-offs."""

from __future__ import annotations

import gzip
import io
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from replay.sources import (
    FileSource,
    S3Source,
    SourceError,
    StreamSource,
    open_source,
    records_of_stream,
    split_objects,
)
from tests.replay.histories import incident_story, lines, put_records, write_jsonl


def datas(source: Any) -> list[bytes]:
    return [record.data for record in source.records()]


# --- files ----------------------------------------------------------------------------------------


def test_a_jsonl_file_yields_each_line_with_its_position(tmp_path: Path) -> None:
    # GIVEN a JSON Lines file with a blank line in it
    path = tmp_path / "h.jsonl"
    path.write_bytes(b'{"a":1}\n\n{"b":2}\n')
    # WHEN read
    records = list(FileSource(path).records())
    # THEN blank lines are skipped and positions name file and line
    assert [r.data for r in records] == [b'{"a":1}', b'{"b":2}']
    assert [r.position for r in records] == [f"{path}:1", f"{path}:3"]


def test_a_folder_is_read_in_path_order_gzip_by_magic_and_hidden_files_skipped(tmp_path: Path) -> None:
    # GIVEN a folder: a plain file, a gzip file without a .gz name in a subfolder, and a hidden file
    write_jsonl(tmp_path / "a.jsonl", [{"n": 1}, {"n": 2}])
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "part-0001").write_bytes(gzip.compress(b'{"n":3}\n{"n":4}\n'))
    (tmp_path / ".partial.jsonl").write_bytes(b'{"n":99}\n')
    source = FileSource(tmp_path)
    # WHEN read
    got = [json.loads(d)["n"] for d in datas(source)]
    # THEN every visible file contributes, in path order, and progress reaches the total size
    assert got == [1, 2, 3, 4]
    progress = source.progress()
    assert progress.done == progress.total and progress.unit == "bytes"


def test_firehose_back_to_back_records_are_split() -> None:
    # GIVEN one line holding three records written back to back (Firehose without a delimiter)
    line = b'{"a":1}{"b":"x}{y"} {"c":[1,2]}'
    # WHEN split
    parts = split_objects(line)
    # THEN three records come out, and a brace inside a string does not cut a record
    assert [json.loads(p) for p in parts] == [{"a": 1}, {"b": "x}{y"}, {"c": [1, 2]}]


def test_garbage_after_good_records_is_kept_for_the_decoder_to_reject() -> None:
    # GIVEN good records followed by garbage on one line
    parts = split_objects(b'{"a":1}{"b":2}{not json')
    # THEN the good ones are split off and the rest is passed on as one record
    assert parts == [b'{"a":1}', b'{"b":2}', b"{not json"]


def test_an_unknown_source_spec_is_explained() -> None:
    with pytest.raises(SourceError, match="expected 'stream', 's3://BUCKET/PREFIX' or 'file:PATH'"):
        open_source("kinesis://x", clients=None, stream_name="s", now=datetime.now(UTC))


# --- the Firehose archive in S3 --------------------------------------------------------------------


def _firehose_objects(events: list[bytes]) -> dict[str, bytes]:
    """Two objects as Firehose writes them: date-partitioned keys; gzip with newlines, plain without."""
    half = len(events) // 2
    first = gzip.compress(b"".join(e + b"\n" for e in events[:half]))
    second = b"".join(events[half:])  # no delimiter: records back to back
    return {
        "archive/2026/11/27/09/gpu-recovery-1-2026-11-27-09-00-00-aaaa.gz": first,
        "archive/2026/11/27/10/gpu-recovery-1-2026-11-27-10-00-00-bbbb": second,
    }


def test_s3_archive_gzip_and_plain_objects_in_key_order(aws: None) -> None:
    # GIVEN the story archived by Firehose into two objects under a date-partitioned prefix
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="archive-bucket")
    events = lines(incident_story())
    for key, body in _firehose_objects(events).items():
        s3.put_object(Bucket="archive-bucket", Key=key, Body=body)
    s3.put_object(Bucket="archive-bucket", Key="elsewhere/x.json", Body=b'{"not":"ours"}\n')
    source = S3Source(s3, "archive-bucket", "archive/")
    # WHEN read
    got = datas(source)
    # THEN every record comes back, in order, and nothing outside the prefix
    assert [json.loads(g) for g in got] == [json.loads(e) for e in events]
    assert source.progress().done == source.progress().total


# --- the stream ------------------------------------------------------------------------------------


def _stream(endpoint: str, shards: int = 4) -> tuple[Any, str]:
    kinesis = boto3.client("kinesis", endpoint_url=endpoint, region_name="us-east-1")
    name = f"replay-{uuid.uuid4().hex[:8]}"
    kinesis.create_stream(StreamName=name, ShardCount=shards)
    kinesis.get_waiter("stream_exists").wait(StreamName=name, WaiterConfig={"Delay": 1})
    return kinesis, name


def _put(kinesis: Any, name: str, events: list[bytes]) -> None:
    kinesis.put_records(StreamName=name, Records=[
        {"Data": e, "PartitionKey": f"key-{i}"} for i, e in enumerate(events)])


def test_stream_reads_every_shard_in_parallel(moto_server: str) -> None:
    # GIVEN 120 records spread over 4 shards
    kinesis, name = _stream(moto_server)
    events = [json.dumps({"n": i}).encode() for i in range(120)]
    _put(kinesis, name, events)
    # WHEN read (small batches, so every shard takes several GetRecords)
    source = StreamSource(kinesis, name, now=datetime.now(UTC) + timedelta(seconds=1), batch_limit=7)
    records = list(source.records())
    # THEN each record comes exactly once, from more than one shard, and every shard is done
    assert sorted(r.data for r in records) == sorted(events)
    assert len({r.position.split(":")[0] for r in records}) > 1
    assert source.progress().done == source.progress().total == 4


def test_stream_stops_at_the_tip_it_had_at_start(moto_server: str) -> None:
    # GIVEN records written before the replay starts, and more written after
    kinesis, name = _stream(moto_server, shards=2)
    _put(kinesis, name, [b'{"before":1}', b'{"before":2}'])
    started = datetime.now(UTC)
    time.sleep(0.05)
    _put(kinesis, name, [b'{"after":1}'])
    # WHEN read with the start time as the tip
    got = datas(StreamSource(kinesis, name, now=started))
    # THEN only what was there at start is replayed
    assert sorted(got) == [b'{"before":1}', b'{"before":2}']


def test_stream_since_starts_at_a_timestamp_and_until_stops_early(moto_server: str) -> None:
    # GIVEN three generations of records, written at distinct times
    kinesis, name = _stream(moto_server, shards=2)
    _put(kinesis, name, [b'{"g":1}'])
    time.sleep(0.05)
    since = datetime.now(UTC)
    _put(kinesis, name, [b'{"g":2}'])
    time.sleep(0.05)
    until = datetime.now(UTC)
    time.sleep(0.05)
    _put(kinesis, name, [b'{"g":3}'])
    # WHEN read from --since to --until
    source = open_source("stream", clients=lambda _: kinesis, stream_name=name,
                         now=datetime.now(UTC) + timedelta(seconds=1), since=since, until=until)
    # THEN only the middle generation comes back
    assert datas(source) == [b'{"g":2}']


def test_stream_positions_are_shard_and_sequence(moto_server: str) -> None:
    kinesis, name = _stream(moto_server, shards=1)
    _put(kinesis, name, [b"{}"])
    (record,) = list(StreamSource(kinesis, name, now=datetime.now(UTC) + timedelta(seconds=1)).records())
    shard, sequence = record.position.split(":")
    assert shard.startswith("shardId-") and sequence.isdigit()


def test_counting_reader_counts_compressed_bytes() -> None:
    from replay.sources import CountingReader

    reader = CountingReader(io.BytesIO(b"x" * 10))
    assert reader.read() == b"x" * 10 and reader.count == 10


def test_replay_from_the_archive_equals_replay_from_a_file(aws: None, tmp_path: Path) -> None:
    # GIVEN the same history as a local file and as a Firehose archive in (moto's) S3
    from gpu_recovery.cli import main

    events = lines(incident_story())
    history = write_jsonl(tmp_path / "h.jsonl", events)
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="archive-bucket")
    for key, body in _firehose_objects(events).items():
        s3.put_object(Bucket="archive-bucket", Key=key, Body=body)
    # WHEN both are replayed into files
    assert main(["replay", "--source", "s3://archive-bucket/archive/2026/", "--target",
                 f"file:{tmp_path / 's3.json'}", "--no-progress"]) == 0
    assert main(["replay", "--source", f"file:{history}", "--target", f"file:{tmp_path / 'file.json'}",
                 "--no-progress"]) == 0
    # THEN the results are byte-identical
    assert (tmp_path / "s3.json").read_bytes() == (tmp_path / "file.json").read_bytes()


def test_a_missing_stream_is_reported_not_a_traceback(moto_server: str, capsys: Any) -> None:
    from gpu_recovery.cli import main

    code = main(["replay", "--endpoint-url", moto_server, "--stream-name", "no-such-stream", "--target", "none",
                 "--no-progress"])
    assert code == 2
    assert "ResourceNotFoundException" in capsys.readouterr().err


def test_a_reader_process_gives_what_reader_threads_give(moto_server: str, tmp_path: Path) -> None:
    # GIVEN the story in a 3-shard stream
    from gpu_recovery.cli import main

    kinesis, name = _stream(moto_server, shards=3)
    put_records(kinesis, name, incident_story())  # keyed as live: each node's, each job's events in order
    common = ["replay", "--endpoint-url", moto_server, "--stream-name", name, "--no-progress"]
    # WHEN replayed with the shards read in a child process, and in threads
    assert main([*common, "--reader", "process", "--target", f"file:{tmp_path / 'process.json'}"]) == 0
    assert main([*common, "--reader", "thread", "--target", f"file:{tmp_path / 'thread.json'}"]) == 0
    # THEN the results are byte-identical
    assert (tmp_path / "process.json").read_bytes() == (tmp_path / "thread.json").read_bytes()


def test_a_failing_reader_process_is_reported(moto_server: str) -> None:
    # GIVEN a stream that does not exist
    from functools import partial

    from replay.sources import ProcessStreamSource, StreamReadError

    factory = partial(boto3.client, "kinesis", endpoint_url=moto_server, region_name="us-east-1",
                      aws_access_key_id="testing", aws_secret_access_key="testing")
    source = ProcessStreamSource(factory, "no-such-stream", now=datetime.now(UTC))
    # WHEN read THEN the child's error surfaces here, by name
    with pytest.raises(StreamReadError, match="ResourceNotFoundException"):
        list(source.records())


def test_stream_records_carry_their_arrival_time(moto_server: str) -> None:
    # GIVEN a record put on the stream just now
    kinesis, name = _stream(moto_server, shards=1)
    before = datetime.now(UTC) - timedelta(seconds=1)
    _put(kinesis, name, [b"{}"])
    # WHEN read by threads and by a reader process
    from functools import partial

    from replay.sources import ProcessStreamSource

    factory = partial(boto3.client, "kinesis", endpoint_url=moto_server, region_name="us-east-1",
                      aws_access_key_id="testing", aws_secret_access_key="testing")
    now = datetime.now(UTC) + timedelta(seconds=1)
    (threaded,) = list(StreamSource(kinesis, name, now=now).records())
    (forked,) = list(ProcessStreamSource(factory, name, now=now).records())
    # THEN both carry Kinesis's arrival time
    assert threaded.arrival is not None and before <= threaded.arrival <= now
    assert forked.arrival == threaded.arrival


# --- recorded streams (demo --record) ----------------------------------------------------------------


def test_a_recorded_stream_reads_back_as_its_records_with_their_arrival_times(moto_server: str,
                                                                              tmp_path: Path) -> None:
    # GIVEN a 3-shard stream, recorded to a file (as demo --record does), and a gzip copy beside a plain file
    from local.recording import record_stream, stream_records

    kinesis, name = _stream(moto_server, shards=3)
    _put(kinesis, name, [json.dumps({"n": i}).encode() for i in range(30)] + [b"not json"])
    assert record_stream(kinesis, name, tmp_path / "rec" / "stream.jsonl") == 31
    recorded = (tmp_path / "rec" / "stream.jsonl").read_bytes()
    (tmp_path / "rec" / "zipped").write_bytes(gzip.compress(recorded))
    write_jsonl(tmp_path / "rec" / "plain.jsonl", [{"plain": 1}])
    # WHEN the folder is read as a replay source
    records = list(FileSource(tmp_path / "rec").records())
    # THEN each recorded line is the record it holds, bytes and arrival time, in shard order; plain lines as they are
    stream = list(stream_records(kinesis, name))
    assert [(r.data, r.arrival) for r in records] == [
        (b'{"plain":1}', None), *[(s.data, s.arrival) for s in stream], *[(s.data, s.arrival) for s in stream]]
    assert [s.shard_id for s in stream] == sorted(s.shard_id for s in stream)
    first = json.loads(recorded.splitlines()[0])
    assert (first["ShardId"], first["SequenceNumber"], first["PartitionKey"]) == (
        stream[0].shard_id, stream[0].sequence_number, stream[0].partition_key)


def test_a_line_that_only_looks_recorded_is_read_as_it_is() -> None:
    # GIVEN lines that name SequenceNumber but are no recorded record: nested, or Data not base64
    nested = b'{"detail":{"SequenceNumber":"1","PartitionKey":"k","Data":"e30="}}'
    bad = b'{"SequenceNumber":"1","PartitionKey":"k","Data":"not base64!"}'
    # AND recorded lines with the arrival time as the AWS CLI prints it (ISO 8601, or epoch seconds)
    iso_line = b'{"SequenceNumber":"1","PartitionKey":"k","Data":"e30=","ApproximateArrivalTimestamp":' \
               b'"2026-11-27T09:00:00.5+00:00"}'
    epoch_line = b'{"SequenceNumber":"2","PartitionKey":"k","Data":"e30=","ApproximateArrivalTimestamp":1795770000.5}'
    # WHEN read
    records = list(records_of_stream(io.BufferedReader(io.BytesIO(b"\n".join([nested, bad, iso_line, epoch_line]))),
                                     "f"))
    # THEN the first two are left for the decoder to judge; the others unwrap, their times in UTC
    assert [r.data for r in records] == [nested, bad, b"{}", b"{}"]
    assert records[2].arrival == datetime(2026, 11, 27, 9, 0, 0, 500_000, tzinfo=UTC)
    assert records[3].arrival == datetime.fromtimestamp(1795770000.5, UTC)


def test_demo_record_into_a_folder_is_refused(tmp_path: Path, capsys: Any) -> None:
    from gpu_recovery.cli import main

    assert main(["demo", "--record", str(tmp_path)]) == 2
    assert "--record" in capsys.readouterr().err


def test_the_demo_clock_maps_a_wall_time_to_what_it_said_then() -> None:
    # GIVEN a virtual clock moved twice, at wall times 100 and 105 (it was made at 90)
    from local.clock import VirtualClock

    walls = iter([90.0, 100.0, 105.0])
    clock = VirtualClock(datetime(2026, 11, 27, 9, tzinfo=UTC), wall=lambda: next(walls))
    clock.advance(60)
    clock.advance_to(datetime(2026, 11, 27, 9, 20, tzinfo=UTC))
    # THEN a record that arrived between two moves arrived, on the virtual clock, at the earlier one's time
    assert clock.at_wall(95.0) == datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
    assert clock.at_wall(100.0) == clock.at_wall(104.9) == datetime(2026, 11, 27, 9, 1, tzinfo=UTC)
    assert clock.at_wall(200.0) == datetime(2026, 11, 27, 9, 20, tzinfo=UTC)
    assert clock.at_wall(10.0) == datetime(2026, 11, 27, 9, 0, tzinfo=UTC)  # before it was made: its start
