"""The EventBridge rules: exact matches (old tool's bug 9), a partition key always present, a job's ranks on
one shard, a node's ECS events on one shard."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from events_schema.event_pattern import matches
from events_schema.rules import IngestRule, ingest_rules, task_definition_family_filter
from tests.factories import ACCOUNT, CLUSTER, REGION, node_arn, node_event, task_event

RULES = ingest_rules(CLUSTER)
BY_NAME = {rule.name: rule for rule in RULES}
AWS_EVENTS = Path(__file__).parent.parent / "fixtures" / "aws_events"
FIXTURES = sorted(AWS_EVENTS.glob("*.json"))
# The docs' examples that our rules leave out on purpose: an EC2 instance starting, an AWS Health issue.
NOT_ROUTED = {"ec2_instance_state_change_docs_pending.json", "aws_health_event_docs_ec2_instance_store_issue.json"}
RULE_BY_PREFIX = {
    "container_instance_state_change": "container-instance",
    "container_instance_health_change": "container-instance-health",
    "aws_health_event": "ec2-scheduled-change",
    "ec2_instance_state_change": "ec2-instance-stopped",
}


def matching(event: dict[str, Any], rules: list[IngestRule] = RULES) -> list[str]:
    return [rule.name for rule in rules if matches(rule.event_pattern, event)]


def fixture(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((AWS_EVENTS / name).read_text())
    return loaded


def health_event(**detail: Any) -> dict[str, Any]:
    event = fixture("aws_health_event_gpu_system_reboot_maintenance.json")
    event["detail"].update(detail)
    return event


def ec2_event(state: str, **envelope: Any) -> dict[str, Any]:
    event = fixture("ec2_instance_state_change_gpu_stopped.json")
    event["detail"]["state"] = state
    event.update(envelope)
    return event


# --- tasks: a job's ranks share a shard ----------------------------------------------------------------


def test_each_ecs_event_matches_exactly_one_rule_with_its_key_present() -> None:
    for event in (task_event(1), task_event(2, node=None), task_event(3, group=None), node_event(1)):
        (name,) = matching(event)
        assert BY_NAME[name].partition_key(event)


def test_a_jobs_ranks_on_different_nodes_share_one_key_their_group() -> None:
    # GIVEN four ranks of one job on four nodes, and one rank never placed on a node
    ranks = [task_event(rank, node=rank, group="job:llama-70b") for rank in range(4)]
    unplaced = task_event(9, node=None, group="job:llama-70b")
    # THEN every one goes through the grouped rule, keyed by the job's group: one shard, in order
    for event in [*ranks, unplaced]:
        assert matching(event) == ["task-grouped"]
        assert BY_NAME["task-grouped"].partition_key(event) == "job:llama-70b"


def test_a_task_without_a_group_is_keyed_by_its_own_arn() -> None:
    event = task_event(5, group=None)
    assert matching(event) == ["task-ungrouped"]
    assert BY_NAME["task-ungrouped"].partition_key(event) == event["detail"]["taskArn"]


def test_node_events_stay_keyed_by_their_container_instance() -> None:
    state = node_event(3)
    health = fixture("container_instance_health_change_gpu_impaired.json")
    assert BY_NAME["container-instance"].partition_key(state) == node_arn(3)
    assert BY_NAME["container-instance-health"].partition_key(health) == health["detail"]["containerInstanceArn"]


@given(
    group=st.one_of(st.none(), st.text(min_size=1, max_size=255)),
    placed=st.booleans(),
)
def test_any_task_event_takes_exactly_one_task_rule_whose_path_is_present(group: str | None, placed: bool) -> None:
    # GIVEN any task event: with or without a group, placed or not
    event = task_event(1, node=1 if placed else None, group=group)
    # THEN exactly one rule takes it, and the key is the group when there is one, else the task ARN
    (name,) = matching(event)
    expected = group if group is not None else event["detail"]["taskArn"]
    assert BY_NAME[name].partition_key(event) == expected


def test_a_key_kinesis_would_refuse_is_a_missing_key() -> None:
    # An empty group or one longer than Kinesis's 256 characters: EventBridge would dead-letter the event.
    for group in ("", "g" * 257):
        event = task_event(1, group=group)
        (name,) = matching(event)
        with pytest.raises(KeyError):
            BY_NAME[name].partition_key(event)


# --- AWS Health and EC2 ----------------------------------------------------------------------------------


@pytest.mark.parametrize("code", ["AWS_EC2_INSTANCE_RETIREMENT_SCHEDULED",
                                  "AWS_EC2_SYSTEM_REBOOT_MAINTENANCE_SCHEDULED",
                                  "AWS_EC2_INSTANCE_REBOOT_MAINTENANCE_SCHEDULED", "AWS_EC2_INSTANCE_STOP_SCHEDULED"])
def test_ec2_scheduled_changes_of_this_account_are_routed_keyed_by_the_health_event(code: str) -> None:
    event = health_event(eventTypeCode=code)
    assert matching(event) == ["ec2-scheduled-change"]
    assert BY_NAME["ec2-scheduled-change"].partition_key(event) == event["detail"]["eventArn"]


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"account": "210987654321"}, "another account"),
        ({"detail": {"service": "RDS"}}, "another service"),
        ({"detail": {"eventTypeCategory": "issue"}}, "an issue, not a scheduled change"),
        ({"source": "fake.aws.health"}, "another source"),
    ],
)
def test_other_health_events_are_not_routed(change: dict[str, Any], why: str) -> None:
    event = health_event()
    event["detail"].update(change.pop("detail", {}))
    event.update(change)
    assert matching(event) == [], why


@pytest.mark.parametrize("state", ["stopping", "stopped", "shutting-down", "terminated"])
def test_instances_of_this_account_and_region_that_stop_are_routed_keyed_by_instance(state: str) -> None:
    event = ec2_event(state)
    assert matching(event) == ["ec2-instance-stopped"]
    assert BY_NAME["ec2-instance-stopped"].partition_key(event) == "i-0a1b2c3d4e5f67890"


@pytest.mark.parametrize("event", [ec2_event("pending"), ec2_event("running"),
                                   ec2_event("stopped", account="210987654321"),
                                   ec2_event("stopped", region="eu-west-1")],
                         ids=["pending", "running", "other-account", "other-region"])
def test_other_instance_changes_are_not_routed(event: dict[str, Any]) -> None:
    assert matching(event) == []


def test_ec2_rules_say_they_cannot_tell_the_clusters_instances() -> None:
    for name in ("ec2-scheduled-change", "ec2-instance-stopped"):
        assert "recovery ignores instances it does not know" in BY_NAME[name].description


def test_account_and_region_default_to_the_cluster_arns_and_must_agree_with_it() -> None:
    explicit = ingest_rules(CLUSTER, account=ACCOUNT, region=REGION)
    assert [r.event_pattern for r in explicit] == [r.event_pattern for r in RULES]
    assert BY_NAME["ec2-instance-stopped"].event_pattern["account"] == [ACCOUNT]
    assert BY_NAME["ec2-instance-stopped"].event_pattern["region"] == [REGION]
    with pytest.raises(ValueError, match="account '210987654321' is not the cluster ARN's"):
        ingest_rules(CLUSTER, account="210987654321")
    with pytest.raises(ValueError, match="region 'eu-west-1'"):
        ingest_rules(CLUSTER, region="eu-west-1")


# --- exact matches ---------------------------------------------------------------------------------------


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


# --- the fixtures: real AWS events -----------------------------------------------------------------------


def _rules_for(event: dict[str, Any]) -> list[IngestRule]:
    """The rules of a cluster in the event's own account and region (its own cluster, for ECS events)."""
    cluster = event["detail"].get("clusterArn") or f"arn:aws:ecs:{event['region']}:{event['account']}:cluster/gpu"
    return ingest_rules(cluster)


