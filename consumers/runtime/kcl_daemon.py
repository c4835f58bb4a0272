"""Configure and launch the KCL 3.x MultiLangDaemon (Java) that amazon-kclpy ships.

The daemon takes the shard leases (DynamoDB), reads Kinesis, and runs ``executable`` once per
shard, talking to it over stdin/stdout (the amazon-kclpy protocol). This module only writes its
``.properties`` file and starts the JVM; it creates no AWS client and reads no environment at
import time.

Property names were checked against the setters of
``software.amazon.kinesis.multilang.config.MultiLangDaemonConfiguration`` in
amazon-kinesis-client-multilang 3.1.3 (the jars amazon-kclpy 3.1.3 installs). Two rules of that
loader matter here: a property left out keeps the KCL default, and a property set to the Java
default of its type (``0``/``false`` for primitives) is ignored, so we only render values that
change something.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

KCLPY_VERSION = "3.1.3"
MULTILANG_DAEMON_CLASS = "software.amazon.kinesis.multilang.MultiLangDaemon"
MULTILANG_JAR_PREFIX = "amazon-kinesis-client-multilang-"

InitialPosition = Literal["TRIM_HORIZON", "LATEST"]
RetrievalMode = Literal["POLLING", "FANOUT"]
MetricsLevel = Literal["NONE", "SUMMARY", "DETAILED"]

_INITIAL_POSITIONS = frozenset({"TRIM_HORIZON", "LATEST"})
_RETRIEVAL_MODES = frozenset({"POLLING", "FANOUT"})
_METRICS_LEVELS = frozenset({"NONE", "SUMMARY", "DETAILED"})
_MIN_IDLE_BETWEEN_READS_MILLIS = 200  # PollingConfig.MIN_IDLE_MILLIS_BETWEEN_READS

# Lean JVM for tests and small tasks: fast start, small heap, one GC thread.
LEAN_JVM_ARGS: tuple[str, ...] = ("-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Xms64m", "-Xmx256m")


class KclSetupError(RuntimeError):
    """The machine lacks something the MultiLangDaemon needs."""


class KclJarsMissingError(KclSetupError):
    """amazon-kclpy's jars (the KCL and its dependencies) are not installed."""


class JavaMissingError(KclSetupError):
    """No Java runtime to run the MultiLangDaemon."""


