"""The KCL MultiLangDaemon: properties rendering (fast) and a real daemon run (slow).

The slow test runs the real Java daemon from amazon-kclpy against kinesis-local (kinesis-mock,
HTTP/2) for Kinesis and moto's server for DynamoDB, all on 127.0.0.1.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from consumers.adapters.table_specs import KclTables
from consumers.runtime import kcl_daemon, kcl_java, kcl_leases, kcl_properties
from consumers.runtime.kcl_config import DaemonConfig
from consumers.runtime.kcl_properties import property_items, render_properties
from local import kinesis_local
from tests.tools import missing_tool

ECHO_PROCESSOR = Path(__file__).parent / "kcl_support" / "echo_processor.py"
RECORD_COUNT = 200
SHARD_COUNT = 2
DELIVERY_TIMEOUT_S = 120.0


def _props(config: DaemonConfig) -> dict[str, str]:
    return dict(property_items(config))


def _plain_config(**overrides: Any) -> DaemonConfig:
    values: dict[str, Any] = {
        "stream_name": "gpu-events",
        "application_name": "projector",
        "executable": "/usr/bin/python3 -m gpu_recovery.kcl_worker projector",
    }
    values.update(overrides)
    return DaemonConfig(**values)


# ---------------------------------------------------------------- render_properties (fast)


def test_required_keys_are_rendered_with_their_values() -> None:
    # GIVEN a production config with only the required fields
    config = _plain_config()
    # WHEN it is rendered
    props = _props(config)
    # THEN the daemon's required keys are there with the configured values
    assert props["executableName"] == "/usr/bin/python3 -m gpu_recovery.kcl_worker projector"
    assert props["streamName"] == "gpu-events"
    assert props["applicationName"] == "projector"
    assert props["regionName"] == "us-east-1"
    assert props["AWSCredentialsProvider"] == "DefaultCredentialsProvider"
    assert props["initialPositionInStream"] == "TRIM_HORIZON"
    assert props["retrievalMode"] == "POLLING"
    assert props["metricsLevel"] == "NONE"


def test_endpoints_and_worker_id_appear_only_when_set() -> None:
    # GIVEN one config without endpoints and one with them
    plain = _props(_plain_config())
    local = _props(
        _plain_config(
            kinesis_endpoint="http://127.0.0.1:4568",
            dynamodb_endpoint="http://127.0.0.1:5000",
            worker_id="worker-1",
        )
    )
    # WHEN / THEN the optional keys are absent from the first and exact in the second
    for key in ("kinesisEndpoint", "dynamoDBEndpoint", "workerId"):
        assert key not in plain
    assert local["kinesisEndpoint"] == "http://127.0.0.1:4568"
    assert local["dynamoDBEndpoint"] == "http://127.0.0.1:5000"
    assert local["workerId"] == "worker-1"


def test_all_three_kcl_tables_are_named_after_the_application_unless_set() -> None:
    # GIVEN a config that names no table, and one that names the coordinator's
    plain = _props(_plain_config())
    named = _props(_plain_config(coordinator_state_table_name="projector-coordination"))
    # WHEN / THEN every table is named in the properties (the KCL never falls back to a table of its own),
    # by KCL 3.1.3's property names, with the tables the stack creates for this application by default
    expected = KclTables.of("projector")
    assert (plain["tableName"], plain["coordinatorStateTableName"], plain["workerMetricsTableName"]) == (
        "projector", "projector-CoordinatorState", "projector-WorkerMetricStats")
    assert expected.names() == ("projector", "projector-CoordinatorState", "projector-WorkerMetricStats")
    assert named["coordinatorStateTableName"] == "projector-coordination"
    assert named["tableName"] == "projector"


def test_production_defaults_are_the_kcl_defaults() -> None:
    # GIVEN a production config
    props = _props(_plain_config())
    # WHEN / THEN the tuning values are the KCL 3.1.3 defaults and the LAM interval is left to the KCL
    assert props["failoverTimeMillis"] == "10000"
    assert props["shardSyncIntervalMillis"] == "60000"
    assert props["parentShardPollIntervalMillis"] == "10000"
    assert props["idleTimeBetweenReadsInMillis"] == "1500"
    assert props["maxRecords"] == "10000"
    assert props["disableWorkerMetrics"] == "false"
    assert "leaseAssignmentIntervalMillis" not in props


def test_local_test_config_has_fast_timings_and_env_credentials() -> None:
    # GIVEN the local-test constructor
    config = DaemonConfig.for_local_tests(
        stream_name="s",
        application_name="a",
        executable="python x.py",
        kinesis_endpoint="http://127.0.0.1:1",
        dynamodb_endpoint="http://127.0.0.1:2",
    )
    # WHEN it is rendered
    props = _props(config)
    # THEN timings are short, credentials come from the environment, worker metrics are off
    assert props["AWSCredentialsProvider"] == "EnvironmentVariableCredentialsProvider"
    assert props["leaseAssignmentIntervalMillis"] == "1000"
    assert props["shardSyncIntervalMillis"] == "1000"
    assert props["idleTimeBetweenReadsInMillis"] == "200"
    assert props["disableWorkerMetrics"] == "true"
    assert int(props["failoverTimeMillis"]) < 10_000


def test_fanout_drops_polling_keys() -> None:
    # GIVEN a FANOUT config with a consumer name
    props = _props(_plain_config(retrieval_mode="FANOUT", consumer_name="projector-efo"))
    # WHEN / THEN polling-only keys are gone and the consumer name is there
    assert props["retrievalMode"] == "FANOUT"
    assert props["consumerName"] == "projector-efo"
    assert "idleTimeBetweenReadsInMillis" not in props
    assert "maxRecords" not in props


def test_extra_properties_override_rendered_keys() -> None:
    # GIVEN an extra property that collides with a rendered one
    config = _plain_config(extra_properties={"maxRecords": "500", "maxLeasesToStealAtOneTime": "2"})
    # WHEN it is rendered
    text = render_properties(config)
    # THEN the key appears once, with the extra value
    assert text.count("maxRecords = ") == 1
    assert "maxRecords = 500\n" in text
    assert "maxLeasesToStealAtOneTime = 2\n" in text


def test_render_is_properties_text_and_rejects_line_breaks() -> None:
    # GIVEN a normal config and one whose value would inject a property
    text = render_properties(_plain_config())
    # WHEN / THEN every non-comment line is "key = value", and a newline in a value is refused
    lines = [line for line in text.splitlines() if not line.startswith("#")]
    assert all(" = " in line for line in lines)
    with pytest.raises(ValueError, match="line break"):
        render_properties(_plain_config(stream_name="s\nstreamName = other"))


@pytest.mark.parametrize(
    ("field", "value"),
    [("initial_position", "EARLIEST"), ("retrieval_mode", "PUSH"), ("idle_time_between_reads_millis", 50),
     ("metrics_level", "ALL"), ("stream_name", " "), ("application_name", ""), ("failover_time_millis", 0),
     ("max_records", 10_001), ("shard_sync_interval_millis", -1), ("unknown_knob", 1)],
)
def test_invalid_values_are_rejected_naming_the_field(field: str, value: object) -> None:
    # GIVEN / WHEN a config with an invalid value (or a misspelt field) / THEN construction fails naming it
    with pytest.raises(ValueError, match=field):
        _plain_config(**{field: value})


def test_local_test_overrides_are_validated_too() -> None:
    # GIVEN the local-test constructor with an override below the KCL's polling minimum
    # WHEN / THEN it is refused like any other value
    with pytest.raises(ValueError, match="idle_time_between_reads_millis"):
        DaemonConfig.for_local_tests(stream_name="s", application_name="a", executable="x",
                                     kinesis_endpoint="http://127.0.0.1:1", dynamodb_endpoint="http://127.0.0.1:2",
                                     idle_time_between_reads_millis=10)


def test_executable_command_refuses_spaces() -> None:
    # GIVEN argv with a path containing a space (the daemon splits executableName on spaces)
    # WHEN / THEN it is refused, and a clean argv is joined
    with pytest.raises(ValueError):
        kcl_properties.executable_command(["/opt/my app/python", "x.py"])
    assert kcl_properties.executable_command(["python", "-m", "mod"]) == "python -m mod"


def test_write_properties_creates_parents(tmp_path: Path) -> None:
    # GIVEN a path in a missing folder
    target = tmp_path / "conf" / "app.properties"
    # WHEN the properties are written
    written = kcl_properties.write_properties(_plain_config(), target)
    # THEN the file exists with the rendered text
    assert written == target.resolve()
    assert written.read_text() == render_properties(_plain_config())


def test_missing_jars_error_says_how_to_fix(tmp_path: Path) -> None:
    # GIVEN an empty jars folder
    # WHEN the classpath is built / THEN the error names the install script and the pinned version
    with pytest.raises(kcl_java.KclJarsMissingError, match=r"install-kcl\.sh.*amazon-kclpy==3\.1\.3"):
        kcl_java.jar_classpath(tmp_path)


def test_missing_java_error_says_how_to_fix() -> None:
    # GIVEN a java that does not exist / WHEN it is resolved / THEN the error asks for a JRE 17
    with pytest.raises(kcl_java.JavaMissingError, match="Java 17"):
        kcl_java.resolve_java("/nonexistent/java")


def test_daemon_command_runs_the_multilang_daemon(tmp_path: Path) -> None:
    # GIVEN a fake jars folder and java
    (tmp_path / "amazon-kinesis-client-multilang-3.1.3.jar").touch()
    (tmp_path / "other.jar").touch()
    # WHEN the command is built
    command = kcl_java.daemon_command(tmp_path / "a.properties", sys.executable, jars_dir=tmp_path)
    # THEN it runs the KCL 3 daemon class on the absolute properties path
    assert command[command.index("-cp") + 2] == "software.amazon.kinesis.multilang.MultiLangDaemon"
    assert command[-2:] == ["--properties-file", str((tmp_path / "a.properties").resolve())]
    assert "other.jar" in command[command.index("-cp") + 1]


def test_lease_item_matches_kcl_serializer_fields() -> None:
    # GIVEN a ListShards entry with a parent
    shard = {
        "ShardId": "shardId-000000000002",
        "ParentShardId": "shardId-000000000000",
        "HashKeyRange": {"StartingHashKey": "0", "EndingHashKey": "99"},
    }
    # WHEN its lease is built
    item = kcl_leases.lease_item(shard, "TRIM_HORIZON")
    # THEN it has the attributes the KCL's DynamoDBLeaseSerializer writes for a new lease
    assert item["leaseKey"] == {"S": "shardId-000000000002"}
    assert item["checkpoint"] == {"S": "TRIM_HORIZON"}
    assert item["leaseCounter"] == {"N": "0"}
    assert item["parentShardId"] == {"SS": ["shardId-000000000000"]}
    assert (item["startingHashKey"], item["endingHashKey"]) == ({"S": "0"}, {"S": "99"})


# ---------------------------------------------------------------- real daemon (slow)


def _kcl_prerequisites_missing() -> str | None:
    try:
        kinesis_local.package_dir()
        kinesis_local.node_executable()
        kcl_java.jar_classpath()
        kcl_java.resolve_java()
    except (kinesis_local.KinesisLocalError, kcl_java.KclSetupError) as error:
        return str(error)
    return None


@pytest.fixture
def moto_dynamodb_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def _kinesis_client(endpoint: str) -> Any:
    import boto3

    return boto3.client(
        "kinesis",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def _dynamodb_client(endpoint: str) -> Any:
    import boto3

    return boto3.client(
        "dynamodb",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def _put_records(kinesis: Any, stream: str, count: int) -> None:
    for start in range(0, count, 100):
        batch = [
            {"Data": f"record-{i:04d}".encode(), "PartitionKey": f"key-{i}"}
            for i in range(start, min(count, start + 100))
        ]
        response = kinesis.put_records(StreamName=stream, Records=batch)
        assert response["FailedRecordCount"] == 0


def _read_lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _wait_for_records(path: Path, expected: int, daemon: Any, log: Path) -> list[dict[str, Any]]:
    deadline = time.monotonic() + DELIVERY_TIMEOUT_S
    while time.monotonic() < deadline:
        lines = _read_lines(path)
        if len({line["data"] for line in lines}) >= expected:
            return lines
        if daemon.poll() is not None:
            pytest.fail(f"daemon exited with {daemon.returncode}: {log.read_text()[-3000:]}")
        time.sleep(0.25)
    pytest.fail(f"only {len(_read_lines(path))} of {expected} records in {DELIVERY_TIMEOUT_S}s; see {log}")


def _process_group_gone(pgid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


def _daemon_env(output: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
            "KCL_ECHO_OUTPUT": str(output),
        }
    )
    env.pop("AWS_SESSION_TOKEN", None)
    env.pop("AWS_PROFILE", None)
    return env


@pytest.mark.slow
@pytest.mark.serial
def test_real_daemon_delivers_every_record_in_shard_order(
    moto_dynamodb_endpoint: str, tmp_path: Path
) -> None:
    missing = _kcl_prerequisites_missing()
    if missing is not None:
        missing_tool(missing)
    # GIVEN kinesis-local with a 2-shard stream holding 200 records, and moto for the leases
    with kinesis_local.KinesisLocal(log_path=tmp_path / "kinesis-local.log") as kinesis_server:
        kinesis = _kinesis_client(kinesis_server.endpoint)
        kinesis.create_stream(StreamName="kcl-it", ShardCount=SHARD_COUNT)
        kinesis.get_waiter("stream_exists").wait(
            StreamName="kcl-it", WaiterConfig={"Delay": 0.2, "MaxAttempts": 100}
        )
        _put_records(kinesis, "kcl-it", RECORD_COUNT)
        config = DaemonConfig.for_local_tests(
            stream_name="kcl-it",
            application_name="kcl-it-app",
            executable=kcl_properties.executable_command([sys.executable, str(ECHO_PROCESSOR)]),
            kinesis_endpoint=kinesis_server.endpoint,
            dynamodb_endpoint=moto_dynamodb_endpoint,
            # Not the KCL's default name: the table appearing proves the daemon reads the property.
            coordinator_state_table_name="kcl-it-coordination",
        )
        primed = kcl_leases.prime_lease_table(
            config, dynamodb=_dynamodb_client(moto_dynamodb_endpoint), kinesis=kinesis
        )
        assert primed == SHARD_COUNT
        properties = kcl_properties.write_properties(config, tmp_path / "kcl.properties")
        output, log = tmp_path / "echo.jsonl", tmp_path / "daemon.log"

        # WHEN one real MultiLangDaemon consumes the stream
        launched = time.time()
        daemon = kcl_daemon.launch_daemon(
            properties, env=_daemon_env(output), log_path=log, jvm_args=kcl_java.LEAN_JVM_ARGS
        )
        try:
            lines = _wait_for_records(output, RECORD_COUNT, daemon, log)
        finally:
            kcl_daemon.stop_daemon(daemon, grace_seconds=10)

    # THEN every record arrived at least once, and each shard's records arrived in sequence order
    assert {line["data"] for line in lines} == {f"record-{i:04d}" for i in range(RECORD_COUNT)}
    per_shard: dict[str, list[int]] = {}
    for line in lines:
        per_shard.setdefault(line["shard"], []).append(int(line["seq"]))
    assert len(per_shard) == SHARD_COUNT
    for sequence_numbers in per_shard.values():
        first_pass = list(dict.fromkeys(sequence_numbers))  # redeliveries repeat a suffix
        assert first_pass == sorted(first_pass)
    # AND no process of the daemon's group is left behind
    assert _process_group_gone(daemon.pid), "java or record processors outlived stop_daemon"
    # AND the daemon kept its coordinator state in the table the properties name, not its default
    tables = set(_dynamodb_client(moto_dynamodb_endpoint).list_tables()["TableNames"])
    assert "kcl-it-coordination" in tables and "kcl-it-app-CoordinatorState" not in tables, tables
    first = min(line["t"] for line in lines) - launched
    last = max(line["t"] for line in lines) - launched
    print(f"\nKCL: first record {first:.1f}s after launch, all {RECORD_COUNT} after {last:.1f}s")
