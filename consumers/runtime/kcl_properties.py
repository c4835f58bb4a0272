"""The MultiLangDaemon's ``.properties`` file, rendered from a DaemonConfig.

Property names were checked against the setters of
``software.amazon.kinesis.multilang.config.MultiLangDaemonConfiguration`` (and its
``CoordinatorStateTableConfigBean`` and ``WorkerMetricStatsTableConfigBean``) in
amazon-kinesis-client-multilang 3.1.3, the jars amazon-kclpy 3.1.3 installs. Two rules of that
loader matter here: a property left out keeps the KCL default, and a property set to the Java
default of its type (``0``/``false`` for primitives) is ignored, so we only render values that
change something.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from consumers.runtime.kcl_config import DaemonConfig


def executable_command(argv: Sequence[str]) -> str:
    """Join argv into ``executableName``; the daemon splits it on spaces and knows no quoting."""
    if not argv:
        raise ValueError("argv must not be empty")
    for arg in argv:
        if arg == "" or any(ch.isspace() for ch in arg):
            raise ValueError(f"argument {arg!r} is empty or has spaces")
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
    ]
    props.extend((key, value) for key, value in optional if value)
    return props


def _table_properties(config: DaemonConfig) -> list[tuple[str, str]]:
    """All three tables by name: the ones the stack created, never a default the KCL would create."""
    tables = config.tables
    return [
        ("tableName", tables.lease),
        ("coordinatorStateTableName", tables.coordinator_state),
        ("workerMetricsTableName", tables.worker_metrics),
    ]


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
        *_table_properties(config),
        *_lease_properties(config),
        *_retrieval_properties(config),
        *_lifecycle_properties(config),
    ]
    kept = [(key, value) for key, value in items if key not in config.extra_properties]
    return kept + sorted(config.extra_properties.items())


def _escape_value(value: str) -> str:
    if "\n" in value or "\r" in value:
        raise ValueError(f"property value {value!r} has a line break")
    return value.replace("\\", "\\\\")


def render_properties(config: DaemonConfig) -> str:
    """The MultiLangDaemon ``.properties`` text for ``config``."""
    lines = ["# Generated by consumers.runtime.kcl_properties; do not edit."]
    lines.extend(f"{key} = {_escape_value(value)}" for key, value in property_items(config))
    return "\n".join(lines) + "\n"


def write_properties(config: DaemonConfig, path: Path) -> Path:
    """Write the properties file (parents created) and return its absolute path."""
    target = path.resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render_properties(config), encoding="utf-8")
    return target
