"""Replay rebuilds recovery's state: the recovery core's fold over the stream gives what live decided; what
live never folds (another cluster, a future date) is skipped and reported; the records go to the file, a
shadow table or the live table in the store's layout; --verify compares them with the live recovery."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from consumers.adapters.dynamodb import DynamoParkingLot, DynamoProjectionStore, create_tables
from consumers.adapters.recovery_store import DynamoRecoveryStore
from consumers.core.clocktext import iso
from consumers.core.ports import StreamRecord
from consumers.core.recovery.model import Incident
from consumers.projector import Projector
from events_schema.envelope import OurEvent, Subject
from events_schema.events import RecoveryRecorded, TaskTagsCaptured
from gpu_recovery import wiring
from gpu_recovery.apps import identity_rules, projection_config
from gpu_recovery.cli import main
from gpu_recovery.settings import load_settings
from replay.recovery import RecoveryFold, RecoveryRules, fill_recovery_table, live_summary, scan_records
from replay.sources import RawRecord
from tests.core.recovery_world import World
from tests.factories import CLUSTER, REGION, at, node_event, ours, task_arn, task_event

SETTINGS = load_settings(region=REGION)  # the factories' cluster is in us-west-2
RULES = RecoveryRules(identity_rules(SETTINGS), CLUSTER, timedelta(minutes=5))
OTHER_CLUSTER = CLUSTER.replace("gpu-training", "someone-elses")


def story() -> World:
    """A job through a fault on node 2, a DCGM check, a reboot, a post-reboot check and a restart."""
    world = World()
    world.nodes(3)
    world.job([(1, 1), (2, 2)])
    world.fails(2, 2, when=100)
    world.stopped_by_us(1, 1, when=101)
    world.settle_orders()
    world.report("hardware_fault", "reboot", node=2, xids=[48])
    world.settle_orders()
    world.ecs(node_event(2, version=2, connected=False, when=world.now + timedelta(seconds=10)))
    world.ecs(node_event(2, version=3, connected=True, when=world.now + timedelta(seconds=200)))
    world.settle_orders()
    world.report("healthy", node=2, boot=world.now)
    world.settle_orders()
    world.run_restarted()
    return world


def line(event: Any) -> bytes:
    """A stream record's bytes: our envelope, or the ECS event as EventBridge delivers it."""
    if isinstance(event, OurEvent):
        return event.envelope.model_dump_json().encode()
    return str(event.model_dump_json(by_alias=True)).encode()


def history(world: World) -> list[bytes]:
    return [line(event) for event in world.stream]


def write_lines(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"".join(data + b"\n" for data in lines))
    return path


def replay(*args: str) -> int:
    return main(["replay", "--region", REGION, "--no-progress", *args])


def forged_outcome(incident: Incident, outcome: str) -> bytes:
    """A RecoveryRecorded anyone with write access to the stream could put there: a higher version, another outcome."""
    body = {**incident.model_dump(mode="json"), "outcome": outcome}
    data = RecoveryRecorded(kind="incident", key=incident.incident_id, version=incident.version + 10, record=body)
    return ours(data, when=at(9_000), subject=Subject(incident=incident.incident_id)).model_dump_json().encode()


def test_the_file_target_holds_the_recovery_live_decided(tmp_path: Path) -> None:
    # GIVEN the stream of a live recovery (ECS's events and the recovery's own records)
    world = story()
    source = write_lines(tmp_path / "stream.jsonl", history(world))
    # WHEN it is replayed into a file
    assert replay("--source", f"file:{source}", "--target", f"file:{tmp_path / 'out.json'}") == 0
    # THEN the file's recovery section is live's, exactly: the incident recovered after one reboot
    recovery = json.loads((tmp_path / "out.json").read_text())["recovery"]
    assert recovery == world.summary()
    (incident,) = recovery["incidents"]
    assert (incident["outcome"], incident["reboots"]) == ("recovered", 1)
    assert recovery["jobs"]["job:alpha"]["restarts"] == 1


def test_events_live_never_folds_are_skipped_and_reported(tmp_path: Path, capsys: Any) -> None:
    # GIVEN the stream, with another cluster's GPU task failing on node 3 and a node event dated a day ahead
    world = story()
    foreign = task_event(7, node=3, version=3, status="STOPPED", exit_code=1, stop_code="EssentialContainerExited",
                         when=at(150), cluster=OTHER_CLUSTER)
    future = node_event(3, version=9, connected=False, when=at(86_400))
    lines = history(world)
    lines[10:10] = [json.dumps(foreign).encode(), json.dumps(future).encode()]
    source = write_lines(tmp_path / "stream.jsonl", lines)
    # WHEN it is replayed
    code = replay("--source", f"file:{source}", "--target", f"file:{tmp_path / 'out.json'}", "--json")
    out, err = capsys.readouterr()
    # THEN neither changed the recovery (node 3 is still connected, no incident on it)
    assert code == 0
    assert json.loads((tmp_path / "out.json").read_text())["recovery"] == world.summary()
    # AND both are counted, and the future one is named with where it was and why
    fold = json.loads(out)["recovery_fold"]
    assert fold["skipped"] == {"foreign_cluster": 1, "future_time": 1}
    assert f"stream.jsonl:12: event time {iso(at(86_400))} is beyond the skew after the newest event folded" in err


