"""The AWS event models, our envelope, upcasting and the decoder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from events_schema.aws import (
    AwsHealthEvent,
    ContainerInstanceHealthChange,
    ContainerInstanceStateChange,
    Ec2InstanceStateChange,
    TaskStateChange,
    family_of,
    to_wire,
)
from events_schema.decode import MalformedRecord, decode, decode_mapping, encode
from events_schema.envelope import OurEvent
from events_schema.events import HealthCheckReported

FIXTURES = Path(__file__).parent.parent / "fixtures"
AWS_FIXTURES = sorted((FIXTURES / "aws_events").glob("*.json"))
MODEL_BY_PREFIX = {
    "task_state_change": TaskStateChange,
    "container_instance_state_change": ContainerInstanceStateChange,
    "container_instance_health_change": ContainerInstanceHealthChange,
    "aws_health_event": AwsHealthEvent,
    "ec2_instance_state_change": Ec2InstanceStateChange,
}
# The AWS documentation's own example of every event kind we route (their sources: the fixtures' README).
DOCS_EXAMPLES = sorted(p for p in AWS_FIXTURES if "_docs" in p.name)


def _model_for(path: Path) -> type:
    return next(model for prefix, model in MODEL_BY_PREFIX.items() if path.name.startswith(prefix))


def test_there_are_fixtures_of_every_kind_and_a_docs_example_of_each() -> None:
    kinds = {_model_for(path) for path in AWS_FIXTURES}
    assert kinds == set(MODEL_BY_PREFIX.values())
    assert {_model_for(path) for path in DOCS_EXAMPLES} == set(MODEL_BY_PREFIX.values())


def test_every_docs_example_is_named_with_its_source_in_the_readme() -> None:
    readme = (FIXTURES / "aws_events" / "README.md").read_text()
    for path in DOCS_EXAMPLES:
        line = next((line for line in readme.splitlines() if f"`{path.name}`" in line), "")
        assert "https://docs.aws.amazon.com/" in line or "awsdocs/" in line, f"{path.name}: no source in README"


@pytest.mark.parametrize("path", DOCS_EXAMPLES, ids=lambda p: p.name)
def test_every_docs_example_round_trips_byte_for_byte(path: Path) -> None:
    # GIVEN the bytes of an AWS documentation example, exactly as EventBridge would deliver them
    data = path.read_bytes()
    # WHEN they are decoded and encoded again (as bytes and as text)
    event = decode(data)
    # THEN the record is the same, byte for byte (".8Z" stays ".8Z"), and to_wire gives AWS's own values
    assert encode(event) == data
    assert encode(decode(data.decode())) == data
    assert to_wire(event) == json.loads(data)


@pytest.mark.parametrize("path", AWS_FIXTURES, ids=lambda p: p.name)
def test_every_aws_fixture_decodes_to_its_model_and_round_trips(path: Path) -> None:
    # GIVEN a real AWS event as EventBridge delivers it
    raw = json.loads(path.read_text())
    # WHEN it is decoded from the record bytes, and built from the parsed dict (no record to give back)
    event = decode(path.read_bytes())
    from_fields = _model_for(path).model_validate(raw)
    # THEN it is the right model, and encoding from the fields gives back every field AWS sent (unknown too)
    assert isinstance(event, _model_for(path))
    again = json.loads(encode(from_fields))
    assert set(again) == set(raw) and set(again["detail"]) == set(raw["detail"])
    assert again["detail-type"] == raw["detail-type"] and again.get("resources") == raw.get("resources")


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
    data = path.read_bytes()
    # WHEN both are decoded (bytes go through pydantic's JSON parser, the dict through the model)
    from_bytes, from_dict = decode(data), decode_mapping(json.loads(data))
    # THEN the events are equal, field for field, as text too, and encode to the same bytes
    assert from_bytes == from_dict
    assert decode(data.decode()) == from_dict
    assert decode(encode(from_dict)) == from_dict
    fields_set = [e.envelope.model_fields_set if isinstance(e, OurEvent) else e.model_fields_set
                  for e in (from_bytes, from_dict)]
    assert fields_set[0] == fields_set[1]


def test_fractional_seconds_are_kept_as_delivered() -> None:
    # GIVEN a task event whose times have one decimal (as ECS writes them: "...:44.8Z")
    raw = json.loads((FIXTURES / "aws_events" / "task_state_change_gpu_running.json").read_text())
    raw["detail"]["updatedAt"] = "2025-06-03T08:16:44.8Z"
    data = json.dumps(raw, indent=1).encode()
    # WHEN it is decoded and encoded
    event = decode(data)
    # THEN the record comes back unchanged, while readers get the parsed time
    assert encode(event) == data and b'"2025-06-03T08:16:44.8Z"' in encode(event)
    assert isinstance(event, TaskStateChange) and event.detail.updatedAt is not None
    assert event.detail.updatedAt.microsecond == 800_000


def test_a_changed_copy_is_encoded_from_its_fields_not_the_old_bytes() -> None:
    # GIVEN a decoded event WHEN code changes a field of a copy
    event = decode((FIXTURES / "aws_events" / "task_state_change_gpu_running.json").read_bytes())
    assert isinstance(event, TaskStateChange)
    changed = event.model_copy(update={"region": "eu-west-1"})
    # THEN the copy encodes its own fields; an unchanged copy still is the record
    assert json.loads(encode(changed))["region"] == "eu-west-1"
    assert encode(event.model_copy()) == encode(event)


def test_an_event_built_in_code_encodes_its_fields() -> None:
    raw = json.loads((FIXTURES / "aws_events" / "ec2_instance_state_change_gpu_stopped.json").read_text())
    event = Ec2InstanceStateChange.model_validate(raw)
    assert json.loads(encode(event))["detail"] == {"instance-id": "i-0a1b2c3d4e5f67890", "state": "stopped"}


def test_a_parsed_record_keeps_the_values_it_was_given() -> None:
    # GIVEN a parsed task event whose times have milliseconds (".000Z", as tail's JSON lines carry them)
    raw = json.loads((FIXTURES / "aws_events" / "task_state_change_gpu_running.json").read_text())
    raw["detail"]["updatedAt"] = "2025-06-03T08:16:44.000Z"
    # WHEN it is decoded from the dict THEN to_wire gives back those very values, and encode writes them
    event = decode_mapping(raw)
    assert to_wire(event) == raw and json.loads(encode(event)) == raw


def test_aws_health_gives_the_instances_and_the_window() -> None:
    # GIVEN the docs' retirement example (entity named by its instance ARN, no resources, no end time)
    docs = decode((FIXTURES / "aws_events" / "aws_health_event_docs_ec2_instance_retirement.json").read_bytes())
    # AND a maintenance window on our GPU node A (entity named by its id, also in resources)
    ours = decode((FIXTURES / "aws_events" / "aws_health_event_gpu_system_reboot_maintenance.json").read_bytes())
    assert isinstance(docs, AwsHealthEvent) and isinstance(ours, AwsHealthEvent)
    # THEN each gives its instance ids once, and the window as aware UTC times
    assert docs.instance_ids == ["i-1234567890abcdef0"]
    assert ours.instance_ids == ["i-0a1b2c3d4e5f67890"]
    assert docs.detail.start_time.isoformat() == "2026-08-27T13:19:03+00:00" and docs.detail.end_time is None
    assert ours.detail.end_time is not None and ours.detail.end_time.isoformat() == "2025-06-17T04:00:00+00:00"
    assert docs.detail.eventTypeCode == "AWS_EC2_INSTANCE_RETIREMENT_SCHEDULED"


def test_aws_health_names_no_instances_for_other_services_or_other_entities() -> None:
    raw = json.loads((FIXTURES / "aws_events" / "aws_health_event_gpu_system_reboot_maintenance.json").read_text())
    raw["detail"]["affectedEntities"].append({"entityValue": "some_instance_id"})
    raw["detail"]["affectedEntities"].append({"entityValue": "arn:aws:ec2:us-west-2:1:instance/i-0fedcba987654321f"})
    event = decode_mapping(raw)
    assert isinstance(event, AwsHealthEvent)
    assert event.instance_ids == ["i-0a1b2c3d4e5f67890", "i-0fedcba987654321f"]
    raw["detail"]["service"] = "RDS"
    other = decode_mapping(raw)
    assert isinstance(other, AwsHealthEvent) and other.instance_ids == []


def test_ec2_state_change_gives_its_instance() -> None:
    event = decode((FIXTURES / "aws_events" / "ec2_instance_state_change_docs_pending.json").read_bytes())
    assert isinstance(event, Ec2InstanceStateChange)
    assert event.instance_ids == ["i-1234567890abcdef0"] and event.detail.state == "pending"
    assert event.version == "0"  # the docs' example has no "version": the envelope's default