@dataclass(frozen=True)
class DaemonConfig:
    """Everything the MultiLangDaemon's properties file says.

    Tuning defaults are the KCL 3.1.3 defaults (production). ``for_local_tests`` shortens them.
    """

    stream_name: str
    application_name: str
    executable: str
    region: str = "us-east-1"
    initial_position: InitialPosition = "TRIM_HORIZON"
    retrieval_mode: RetrievalMode = "POLLING"
    kinesis_endpoint: str | None = None
    dynamodb_endpoint: str | None = None
    metrics_level: MetricsLevel = "NONE"
    worker_id: str | None = None
    credentials_provider: str = "DefaultCredentialsProvider"
    processing_language: str = "python/3.11"
    lease_table_name: str | None = None
    consumer_name: str | None = None
    # Leases (DynamoDB): a lease not renewed within failover is up for grabs; the lease
    # assignment manager (KCL 3) runs every lease_assignment (KCL default: 2 x failover).
    failover_time_millis: int = 10_000
    lease_assignment_interval_millis: int | None = None
    # Also the sleep after every shard sync task, including the one at start-up.
    shard_sync_interval_millis: int = 60_000
    parent_shard_poll_interval_millis: int = 10_000
    scheduler_initialization_backoff_millis: int = 1_000
    task_backoff_time_millis: int = 500
    max_leases_for_worker: int | None = None
    # Polling retrieval (ignored for FANOUT).
    idle_time_between_reads_millis: int = 1_500
    max_records: int = 10_000
    # KCL 3 worker metrics (CPU) drive lease balancing; off means balance by throughput only.
    # The lease assignment manager only assigns leases to workers that have reported stats;
    # the first report comes 2 x capture frequency after start, then every reporter period.
    disable_worker_metrics: bool = False
    in_memory_worker_metrics_capture_frequency_millis: int = 1_000
    worker_metrics_reporter_freq_millis: int = 30_000
    # On SIGTERM the daemon asks every record processor to checkpoint, waiting this long.
    # ECS gives a task 30 s (stopTimeout) between SIGTERM and SIGKILL.
    shutdown_grace_millis: int = 25_000
    graceful_lease_handoff_timeout_millis: int = 30_000
    call_process_records_even_for_empty_record_list: bool = False
    max_active_threads: int | None = None
    extra_properties: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _validate(self)

    @classmethod
    def for_local_tests(
        cls,
        *,
        stream_name: str,
        application_name: str,
        executable: str,
        kinesis_endpoint: str,
        dynamodb_endpoint: str,
        region: str = "us-east-1",
        **overrides: Any,
    ) -> DaemonConfig:
        """Fast timings for one worker against kinesis-local + moto on 127.0.0.1.

        Credentials come from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (dummy values work).
        """
        base = cls(
            stream_name=stream_name,
            application_name=application_name,
            executable=executable,
            region=region,
            kinesis_endpoint=kinesis_endpoint,
            dynamodb_endpoint=dynamodb_endpoint,
            credentials_provider="EnvironmentVariableCredentialsProvider",
            failover_time_millis=5_000,
            lease_assignment_interval_millis=1_000,
            shard_sync_interval_millis=1_000,
            parent_shard_poll_interval_millis=1_000,
            scheduler_initialization_backoff_millis=500,
            task_backoff_time_millis=250,
            idle_time_between_reads_millis=_MIN_IDLE_BETWEEN_READS_MILLIS,
            disable_worker_metrics=True,
            in_memory_worker_metrics_capture_frequency_millis=250,
            worker_metrics_reporter_freq_millis=5_000,
            shutdown_grace_millis=3_000,
            graceful_lease_handoff_timeout_millis=2_000,
        )
        return replace(base, **overrides) if overrides else base


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def _validate(config: DaemonConfig) -> None:
    _require(bool(config.stream_name.strip()), "stream_name must not be empty")
    _require(bool(config.application_name.strip()), "application_name must not be empty")
    _require(bool(config.executable.strip()), "executable must not be empty")
    _require(config.initial_position in _INITIAL_POSITIONS, f"bad initial_position {config.initial_position}")
    _require(config.retrieval_mode in _RETRIEVAL_MODES, f"bad retrieval_mode {config.retrieval_mode}")
    _require(config.metrics_level in _METRICS_LEVELS, f"bad metrics_level {config.metrics_level}")
    _require(
        config.idle_time_between_reads_millis >= _MIN_IDLE_BETWEEN_READS_MILLIS,
        f"idle_time_between_reads_millis must be >= {_MIN_IDLE_BETWEEN_READS_MILLIS}",
    )
    for name in ("failover_time_millis", "shard_sync_interval_millis", "max_records"):
        _require(getattr(config, name) > 0, f"{name} must be positive")


def executable_command(argv: Sequence[str]) -> str:
    """Join argv into ``executableName``; the daemon splits it on spaces and knows no quoting."""
    _require(len(argv) > 0, "argv must not be empty")
    for arg in argv:
        clean = arg != "" and not any(ch.isspace() for ch in arg)
        _require(clean, f"argument {arg!r} is empty or has spaces")
    return " ".join(argv)


def _bool(value: bool) -> str:
    return "true" if value else "false"


def _core_properties(config: DaemonConfig) -> list[tuple[str, str]]:
    props = [
        ("executableName", config.executable),
        ("streamName", config.stream_name),
        ("applicationName", config.application_name),
        ("regionName", config.region),
        ("AWSCredentialsProvider", config.credentials_provider),
        ("processingLanguage", config.processing_language),
        ("initialPositionInStream", config.initial_position),
        ("retrievalMode", config.retrieval_mode),
        ("metricsLevel", config.metrics_level),
    ]
    optional = [
        ("kinesisEndpoint", config.kinesis_endpoint),
        ("dynamoDBEndpoint", config.dynamodb_endpoint),
        ("workerId", config.worker_id),
        ("tableName", config.lease_table_name),
    ]
    props.extend((key, value) for key, value in optional if value)
    return props


def _lease_properties(config: DaemonConfig) -> list[tuple[str, str]]:
    props = [
        ("failoverTimeMillis", str(config.failover_time_millis)),
        ("shardSyncIntervalMillis", str(config.shard_sync_interval_millis)),
        ("parentShardPollIntervalMillis", str(config.parent_shard_poll_interval_millis)),
        ("schedulerInitializationBackoffTimeMillis", str(config.scheduler_initialization_backoff_millis)),
        ("taskBackoffTimeMillis", str(config.task_backoff_time_millis)),
    ]
    if config.lease_assignment_interval_millis is not None:
        props.append(("leaseAssignmentIntervalMillis", str(config.lease_assignment_interval_millis)))
    if config.max_leases_for_worker is not None:
        props.append(("maxLeasesForWorker", str(config.max_leases_for_worker)))
    return props


