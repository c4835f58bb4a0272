"""The docs stay true: docs/events.md is what the catalogue generates, and the example subscriber runs."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import boto3
import pytest
from pydantic import BaseModel, Field

from analytics import catalogue
from events_schema.envelope import Envelope
from events_schema.events import REGISTRY
from events_schema.partition import partition_key_for
from tests.analytics.scenario import history
from tests.analytics.test_report import record_bytes

ROOT = Path(__file__).resolve().parents[2]
EVENTS_MD = ROOT / "docs" / "events.md"
SUBSCRIBERS_MD = ROOT / "docs" / "subscribers.md"


def test_the_committed_catalogue_is_what_the_code_generates() -> None:
    # GIVEN the committed docs/events.md WHEN the catalogue is generated from events_schema THEN they are equal
    assert EVENTS_MD.read_text(encoding="utf-8") == catalogue.render(), (
        f"docs/events.md is out of date: run `{catalogue.REGENERATE}` and commit it")


def test_the_catalogue_module_prints_it() -> None:
    result = subprocess.run([sys.executable, "-m", "analytics.catalogue"], cwd=ROOT, capture_output=True,
                            text=True, check=True)
    assert result.stdout == catalogue.render()


def test_every_field_is_described_and_every_type_listed_with_its_version() -> None:
    assert catalogue.undocumented() == []
    text = catalogue.render()
    for event_type in REGISTRY:
        assert f"### {event_type.name} (v{event_type.version})" in text
        for name in event_type.model.model_fields:
            assert f"| `{name}` |" in text
    for detail_type in catalogue.AWS_EVENTS:
        assert f"### {detail_type}" in text
    assert "v1 -> v2: v1 had ``result``" in text  # HealthCheckReported's upcast history
    assert "`$.detail.containerInstanceArn`" in text and "Versioning policy" in text


def test_a_field_without_a_description_is_refused_with_what_to_do() -> None:
    class Undescribed(BaseModel):
        documented: int = Field(0, description="has one")
        mystery_field: int = 0

    with pytest.raises(catalogue.Undocumented, match=r"Undescribed\.mystery_field .*catalogue_notes\.py"):
        catalogue.field_rows(Undescribed)


def python_blocks(markdown: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", markdown, flags=re.DOTALL)


def test_the_example_subscriber_runs_against_the_embedded_stream(moto_server: str) -> None:
    # GIVEN the scenario history on a 2-shard stream of the embedded local AWS, keyed as in production
    client: Any = boto3.client("kinesis", endpoint_url=moto_server, region_name="us-east-1")
    stream = f"subscriber-{time.monotonic_ns()}"
    client.create_stream(StreamName=stream, ShardCount=2)
    for item in history():
        key = partition_key_for(item) if isinstance(item, Envelope) else item["detail"]["containerInstanceArn"]
        client.put_record(StreamName=stream, Data=record_bytes(item), PartitionKey=key)
    client.put_record(StreamName=stream, Data=b"{oops", PartitionKey="x")
    # WHEN the docs' example runs (as a module, not as __main__)
    [code] = python_blocks(SUBSCRIBERS_MD.read_text(encoding="utf-8"))
    namespace: dict[str, Any] = {"__name__": "docs_example"}
    exec(compile(code, str(SUBSCRIBERS_MD), "exec"), namespace)
    lines = namespace["closed_incidents"](client, stream)
    # THEN it names the four closed incidents with how long each was open, and the unreadable record
    assert sorted(lines) == [
        "inc-A on node0001: recovered after 0:07:50",
        "inc-B on node0003: quarantined after 0:06:40",
        "inc-C on node0005: application_fault after 0:01:35",
        "inc-D on node0003: escalated after 0:18:10",
        "unreadable record (not_json)",
    ]
