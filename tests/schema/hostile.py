"""Named hostile records, one per class that crashed the consumers on main (issue 15), each made from a real
AWS event (tests/fixtures/aws_events) or a real envelope of ours, with what ``decode`` must answer.

Other tests may feed them to the projector, the recovery and replay: ``HOSTILE`` by name, ``data`` the
record's bytes.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from events_schema.bounds import MAX_RECORD_BYTES

FIXTURES = Path(__file__).parent.parent / "fixtures"
TASK = "aws_events/task_state_change_gpu_stopped_xid.json"
NODE = "aws_events/container_instance_state_change_gpu.json"
HEALTH = "aws_events/aws_health_event_gpu_system_reboot_maintenance.json"
EC2 = "aws_events/ec2_instance_state_change_gpu_stopped.json"
OURS = "our_events/health_check_reported_v1.json"


@dataclass(frozen=True)
class Hostile:
    name: str
    data: bytes
    kind: str  # the MalformedRecord kind decode must raise
    names: str  # what the MalformedRecord's detail must mention (the field, or the reason)


def load(fixture: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((FIXTURES / fixture).read_text())
    return loaded


def mutated(fixture: str, change: Callable[[dict[str, Any]], None]) -> bytes:
    event = copy.deepcopy(load(fixture))
    change(event)
    return json.dumps(event).encode()


def setting(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """``detail.containers.0.exitCode`` -> set that place in the event to ``value``."""
    *parents, last = path.split(".")

    def change(event: dict[str, Any]) -> None:
        node: Any = event
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        node[int(last) if isinstance(node, list) else last] = value

    return change


def nested(depth: int) -> Any:
    value: Any = []
    for _ in range(depth - 1):
        value = [value]
    return value


def _cases() -> list[Hostile]:
    huge, surrogate = 10**40, "job-\ud800"
    return [
        # nesting: never a RecursionError
        Hostile("deep_nesting_100k_levels", b"[" * 100_000 + b"]" * 100_000, "not_json", "recursion"),
        Hostile("deep_nesting_in_an_unknown_field", mutated(TASK, setting("detail.x", nested(300))), "invalid",
                "detail.x"),
        # times: never an OverflowError
        Hostile("time_year_1_with_offset", mutated(TASK, setting("detail.updatedAt", "0001-01-01T00:00:00+01:00")),
                "invalid", "detail.updatedAt"),
        Hostile("time_year_9999", mutated(TASK, setting("detail.stoppedAt", "9999-12-31T23:59:59Z")), "invalid",
                "detail.stoppedAt"),
        Hostile("time_year_9999_without_timezone", mutated(TASK, setting("detail.createdAt", "9999-06-03T08:16:44")),
                "invalid", "detail.createdAt"),
        Hostile("time_as_a_huge_unix_timestamp", mutated(TASK, setting("detail.createdAt", 10**20)), "invalid",
                "detail.createdAt"),
        Hostile("envelope_time_year_9999", mutated(NODE, setting("time", "9999-12-31T23:59:59Z")), "invalid", "time"),
        Hostile("health_start_time_year_9999", mutated(HEALTH, setting("detail.startTime",
                                                                        "Fri, 31 Dec 9999 23:59:59 GMT")),
                "invalid", "detail.startTime"),
        Hostile("health_start_time_garbage", mutated(HEALTH, setting("detail.startTime", "soon")), "invalid",
                "detail.startTime"),
        Hostile("our_envelope_time_year_9999", mutated(OURS, setting("time", "9999-12-31T23:59:59Z")), "invalid",
                "time"),
        # numbers: within DynamoDB's Number and sane for their meaning
        Hostile("version_10_pow_40", mutated(TASK, setting("detail.version", huge)), "invalid", "detail.version"),
        Hostile("version_negative", mutated(NODE, setting("detail.version", -1)), "invalid", "detail.version"),
        Hostile("exit_code_10_pow_40", mutated(TASK, setting("detail.containers.0.exitCode", huge)), "invalid",
                "detail.containers.0.exitCode"),
        Hostile("override_number_10_pow_40", mutated(TASK, setting("detail.overrides.containerOverrides.0.cpu", huge)),
                "invalid", "detail.overrides.containerOverrides.0.cpu"),
        Hostile("override_nan", mutated(TASK, setting("detail.overrides.memory", float("nan"))), "invalid",
                "detail.overrides.memory"),
        Hostile("our_upcaster_given_an_overflowing_xid", mutated(OURS, setting("data.xids", [float("inf")])),
                "invalid", "HealthCheckReported"),
        Hostile("our_upcaster_given_xids_of_the_wrong_shape", mutated(OURS, setting("data.xids", 5)), "invalid",
                "HealthCheckReported"),
        # identifiers: non-empty and within DynamoDB's key limits (ECS's own for a group)
        Hostile("empty_task_arn", mutated(TASK, setting("detail.taskArn", "")), "invalid", "detail.taskArn"),
        Hostile("empty_container_instance_arn", mutated(NODE, setting("detail.containerInstanceArn", "")), "invalid",
                "detail.containerInstanceArn"),
        Hostile("group_3000_characters", mutated(TASK, setting("detail.group", "g" * 3000)), "invalid",
                "detail.group"),
        Hostile("group_256_characters", mutated(TASK, setting("detail.group", "g" * 256)), "invalid", "detail.group"),
        Hostile("task_arn_2000_characters", mutated(TASK, setting("detail.taskArn", "t" * 2000)), "invalid",
                "detail.taskArn"),
        Hostile("ec2_empty_instance_id", mutated(EC2, setting("detail.instance-id", "")), "invalid",
                "detail.instance-id"),
        Hostile("ec2_unknown_state", mutated(EC2, setting("detail.state", "exploded")), "invalid", "detail.state"),
        Hostile("our_empty_subject_node", mutated(OURS, setting("subject.node", "")), "invalid", "subject.node"),
        # text: valid UTF-8, never a UnicodeEncodeError downstream
        Hostile("lone_surrogate_in_group", mutated(TASK, setting("detail.group", surrogate)), "invalid",
                "detail.group"),
        Hostile("lone_surrogate_in_an_unknown_field", mutated(TASK, setting("detail.note", surrogate)), "invalid",
                "detail.note"),
        Hostile("invalid_utf8_bytes", mutated(TASK, setting("detail.group", "GROUP")).replace(b"GROUP", b"\xff\xfe"),
                "not_json", "utf-8"),
        # size: what Kinesis carries
        Hostile("record_over_1_mib", mutated(TASK, setting("detail.padding", "x" * MAX_RECORD_BYTES)), "invalid",
                "record"),
    ]


HOSTILE: dict[str, Hostile] = {case.name: case for case in _cases()}
