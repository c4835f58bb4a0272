"""The stream's clock (issue 13): deadlines fire against the slowest shard's position, which is its newest event
time while it is behind (millisBehindLatest > 0) and the wall clock once caught up; events dated beyond the
allowed skew into the future are parked and move nothing."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from consumers.core.clocktext import iso
from consumers.core.ports import BatchContext
from events_schema.events import NotificationSent
from tests.adapters.recovery_rig import Rig
from tests.factories import node_arn, node_event, task_arn

MINUTE = 60


def check_running(shards: int = 1) -> Rig:
    """A 2-rank job's rank on node 1 failed; the check task started on node 1 (its report not sent yet).
    Every shard's processor has seen a batch since (KCL hands each one even empty batches)."""
    rig = Rig(shards=shards)
    rig.aws.nodes(3)
    rig.aws.launch("job:alpha", [(1, 1), (2, 2)])
    rig.drain()
    rig.clock.advance(MINUTE)
    rig.aws.hold = {1}
    rig.aws.fail(task_arn(1))
    rig.drain()
    for shard in rig.shard_ids:
        rig.deliver(shard)
    (incident,) = rig.incidents()
    assert incident["phase"] == "CHECKING" and incident["timer"]["kind"] == "health_check"
    return rig


def notices(rig: Rig) -> list[str]:
    return [str(e.data["kind"]) for e in rig.writer.envelopes if e.type == NotificationSent.TYPE]


def outage(rig: Rig, minutes: int, *, report_after: int) -> None:
    """Every consumer is down for ``minutes``; the check reports ``report_after`` minutes in; ECS goes on."""
    started = rig.clock()
    rig.clock.now = started + timedelta(minutes=2)
    rig.aws.node_event(3)  # the backlog starts before the report
    rig.clock.now = started + timedelta(minutes=report_after)
    rig.aws.release()
    rig.clock.now = started + timedelta(minutes=10)
    rig.aws.node_event(2)
    rig.clock.now = started + timedelta(minutes=minutes - 1)
    rig.aws.node_event(3)
    rig.clock.now = started + timedelta(minutes=minutes)
    rig.collect()  # the backlog, on the stream, read by nobody yet
    rig.consumers = {shard: rig.consumer(shard) for shard in rig.shard_ids}  # restarted


def deadlines(rig: Rig) -> list[str]:
    return [str(e.data["kind"]) for e in rig.writer.envelopes if e.type == "DeadlineExpired"]


def read_backlog_one_by_one(rig: Rig) -> None:
    shard = rig.shard_ids[0]
    while rig.shards[shard].records:
        rig.deliver(shard, limit=1)  # behind (millisBehindLatest > 0) until the last record
        rig.collect()
    rig.drain()


def test_a_consumer_restarted_after_25_minutes_reads_the_report_in_time() -> None:
    # GIVEN a check started, then every consumer down 25 minutes while the report came 5 minutes in
    rig = check_running()
    outage(rig, 25, report_after=5)
    # WHEN the restarted consumer reads its backlog one record at a time
    read_backlog_one_by_one(rig)
    # THEN the report counted: no "no health report within 20 min", no quarantine; the ranks were restarted
    (incident,) = rig.incidents()
    assert incident["outcome"] == "healthy" and incident["phase"] == "CLOSED"
    assert "health_check" not in deadlines(rig) and "escalation" not in notices(rig)
    assert rig.node(1)["plan"]["repair"] == "HEALTHY" and rig.aws.of("RebootInstances") == []
    assert len(rig.aws.of("StartTask", "rank")) == 2


def test_after_the_outage_the_restarted_job_is_not_failed_for_starting_late() -> None:
    rig = check_running()
    outage(rig, 25, report_after=5)
    read_backlog_one_by_one(rig)
    assert "deadline_expired" not in notices(rig)
    assert rig.job("job:alpha")["plan"]["phase"] == "RUNNING"


def test_the_backlog_in_one_batch_read_behind_also_counts_the_report() -> None:
    rig = check_running()
    outage(rig, 25, report_after=5)
    shard = rig.shard_ids[0]
    batch = rig.shards[shard].records[:]
    rig.shards[shard].records.clear()
    rig.consumers[shard].handle_batch(batch, BatchContext(shard, 25 * MINUTE * 1000))
    rig.drain()
    assert rig.incidents()[0]["outcome"] == "healthy" and "health_check" not in deadlines(rig)
    assert "escalation" not in notices(rig)


