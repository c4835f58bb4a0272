"""On the embedded stack (moto's server): hostile records on the stream, ``consume projector --engine local
--until-idle`` parks each and projects the rest, ``parked list|show|redrive`` shows them and puts them back
once; ``replay --source file:F`` of the same records exits 0, reports each bad one by reason, projects the good."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from consumers.adapters.dynamodb import DynamoParkingLot, DynamoProjectionStore
from gpu_recovery.aws import AwsClients
from gpu_recovery.cli import main
from gpu_recovery.settings import Settings, load_settings
from local.provision import provision
from tests.factories import REGION, task_arn, task_event
from tests.hostile import DYNAMODB_ONLY, HOSTILE, sample

# Kinesis allows one record of up to 1 MB: every hostile class goes on the stream as it is.
GOOD = [json.dumps(task_event(n, node=n, version=2)).encode() for n in range(1, 4)]


@pytest.fixture
def stack(moto_server: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """A stream of two shards and tables of this test's own, on the session's moto server."""
    run = uuid.uuid4().hex[:8]
    names = {"GPU_RECOVERY_STREAM_NAME": f"events-{run}", "TASK_TABLE_NAME": f"task-{run}",
             "JOB_TABLE_NAME": f"job-{run}", "NODE_TABLE_NAME": f"node-{run}",
             "GPU_RECOVERY_PARKED_TABLE": f"parked-{run}", "GPU_RECOVERY_STATE_TABLE": f"state-{run}",
             "GPU_RECOVERY_LEDGER_TABLE": f"ledger-{run}", "GPU_RECOVERY_CHECKPOINT_TABLE": f"checkpoints-{run}",
             "GPU_RECOVERY_STREAM_SHARDS": "2", "GPU_RECOVERY_METRICS": "false",
             # The factories' cluster is ours: another cluster's events would be parked as foreign_cluster.
             "GPU_RECOVERY_REGION": REGION}
    for name, value in names.items():
        monkeypatch.setenv(name, value)
    settings = load_settings(endpoint_url=moto_server)
    provision(AwsClients(settings))
    yield settings


def put(settings: Settings, bodies: list[bytes]) -> list[str]:
    kinesis = AwsClients(settings).client("kinesis")
    return [str(kinesis.put_record(StreamName=settings.stream_name, Data=body, PartitionKey=f"k{i % 5}")
                ["SequenceNumber"]) for i, body in enumerate(bodies)]


def cli(settings: Settings, *argv: str) -> int:
    return main([*argv, "--endpoint-url", str(settings.endpoint_url)])


def hostile_then_good() -> list[bytes]:
    return [body for name in sorted(HOSTILE) for body in (HOSTILE[name](), GOOD[0])] + GOOD[1:]


def test_consume_until_idle_parks_every_bad_record_and_projects_the_rest(stack: Settings, capsys: Any) -> None:
    # GIVEN every hostile class and good records on the stream
    sequence = put(stack, hostile_then_good())
    # WHEN the projector drains the stream to its tip
    assert cli(stack, "consume", "projector", "--engine", "local", "--until-idle") == 0
    assert f"{len(sequence)} records read, every shard at its tip" in capsys.readouterr().err
    # THEN the good tasks are in the table and each hostile record is parked
    clients = AwsClients(stack)
    store = DynamoProjectionStore(clients.client("dynamodb"), stack.projection_tables())
    assert sorted(t["task_arn"] for t in store.scan_table("ecs_task")) == [task_arn(n) for n in range(1, 4)]
    parked = DynamoParkingLot(clients.client("dynamodb"), stack.parked_table).list("projector")
    assert len(parked) == len(HOSTILE)
    # AND a second run finds nothing new (checkpoints held)
    assert cli(stack, "consume", "projector", "--engine", "local", "--until-idle") == 0
    assert "0 records read" in capsys.readouterr().err


def test_consume_until_idle_exits_1_when_a_shard_had_to_stop(stack: Settings, monkeypatch: pytest.MonkeyPatch,
                                                              capsys: Any) -> None:
    # GIVEN a bad record and no parked-records table to put it in
    put(stack, [b"garbage", GOOD[0]])
    monkeypatch.setenv("GPU_RECOVERY_PARKED_TABLE", "no-such-table")
    # WHEN drained THEN the shard stops where it was, and the command says so with exit 1
    assert cli(stack, "consume", "projector", "--engine", "local", "--until-idle") == 1
    assert "a shard had to stop" in capsys.readouterr().err


def test_parked_list_show_and_redrive_once(stack: Settings, capsys: Any) -> None:
    put(stack, [GOOD[0], b"\x00\x01 not json", HOSTILE["time_0001_01_01_plus_one_hour"](),
                HOSTILE["garbage_of_1_mb"]()])
    assert cli(stack, "consume", "projector", "--engine", "local", "--until-idle") == 0
    capsys.readouterr()
    # WHEN listed THEN by reason, then time
    assert cli(stack, "parked", "list", "--json") == 0
    rows = json.loads(capsys.readouterr().out)
    # (a time in year 1 is refused by the decoder's bounds: invalid, naming the field)
    assert [r["reason_kind"] for r in rows] == ["invalid", "not_json", "not_json"]
    assert "data_b64" not in rows[0] and "time" in rows[0]["reason"]
    assert cli(stack, "parked", "list") == 0
    table = capsys.readouterr().out
    assert "invalid: 1, not_json: 2" in table
    # WHEN one is shown THEN its bytes are decoded (JSON indented); moto numbers each shard from 1, so
    # a number may be on both shards: --shard tells them apart
    invalid = rows[0]["sequence_number"]
    assert cli(stack, "parked", "show", invalid, "--shard", rows[0]["shard_id"]) == 0
    shown = capsys.readouterr().out
    assert "--- data (json) ---" in shown and '"time": "0001-01-01T00:00:00+01:00"' in shown
    not_json = next(r for r in rows if r["size"] == len(b"\x00\x01 not json"))
    assert cli(stack, "parked", "show", not_json["sequence_number"], "--shard", not_json["shard_id"]) == 0
    assert "00000000  00 01 20 6e 6f 74" in capsys.readouterr().out  # not UTF-8 JSON: a hex dump
    # WHEN redriven by reason THEN put back once; the 1 MB one only with its archive copy
    assert cli(stack, "parked", "redrive", "--reason", "not_json", "--json") == 1
    results = json.loads(capsys.readouterr().out)
    outcomes = sorted(r["result"].split(" ")[0] + " " + r["result"].split(" ")[1] for r in results)
    assert outcomes == ["not redriven:", "redriven as"]
    assert cli(stack, "parked", "redrive", "--reason", "not_json") == 1
    again = capsys.readouterr().out
    assert "already redriven" in again and "not redriven: only its first 64 KB" in again
    assert cli(stack, "parked", "redrive", "--all", "--dry-run", "--json") == 1
    planned = sorted(r["result"].split(" (")[0].split(":")[0] for r in json.loads(capsys.readouterr().out))
    assert planned == ["already redriven", "not redriven", "would be redriven"]
    # AND the consumer reads the redriven copy again (still bad here: parked again, under its new number)
    assert cli(stack, "consume", "projector", "--engine", "local", "--until-idle") == 0
    assert cli(stack, "parked", "list", "--json", "--reason", "not_json") == 0
    assert len(json.loads(capsys.readouterr().out)) == 3


def test_parked_show_of_an_unknown_number_is_a_usage_error(stack: Settings, capsys: Any) -> None:
    assert cli(stack, "parked", "show", "123") == 2
    assert capsys.readouterr().err.startswith("gpu-recovery: error: no parked record with sequence number 123")


def _hostile_file(tmp_path: Path) -> Path:
    # What only DynamoDB refuses comes last.
    order = sorted(HOSTILE, key=lambda name: (name in DYNAMODB_ONLY, name))
    lines = [*GOOD, *(HOSTILE[name]() for name in order)]
    path = tmp_path / "hostile.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def test_replay_of_hostile_records_exits_0_reports_each_by_reason_and_projects_the_good(
    tmp_path: Path, capsys: Any
) -> None:
    source = _hostile_file(tmp_path)
    out = tmp_path / "tables.json"
    assert main(["replay", "--source", f"file:{source}", "--target", f"file:{out}", "--json", "--no-progress"]) == 0
    stats = json.loads(capsys.readouterr().out)["stats"]
    assert stats["records"] == len(GOOD) + len(HOSTILE)
    reasons = stats["malformed_reasons"]
    caught = len(HOSTILE) - len(DYNAMODB_ONLY)
    assert sum(entry["count"] for entry in reasons.values()) == sum(stats["malformed"].values()) == caught
    # (records with the same reason share an entry: its count, and where the first was)
    assert {entry["first_position"] for entry in reasons.values()} <= {
        f"{source}:{n}" for n in range(len(GOOD) + 1, len(GOOD) + caught + 1)}
    tables = json.loads(out.read_text())
    assert {t["task_arn"] for t in tables["ecs_task"]} >= {task_arn(n) for n in range(1, 4)}


def test_replay_into_shadow_tables_leaves_out_what_dynamodb_refuses_and_says_so(
    stack: Settings, tmp_path: Path, capsys: Any
) -> None:
    source = _hostile_file(tmp_path)
    assert cli(stack, "replay", "--source", f"file:{source}", "--target", "shadow", "--json", "--no-progress") == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert summary["written"]["ecs_task"] >= 3
    # Values only DynamoDB refuses are left out, each named: the node with an attribute named "" (a version
    # of 10**40 no longer gets this far: the decoder's bounds refuse it as invalid)
    node = sample("container_instance_state_change_gpu")["detail"]["containerInstanceArn"]
    unwritable = summary["unwritable"]
    assert sorted(unwritable) == [f"ecs_node/{node}"]
    assert "empty key" in unwritable[f"ecs_node/{node}"]
    assert captured.err.count("not written:") == 1
