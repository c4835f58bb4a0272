"""--verify against the live tables (moto DynamoDB), and the shadow and live targets with their guards."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from consumers.adapters.dynamodb import DynamoParkingLot, DynamoProjectionStore, create_tables
from consumers.core.ports import StreamRecord
from consumers.core.projection import JOB, NODE, TASK, ProjectionConfig, ProjectionState, job_ranks
from consumers.projector import Projector
from events_schema.events import TaskTagsCaptured
from gpu_recovery.apps import PROJECTOR_APP, identity_rules
from gpu_recovery.cli import main
from gpu_recovery.settings import load_settings
from replay.leases import check_consumers
from replay.verify import diff_values, verify
from tests.factories import at, node_arn, ours, task_arn, task_event
from tests.hostile import sample
from tests.replay.histories import NODE1, incident_story, lines, write_jsonl

SETTINGS = load_settings()
LIVE = SETTINGS.projection_tables()


def project_live(dynamodb: Any, events: list[bytes], batch: int = 4) -> DynamoProjectionStore:
    """The live projector's way: batches of stream records, conditional writes, into moto's tables."""
    create_tables(dynamodb, SETTINGS.table_names())
    store = DynamoProjectionStore(dynamodb, LIVE)
    projector = Projector(store, DynamoParkingLot(dynamodb, SETTINGS.parked_table), ProjectionConfig(
        identity=identity_rules(SETTINGS), ttl_days=SETTINGS.ttl_days))
    records = [StreamRecord("shardId-000000000000", str(i), "pk", data) for i, data in enumerate(events)]
    for start in range(0, len(records), batch):
        projector.handle_batch(records[start : start + batch])
    return store


def set_repair_state(dynamodb: Any, node: str, state: str) -> None:
    """An edit by hand (or by a buggy deploy) behind the projector's back."""
    dynamodb.update_item(TableName=LIVE[NODE], Key={"container_instance_arn": {"S": node}},
                         UpdateExpression="SET repair_state = :s", ExpressionAttributeValues={":s": {"S": state}})


@pytest.fixture
def history(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "history.jsonl", incident_story())


def replay(*args: str) -> int:
    return main(["replay", "--no-progress", *args])


def test_verify_exits_0_when_live_matches_the_replay(dynamodb: Any, history: Path, capsys: Any) -> None:
    # GIVEN live tables the projector built batch by batch from the same history
    project_live(dynamodb, lines(incident_story()))
    # WHEN replayed with --verify, writing nowhere
    code = replay("--source", f"file:{history}", "--target", "none", "--verify")
    # THEN there is no difference
    assert code == 0
    assert "live tables match the replay" in capsys.readouterr().out


def tag_job_story() -> list[dict[str, Any]]:
    """A run named by its job tag (no --group), the tags read after the first events and again before the last,
    and two health events of one node in the same second."""
    tags = TaskTagsCaptured(task_arn=task_arn(5), tags=[{"key": "gpu-recovery:job", "value": "llama-run-7"}])
    health = [sample("container_instance_health_change_docs_container_runtime"),
              sample("container_instance_health_change_docs_accelerated_compute")]
    return [task_event(5, version=1, status="PENDING", group="family:llm-train"),
            task_event(6, node=2, version=2, group="family:llm-train"),
            ours(tags, when=at(3)).model_dump(mode="json"),
            ours(TaskTagsCaptured(task_arn=task_arn(6), tags=tags.tags), when=at(3)).model_dump(mode="json"),
            task_event(5, version=2, group="family:llm-train"), *health,
            task_event(5, version=3, status="STOPPED", exit_code=1, group="family:llm-train"),
            ours(tags, when=at(3)).model_dump(mode="json")]


