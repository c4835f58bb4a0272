"""The local EventBridge applies the rules module's rules, with their keys, as the Kinesis target would."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from events_schema.rules import ingest_rules
from local.bridge import EventBridgeBridge
from tests.factories import CLUSTER, node_event, task_event

AWS_EVENTS = Path(__file__).parent.parent / "fixtures" / "aws_events"


class Writer:
    def __init__(self) -> None:
        self.records: list[tuple[bytes, str]] = []

    def put_raw(self, records: Sequence[tuple[bytes, str]]) -> list[str]:
        self.records.extend(records)
        return [str(n) for n in range(len(records))]


def test_the_bridge_puts_each_event_under_its_rules_key() -> None:
    # GIVEN the bridge with the cluster's rules
    writer = Writer()
    bridge = EventBridgeBridge(ingest_rules(CLUSTER), writer)
    health = json.loads((AWS_EVENTS / "aws_health_event_gpu_system_reboot_maintenance.json").read_text())
    stopped = json.loads((AWS_EVENTS / "ec2_instance_state_change_gpu_stopped.json").read_text())
    # WHEN ranks of one job, a node event, an AWS Health event and an EC2 stop are published
    events = [task_event(0, node=1), task_event(1, node=2), node_event(1), health, stopped]
    assert bridge.publish(events) == 5
    # THEN the ranks share their group's key, the node its ARN, AWS Health its event, EC2 its instance
    keys = [key for _, key in writer.records]
    assert keys == ["job:alpha", "job:alpha", node_event(1)["detail"]["containerInstanceArn"],
                    health["detail"]["eventArn"], "i-0a1b2c3d4e5f67890"]
    assert [json.loads(data) for data, _ in writer.records] == events


def test_what_no_rule_takes_is_counted_and_an_unusable_key_is_dead_lettered() -> None:
    # GIVEN an event of another cluster and a task whose group Kinesis cannot take as a key
    writer = Writer()
    bridge = EventBridgeBridge(ingest_rules(CLUSTER), writer)
    foreign, keyless = task_event(1, cluster=CLUSTER + "-2"), task_event(2, group="")
    # WHEN both are published THEN neither reaches the stream: one unmatched, one dead-lettered by rule
    assert bridge.publish([foreign, keyless]) == 0 and writer.records == []
    assert bridge.unmatched == 1
    assert bridge.dead_letters == [("task-grouped", keyless)]
