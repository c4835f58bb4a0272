"""JSON Schema export of every event type on the stream, for analytics subscribers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from events_schema.aws import AWS_MODELS
from events_schema.envelope import Envelope
from events_schema.events import REGISTRY

# Every AWS event the ingest rules route, by detail-type.
AWS_TYPES = dict(AWS_MODELS)


def _slug(name: str) -> str:
    return name.lower().replace(" ", "-")


def schemas() -> dict[str, dict[str, Any]]:
    """file name -> JSON Schema, for the envelope, each of our types and each AWS event."""
    out: dict[str, dict[str, Any]] = {"envelope.schema.json": Envelope.model_json_schema()}
    for event_type in REGISTRY:
        schema = event_type.model.model_json_schema()
        schema["x-event-type"] = event_type.name
        schema["x-schema-version"] = event_type.version
        out[f"{event_type.name}.v{event_type.version}.schema.json"] = schema
    for detail_type, model in AWS_TYPES.items():
        schema = model.model_json_schema(by_alias=True)
        schema["x-detail-type"] = detail_type
        out[f"aws.{_slug(detail_type)}.schema.json"] = schema
    return out


def export_schemas(directory: str | Path) -> dict[str, Any]:
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    written = schemas()
    for name, schema in written.items():
        (folder / name).write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n")
    index = {
        "envelope": "envelope.schema.json",
        "event_types": [
            {"type": t.name, "schema_version": t.version, "schema": f"{t.name}.v{t.version}.schema.json",
             "upcasts_from": sorted(t.upcasters)}
            for t in REGISTRY
        ],
        "aws_events": [
            {"detail-type": d, "schema": f"aws.{_slug(d)}.schema.json"} for d in AWS_TYPES
        ],
    }
    (folder / "index.json").write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    return index