def test_an_event_is_judged_against_its_arrival_time_when_the_source_has_it() -> None:
    # GIVEN a node, then two node events that arrived at t=100 s: one dated 4 minutes later, one 6
    fold = RecoveryFold(RULES)
    fold.add(_decoded(node_event(1, version=1, when=at(0))), RawRecord("s:1", b"", at(0)))
    soon = _decoded(node_event(1, version=2, connected=False, when=at(100 + 240)))
    late = _decoded(node_event(1, version=3, connected=True, when=at(100 + 360)))
    # WHEN folded
    fold.add(soon, RawRecord("s:2", b"", at(100)))
    fold.add(late, RawRecord("s:3", b"", at(100)))
    # THEN the one within the skew counts, the other is skipped as live would park it
    node = fold.view.node(node_event(1)["detail"]["containerInstanceArn"])
    assert node is not None and node.facts.agent_connected is False and node.facts.ecs_version == 2
    assert fold.stats.future_time == 1
    assert fold.stats.skipped == [f"s:3: event time {iso(at(460))} is beyond the skew after its arrival {iso(at(100))}"]


def test_tags_read_before_their_tasks_events_still_give_the_job_live_has() -> None:
    # GIVEN the stream of a job whose identity came from its tags (no --group: ECS sets family:NAME)
    world = World()
    world.nodes(2)
    world.job([(1, 1), (2, 2)], group="family:llm-train")
    world.settle_orders()
    # WHEN a replay reads the shard of the TaskTagsCaptured records (keyed by the job) before the shard of
    # the task events
    tags = [e for e in world.stream if isinstance(e, OurEvent) and isinstance(e.data, TaskTagsCaptured)]
    assert len(tags) == 2
    fold = RecoveryFold(RULES)
    for i, event in enumerate([*tags, *(e for e in world.stream if e not in tags)]):
        fold.add(event, RawRecord(f"s:{i}", line(event)))
    # THEN the fold holds them until their task's first event and gives what live holds: the job, both ranks
    assert fold.summary() == world.summary()
    (job,) = fold.summary()["jobs"].values()
    assert job["ranks"] == 2
    assert (fold.tags_without_task, fold.stats.tags, fold.stats.errors) == (0, 2, 0)


def test_tags_of_a_task_the_history_never_shows_are_counted_not_folded() -> None:
    fold = RecoveryFold(RULES)
    data = TaskTagsCaptured(task_arn=task_arn(99), tags=[{"key": "gpu-recovery:job", "value": "j"}])
    fold.add(OurEvent(ours(data, when=at(1)), data), RawRecord("s:1", b""))
    assert (fold.tags_without_task, fold.summary()["jobs"]) == (1, {})


def test_a_finished_job_leaves_the_fold_and_only_its_tombstone_stays() -> None:
    # GIVEN a live recovery where a job completed and, after the retention period, was retired
    world = World(retention=timedelta(days=30))
    world.nodes(1)
    world.job([(1, 1)])
    world.ecs(task_event(1, node=1, version=3, status="STOPPED", exit_code=0, stop_code="EssentialContainerExited",
                         when=at(100)))
    world.advance(31 * 86_400)
    # WHEN its stream is folded
    fold = RecoveryFold(RULES)
    for n, event in enumerate(world.stream):
        fold.add(event, RawRecord(f"s:{n}", b""))
    # THEN the job is gone from the records, its tombstone is what would be written, and live agrees
    assert ("job", "job:alpha") not in fold.records()
    assert fold.bodies()[("job", "job:alpha")]["tombstone"] is True
    assert fold.counts()["tombstones"] == 1
    assert fold.summary() == world.summary()


def test_identity_rules_for_replay_agree_with_the_wiring() -> None:
    # GIVEN settings as people set them (replay may not import the wiring, so it builds the rules itself)
    variants = [load_settings(), load_settings(job_id_source="startedBy"), load_settings(
        job_identity="tag,group", job_tag_key="team/job", services_are_jobs=True, gpu_task_families="a,b")]
    # THEN both build the same rules
    for settings in variants:
        assert identity_rules(settings) == wiring.policy_config(settings).identity


# --- the recovery table -------------------------------------------------------------------------------


@pytest.fixture
def west(aws: None) -> Any:
    """DynamoDB in the factories' region (where the replay's settings point)."""
    return boto3.client("dynamodb", region_name=REGION)


