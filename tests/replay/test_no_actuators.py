"""Replay never acts: no actuator or recovery module in its import graph, no ECS/EC2/SSM/SNS call."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.client import BaseClient

from consumers.adapters.dynamodb import create_tables
from gpu_recovery.cli import main
from gpu_recovery.settings import load_settings
from tests.replay.histories import ALPHA, INCIDENT, incident_story, put_records, write_jsonl

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = ("consumers.adapters.actuators", "consumers.recovery", "gpu_recovery.wiring")
ACTING_SERVICES = frozenset({"ecs", "ec2", "ssm", "sns"})
REPLAY_CODE = [*sorted((ROOT / "replay").rglob("*.py")),
               ROOT / "gpu_recovery" / "commands" / "replay.py", ROOT / "gpu_recovery" / "commands" / "audit.py"]


def _forbidden(module: str) -> bool:
    # Prefixes, as in the rule "consumers/adapters/actuators*, consumers/recovery*": submodules and
    # siblings such as consumers/recovery_x.py are covered too.
    return module.startswith(FORBIDDEN)


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "import_module" and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            names.add(node.args[0].value)
    return names


@pytest.mark.parametrize("path", REPLAY_CODE, ids=lambda p: str(p.relative_to(ROOT)))
def test_replay_code_names_no_actuator_module(path: Path) -> None:
    # GIVEN every import statement in the replay code, lazy ones inside functions included
    # THEN none names an actuator, the recovery consumer, or the wiring that builds them
    assert sorted(name for name in _imports(path) if _forbidden(name)) == []


GUARD = r"""
import importlib, json, pkgutil, sys, traceback
FORBIDDEN = {forbidden!r}
attempts = []

class Guard:
    def find_spec(self, name, path=None, target=None):
        if name.startswith(FORBIDDEN):
            attempts.append({{"module": name, "by": traceback.format_stack(limit=12)[-6:-1]}})
        return None

sys.meta_path.insert(0, Guard())
import replay
for info in pkgutil.walk_packages(replay.__path__, "replay."):
    importlib.import_module(info.name)
from consumers.adapters.dynamodb import create_tables
from gpu_recovery.cli import main
codes = [main(argv) for argv in {argvs!r}]
during = list(attempts)
loaded = sorted(m for m in sys.modules if m.startswith(FORBIDDEN))
try:
    importlib.import_module("consumers.recovery")  # proves the guard sees an import when there is one
except ImportError:
    pass
print(json.dumps({{"codes": codes, "during": during, "loaded": loaded, "guard_works": len(attempts) > len(during)}}))
"""


def test_a_replay_and_an_audit_import_no_actuator_module(tmp_path: Path) -> None:
    # GIVEN a fresh interpreter that records every attempt to import a forbidden module
    history = write_jsonl(tmp_path / "h.jsonl", incident_story())
    argvs = [
        ["replay", "--source", f"file:{history}", "--target", f"file:{tmp_path / 'o.json'}", "--no-progress"],
        ["audit", "--incident", INCIDENT, "--source", f"file:{history}", "--json", "--html", str(tmp_path / "a.html")],
    ]
    script = GUARD.format(forbidden=FORBIDDEN, argvs=argvs)
    # WHEN it imports every replay module and runs a replay and an audit
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    # THEN both succeed, no forbidden module was even looked for, and the guard itself works
    assert result["codes"] == [0, 0]
    assert result["during"] == [], json.dumps(result["during"], indent=1)
    assert result["loaded"] == []
    assert result["guard_works"]


@pytest.fixture
def api_calls(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Every AWS API call any boto3 client in this process makes, as ``service.Operation``."""
    calls: Counter[str] = Counter()
    original = BaseClient._make_api_call

    def counting(self: BaseClient, operation: str, params: Any) -> Any:
        calls[f"{self.meta.service_model.service_name}.{operation}"] += 1
        return original(self, operation, params)

    monkeypatch.setattr(BaseClient, "_make_api_call", counting)
    return calls


def test_replay_and_audit_from_the_stream_make_no_acting_call(
    moto_server: str, tmp_path: Path, api_calls: Counter[str], capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN the story in a stream on the embedded moto server, and live tables to verify against
    # (named for this test: the server is shared by the whole session)
    stream = f"replay-{uuid.uuid4().hex[:8]}"
    for variable in ("TASK_TABLE_NAME", "JOB_TABLE_NAME", "NODE_TABLE_NAME", "GPU_RECOVERY_STATE_TABLE"):
        monkeypatch.setenv(variable, f"{stream}-{variable.split('_')[0].lower()}")
    settings = load_settings(endpoint_url=moto_server)
    create_tables(boto3.client("dynamodb", endpoint_url=moto_server, region_name="us-east-1"),
                  {**settings.projection_tables(), "recovery": settings.recovery_table})
    kinesis = boto3.client("kinesis", endpoint_url=moto_server, region_name="us-east-1")
    kinesis.create_stream(StreamName=stream, ShardCount=3)
    kinesis.get_waiter("stream_exists").wait(StreamName=stream, WaiterConfig={"Delay": 1})
    put_records(kinesis, stream, incident_story())
    api_calls.clear()
    # (threads: a reader process's calls would not pass through this process's clients)
    common = ["--endpoint-url", moto_server, "--stream-name", stream, "--source", "stream", "--reader", "thread"]
    # WHEN replayed into shadow tables with --verify, into a file, and audited
    assert main(["replay", *common, "--verify", "--no-progress", "--json"]) == 1  # live tables are empty
    assert main(["replay", *common, "--target", f"file:{tmp_path / 'o.json'}", "--no-progress"]) == 0
    assert main(["audit", *common, "--job", ALPHA, "--json"]) == 0
    capsys.readouterr()
    # THEN it read the stream and wrote DynamoDB, and never called ECS, EC2, SSM or SNS
    services = {call.split(".")[0] for call in api_calls}
    assert {"kinesis", "dynamodb"} <= services
    assert sorted(c for c in api_calls if c.split(".")[0] in ACTING_SERVICES) == []
    # AND the stream replay folded the whole story
    assert json.loads((tmp_path / "o.json").read_text())["ecs_job"][0]["job_id"] == ALPHA
