"""The new AWS kinds reach every reader of the stream without breaking it: tail's view and audit's timeline
name their instances (``--node i-...`` finds them)."""

from __future__ import annotations

from pathlib import Path

import pytest

from analytics.view import view_of
from consumers.core.projection import ProjectionConfig
from events_schema.decode import decode
from replay.audit import facts_of, to_row

AWS_EVENTS = Path(__file__).parent.parent / "fixtures" / "aws_events"
KINDS = {
    "aws_health_event_gpu_system_reboot_maintenance.json": ("AwsHealthEvent", "AWS_EC2_SYSTEM_REBOOT_MAINTENANCE"),
    "ec2_instance_state_change_gpu_stopped.json": ("Ec2InstanceStateChange", "stopped"),
}


@pytest.mark.parametrize("name", KINDS, ids=str)
def test_tail_and_audit_show_the_instance(name: str) -> None:
    # GIVEN an AWS Health or EC2 event about node A's instance
    event = decode((AWS_EVENTS / name).read_bytes())
    short, words = KINDS[name]
    # WHEN tail and audit read it
    view = view_of(event)
    row = to_row(event, ProjectionConfig())
    # THEN both name the instance and what happens to it
    assert view.type == short and "i-0a1b2c3d4e5f67890" in view.nodes and words in view.summary
    assert "i-0a1b2c3d4e5f67890" in row.subject and words in row.what
    assert facts_of(event, ProjectionConfig()).instance_ids == {"i-0a1b2c3d4e5f67890"}