def live_tables(dynamodb: Any, world: World) -> DynamoRecoveryStore:
    """Live tables as the consumers left them: the projector's items, and the recovery's own records."""
    create_tables(dynamodb, SETTINGS.table_names())
    projector = Projector(DynamoProjectionStore(dynamodb, SETTINGS.projection_tables()),
                          DynamoParkingLot(dynamodb, SETTINGS.parked_table),
                          projection_config(SETTINGS))
    lines = history(world)
    projector.handle_batch([StreamRecord("shardId-000000000000", str(i), "pk", data) for i, data in enumerate(lines)])
    store = DynamoRecoveryStore(dynamodb, SETTINGS.recovery_table)
    bodies = {key: record.model_dump(mode="json") for key, record in world.view.records().items()}
    fill_recovery_table(store, bodies, empty=True, retention=timedelta(days=30))
    return store


def test_verify_finds_live_equal_and_a_forged_record_diverges(west: Any, tmp_path: Path, capsys: Any) -> None:
    # GIVEN live tables from a recovery, and its stream
    world = story()
    live_tables(west, world)
    lines = history(world)
    source = write_lines(tmp_path / "stream.jsonl", lines)
    # WHEN verified
    code = replay("--source", f"file:{source}", "--target", "none", "--verify", "--json")
    report = json.loads(capsys.readouterr().out)["verify"]
    # THEN the recovery's jobs, nodes and incidents were compared and match
    assert code == 0, report["diffs"]
    assert report["compared"]["recovery.incidents"] == 1 and report["compared"]["recovery.nodes"] == 3
    # WHEN someone put a RecoveryRecorded on the stream saying the incident was escalated
    incident = world.incident(2)
    assert incident is not None
    write_lines(source, [*lines, forged_outcome(incident, "escalated")])
    code = replay("--source", f"file:{source}", "--target", "none", "--verify", "--json")
    report = json.loads(capsys.readouterr().out)["verify"]
    # THEN live (which never acts on its own records read back) and the replay diverge, on that field
    assert code == 1
    assert report["diffs"] == [{"table": "recovery.incidents", "key": incident.incident_id, "kind": "changed",
                                "fields": [{"path": "outcome", "live": "recovered", "replay": "escalated"}]}]


def test_the_shadow_target_writes_a_recovery_table_in_the_store_layout(west: Any, tmp_path: Path,
                                                                       capsys: Any) -> None:
    # GIVEN the stream of a live recovery
    world = story()
    source = write_lines(tmp_path / "stream.jsonl", history(world))
    # WHEN replayed to the default target
    assert replay("--source", f"file:{source}", "--json") == 0
    summary = json.loads(capsys.readouterr().out)
    # THEN a new table beside the live recovery table holds every record, readable by the consumer's store
    table = summary["recovery_table"]
    assert table.startswith(f"{SETTINGS.recovery_table}-replay-")
    store = DynamoRecoveryStore(west, table)
    live = {key: record.model_dump(mode="json") for key, record in world.view.records().items()}
    assert summary["recovery_written"] == len(live)
    stored = store.load(list(live)).bodies
    # (a task's record holds facts only; what recovery decided about a task is not on the stream: its tags)
    assert {k: b for k, b in stored.items() if k[0] != "task"} == {k: b for k, b in live.items() if k[0] != "task"}
    assert all(stored[k] is not None for k in live if k[0] == "task")
    # AND its indexes: each node by its instance id, and each armed deadline
    node = world.node(2)
    assert store.load([("instance", str(node.facts.instance_id))]).bodies[("instance", str(node.facts.instance_id))] \
        == {"node_arn": node.arn}
    timers = sorted((key, t.timer.model_dump(mode="json")) for key, t in ((t.record, t) for t in world.timers()))
    assert sorted(store.due("9999", 100)) == timers
    # AND read back as --verify reads a live table, it is the live recovery
    assert live_summary(scan_records(west, table)) == world.summary()


def test_the_live_target_overwrites_the_recovery_table_then_verifies_clean(west: Any, tmp_path: Path) -> None:
    # GIVEN live tables where someone edited a node's repair state behind the recovery's back
    world = story()
    store = live_tables(west, world)
    key = ("node", world.node(2).arn)
    body = store.load([key]).bodies[key]
    assert body is not None
    edited = {**body, "plan": {**body["plan"], "repair": "QUARANTINED"}}
    fill_recovery_table(store, {key: edited}, empty=False, retention=timedelta(days=30))
    source = write_lines(tmp_path / "stream.jsonl", history(world))
    assert replay("--source", f"file:{source}", "--target", "none", "--verify") == 1
    # WHEN the live tables are overwritten (no consumer holds a lease)
    assert replay("--source", f"file:{source}", "--target", "live", "--yes", "--lease-wait", "0") == 0
    # THEN live equals the replay again, and the node's record took one more revision (a conditional write)
    assert replay("--source", f"file:{source}", "--target", "none", "--verify") == 0
    assert store.load([key]).revs[key] == 3


def _decoded(raw: dict[str, Any]) -> Any:
    from events_schema.decode import decode_mapping

    return decode_mapping(raw)
