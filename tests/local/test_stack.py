"""The local stack's parts that need no Java or Node: the serialized moto server and the worker command."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from gpu_recovery.settings import load_settings
from local.moto_server import serialized
from local.stack import MotoProcess, stack_env, worker_command


def test_serialized_app_runs_one_request_at_a_time() -> None:
    # GIVEN a WSGI app that reads, yields the CPU, then writes (a check-then-set, like a conditional put)
    state = {"value": 0}

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        seen = state["value"]
        time.sleep(0.001)
        state["value"] = seen + 1
        start_response("200 OK", [])
        return [b"ok"]

    wrapped = serialized(app)
    # WHEN 8 threads call it 25 times each
    threads = [threading.Thread(target=lambda: [wrapped({}, lambda *a: None) for _ in range(25)]) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # THEN no update was lost
    assert state["value"] == 200


@pytest.fixture
def moto_process(tmp_path: Path) -> Iterator[str]:
    server = MotoProcess(tmp_path / "moto.log").start()
    try:
        yield server.endpoint_url
    finally:
        server.stop()


def test_conditional_writes_on_the_moto_process_never_lose_an_update(moto_process: str) -> None:
    # GIVEN one DynamoDB item that 6 writers increment with optimistic concurrency (read rev, put if rev)
    client = boto3.client("dynamodb", endpoint_url=moto_process, region_name="us-east-1")
    client.create_table(TableName="t", KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
                        AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}],
                        BillingMode="PAY_PER_REQUEST")
    client.put_item(TableName="t", Item={"k": {"S": "x"}, "rev": {"N": "0"}})

    def increment(times: int) -> None:
        own = boto3.client("dynamodb", endpoint_url=moto_process, region_name="us-east-1")
        done = 0
        while done < times:
            rev = int(own.get_item(TableName="t", Key={"k": {"S": "x"}}, ConsistentRead=True)["Item"]["rev"]["N"])
            try:
                own.put_item(TableName="t", Item={"k": {"S": "x"}, "rev": {"N": str(rev + 1)}},
                             ConditionExpression="rev = :r", ExpressionAttributeValues={":r": {"N": str(rev)}})
                done += 1
            except ClientError as exc:
                assert exc.response["Error"]["Code"] == "ConditionalCheckFailedException"

    # WHEN they run at once
    threads = [threading.Thread(target=increment, args=(10,)) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # THEN every successful conditional write counted: 60 increments, none lost
    item = client.get_item(TableName="t", Key={"k": {"S": "x"}}, ConsistentRead=True)["Item"]
    assert item["rev"]["N"] == "60"


def test_worker_command_and_environment_point_at_the_stack(tmp_path: Path) -> None:
    # GIVEN a stack's settings
    settings = load_settings(endpoint_url="http://127.0.0.1:5000", kinesis_endpoint_url="http://127.0.0.1:4567",
                             stream_name="s")
    # WHEN a worker's command and environment are built
    command = worker_command("recovery", worker_id="r-1", properties_out=tmp_path / "r.properties",
                             python="/usr/bin/python3")
    env = stack_env(settings, {"AWS_PROFILE": "prod", "PATH": "/bin"})
    # THEN the worker is the CLI with the KCL engine and local timings, and sees only the local endpoints
    assert command[:6] == ["/usr/bin/python3", "-m", "gpu_recovery.cli", "consume", "recovery", "--engine"]
    assert {"--timings", "local", "--prime-leases", "--lean-jvm"} <= set(command)
    assert command[command.index("--worker-id") + 1] == "r-1"
    assert env["GPU_RECOVERY_KINESIS_ENDPOINT_URL"] == "http://127.0.0.1:4567"
    assert env["GPU_RECOVERY_ENDPOINT_URL"] == "http://127.0.0.1:5000"
    assert "AWS_PROFILE" not in env and env["AWS_ACCESS_KEY_ID"] == "testing"
