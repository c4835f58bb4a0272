"""Rebuild: deterministic output, order- and duplicate-independence, upcasting, bad records counted."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consumers.core.facts import IdentityRules
from consumers.core.projection import JOB, NODE, TASK, ProjectionConfig
from gpu_recovery.cli import main
from replay.rebuild import TimeWindow, rebuild
from replay.sources import RawRecord
from replay.targets import render_lines
from tests.factories import at, node_arn, task_arn
from tests.replay.histories import ALPHA, NODE1, incident_story, lines, partition_key, write_jsonl

CONFIG = ProjectionConfig(identity=IdentityRules(health_check_family="gpu-recovery-healthcheck"))
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def raw(events: list[bytes]) -> list[RawRecord]:
    return [RawRecord(f"test:{i}", data) for i, data in enumerate(events)]


def rendered(events: list[bytes]) -> str:
    return "".join(render_lines(rebuild(raw(events), CONFIG).state))


def replay_to_file(source: Path, target: Path, *extra: str) -> int:
    return main(["replay", "--source", f"file:{source}", "--target", f"file:{target}", "--no-progress", *extra])


def test_the_same_history_replayed_twice_is_byte_identical(tmp_path: Path) -> None:
    # GIVEN the incident story as a JSON Lines file
    history = write_jsonl(tmp_path / "h.jsonl", incident_story())
    # WHEN replayed twice into files
    assert replay_to_file(history, tmp_path / "one.json") == 0
    assert replay_to_file(history, tmp_path / "two.json") == 0
    # THEN the files are byte for byte the same, and hold the three tables sorted by key, and the recovery
    one = (tmp_path / "one.json").read_bytes()
    assert one == (tmp_path / "two.json").read_bytes()
    tables = json.loads(one)
    assert sorted(tables) == ["ecs_job", "ecs_node", "ecs_task", "recovery"]
    assert [t["task_arn"] for t in tables["ecs_task"]] == sorted(t["task_arn"] for t in tables["ecs_task"])
    node1 = next(n for n in tables["ecs_node"] if n["container_instance_arn"] == NODE1)
    assert node1["repair_state"] == "HEALTHY" and node1["agent_connected"] is True
    alpha = next(j for j in tables["ecs_job"] if j["job_id"] == ALPHA)
    assert alpha["state"] == "RUNNING" and alpha["restart_count"] == 1


@st.composite
def redelivered(draw: st.DrawFn, events: list[dict[str, Any]]) -> list[bytes]:
    """Interleave the per-entity queues at random, then redeliver some records later on."""
    queues: dict[str, list[bytes]] = defaultdict(list)
    for event, line in zip(events, lines(events), strict=True):
        queues[partition_key(event)].append(line)
    order: list[bytes] = []
    pending = {k: list(v) for k, v in queues.items()}
    while pending:
        key = draw(st.sampled_from(sorted(pending)))
        order.append(pending[key].pop(0))
        if not pending[key]:
            del pending[key]
    for _ in range(draw(st.integers(0, 12))):
        index = draw(st.integers(0, len(order) - 1))
        later = draw(st.integers(index + 1, len(order)))
        order.insert(later, order[index])
    return order


STORY = incident_story()
CLEAN = rendered(lines(STORY))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history=redelivered(STORY))
def test_shuffled_and_duplicated_history_gives_the_clean_result(history: list[bytes]) -> None:
    # GIVEN the story with entities interleaved differently and some records delivered twice
    # WHEN rebuilt
    # THEN the rendered state is exactly the clean history's
    assert rendered(history) == CLEAN


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history=st.permutations(lines(STORY)), again=st.lists(st.sampled_from(lines(STORY)), max_size=8))
def test_any_order_at_all_gives_the_clean_result(history: list[bytes], again: list[bytes]) -> None:
    # GIVEN the story in any order whatever (even a node's own events out of order), some twice
    # WHEN rebuilt
    # THEN the registers' total orders still give the clean result
    assert rendered(history + again) == CLEAN


def test_a_v1_health_check_line_is_upcast(tmp_path: Path) -> None:
    # GIVEN an old agent's HealthCheckReported v1 (result=fail, a flat list of XIDs)
    v1 = json.loads((FIXTURES / "our_events" / "health_check_reported_v1.json").read_text())
    history = write_jsonl(tmp_path / "h.jsonl", [v1])
    # WHEN replayed
    assert replay_to_file(history, tmp_path / "out.json") == 0
    # THEN the node carries the v2 reading: a hardware fault, reboot recommended, XIDs counted
    (node,) = json.loads((tmp_path / "out.json").read_text())["ecs_node"]
    report = node["last_health_report"]
    assert report["verdict"] == "hardware_fault"
    assert report["recommended_action"] == "reboot"
    assert report["xids"] == [48, 64]


def test_unknown_and_malformed_records_are_counted_by_kind_never_fatal(tmp_path: Path, capsys: Any) -> None:
    # GIVEN good events mixed with an unknown type of ours, an AWS event we do not consume,
    # a line that is not JSON and an envelope missing its fields
    good = lines(incident_story()[:4])
    bad = [
        b'{"event_id":"x","type":"FromTheFuture","schema_version":1,"time":"2026-01-01T00:00:00Z","source":"s"}',
        b'{"detail-type":"EC2 Spot Instance Interruption Warning","source":"aws.ec2","detail":{}}',
        b"this is not json",
        b'{"type":"NodeStateChanged","schema_version":1}',
    ]
    history = write_jsonl(tmp_path / "h.jsonl", [*good[:2], *bad, *good[2:]])
    # WHEN replayed with a JSON summary
    code = main(["replay", "--source", f"file:{history}", "--target", f"file:{tmp_path / 'o.json'}",
                 "--no-progress", "--json"])
    summary = json.loads(capsys.readouterr().out)
    # THEN the replay succeeds, folds the good events and reports each bad one by kind and reason
    assert code == 0
    stats = summary["stats"]
    assert stats["events"] == 4
    assert stats["malformed"] == {"invalid": 1, "not_json": 1, "unknown_event": 2}
    reasons = stats["malformed_reasons"]
    assert reasons["unknown_event: unknown event type 'FromTheFuture'"]["count"] == 1
    assert reasons["unknown_event: unknown event type 'FromTheFuture'"]["first_position"] == f"{history}:3"
    assert summary["items"] == {TASK: 1, JOB: 1, NODE: 3}


def test_a_time_window_keeps_events_by_their_own_time() -> None:
    # GIVEN the story, and a window that ends before the node came back
    window = TimeWindow(until=at(250))
    # WHEN rebuilt
    rebuilt = rebuild(raw(lines(incident_story())), CONFIG, window=window)
    # THEN events after the window are counted, not folded: node 1 is still rebooting
    node1 = rebuilt.state.items[(NODE, NODE1)]
    assert node1["repair_state"] == "REBOOTING"
    assert rebuilt.stats.outside_window > 0
    assert rebuilt.state.items[(TASK, task_arn(1))]["last_status"] == "STOPPED"
    assert (NODE, node_arn(3)) in rebuilt.state.items


def test_event_times_without_a_zone_are_read_as_utc() -> None:
    # GIVEN an ECS event whose time carries no zone
    event = incident_story()[0]
    event["time"] = "2026-11-27T09:00:00"
    # WHEN rebuilt through a window with zoned ends
    rebuilt = rebuild(raw(lines([event])), CONFIG, window=TimeWindow(since=at(-1), until=at(1)))
    # THEN it is compared as UTC and folded
    assert rebuilt.stats.events == 1 and rebuilt.stats.first_time == "2026-11-27T09:00:00.000000Z"


def test_a_later_incident_on_another_shard_does_not_hide_the_restart() -> None:
    # GIVEN the story, then a second failure: its RECOVERING is keyed by the node (another shard than
    # the job's own RESTARTING/RUNNING, which are keyed by the job)
    from events_schema.events import JobStateChanged
    from tests.factories import task_event
    from tests.replay.histories import our_event

    story = incident_story()
    story += [task_event(3, node=1, version=3, status="STOPPED", exit_code=1, group=ALPHA, when=at(499),
                         created=at(405)),
              our_event(JobStateChanged(job_id=ALPHA, state="RECOVERING", incident_id="inc-2", reason="rank 1 failed"),
                    500, node=NODE1, job=ALPHA, incident="inc-2")]
    job_shard = [e for e in story if e.get("type") == "JobStateChanged" and partition_key(e) == ALPHA]
    other_shards = [e for e in story if e not in job_shard]
    # WHEN the node's shard is folded before the job's shard
    # THEN the result is the time-ordered one
    assert rendered(lines(other_shards + job_shard)) == rendered(lines(story))
