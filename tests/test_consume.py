"""``gpu-recovery consume``: the daemon's properties from settings and options, signals, exit codes."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from consumers.core.errors import ConfigError
from consumers.runtime.kcl_properties import property_items
from gpu_recovery.cli import build_parser, main
from gpu_recovery.commands import consume
from gpu_recovery.settings import load_settings
from gpu_recovery.wiring import PROJECTOR_APP, RECOVERY_APP


def _args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["consume", *argv])


def _props(settings: Any, *argv: str) -> dict[str, str]:
    return dict(property_items(consume.daemon_config(settings, _args(*argv))))


def test_local_endpoints_go_to_the_daemon_kinesis_first() -> None:
    # GIVEN moto for everything and kinesis-local for Kinesis
    settings = load_settings(endpoint_url="http://127.0.0.1:5000", kinesis_endpoint_url="http://127.0.0.1:4567",
                             stream_name="events", region="eu-west-1")
    # WHEN the projector's properties are built
    props = _props(settings, "projector", "--worker-id", "w-1", "--metrics-level", "SUMMARY")
    # THEN the daemon reads Kinesis from kinesis-local, leases from moto, with credentials from the environment
    assert props["kinesisEndpoint"] == "http://127.0.0.1:4567"
    assert props["dynamoDBEndpoint"] == "http://127.0.0.1:5000"
    assert props["AWSCredentialsProvider"] == "EnvironmentVariableCredentialsProvider"
    assert (props["streamName"], props["regionName"], props["workerId"]) == ("events", "eu-west-1", "w-1")
    assert props["applicationName"] == PROJECTOR_APP
    assert props["metricsLevel"] == "SUMMARY"
    assert props["executableName"].endswith("-m gpu_recovery.kcl_worker projector --log-level INFO")
    assert "callProcessRecordsEvenForEmptyRecordList" not in props


def test_real_aws_gets_no_endpoints_and_the_default_credential_chain() -> None:
    # GIVEN no endpoint settings (real AWS)
    settings = load_settings()
    # WHEN the recovery's properties are built
    props = _props(settings, "recovery", "--retrieval-mode", "FANOUT", "--initial-position", "LATEST")
    # THEN no endpoint is rendered, the SDK's default chain (the ECS task role) is used, and the recovery
    # gets empty batches to notice deadlines on a quiet stream
    assert "kinesisEndpoint" not in props and "dynamoDBEndpoint" not in props
    assert props["AWSCredentialsProvider"] == "DefaultCredentialsProvider"
    assert props["applicationName"] == RECOVERY_APP
    assert (props["retrievalMode"], props["initialPositionInStream"]) == ("FANOUT", "LATEST")
    assert props["callProcessRecordsEvenForEmptyRecordList"] == "true"
    assert props["failoverTimeMillis"] == "10000"  # production timings


def test_local_timings_and_extra_properties() -> None:
    # GIVEN the local timings and two --property options, one overriding a rendered key
    settings = load_settings(endpoint_url="http://127.0.0.1:5000")
    props = _props(settings, "projector", "--timings", "local", "--property", "maxLeasesForWorker=8",
                   "--property", "idleTimeBetweenReadsInMillis=1000")
    # THEN the short timings are there and the options win
    assert props["shardSyncIntervalMillis"] == "1000"
    assert props["kinesisEndpoint"] == "http://127.0.0.1:5000"  # one endpoint for everything
    assert props["maxLeasesForWorker"] == "8"
    assert props["idleTimeBetweenReadsInMillis"] == "1000"


def test_a_property_without_equals_is_refused() -> None:
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        consume.parse_properties(["maxLeasesForWorker"])


def test_daemon_env_makes_resolved_settings_explicit_and_never_keeps_real_credentials_for_local() -> None:
    # GIVEN a local stack and a shell with a session token
    settings = load_settings(endpoint_url="http://127.0.0.1:5000", stream_name="s1")
    base = {"AWS_SESSION_TOKEN": "token", "PATH": "/bin"}
    # WHEN the daemon's environment is built
    env = consume.daemon_env(settings, base)
    # THEN the processors see the same endpoint and stream, with fake credentials
    assert env["GPU_RECOVERY_ENDPOINT_URL"] == "http://127.0.0.1:5000"
    assert env["GPU_RECOVERY_STREAM_NAME"] == "s1"
    assert env["AWS_ACCESS_KEY_ID"] == "testing" and "AWS_SESSION_TOKEN" not in env
    assert env["PATH"] == "/bin"


def test_properties_only_writes_the_file_without_java(tmp_path: Path) -> None:
    # GIVEN --properties-only
    target = tmp_path / "conf" / "projector.properties"
    # WHEN the command runs
    code = main(["consume", "projector", "--properties-only", "--properties-out", str(target),
                 "--stream-name", "gpu-events"])
    # THEN it exits 0 and the file holds the daemon's configuration
    assert code == 0
    assert "streamName = gpu-events\n" in target.read_text()


def test_sigterm_is_forwarded_and_the_child_exit_code_returned() -> None:
    # GIVEN a child that exits 7 on SIGTERM
    child = [sys.executable, "-c",
             "import signal, sys, time; signal.signal(signal.SIGTERM, lambda *a: sys.exit(7)); time.sleep(30)"]
    before = signal.getsignal(signal.SIGTERM)
    # WHEN we receive SIGTERM while it runs
    timer = threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGTERM))
    timer.start()
    code = consume.run_forwarding_signals(child, dict(os.environ))
    timer.join()
    # THEN the child got it, and its code is ours; our own SIGTERM handler is back
    assert code == 7
    assert signal.getsignal(signal.SIGTERM) == before


def test_a_child_killed_by_a_signal_exits_128_plus_the_signal() -> None:
    child = [sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"]
    assert consume.run_forwarding_signals(child, dict(os.environ)) == 128 + signal.SIGKILL


@pytest.mark.usefixtures("aws")
def test_local_engine_projects_until_sigterm() -> None:
    # GIVEN the stream and tables on moto, with one task event on the stream
    import json

    from consumers.adapters.dynamodb import DynamoProjectionStore
    from gpu_recovery.aws import AwsClients
    from local.provision import provision
    from tests.factories import REGION, task_event

    settings = load_settings(stream_shards=1, region=REGION)  # the factories' cluster is ours
    clients = AwsClients(settings)
    provision(clients)
    event = task_event(1, version=3)
    clients.client("kinesis").put_record(StreamName=settings.stream_name, Data=json.dumps(event).encode(),
                                         PartitionKey="node")
    # WHEN the local engine runs until SIGTERM
    timer = threading.Timer(2.0, os.kill, (os.getpid(), signal.SIGTERM))
    timer.start()
    code = consume.run_local(settings, "projector", poll_interval=0.1)
    timer.join()
    # THEN it exits 0 having projected the task
    assert code == 0
    store = DynamoProjectionStore(clients.client("dynamodb"), settings.projection_tables())
    assert [(t["task_arn"], t["version"]) for t in store.scan_table("ecs_task")] == [(event["detail"]["taskArn"], 3)]


@pytest.mark.parametrize("option", [["--log-level", "BOGUS"], ["--log-level", "verbose"]])
def test_a_bad_log_level_is_a_usage_error_not_a_traceback(
    option: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a log level Python's logging does not know, for the command or for the per-shard processors
    target = tmp_path / "projector.properties"
    for argv in ([*option, "consume", "projector", "--properties-only", "--properties-out", str(target)],
                 ["consume", "projector", "--properties-only", "--properties-out", str(target),
                  "--processor-log-level", option[1]]):
        # WHEN the command line is parsed
        with pytest.raises(SystemExit) as exited:
            main(argv)
        # THEN it exits 2 with one line naming the option and the levels, and no properties are written
        assert exited.value.code == 2
        err = capsys.readouterr().err
        assert f"'{option[1]}' is not a log level (one of NOTSET, DEBUG, INFO" in err and "Traceback" not in err
        assert not target.exists()


def test_a_valid_log_level_reaches_the_processors_upper_cased() -> None:
    # GIVEN a lower-case level
    props = _props(load_settings(), "projector", "--processor-log-level", "debug")
    # THEN the processors get the level logging knows
    assert props["executableName"].endswith("kcl_worker projector --log-level DEBUG")
