"""Retention: expired items leave the replay's fold as DynamoDB's TTL deletes them, a late record cannot
bring one back, and nothing that replay keeps for this grows with the history's length."""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consumers.core.clocktext import epoch_seconds
from consumers.core.projection import JOB, NODE, TASK, ProjectionConfig, fold_all, job_ranks
from events_schema.aws import TaskStateChange
from events_schema.decode import StreamEvent, decode
from replay.rebuild import rebuild
from replay.retention import EXPIRING, Retention
from replay.sources import RawRecord
from tests.factories import at, node_event, task_arn, task_event

DAY = 86_400.0
CONFIG = ProjectionConfig(ttl_days=2)
LATE = timedelta(hours=6)  # the records' allowed lateness in these tests (production: 24 h)
SHARDS = 3

Timed = tuple[float, int, dict[str, Any]]  # (seconds after T0, node, event)


def launch(task: int, job: str, node: int, start: float, stop: float | None, exit_code: int = 0) -> list[Timed]:
    """One task of ``job`` on ``node``: RUNNING at ``start``, STOPPED at ``stop`` (None: still running)."""
    created = at(start)
    out: list[Timed] = [(start, node, task_event(task, node=node, version=2, status="RUNNING", group=job,
                                                   when=at(start), created=created))]
    if stop is not None:
        out.append((stop, node, task_event(task, node=node, version=3, status="STOPPED", exit_code=exit_code,
                                           group=job, when=at(stop), created=created)))
    return out


def fleet(seed: int, days: int, nodes: int = 6) -> list[Timed]:
    """``days`` of a small fleet: new jobs (new task ids) launched every day, most of them finishing,
    some failing, some still running at the end; every node's agent reconnects once a day."""
    rng = random.Random(seed)
    events: list[Timed] = [(d * DAY + n, n, node_event(n, version=d + 1, when=at(d * DAY + n)))
                           for d in range(days) for n in range(nodes)]
    task = 0
    for j in range(days * 4):
        start = rng.uniform(0, days - 0.5) * DAY
        stop = start + rng.uniform(0.1, 3) * DAY
        code = rng.choice((0, 0, 1))
        for rank in range(rng.randint(1, 3)):
            task += 1
            events += launch(task, f"job:{j}", rng.randrange(nodes), start + rank,
                             stop + rank if stop < days * DAY else None, code)
    return sorted(events, key=lambda e: e[0])


def records(events: list[Timed]) -> list[RawRecord]:
    """As a stream holds them: one shard per node group, in order within each shard."""
    return [RawRecord(f"shardId-{node % SHARDS:012d}:{i:020d}", json.dumps(event).encode())
            for i, (_, node, event) in enumerate(events)]


def retention(**overrides: Any) -> Retention:
    return Retention(CONFIG, **{"lateness": LATE, **overrides})


def held(items: dict[tuple[str, str], Any], table: str) -> set[str]:
    return {key for (name, key) in items if name == table}


def unexpired(events: list[StreamEvent]) -> dict[tuple[str, str], Any]:
    """The oracle: fold everything, then delete what DynamoDB's TTL would have deleted by the end."""
    items = fold_all(events, CONFIG).items
    newest = max(epoch_seconds(e.time) for e in events)
    return {key: item for key, item in items.items()
            if not (key[0] in EXPIRING and isinstance(item.get("expires_at"), int)
                    and item["expires_at"] + LATE.total_seconds() < newest)}