def _retrieval_properties(config: DaemonConfig) -> list[tuple[str, str]]:
    if config.retrieval_mode == "FANOUT":
        return [("consumerName", config.consumer_name)] if config.consumer_name else []
    return [
        ("idleTimeBetweenReadsInMillis", str(config.idle_time_between_reads_millis)),
        ("maxRecords", str(config.max_records)),
    ]


def _lifecycle_properties(config: DaemonConfig) -> list[tuple[str, str]]:
    props = [
        ("disableWorkerMetrics", _bool(config.disable_worker_metrics)),
        (
            "inMemoryWorkerMetricsCaptureFrequencyMillis",
            str(config.in_memory_worker_metrics_capture_frequency_millis),
        ),
        ("workerMetricsReporterFreqInMillis", str(config.worker_metrics_reporter_freq_millis)),
        ("shutdownGraceMillis", str(config.shutdown_grace_millis)),
        ("gracefulLeaseHandoffTimeoutMillis", str(config.graceful_lease_handoff_timeout_millis)),
    ]
    if config.call_process_records_even_for_empty_record_list:
        props.append(("callProcessRecordsEvenForEmptyRecordList", "true"))
    if config.max_active_threads is not None:
        props.append(("maxActiveThreads", str(config.max_active_threads)))
    return props


def property_items(config: DaemonConfig) -> list[tuple[str, str]]:
    """(key, value) pairs in file order; ``extra_properties`` override same-named keys."""
    items = [
        *_core_properties(config),
        *_lease_properties(config),
        *_retrieval_properties(config),
        *_lifecycle_properties(config),
    ]
    overridden = {key for key in config.extra_properties}
    kept = [(key, value) for key, value in items if key not in overridden]
    return kept + sorted(config.extra_properties.items())


def _escape_value(value: str) -> str:
    _require("\n" not in value and "\r" not in value, f"property value {value!r} has a line break")
    return value.replace("\\", "\\\\")


def render_properties(config: DaemonConfig) -> str:
    """The MultiLangDaemon ``.properties`` text for ``config``."""
    lines = ["# Generated by consumers.runtime.kcl_daemon; do not edit."]
    lines.extend(f"{key} = {_escape_value(value)}" for key, value in property_items(config))
    return "\n".join(lines) + "\n"


def write_properties(config: DaemonConfig, path: Path) -> Path:
    """Write the properties file (parents created) and return its absolute path."""
    target = path.resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render_properties(config), encoding="utf-8")
    return target


def kclpy_jars_dir() -> Path:
    """``<site-packages>/amazon_kclpy/jars`` located without importing amazon_kclpy."""
    spec = importlib.util.find_spec("amazon_kclpy")
    if spec is None or not spec.submodule_search_locations:
        raise KclJarsMissingError(_jars_hint("the amazon_kclpy package is not installed"))
    return Path(next(iter(spec.submodule_search_locations))) / "jars"


def _jars_hint(problem: str) -> str:
    return (
        f"{problem}: run `bash .ci/install-kcl.sh`, or reinstall with "
        f"`pip install --force-reinstall --no-cache-dir amazon-kclpy=={KCLPY_VERSION}` "
        "(its build downloads the KCL jars from Maven Central)"
    )


def jar_paths(jars_dir: Path | None = None) -> list[Path]:
    """All KCL jars, sorted; raises KclJarsMissingError if the multilang jar is absent."""
    folder = jars_dir if jars_dir is not None else kclpy_jars_dir()
    jars = sorted(folder.glob("*.jar"))
    if not any(jar.name.startswith(MULTILANG_JAR_PREFIX) for jar in jars):
        raise KclJarsMissingError(_jars_hint(f"no {MULTILANG_JAR_PREFIX}*.jar in {folder}"))
    return jars


def jar_classpath(jars_dir: Path | None = None) -> str:
    """The Java classpath of amazon-kclpy's jars."""
    return os.pathsep.join(str(jar) for jar in jar_paths(jars_dir))


def resolve_java(java: str = "java") -> str:
    """Absolute path of the java executable; raises JavaMissingError with an install hint."""
    found = shutil.which(java)
    if found is None:
        raise JavaMissingError(
            f"{java!r} was not found: install a Java 17 runtime "
            "(e.g. `apt-get install openjdk-17-jre-headless`) or pass java=/path/to/java"
        )
    return found