def test_without_a_report_the_deadline_fires_once_the_stream_says_20_minutes_passed() -> None:
    # GIVEN the same outage, but the check never reported: the deadline must still fire (never lost)
    rig = check_running()
    rig.aws.held.clear()
    outage(rig, 25, report_after=5)
    shard = rig.shard_ids[0]
    rig.deliver(shard, limit=1)  # the node event at +10 min, behind
    assert rig.incidents()[0]["phase"] == "CHECKING"
    rig.drain()  # caught up: the wall clock, 25 minutes
    rig.deliver(shard)
    assert rig.incidents()[0]["outcome"] == "escalated" and notices(rig).count("deadline_expired") == 1


def test_deadlines_wait_for_the_slowest_shard() -> None:
    # GIVEN two shards; the report lands on shard B; both consumers down 25 minutes
    rig = check_running(shards=2)
    outage(rig, 25, report_after=5)
    report_shard = next(s for s in rig.shard_ids if any(b"HealthCheckReported" in r.data
                                                        for r in rig.shards[s].records))
    other = next(s for s in rig.shard_ids if s != report_shard)
    # WHEN the other shard catches up first (wall clock: 25 minutes) and ticks
    while rig.shards[other].records:
        rig.deliver(other, limit=1)
    rig.deliver(other)
    # THEN nothing fired: the report's shard still stands where it stopped
    assert rig.store.clock() < iso(rig.clock() - timedelta(minutes=10))
    assert rig.incidents()[0]["phase"] == "CHECKING" and notices(rig) == []
    # WHEN the report's shard reads its backlog behind
    rig.deliver(report_shard, limit=1)
    rig.drain()
    assert rig.incidents()[0]["outcome"] == "healthy" and "deadline_expired" not in notices(rig)


def test_a_shard_behind_publishes_its_newest_event_time_and_caught_up_the_wall_clock() -> None:
    rig = check_running()
    shard = rig.shard_ids[0]
    rig.clock.advance(10 * MINUTE)
    dated = rig.clock() - timedelta(minutes=7)
    rig.put(json.dumps(node_event(2, version=50, when=dated)).encode(), node_arn(2))
    rig.put(json.dumps(node_event(3, version=50, when=dated - timedelta(minutes=1))).encode(), node_arn(3))
    rig.put(json.dumps(node_event(3, version=51, when=dated - timedelta(minutes=1))).encode(), node_arn(3))
    rig.deliver(shard, limit=1)
    assert rig.store.clock() == iso(dated)
    rig.deliver(shard, limit=1)  # an older event does not move the position back
    assert rig.store.clock() == iso(dated)
    rig.deliver(shard)  # caught up
    assert rig.store.clock() == iso(rig.clock())


@pytest.mark.parametrize(("name", "moment", "kind"), [
    ("10 minutes ahead", timedelta(minutes=10), "future_time"),
    ("in 2099", None, "future_time"),
    ("in 2999", None, "invalid"),
])
def test_an_event_from_the_future_is_parked_and_moves_no_deadline(name: str, moment: timedelta | None,
                                                                   kind: str) -> None:
    # GIVEN a check running (its deadline armed), its shard behind
    rig = check_running()
    shard = rig.shard_ids[0]
    before, clock_before = rig.snapshot(), rig.store.clock()
    # WHEN an ECS event dated in the future arrives among the backlog
    event = node_event(2, version=50)
    event["time"] = iso(rig.clock() + moment)[:19] + "Z" if moment else f"{name[-4:]}-06-01T00:00:00Z"
    bad = rig.put(json.dumps(event).encode(), node_arn(2))
    rig.put(json.dumps(node_event(3, version=1, when=rig.clock() - timedelta(days=1))).encode(), node_arn(3))
    rig.deliver(shard, limit=1)
    # THEN it is parked with its reason, and neither the stream's clock nor any record or deadline moved
    (parked,) = rig.parking.records
    assert (parked.sequence_number, parked.reason_kind) == (bad.sequence_number, kind)
    assert rig.store.clock() == clock_before
    assert rig.snapshot() == before
    # AND once read to the end, the clock is the wall clock, not the future
    rig.deliver(shard)
    assert rig.store.clock() == iso(rig.clock())