def test_verify_matches_a_live_projection_whose_job_came_from_tags_in_earlier_batches(
        dynamodb: Any, tmp_path: Path, capsys: Any) -> None:
    # GIVEN live tables the projector built two records at a time (the tags in another batch than most events)
    story = tag_job_story()
    project_live(dynamodb, lines(story), batch=2)
    # WHEN replayed with --verify
    code = replay("--source", f"file:{write_jsonl(tmp_path / 'tags.jsonl', story)}", "--target", "none",
                  "--verify")
    # THEN live and replay agree, and the job is the tag's, with both ranks and the failure
    assert code == 0, capsys.readouterr().out
    (job,) = DynamoProjectionStore(dynamodb, LIVE).scan_table(JOB)
    assert (job["job_id"], sorted(job_ranks(job)), job["state"]) == ("llama-run-7", [task_arn(5), task_arn(6)],
                                                                   "INTERRUPTED")


def test_verify_exits_1_and_shows_key_field_live_and_replay(dynamodb: Any, history: Path, capsys: Any) -> None:
    # GIVEN live tables where someone set node 1 QUARANTINED by hand, and an extra stray item
    project_live(dynamodb, lines(incident_story()))
    set_repair_state(dynamodb, NODE1, "QUARANTINED")
    dynamodb.put_item(TableName=LIVE[TASK], Item={"task_arn": {"S": "arn:stray"}, "rev": {"N": "1"}})
    # WHEN verified (JSON, for an exact look)
    code = replay("--source", f"file:{history}", "--target", "none", "--verify", "--json")
    report = json.loads(capsys.readouterr().out)["verify"]
    # THEN exit 1, and each difference names table, key, field, live and replay values
    assert code == 1
    assert report["differing"] == 2
    changed = next(d for d in report["diffs"] if d["kind"] == "changed")
    assert (changed["table"], changed["key"]) == (NODE, NODE1)
    assert changed["fields"] == [{"path": "repair_state", "live": "QUARANTINED", "replay": "HEALTHY"}]
    stray = next(d for d in report["diffs"] if d["kind"] == "only_live")
    assert (stray["table"], stray["key"]) == (TASK, "arn:stray")


def test_verify_prints_a_readable_diff(dynamodb: Any, history: Path, capsys: Any) -> None:
    project_live(dynamodb, lines(incident_story()))
    set_repair_state(dynamodb, NODE1, "SUSPECT")
    assert replay("--source", f"file:{history}", "--target", "none", "--verify") == 1
    out = capsys.readouterr().out
    assert f"{NODE} {NODE1}:" in out
    assert 'repair_state: live "SUSPECT"  replay "HEALTHY"' in out


def test_verify_ignores_rev_and_items_ttl_already_deleted() -> None:
    # GIVEN a rebuilt item that expired long ago and is gone from live, and an item that differs only in rev
    state = ProjectionState()
    state.put((TASK, "old"), {"task_arn": "old", "expires_at": 1})
    state.put((JOB, "j"), {"job_id": "j", "state": "RUNNING"})
    live = {TASK: [], JOB: [{"job_id": "j", "state": "RUNNING", "rev": 7}], NODE: []}
    # WHEN verified
    report = verify(state, lambda table: live[table], now_epoch=1_000)
    # THEN nothing differs; the expired item is counted as skipped
    assert report.equal and report.expired_skipped == 1


def test_verify_skips_a_live_item_that_expired_and_the_replay_let_go() -> None:
    # GIVEN live items the replay does not hold: one whose TTL passed (DynamoDB deletes such an item within
    # days, not at once), one that has not expired yet, and one without a TTL
    state = ProjectionState()
    live = {TASK: [{"task_arn": "gone", "expires_at": 999}, {"task_arn": "due", "expires_at": 1_001}],
            JOB: [{"job_id": "j", "state": "RUNNING"}], NODE: []}
    # WHEN verified at epoch 1,000
    report = verify(state, lambda table: live[table], now_epoch=1_000)
    # THEN the expired one is counted as skipped; the other two are differences only live holds
    assert report.expired_skipped == 1
    assert [(d.table, d.key, d.kind) for d in report.diffs] == [(TASK, "due", "only_live"), (JOB, "j", "only_live")]