def test_stopped_tasks_and_finished_jobs_leave_after_their_ttl_and_memory_stays_flat() -> None:
    # GIVEN 40 days of a fleet launching new tasks every day (a 2-day TTL)
    history = records(fleet(seed=7, days=40))
    # WHEN it is replayed, and its first 10 days alone
    kept = retention()
    rebuilt = rebuild(history, CONFIG, retention=kept)
    first = rebuild(history[: len(history) // 4], CONFIG, retention=retention())
    # THEN exactly the items DynamoDB's TTL would not have deleted are left
    assert rebuilt.state.items == unexpired([decode(r.data) for r in history])
    assert kept.expired > 0 and kept.late_dropped == 0
    # AND four times the history holds about as many tasks as the first quarter (no growth with length)
    tasks_40, tasks_10 = len(held(rebuilt.state.items, TASK)), len(held(first.state.items, TASK))
    assert tasks_40 <= 1.5 * tasks_10
    assert len(held(rebuilt.state.items, NODE)) == 6  # nodes carry no TTL: they never leave


def test_a_late_duplicate_does_not_bring_an_expired_task_back() -> None:
    # GIVEN a task of job:old that failed on day 0, and 10 more days of a fleet (a 2-day TTL)
    old = launch(9_999, "job:old", node=1, start=10, stop=3_600, exit_code=1)
    history = records(old + [(e[0] + 3_601, e[1], e[2]) for e in fleet(seed=3, days=10)])
    before = rebuild(history, CONFIG, retention=retention()).state.items
    # WHEN the stream delivers its RUNNING and its STOPPED again at the end
    kept = retention(sweep_every=10)
    rebuilt = rebuild([*history, *records(old)], CONFIG, retention=kept)
    # THEN the task does not come back (a RUNNING task never expires again), its job (interrupted, so
    # without a TTL) is as it was, and both records are counted, not silently lost
    assert task_arn(9_999) not in held(before, TASK) | held(rebuilt.state.items, TASK)
    assert rebuilt.state.items[(JOB, "job:old")] == before[(JOB, "job:old")]
    assert kept.late_dropped == 2


def test_a_job_id_launched_again_after_its_ttl_is_a_new_job() -> None:
    # GIVEN job:nightly ran and finished on day 0, and 10 days of a fleet followed
    first = launch(9_001, "job:nightly", node=2, start=10, stop=3_600)
    later = [(e[0] + 3_601, e[1], e[2]) for e in fleet(seed=5, days=10)]
    # WHEN on day 10 a new task launches in the same ECS group
    again = launch(9_002, "job:nightly", node=2, start=10 * DAY + 7_200, stop=None)
    rebuilt = rebuild(records(first + later + again), CONFIG, retention=retention(sweep_every=10))
    # THEN the job is folded as the live projector folds it after DynamoDB deleted the old item
    job = rebuilt.state.items[(JOB, "job:nightly")]
    assert sorted(job_ranks(job)) == [task_arn(9_002)] and job["state"] == "RUNNING"


def in_shard_order(events: list[Timed], lag: list[float]) -> list[RawRecord]:
    """The records as a replay reads them when shard k runs ``lag[k]`` seconds behind (order kept in each)."""
    out = records(events)
    return [out[i] for i in sorted(range(len(events)), key=lambda i: (events[i][0] + lag[events[i][1] % SHARDS], i))]


@pytest.mark.parametrize("seed", [0, 2, 4])
def test_a_shard_that_starts_late_by_up_to_the_tolerance_loses_nothing(seed: int) -> None:
    # GIVEN 10 days of a fleet, and a shard that the reader starts almost (TTL - lateness) late
    events = fleet(seed, days=10)
    tolerance = CONFIG.ttl_days * DAY - LATE.total_seconds()
    stream = in_shard_order(events, [0.0, 0.0, 0.95 * tolerance])
    # WHEN it is replayed, looking at expiries every 5 records
    kept = retention(sweep_every=5)
    rebuilt = rebuild(stream, CONFIG, retention=kept)
    # THEN no record was dropped and the items are those of a replay that kept everything, less what expired
    assert kept.late_dropped == 0
    assert rebuilt.state.items == unexpired([decode(r.data) for r in stream])


@st.composite
def delivered(draw: st.DrawFn) -> tuple[list[RawRecord], int]:
    """A fleet's stream as a replay reads it: shards started apart (by up to the TTL less the records'
    lateness, the tolerance replay.retention documents), each in order, and some records delivered
    again at any later point (however late)."""
    events = fleet(draw(st.integers(0, 10_000)), days=draw(st.integers(6, 14)))
    tolerance = CONFIG.ttl_days * DAY - LATE.total_seconds()
    lag = [draw(st.floats(0, 0.95 * tolerance)) for _ in range(SHARDS)]
    stream = in_shard_order(events, lag)
    again = draw(st.integers(0, 20))
    for _ in range(again):
        index = draw(st.integers(0, len(stream) - 1))
        stream.insert(draw(st.integers(index + 1, len(stream))), stream[index])
    return stream, again


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(delivery=delivered(), sweep_every=st.integers(1, 50), idle_records=st.integers(5, 200))
def test_retention_removes_what_expired_and_nothing_else_in_any_delivery(
    delivery: tuple[list[RawRecord], int], sweep_every: int, idle_records: int
) -> None:
    stream, redelivered = delivery
    # GIVEN a fleet's stream, its shards apart in time, some records redelivered late
    # WHEN it is replayed, looking at expiries every few records and forgetting quiet shards soon
    kept = retention(sweep_every=sweep_every, idle_records=idle_records)
    rebuilt = rebuild(stream, CONFIG, retention=kept)
    # THEN the items are those of a replay that kept everything, less what had expired by the end
    assert rebuilt.state.items == unexpired([decode(r.data) for r in stream])
    # AND the only records dropped were redelivered ones
    assert kept.late_dropped <= redelivered


def test_the_bound_is_one_number_not_a_tombstone_per_expired_item() -> None:
    # GIVEN 30 and 60 days of the same fleet
    short, long = records(fleet(seed=11, days=30)), records(fleet(seed=11, days=60))
    # WHEN both are replayed
    kept_short, kept_long = retention(), retention()
    rebuild(short, CONFIG, retention=kept_short)
    rebuild(long, CONFIG, retention=kept_long)
    # THEN what retention itself keeps (expiries still to come, shards heard from) does not grow
    # with the length: twice as many items expired, but no more is remembered
    assert kept_long.expired > 1.8 * kept_short.expired
    assert kept_long.pending <= 1.5 * kept_short.pending + 10
    assert kept_long.remembered <= 1.5 * kept_short.remembered + 10
    assert kept_long.partitions <= SHARDS


def test_an_item_that_stops_and_starts_again_and_again_is_remembered_once() -> None:
    # GIVEN one task that stops and runs again 3,000 times in a day (each STOPPED moves its expiry),
    # as the replay benchmark's synthetic history does to every task
    flips = [task_event(1, version=v, status="STOPPED" if v % 2 else "RUNNING", when=at(v), exit_code=0)
             for v in range(1, 6_001)]
    # WHEN it is replayed (nothing expires within the day)
    kept = retention()
    rebuild(records([(float(v), 1, e) for v, e in enumerate(flips)]), CONFIG, retention=kept)
    # THEN retention holds a bounded number of entries, not one per stop
    assert kept.pending <= 2
    assert kept.remembered < 2_100


def test_events_without_a_zone_are_utc_for_the_watermark() -> None:
    # GIVEN a record whose time has no zone (the fold reads such times as UTC)
    event = decode(json.dumps(task_event(1, when=at(0))).encode())
    assert isinstance(event, TaskStateChange)
    naive = event.model_copy(update={"time": datetime(2026, 11, 27, 9, 0, 0)})
    # WHEN it is folded with retention
    kept = retention(sweep_every=1)
    state = fold_all([], CONFIG)
    kept.fold(state, naive, "shardId-0:1")
    # THEN the watermark is the same instant as its UTC reading
    assert kept.watermark == epoch_seconds(at(0))
