"""The command line a user runs: startup stays light, schema export writes the contract."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def test_help_does_not_import_boto3_moto_or_cdk() -> None:
    code = ("import sys; from gpu_recovery.cli import build_parser; build_parser().format_help(); "
            "print(sorted(m for m in ('boto3', 'moto', 'aws_cdk', 'pydantic') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert json.loads(out.replace("'", '"')) == []


def test_schema_export_writes_a_schema_per_type_and_an_index(tmp_path: Path) -> None:
    from gpu_recovery.cli import main

    assert main(["schema", "export", str(tmp_path)]) == 0
    index = json.loads((tmp_path / "index.json").read_text())
    types = {entry["type"]: entry for entry in index["event_types"]}
    assert types["HealthCheckReported"]["schema_version"] == 3
    assert types["HealthCheckReported"]["upcasts_from"] == [1, 2]
    for entry in [*index["event_types"], *index["aws_events"]]:
        schema = json.loads((tmp_path / entry["schema"]).read_text())
        assert schema["type"] == "object" and schema["properties"]


def test_config_error_exits_2_with_the_setting_named(monkeypatch: object, capsys: object) -> None:
    import pytest

    from gpu_recovery.cli import main

    mp = pytest.MonkeyPatch()
    mp.setenv("GPU_RECOVERY_STREAM_SHARDS", "zero")
    try:
        assert main(["demo", "--json"]) == 2
    finally:
        mp.undo()
    err = capsys.readouterr().err  # type: ignore[attr-defined]
    assert "stream_shards" in err and "GPU_RECOVERY_STREAM_SHARDS" in err