def finished_long_ago() -> list[dict[str, Any]]:
    """job:old's one task, run and finished 40 days before the incident story (the TTL is 30 days)."""
    day = 86_400
    return [task_event(7, node=3, version=2, status="RUNNING", group="job:old", when=at(-40 * day)),
            task_event(7, node=3, version=3, status="STOPPED", exit_code=0, group="job:old",
                       when=at(-40 * day + 3_600))]


def test_replay_drops_an_expired_task_and_verify_skips_it_while_live_still_holds_it(
        dynamodb: Any, tmp_path: Path, capsys: Any) -> None:
    # GIVEN a job that finished 40 days before the incident story (the TTL is 30 days), and live tables the
    # projector built from it all; DynamoDB's TTL has not deleted the expired task and job yet
    story = [*finished_long_ago(), *incident_story()]
    project_live(dynamodb, lines(story))
    assert task_arn(7) in {task["task_arn"] for task in DynamoProjectionStore(dynamodb, LIVE).scan_table(TASK)}
    # WHEN replayed with --verify
    code = replay("--source", f"file:{write_jsonl(tmp_path / 'old.jsonl', story)}", "--target", "none",
                  "--verify", "--json")
    summary = json.loads(capsys.readouterr().out)
    # THEN the summary says the retention let the task and its job go, and verify skips both, no difference
    assert summary["retention"] == {"expired": 2, "late_dropped": 0}
    assert (code, summary["verify"]["expired_skipped"], summary["verify"]["differing"]) == (0, 2, 0)


def test_the_text_summary_names_what_the_retention_dropped(tmp_path: Path, capsys: Any) -> None:
    history = write_jsonl(tmp_path / "old.jsonl", [*finished_long_ago(), *incident_story()])
    assert replay("--source", f"file:{history}", "--target", f"file:{tmp_path / 'out.json'}") == 0
    assert "retention: 2 expired items left the fold" in capsys.readouterr().out


def test_nested_differences_name_their_path() -> None:
    diffs = diff_values({"tasks": {"a": {"v": 1}}, "n": 1}, {"tasks": {"a": {"v": 2}}, "n": 1})
    assert [(d.path, d.live, d.replay) for d in diffs] == [("tasks.a.v", 1, 2)]


def test_shadow_target_creates_and_fills_new_tables(dynamodb: Any, history: Path, capsys: Any) -> None:
    # GIVEN no tables at all
    # WHEN replayed to the default target
    code = replay("--source", f"file:{history}", "--json")
    summary = json.loads(capsys.readouterr().out)
    # THEN new tables <name>-replay-<time> hold the rebuilt items
    assert code == 0
    names = summary["shadow_tables"]
    assert names[NODE].startswith(f"{LIVE[NODE]}-replay-")
    store = DynamoProjectionStore(dynamodb, names)
    nodes = {n["container_instance_arn"]: n for n in store.scan_table(NODE)}
    assert nodes[NODE1]["repair_state"] == "HEALTHY"
    assert summary["written"] == summary["items"] == {TASK: 5, JOB: 2, NODE: 3}


def test_live_target_refuses_without_yes(dynamodb: Any, history: Path, capsys: Any) -> None:
    # WHEN asked to overwrite the live tables without --yes
    code = replay("--source", f"file:{history}", "--target", "live")
    # THEN it refuses before reading anything, and says how to confirm
    assert code == 2
    assert "add --yes" in capsys.readouterr().err


def _lease_table(dynamodb: Any, owner: str | None, counter: int = 5) -> None:
    dynamodb.create_table(TableName=PROJECTOR_APP, KeySchema=[{"AttributeName": "leaseKey", "KeyType": "HASH"}],
                          AttributeDefinitions=[{"AttributeName": "leaseKey", "AttributeType": "S"}],
                          BillingMode="PAY_PER_REQUEST")
    item = {"leaseKey": {"S": "shardId-000000000000"}, "leaseCounter": {"N": str(counter)},
            "checkpoint": {"S": "TRIM_HORIZON"}}
    if owner:
        item["leaseOwner"] = {"S": owner}
    dynamodb.put_item(TableName=PROJECTOR_APP, Item=item)


