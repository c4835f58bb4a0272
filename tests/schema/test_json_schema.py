"""The exported JSON Schemas describe what is on the stream: every AWS kind we route, and each accepts the
AWS documentation's own examples and refuses what decode refuses in its declared fields."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from events_schema.aws import AWS_MODELS
from events_schema.json_schema import export_schemas, schemas
from tests.schema.hostile import HOSTILE

AWS_EVENTS = Path(__file__).parent.parent / "fixtures" / "aws_events"


def schema_for(detail_type: str) -> dict:
    return schemas()[f"aws.{detail_type.lower().replace(' ', '-')}.schema.json"]


def test_every_routed_aws_kind_has_a_schema_in_the_index(tmp_path: Path) -> None:
    index = export_schemas(tmp_path)
    exported = {entry["detail-type"]: entry["schema"] for entry in index["aws_events"]}
    assert set(exported) == set(AWS_MODELS)
    for name in exported.values():
        assert json.loads((tmp_path / name).read_text())["x-detail-type"] in AWS_MODELS


@pytest.mark.parametrize("path", sorted(AWS_EVENTS.glob("*.json")), ids=lambda p: p.name)
def test_each_real_event_is_valid_against_its_schema(path: Path) -> None:
    event = json.loads(path.read_text())
    jsonschema.validate(event, schema_for(event["detail-type"]))


@pytest.mark.parametrize("name", ["version_negative", "empty_task_arn", "group_3000_characters",
                                  "override_number_10_pow_40", "ec2_unknown_state"])
def test_the_schema_refuses_what_decode_refuses_in_declared_fields(name: str) -> None:
    event = json.loads(HOSTILE[name].data)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(event, schema_for(event["detail-type"]))