def _expected_rule(path: Path) -> str | None:
    if path.name in NOT_ROUTED:
        return None
    if path.name.startswith("task_state_change"):
        return "task-grouped" if "group" in fixture(path.name)["detail"] else "task-ungrouped"
    return next(rule for prefix, rule in RULE_BY_PREFIX.items() if path.name.startswith(prefix))


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.name)
def test_fixtures_match_their_rule_with_its_key_present(path: Path) -> None:
    # GIVEN a real AWS event, and the rules of a cluster in its account and region
    event = json.loads(path.read_text())
    rules = _rules_for(event)
    # THEN exactly its kind's rule takes it (none for the kinds we leave out), with a usable key
    expected = _expected_rule(path)
    assert matching(event, rules) == ([expected] if expected else [])
    for rule in rules:
        if rule.name == expected:
            assert rule.partition_key(copy.deepcopy(event))


def test_bad_cluster_arn_is_refused_with_a_reason() -> None:
    for bad in ("gpu-training", "arn:aws:ecs:us-west-2:123456789012:service/gpu", "arn:aws:ecs:us-west-2::cluster/x",
                "arn:aws:ecs:us-west-2:123456789012:cluster/"):
        with pytest.raises(ValueError, match="full cluster ARN"):
            ingest_rules(bad)


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