def test_live_target_refuses_while_a_lease_is_held(dynamodb: Any, history: Path, capsys: Any) -> None:
    # GIVEN a projector worker that owns a lease
    store = project_live(dynamodb, lines(incident_story()[:5]))
    before = list(store.scan_table(TASK))
    _lease_table(dynamodb, owner="worker-7")
    # WHEN asked to overwrite the live tables (not watching: an owned lease counts as held)
    code = replay("--source", f"file:{history}", "--target", "live", "--yes", "--lease-wait", "0")
    # THEN it refuses and says what it found
    err = capsys.readouterr().err
    assert code == 2
    assert f"lease table {PROJECTOR_APP}: shard shardId-000000000000 is owned by worker 'worker-7'" in err
    assert "refusing to overwrite the live tables" in err
    # AND the live tables were not touched
    assert list(store.scan_table(TASK)) == before and len(before) == 2


def test_live_target_with_force_overwrites_and_then_verifies_clean(dynamodb: Any, history: Path) -> None:
    # GIVEN live tables from part of the history, a node edited by hand, and a held lease
    project_live(dynamodb, lines(incident_story()[:12]))
    set_repair_state(dynamodb, node_arn(2), "REPLACED")
    _lease_table(dynamodb, owner="worker-7")
    # WHEN overwritten with --force
    assert replay("--source", f"file:{history}", "--target", "live", "--yes", "--force", "--lease-wait", "0") == 0
    # THEN live now equals the full replay
    assert replay("--source", f"file:{history}", "--target", "none", "--verify") == 0


def test_a_renewed_lease_is_held_and_a_stale_one_is_not(dynamodb: Any) -> None:
    # GIVEN a lease whose owner renews it while we watch
    _lease_table(dynamodb, owner="worker-1", counter=10)

    def renew(_: float) -> None:
        dynamodb.update_item(TableName=PROJECTOR_APP, Key={"leaseKey": {"S": "shardId-000000000000"}},
                             UpdateExpression="SET leaseCounter = leaseCounter + :one",
                             ExpressionAttributeValues={":one": {"N": "1"}})

    held = check_consumers(dynamodb, lease_tables=[PROJECTOR_APP, "absent-app"], checkpoint_table="absent",
                           applications=[PROJECTOR_APP], wait_s=5, sleep=renew)
    # THEN it is held, with the evidence; the missing tables are noted, not fatal
    assert held.busy
    assert "held by worker 'worker-1'" in held.held[0] and "leaseCounter 10 -> 11" in held.held[0]
    assert any("no lease table absent-app" in note for note in held.notes)
    # WHEN nobody renews it (the worker died)
    stale = check_consumers(dynamodb, lease_tables=[PROJECTOR_APP], checkpoint_table="absent",
                            applications=[PROJECTOR_APP], wait_s=5, sleep=lambda _: None)
    # THEN it is a stale lease: noted, not blocking
    assert not stale.busy
    assert any("was not renewed" in note for note in stale.notes)


def test_an_advancing_local_reader_checkpoint_counts_as_a_running_consumer(dynamodb: Any) -> None:
    # GIVEN the local reader's checkpoint table, which advances while we watch
    create_tables(dynamodb, {"checkpoints": "ckpt"})
    key = {"application_shard": {"S": f"{PROJECTOR_APP}#shardId-000000000000"}}
    dynamodb.put_item(TableName="ckpt", Item={**key, "sequence_number": {"S": "100"}})

    def advance(_: float) -> None:
        dynamodb.put_item(TableName="ckpt", Item={**key, "sequence_number": {"S": "200"}})

    check = check_consumers(dynamodb, lease_tables=[], checkpoint_table="ckpt", applications=[PROJECTOR_APP],
                            wait_s=1, sleep=advance)
    # THEN it blocks, naming the application and the shard
    assert check.busy
    assert f"local reader of {PROJECTOR_APP} advanced shard shardId-000000000000" in check.held[0]
