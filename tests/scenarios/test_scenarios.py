"""Every shipped scenario, end to end on the embedded AWS; each item of DESIGN section 8 is asserted."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from gpu_recovery.cli import main
from local.demo import record_run
from local.scenario import load_scenario, scenario_names
from local.scenario_runner import ScenarioResult, ScenarioRun
from tests.scenarios.conftest import scenario_run

pytestmark = pytest.mark.slow


def by_node(run: ScenarioRun, result: ScenarioResult) -> Counter[tuple[str, str]]:
    """Actions as (type, node name), so runs with different generated ids compare."""
    names = {**{n.arn: n.name for n in run.fleet.nodes.values()},
             **{n.instance_id: n.name for n in run.fleet.nodes.values()}}
    tasks = {t.arn: names.get(t.node_arn or "", "?") for t in run.fleet.tasks.values()}
    return Counter((a["type"], names.get(a["target"]) or tasks.get(a["target"]) or a["type"]) for a in result.actions)


@pytest.mark.parametrize("name", scenario_names())
def test_scenario_meets_its_expectations_and_replays_to_the_live_recovery(name: str, tmp_path: Path,
                                                                          capsys: Any) -> None:
    lines: list[str] = []
    with scenario_run(name, lines=lines) as (run, result):
        failed = [e for e in result.expectations if not e["ok"]]
        assert result.expectations, "a scenario must expect something"
        assert not failed, "\n".join(lines + [str(f) for f in failed])
        # Old tool's bug 8: no full-table scans on the consumers' hot path.
        assert result.consumer_scans == 0
        # Every side effect carries its idempotency key, and no key was acted on twice.
        keys = [a["idempotency_key"] for a in result.actions]
        assert None not in keys
        assert len(keys) == len(set(keys))
        # The recovery's state is a fold of the stream: replaying what was recorded gives what live holds.
        assert_replay_gives_the_live_recovery(run, result, tmp_path, capsys)


def assert_replay_gives_the_live_recovery(run: ScenarioRun, result: ScenarioResult, tmp_path: Path,
                                          capsys: Any) -> None:
    recording, rebuilt = tmp_path / "stream.jsonl", tmp_path / "replay.json"
    record_run(run, recording)
    capsys.readouterr()
    main(["replay", "--endpoint-url", str(run.settings.endpoint_url), "--source", f"file:{recording}",
          "--target", f"file:{rebuilt}", "--verify", "--json", "--no-progress"])
    report = json.loads(capsys.readouterr().out)
    assert json.loads(rebuilt.read_text())["recovery"] == result.recovery
    verify = report["verify"]
    assert [d for d in verify["diffs"] if d["table"].startswith("recovery.")] == []
    assert verify["compared"]["recovery.jobs"] == len(result.recovery["jobs"])
    assert verify["compared"]["recovery.incidents"] == len(result.recovery["incidents"])
    fold = report["recovery_fold"]
    parked = sum(p["consumer"] == "recovery" and p["reason_kind"] == "future_time" for p in result.parked)
    assert (fold["skipped"]["future_time"], fold["fold_errors"], fold["tags_without_task"]) == (parked, 0, 0)


def test_the_failed_ranks_own_node_is_checked_not_the_jobs_first() -> None:
    # Old tool's bug 1. Scenario 2: the fault is on gpu-node-3, the job's first rank is on gpu-node-1.
    with scenario_run("02-xid48-reboot") as (run, result):
        checks = [a for a in result.actions if a["type"] == "StartTask"
                  and a["idempotency_key"].split(":")[1] == "check"]
        assert [by_node(run, ScenarioResult(**{**result.__dict__, "actions": [c]})) for c in checks] == [
            Counter({("StartTask", "gpu-node-3"): 1})] * 2


def test_restarted_tasks_keep_revision_overrides_group_started_by_and_tags() -> None:
    # Old tool's bugs 5 and 7: tags lost on restart; restart needed DescribeTasks on forgotten tasks.
    with scenario_run("02-xid48-reboot") as (run, _):
        ecs = run.sim_clients.client("ecs")
        arns = ecs.list_tasks(cluster=run.settings.cluster_name, desiredStatus="RUNNING")["taskArns"]
        tasks = ecs.describe_tasks(cluster=run.settings.cluster_name, tasks=arns, include=["TAGS"])["tasks"]
        restarted = [t for t in tasks if any(tag["key"] == "gpu-recovery:key" and ":restart:" in tag["value"]
                                             for tag in t.get("tags", []))]
        assert len(restarted) == 4
        for task in restarted:
            assert task["taskDefinitionArn"].endswith("task-definition/llm-train:1")
            assert task["group"] == "job:llama-70b-run-42"
            assert task["startedBy"] == "trainer-launcher"
            tags = {tag["key"]: tag["value"] for tag in task["tags"]}
            assert tags["team"] == "foundation-models" and tags["run"] == "42"
            env = task["overrides"]["containerOverrides"][0]["environment"]
            assert {e["name"] for e in env} == {"RANK", "WORLD_SIZE"}
        ranks = sorted(e["value"] for t in restarted for e in t["overrides"]["containerOverrides"][0]["environment"]
                       if e["name"] == "RANK")
        assert ranks == ["0", "1", "2", "3"]


def test_duplicated_and_shuffled_delivery_takes_the_same_actions_once() -> None:
    # Old tool's bug 2 (no idempotency): scenario 7 is scenario 2 with every event twice, shuffled.
    with scenario_run("02-xid48-reboot") as (run, clean):
        expected = by_node(run, clean)
    with scenario_run("07-duplicated-shuffled") as (run, chaos):
        assert by_node(run, chaos) == expected
        assert chaos.events == 2 * clean.events


def test_sibling_stops_by_recovery_are_not_user_stops() -> None:
    # Old tool's bug 4: in scenario 1 recovery stops the siblings; the job must not become STOPPED_BY_USER.
    with scenario_run("01-xid79-quarantine") as (_, result):
        assert result.job_states["job:llama-70b-run-42"] == "RUNNING"
        stopped = [t for t in result.tables["ecs_task"] if t.get("stop_requested_by_recovery")]
        assert stopped and all(t["job_id"] == "job:llama-70b-run-42" for t in stopped)


def test_notifications_say_what_was_seen_done_and_what_to_do() -> None:
    # Old tool's bug 12: one notification in the whole system.
    with scenario_run("01-xid79-quarantine") as (_, result):
        (note,) = result.notifications
        assert note["kind"] == "node_quarantined"
        assert "node quarantined" in note["subject"] and "gpu-training" in note["subject"]
        assert note["seen"]["xids"] == [79] and note["seen"]["verdict"] == "hardware_fault"
        assert note["next_step"] and note["incident_id"] and note["instance_id"].startswith("i-")
        assert any(":check:" in step for step in note["done"])


def test_repair_state_is_mirrored_into_an_ecs_attribute() -> None:
    with scenario_run("01-xid79-quarantine") as (run, _):
        ecs = run.sim_clients.client("ecs")
        bad = run.fleet.node_by_name("gpu-node-2").arn
        (instance,) = ecs.describe_container_instances(cluster=run.settings.cluster_name,
                                                       containerInstances=[bad])["containerInstances"]
        attributes = {a["name"]: a.get("value") for a in instance["attributes"]}
        assert attributes["gpu-recovery.state"] == "QUARANTINED"
        assert instance["status"] == "DRAINING"


def test_every_shipped_scenario_file_is_valid_and_documented() -> None:
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    for name in scenario_names():
        scenario = load_scenario(name)
        assert scenario.name == name
        assert name in readme, f"scenario {name} is not listed in the README"

