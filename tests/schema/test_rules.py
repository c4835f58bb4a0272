"""The EventBridge rules: exact matches (old tool's bug 9), a partition key always present."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from events_schema.event_pattern import matches
from events_schema.rules import ingest_rules, task_definition_family_filter
from tests.factories import CLUSTER, node_event, task_event

RULES = ingest_rules(CLUSTER)
FIXTURES = sorted((Path(__file__).parent.parent / "fixtures" / "aws_events").glob("*.json"))


def matching(event: dict) -> list[str]:
    return [rule.name for rule in RULES if matches(rule.event_pattern, event)]


def test_each_ecs_event_matches_exactly_one_rule_with_its_key_present() -> None:
    for event in (task_event(1), task_event(2, node=None), node_event(1)):
        (name,) = matching(event)
        rule = next(r for r in RULES if r.name == name)
        assert rule.partition_key(event)


def test_placed_tasks_are_keyed_by_node_and_unplaced_by_task() -> None:
    placed, unplaced = task_event(1, node=3), task_event(2, node=None)
    assert matching(placed) == ["task-placed"]
    assert matching(unplaced) == ["task-unplaced"]
    rule = {r.name: r for r in RULES}
    assert rule["task-placed"].partition_key(placed) == placed["detail"]["containerInstanceArn"]
    assert rule["task-unplaced"].partition_key(unplaced) == unplaced["detail"]["taskArn"]


def test_cluster_match_is_exact_not_a_prefix() -> None:
    # The old tool's pattern for cluster "gpu-training" also matched "gpu-training-2".
    other = task_event(1, cluster=CLUSTER + "-2")
    assert matching(other) == []


def test_family_filter_matches_every_revision_and_nothing_else() -> None:
    prefix = "arn:aws:ecs:us-west-2:123456789012"
    pattern = {"detail": {"taskDefinitionArn": [task_definition_family_filter(prefix, "dcgm-check")]}}
    def td(name: str) -> dict:
        return {"detail": {"taskDefinitionArn": f"{prefix}:task-definition/{name}"}}
    assert matches(pattern, td("dcgm-check:1")) and matches(pattern, td("dcgm-check:10"))
    assert not matches(pattern, td("dcgm-check-2:1"))
    assert not matches(pattern, td("xdcgm-check:1"))


def test_revision_match_is_exact() -> None:
    # Old tool: task definition ":1" matched ":10".. ":19" by prefix.
    arn = "arn:aws:ecs:us-west-2:1:task-definition/llm:1"
    assert matches({"a": [arn]}, {"a": arn})
    assert not matches({"a": [arn]}, {"a": arn + "0"})


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.name)
def test_fixtures_from_their_own_cluster_match_one_rule(path: Path) -> None:
    event = json.loads(path.read_text())
    rules = ingest_rules(event["detail"]["clusterArn"])
    hits = [r for r in rules if matches(r.event_pattern, event)]
    assert len(hits) == 1
    assert hits[0].partition_key(event)


def test_bad_cluster_arn_is_refused_with_a_reason() -> None:
    with pytest.raises(ValueError, match="full cluster ARN"):
        ingest_rules("gpu-training")


@pytest.mark.parametrize(
    ("pattern", "event", "expected"),
    [
        ({"a": [True]}, {"a": True}, True),
        ({"a": [True]}, {"a": 1}, False),
        ({"a": [{"exists": False}]}, {}, True),
        ({"a": [{"exists": True}]}, {"a": None}, True),
        ({"a": [{"prefix": "gpu"}]}, {"a": "gpu-2"}, True),
        ({"a": [{"anything-but": ["x"]}]}, {"a": "y"}, True),
        ({"a": ["x"]}, {"a": ["y", "x"]}, True),
        ({"a": {"b": ["x"]}}, {"a": "x"}, False),
    ],
)
def test_pattern_semantics(pattern: dict, event: dict, expected: bool) -> None:
    assert matches(pattern, event) is expected
