"""Hostile records, one named class each, made from the real AWS samples in tests/fixtures/aws_events
(their sources are in that folder's README). Each broke a consumer or replay once (issue 15): a bad record
must be parked (or left out of a replay) while the records around it are applied.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

AWS_EVENTS = Path(__file__).parent / "fixtures" / "aws_events"
KINESIS_MAX_RECORD = 1_000_000  # bytes of data in one record (with its partition key: 1 MiB)


def sample(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((AWS_EVENTS / f"{name}.json").read_text())
    return loaded


def real_samples() -> dict[str, dict[str, Any]]:
    return {path.stem: sample(path.stem) for path in sorted(AWS_EVENTS.glob("*.json"))}


def _stopped_task(edit: Callable[[dict[str, Any]], None]) -> bytes:
    event = copy.deepcopy(sample("task_state_change_gpu_stopped_xid"))
    edit(event)
    return json.dumps(event).encode()


def _node(edit: Callable[[dict[str, Any]], None]) -> bytes:
    event = copy.deepcopy(sample("container_instance_state_change_gpu"))
    edit(event)
    return json.dumps(event).encode()


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(event: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target = event
        for part in parents:
            target = target[part]
        target[last] = value

    return edit


def _completed_in_year_9999(event: dict[str, Any]) -> None:
    # Every container exited 0: the job completes, and its expiry (event time + TTL) is past year 9999.
    event["time"] = "9999-12-31T23:59:59Z"
    for container in event["detail"]["containers"]:
        container["exitCode"] = 0


def _nested(depth: int) -> Any:
    value: Any = "bottom"
    for _ in range(depth):
        value = {"deeper": value}
    return value


def _deeply_nested_json(depth: int = 100_000) -> bytes:
    """An event whose detail holds JSON nested far deeper than any parser's stack."""
    head = b'{"version":"0","detail-type":"ECS Task State Change","source":"aws.ecs","detail":'
    return head + b'{"a":' * depth + b"1" + b"}" * depth + b"}"


def _lone_surrogate_group() -> bytes:
    # JSON may spell a lone UTF-16 surrogate as an escape; Python then holds a str that is not valid UTF-8.
    text = _stopped_task(_set("detail.group", "job:PLACEHOLDER")).decode()
    return text.replace("job:PLACEHOLDER", "job:\\ud800llama").encode()


def _big_reason(size: int) -> bytes:
    return _stopped_task(_set("detail.stoppedReason", "x" * size))


HOSTILE: dict[str, Callable[[], bytes]] = {
    "deeply_nested_json": _deeply_nested_json,
    "nested_deeper_than_dynamodb_allows": lambda: _stopped_task(
        _set("detail.overrides.containerOverrides", [{"name": "trainer", "extra": _nested(40)}])),
    "time_in_year_9999": lambda: _stopped_task(_completed_in_year_9999),
    "time_0001_01_01_plus_one_hour": lambda: _stopped_task(_set("time", "0001-01-01T00:00:00+01:00")),
    "detail_version_10_to_the_40": lambda: _stopped_task(_set("detail.version", 10**40)),
    "empty_task_arn": lambda: _stopped_task(_set("detail.taskArn", "")),
    "empty_container_instance_arn": lambda: _node(_set("detail.containerInstanceArn", "")),
    "group_of_3000_characters": lambda: _stopped_task(_set("detail.group", "job:" + "g" * 3000)),
    "lone_surrogate_in_group": _lone_surrogate_group,
    "event_of_900_kb": lambda: _big_reason(900_000),
    "garbage_of_1_mb": lambda: b"\x00\xff" * (KINESIS_MAX_RECORD // 2),
    # Found by the fuzz test: an attribute named "" becomes an empty map key, which DynamoDB refuses.
    "empty_attribute_name": lambda: _node(lambda event: event["detail"]["attributes"].append({"name": ""})),
}

# What only a DynamoDB write refuses (a Number past 38 digits, an item over 400 KB, nesting past 32 levels,
# an empty map key):
# replay leaves out the rest as it reads, and reports these as items not written to a DynamoDB target.
DYNAMODB_ONLY = frozenset({"event_of_900_kb", "nested_deeper_than_dynamodb_allows",
                           "empty_attribute_name"})

# Records in which nothing is wrong, to surround the hostile ones: each must be applied.
GOOD_SAMPLES = ("task_state_change_gpu_running", "container_instance_state_change_gpu",
                "task_state_change_docs_ec2_running")


def good_records() -> list[bytes]:
    return [json.dumps(sample(name)).encode() for name in GOOD_SAMPLES]
