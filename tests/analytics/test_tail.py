"""``gpu-recovery tail``: filters, lines, the polling follower on moto (new shards too), the command itself."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest

from analytics.history import parse_when
from analytics.tail import Shown, Unreadable, json_line, stop_after, tail_events
from analytics.view import EventFilter, line_of, view_of
from consumers.adapters.kinesis_reader import PollingFollower, ShardBook, StartAt
from consumers.core.ports import StreamRecord
from events_schema.decode import decode, decode_mapping
from gpu_recovery.cli import main
from tests.analytics.scenario import history
from tests.analytics.test_report import record_bytes
from tests.factories import node_arn, node_event, task_event


def scenario_records() -> list[StreamRecord]:
    return [StreamRecord("shardId-0", str(n), "pk", record_bytes(item)) for n, item in enumerate(history())]


def shown(event_filter: EventFilter) -> list[Shown]:
    return [item for item in tail_events(scenario_records(), event_filter) if isinstance(item, Shown)]


# --- filters (pure) ---------------------------------------------------------------------------------


def test_type_filter_takes_our_type_or_the_aws_detail_type_or_its_short_name() -> None:
    # GIVEN the scenario history (15 task events, 5 + 1 IncidentOpened incl. a duplicate delivery)
    # WHEN filtering by our type, by the AWS detail-type and by its short name (any case)
    opened = shown(EventFilter.of(types=["IncidentOpened"]))
    by_detail_type = shown(EventFilter.of(types=["ECS Task State Change"]))
    by_short_name = shown(EventFilter.of(types=["taskstatechange"]))
    # THEN each gives exactly those events
    assert {s.view.type for s in opened} == {"IncidentOpened"}
    assert len(opened) == 6  # Z, A, D, B, C and A's duplicate delivery
    assert len(by_detail_type) == 15
    assert [s.record for s in by_detail_type] == [s.record for s in by_short_name]
    # AND a repeated --type matches either
    both = shown(EventFilter.of(types=["IncidentOpened", "IncidentClosed"]))
    assert len(both) == 6 + 4


def test_node_filter_takes_the_arn_or_its_short_id_for_aws_and_our_events() -> None:
    # WHEN filtering by node 5, once by ARN and once by its id
    by_arn = shown(EventFilter.of(nodes=[node_arn(5)]))
    by_id = shown(EventFilter.of(nodes=["node0005"]))
    # THEN both give node 5's task events and our incident C events, nothing else
    assert [s.record for s in by_arn] == [s.record for s in by_id]
    assert {s.view.type for s in by_arn} == {"TaskStateChange", "IncidentOpened", "HealthCheckReported",
                                             "IncidentClosed"}
    assert all(s.view.node == node_arn(5) for s in by_arn)


def test_node_filter_takes_the_ec2_instance_id_of_a_container_instance_event() -> None:
    record = StreamRecord("s", "1", "pk", json.dumps(node_event(7, instance_id="i-0abc")).encode())
    assert [type(i) for i in tail_events([record], EventFilter.of(nodes=["i-0abc"]))] == [Shown]
    assert list(tail_events([record], EventFilter.of(nodes=["i-other"]))) == []


def test_job_filter_matches_task_events_by_group_and_ours_by_job_id() -> None:
    # WHEN filtering by job beta and type JobStateChanged or TaskStateChange
    found = shown(EventFilter.of(jobs=["job:beta"]))
    # THEN beta's task events, its incident (job_ids), and its RUNNING
    assert [s.view.type for s in found] == ["TaskStateChange", "TaskStateChange", "TaskStateChange",
                                            "IncidentOpened", "JobStateChanged"]
    # AND filters combine with AND
    assert len(shown(EventFilter.of(types=["JobStateChanged"], jobs=["job:beta"]))) == 1
    assert shown(EventFilter.of(types=["JobStateChanged"], jobs=["job:beta"], nodes=["node0001"])) == []


def test_a_record_that_is_not_an_event_is_reported_not_dropped() -> None:
    # GIVEN a record that is not JSON before three events (two task events, then inc-Z opened)
    records = [StreamRecord("s", "1", "pk", b"\xff not json"), *scenario_records()[:3]]
    # WHEN tailing for IncidentOpened
    items = list(tail_events(records, EventFilter.of(types=["IncidentOpened"])))
    # THEN the bad record comes out as unreadable, whatever the filter, and the match as shown
    assert isinstance(items[0], Unreadable) and items[0].error.kind == "not_json"
    assert [type(i) for i in items] == [Unreadable, Shown]


def test_human_line_names_time_type_node_job_and_what_happened() -> None:
    event = decode(json.dumps(task_event(9, node=4, status="STOPPED", exit_code=1, version=2,
                                         stop_code="EssentialContainerExited")).encode())
    line = line_of(view_of(event))
    assert line.startswith("2026-11-27T09:00:02Z TaskStateChange")
    assert "node=node0004 job=job:alpha task task00009 STOPPED exit=1 stopCode=EssentialContainerExited gpus=8" \
        in line


def test_json_line_decodes_and_carries_the_event_as_written() -> None:
    for item in shown(EventFilter()):
        line = json_line(item)
        assert "\n" not in line
        body = json.loads(line)
        assert body["type"] == item.view.type and body["shard_id"] == "shardId-0"
        # the embedded event decodes back to the same event
        assert view_of(decode_mapping(body["event"])).body == item.view.body


def test_since_takes_iso_times_and_ages() -> None:
    now = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
    assert parse_when("15m", now) == datetime(2026, 11, 28, 11, 45, tzinfo=UTC)
    assert parse_when("2d", now) == datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    assert parse_when("2026-11-28T10:00:00", now) == datetime(2026, 11, 28, 10, 0, tzinfo=UTC)
    assert parse_when("2026-11-28T10:00:00+01:00", now).utcoffset() is not None
    with pytest.raises(ValueError, match="neither an ISO 8601 time"):
        parse_when("yesterday", now)


# --- the polling follower on moto -----------------------------------------------------------------


def _put(kinesis: Any, stream: str, n: int, first: int = 0) -> None:
    for i in range(first, first + n):
        kinesis.put_record(StreamName=stream, Data=json.dumps({"i": i}).encode(), PartitionKey=f"k{i}")


def _follow(follower: PollingFollower, max_events: int, rounds: int = 50) -> list[int]:
    """Follow until max_events or a bounded number of idle rounds (no wall clock involved)."""
    idle = [0]

    def sleep(_: float) -> None:
        idle[0] += 1

    follower.sleep = sleep
    should_stop, count = stop_after(max_events=max_events, timeout_s=None)
    got = []
    for record in follower.records(lambda: should_stop() or idle[0] >= rounds):
        got.append(json.loads(record.data)["i"])
        count()
    return got


def test_polling_reads_every_shard_from_the_start(kinesis: Any) -> None:
    # GIVEN a 3-shard stream with 12 records
    kinesis.create_stream(StreamName="s", ShardCount=3)
    _put(kinesis, "s", 12)
    # WHEN following from TRIM_HORIZON, at most 12 events
    got = _follow(PollingFollower(kinesis, "s", StartAt("TRIM_HORIZON")), max_events=12)
    # THEN every record arrives once
    assert sorted(got) == list(range(12))


def test_polling_from_latest_sees_only_new_records(kinesis: Any) -> None:
    kinesis.create_stream(StreamName="s", ShardCount=2)
    _put(kinesis, "s", 3)
    follower = PollingFollower(kinesis, "s", StartAt("LATEST"))
    should_stop, count = stop_after(max_events=2, timeout_s=None)
    records = follower.records(should_stop)
    follower.sleep = lambda _: _put(kinesis, "s", 1, first=100 + len(got))  # a record arrives while we wait
    got: list[int] = []
    for record in records:
        got.append(json.loads(record.data)["i"])
        count()
    assert got == [100, 101]


def test_polling_at_timestamp_starts_at_that_arrival_time(kinesis: Any) -> None:
    # GIVEN records before and after a moment
    kinesis.create_stream(StreamName="s", ShardCount=1)
    _put(kinesis, "s", 3)
    time.sleep(0.05)  # arrival times are wall-clock in moto; leave a gap on both sides of the moment
    moment = datetime.now(UTC)
    time.sleep(0.05)
    _put(kinesis, "s", 2, first=3)
    # WHEN following AT_TIMESTAMP that moment
    got = _follow(PollingFollower(kinesis, "s", StartAt("AT_TIMESTAMP", moment)), max_events=5, rounds=3)
    # THEN only the later records
    assert got == [3, 4]


def _listing(*shards: tuple[str, str | None, bool]) -> list[dict[str, Any]]:
    out = []
    for shard_id, parent, closed in shards:
        entry: dict[str, Any] = {"ShardId": shard_id, "SequenceNumberRange": {"StartingSequenceNumber": "1"}}
        if parent:
            entry["ParentShardId"] = parent
        if closed:
            entry["SequenceNumberRange"]["EndingSequenceNumber"] = "9"
        out.append(entry)
    return out


def test_shard_book_reads_children_after_their_parents_and_new_shards_from_their_start() -> None:
    # GIVEN one open shard when following starts at LATEST
    book = ShardBook(StartAt("LATEST"))
    book.update(_listing(("s0", None, False)))
    assert [c.shard_id for c in book.ready()] == ["s0"]
    assert book.cursors["s0"].start == StartAt("LATEST")
    # WHEN it is split: the listing shows it closed and two children
    book.update(_listing(("s0", None, True), ("s1", "s0", False), ("s2", "s0", False)))
    # THEN the children wait for the parent to be drained, and then start at their beginning
    assert [c.shard_id for c in book.ready()] == ["s0"]
    assert book.cursors["s0"].closed
    book.finish("s0")
    assert [c.shard_id for c in book.ready()] == ["s1", "s2"]
    assert book.cursors["s1"].start == StartAt("TRIM_HORIZON")


def test_shard_book_does_not_wait_for_a_parent_trimmed_from_the_stream() -> None:
    # GIVEN a child whose parent is past retention (not listed)
    book = ShardBook(StartAt("TRIM_HORIZON"))
    book.update(_listing(("s5", "s1", False)))
    # THEN it is read at once
    assert [c.shard_id for c in book.ready()] == ["s5"]


# --- the command ------------------------------------------------------------------------------------


@pytest.fixture
def server_stream(moto_server: str) -> tuple[str, str, Any]:
    client = boto3.client("kinesis", endpoint_url=moto_server, region_name="us-east-1")
    name = f"tail-{time.monotonic_ns()}"
    client.create_stream(StreamName=name, ShardCount=2)
    for item in history():
        data = record_bytes(item)
        client.put_record(StreamName=name, Data=data, PartitionKey=str(hash(data) % 97))
    client.put_record(StreamName=name, Data=b"garbage", PartitionKey="x")
    return moto_server, name, client


def _tail(endpoint: str, stream: str, *extra: str) -> list[str]:
    return ["tail", "--endpoint-url", endpoint, "--stream-name", stream, "--from-start", "--timeout", "5",
            "--poll-interval", "0.05", *extra]


def test_tail_json_lines_decode_and_respect_filters(server_stream: tuple[str, str, Any],
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    endpoint, stream, _ = server_stream
    # WHEN tailing the stream for incidents on node 3 as JSON, stopping after 2 events
    code = main(_tail(endpoint, stream, "--json", "--type", "IncidentOpened", "--node", "node0003",
                      "--max-events", "2"))
    out = capsys.readouterr().out
    # THEN exactly the two IncidentOpened of node 3, each line a JSON object whose event decodes
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == 2
    bodies = [json.loads(line) for line in lines]
    assert sorted(b["incident"] for b in bodies) == ["inc-B", "inc-D"]
    for body in bodies:
        assert body["node"] == node_arn(3)
        assert decode_mapping(body["event"]).type == "IncidentOpened"  # type: ignore[union-attr]
    # AND the garbage record (if it was read before the stop) is only ever on stderr
    assert "garbage" not in out


def test_tail_stops_right_after_max_events_even_within_a_batch(server_stream: tuple[str, str, Any],
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    endpoint, stream, _ = server_stream
    # WHEN tailing every event but stopping after 3 (a GetRecords batch holds many more)
    code = main(_tail(endpoint, stream, "--max-events", "3"))
    # THEN exactly 3 lines, not the rest of the batch
    assert code == 0
    assert len(capsys.readouterr().out.splitlines()) == 3


def test_tail_prints_human_lines_and_reports_unreadable_records(server_stream: tuple[str, str, Any],
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    endpoint, stream, _ = server_stream
    # WHEN tailing everything until a timeout (the stream holds 40 events and one record that is not)
    code = main([*_tail(endpoint, stream), "--timeout", "2"])
    out, err = capsys.readouterr()
    # THEN one line per event and the record that is not an event is named on stderr
    assert code == 0
    assert len(out.splitlines()) == len(history())
    assert sum("IncidentClosed" in line for line in out.splitlines()) == 4
    assert "not an event (not_json" in err


def test_tail_rejects_a_bad_since(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tail", "--since", "last tuesday", "--timeout", "0"]) == 2
    assert "neither an ISO 8601 time" in capsys.readouterr().err


def test_tail_says_so_when_the_stream_does_not_exist(moto_server: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["tail", "--endpoint-url", moto_server, "--stream-name", "no-such-stream", "--timeout", "1"])
    assert code == 1
    assert "gpu-recovery tail:" in capsys.readouterr().err