def daemon_command(
    properties_path: Path,
    java: str = "java",
    *,
    jvm_args: Iterable[str] = (),
    log_configuration: Path | None = None,
    jars_dir: Path | None = None,
) -> list[str]:
    """argv that runs the MultiLangDaemon on ``properties_path`` (an absolute path works)."""
    command = [
        resolve_java(java),
        *jvm_args,
        "-cp",
        jar_classpath(jars_dir),
        MULTILANG_DAEMON_CLASS,
        "--properties-file",
        str(Path(properties_path).resolve()),
    ]
    if log_configuration is not None:
        command += ["--log-configuration", str(Path(log_configuration).resolve())]
    return command


def launch_daemon(
    properties_path: Path,
    *,
    env: Mapping[str, str],
    log_path: Path,
    java: str = "java",
    jvm_args: Iterable[str] = (),
    cwd: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start the daemon in its own process group, stdout+stderr appended to ``log_path``.

    The record processors it spawns inherit ``env`` and the process group; stop everything
    with ``stop_daemon``.
    """
    command = daemon_command(properties_path, java, jvm_args=jvm_args)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log_file:
        return subprocess.Popen(
            command,
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)


def stop_daemon(process: subprocess.Popen[bytes], *, grace_seconds: float = 10.0) -> int | None:
    """SIGTERM the JVM (its hook checkpoints and shuts processors down), then kill the group.

    Returns the JVM's exit code (None if it had to be killed and did not report one).
    """
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=grace_seconds)
        except subprocess.TimeoutExpired:
            _signal_group(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
    # Record processors left behind (same process group) go too.
    _signal_group(process.pid, signal.SIGKILL)
    return process.returncode


def lease_table_name(config: DaemonConfig) -> str:
    """The KCL lease table: ``tableName`` if set, else the application name."""
    return config.lease_table_name or config.application_name


def lease_item(shard: Mapping[str, Any], initial_position: str) -> dict[str, dict[str, Any]]:
    """The lease the KCL's first shard sync writes for ``shard`` (a ListShards entry)."""
    hash_range = shard["HashKeyRange"]
    item: dict[str, dict[str, Any]] = {
        "leaseKey": {"S": shard["ShardId"]},
        "leaseCounter": {"N": "0"},
        "checkpoint": {"S": initial_position},
        "checkpointSubSequenceNumber": {"N": "0"},
        "ownerSwitchesSinceCheckpoint": {"N": "0"},
        "startingHashKey": {"S": hash_range["StartingHashKey"]},
        "endingHashKey": {"S": hash_range["EndingHashKey"]},
    }
    parents = [shard[key] for key in ("ParentShardId", "AdjacentParentShardId") if shard.get(key)]
    if parents:
        item["parentShardId"] = {"SS": parents}
    return item


def _list_shards(kinesis: Any, stream_name: str) -> list[dict[str, Any]]:
    shards: list[dict[str, Any]] = []
    page: dict[str, Any] = kinesis.list_shards(StreamName=stream_name)
    shards.extend(page["Shards"])
    while page.get("NextToken"):
        page = kinesis.list_shards(NextToken=page["NextToken"])
        shards.extend(page["Shards"])
    return shards


def _create_lease_table(dynamodb: Any, table: str) -> None:
    try:
        dynamodb.create_table(
            TableName=table,
            KeySchema=[{"AttributeName": "leaseKey", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "leaseKey", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
    except dynamodb.exceptions.ResourceInUseException:
        return
    dynamodb.get_waiter("table_exists").wait(TableName=table, WaiterConfig={"Delay": 1, "MaxAttempts": 60})


def prime_lease_table(config: DaemonConfig, *, dynamodb: Any, kinesis: Any) -> int:
    """Write one lease per shard, as the KCL's first shard sync would; returns leases added.

    A worker that finds the lease table empty waits a random 1-30 s (``Scheduler
    .shouldInitiateLeaseSync``, not configurable) before syncing shards, so that a fleet does
    not sync all at once. Local tests and single-worker tools skip that wait by priming the
    table. Existing leases are left alone. ``dynamodb``/``kinesis`` are boto3 clients.
    """
    table = lease_table_name(config)
    _create_lease_table(dynamodb, table)
    added = 0
    for shard in _list_shards(kinesis, config.stream_name):
        try:
            dynamodb.put_item(
                TableName=table,
                Item=lease_item(shard, config.initial_position),
                ConditionExpression="attribute_not_exists(leaseKey)",
            )
            added += 1
        except dynamodb.exceptions.ConditionalCheckFailedException:
            continue
    return added
