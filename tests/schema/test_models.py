"""The AWS event models, our envelope, upcasting and the decoder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from events_schema.aws import ContainerInstanceHealthChange, ContainerInstanceStateChange, TaskStateChange, family_of
from events_schema.decode import MalformedRecord, decode, encode
from events_schema.envelope import OurEvent
from events_schema.events import HealthCheckReported

FIXTURES = Path(__file__).parent.parent / "fixtures"
AWS_FIXTURES = sorted((FIXTURES / "aws_events").glob("*.json"))
MODEL_BY_PREFIX = {
    "task_state_change": TaskStateChange,
    "container_instance_state_change": ContainerInstanceStateChange,
    "container_instance_health_change": ContainerInstanceHealthChange,
}


def _model_for(path: Path) -> type:
    return next(model for prefix, model in MODEL_BY_PREFIX.items() if path.name.startswith(prefix))


def test_there_are_fixtures_of_every_kind() -> None:
    kinds = {_model_for(path) for path in AWS_FIXTURES}
    assert kinds == set(MODEL_BY_PREFIX.values())


@pytest.mark.parametrize("path", AWS_FIXTURES, ids=lambda p: p.name)
def test_every_aws_fixture_decodes_to_its_model_and_round_trips(path: Path) -> None:
    # GIVEN a real ECS event as EventBridge delivers it
    raw = json.loads(path.read_text())
    # WHEN it is decoded from the record bytes
    event = decode(path.read_bytes())
    # THEN it is the right model, and encoding gives back every field AWS sent (unknown ones too)
    assert isinstance(event, _model_for(path))
    again = json.loads(encode(event))
    assert set(again["detail"]) == set(raw["detail"])
    assert again["detail-type"] == raw["detail-type"] and again["resources"] == raw["resources"]


def test_gpu_fields_are_read() -> None:
    paths = [p for p in AWS_FIXTURES if "gpu" in p.name and p.name.startswith("task_state_change")]
    events = [decode(p.read_bytes()) for p in paths]
    assert events, "GPU task fixtures are missing"
    assert any(isinstance(e, TaskStateChange) and e.detail.gpu_ids for e in events)


def test_unknown_fields_are_kept() -> None:
    raw = json.loads(AWS_FIXTURES[0].read_text())
    raw["detail"]["someFieldAwsAddsIn2027"] = {"nested": [1, 2]}
    event = decode(json.dumps(raw).encode())
    assert json.loads(encode(event))["detail"]["someFieldAwsAddsIn2027"] == {"nested": [1, 2]}


def test_v1_health_report_is_upcast_to_the_current_version() -> None:
    # GIVEN a health report written by the v1 agent
    event = decode((FIXTURES / "our_events" / "health_check_reported_v1.json").read_bytes())
    # THEN readers see today's model
    assert isinstance(event, OurEvent) and isinstance(event.data, HealthCheckReported)
    assert event.envelope.schema_version == HealthCheckReported.VERSION == 3
    assert event.data.verdict == "hardware_fault" and event.data.recommended_action == "reboot"
    assert [(x.xid, x.count) for x in event.data.xids] == [(48, 2), (64, 1)]


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (b"\xff\xfe not json", "not_json"),
        (b"[1, 2]", "not_json"),
        (b'{"hello": "world"}', "unknown_event"),
        (b'{"detail-type": "ECS Service Action", "detail": {}}', "unknown_event"),
        (b'{"type": "SomethingNew", "schema_version": 1, "event_id": "x", "time": "2026-01-01T00:00:00Z",'
         b' "source": "s"}', "unknown_event"),
        (b'{"detail-type": "ECS Task State Change", "source": "aws.ecs", "id": "1", "account": "1",'
         b' "time": "2026-01-01T00:00:00Z", "region": "r", "detail": {"taskArn": "t"}}', "invalid"),
        (b'{"type": "HealthCheckReported", "schema_version": 9, "event_id": "x",'
         b' "time": "2026-01-01T00:00:00Z", "source": "s", "data": {}}', "invalid"),
    ],
)
def test_malformed_records_say_why(data: bytes, kind: str) -> None:
    with pytest.raises(MalformedRecord) as caught:
        decode(data)
    assert caught.value.kind == kind


def test_family_is_exact() -> None:
    assert family_of("arn:aws:ecs:us-west-2:1:task-definition/llm-train:10") == "llm-train"
    assert family_of("arn:aws:ecs:us-west-2:1:task-definition/llm-train-2:1") == "llm-train-2"


@pytest.mark.parametrize("path", [*AWS_FIXTURES, FIXTURES / "our_events" / "health_check_reported_v1.json"],
                         ids=lambda p: p.name)
def test_decoding_the_bytes_equals_decoding_the_parsed_dict(path: Path) -> None:
    # GIVEN a record's bytes, and the same record parsed by json.loads
    from events_schema.decode import decode_mapping

    data = path.read_bytes()
    # WHEN both are decoded (bytes go through pydantic's JSON parser, the dict through the model)
    from_bytes, from_dict = decode(data), decode_mapping(json.loads(data))
    # THEN the events are equal, field for field, as text too, and encode to the same bytes
    assert from_bytes == from_dict
    assert decode(data.decode()) == from_dict
    assert encode(from_bytes) == encode(from_dict)
    fields_set = [e.envelope.model_fields_set if isinstance(e, OurEvent) else e.model_fields_set
                  for e in (from_bytes, from_dict)]
    assert fields_set[0] == fields_set[1]
