"""What the KCL 3.x MultiLangDaemon is told: one validated model, and the names of its three tables.

Tuning defaults are the KCL 3.1.3 defaults (production); ``DaemonConfig.for_local_tests`` shortens
them for one worker against kinesis-local and moto. Nothing here touches AWS, Java or a file: this
module is imported by the CDK app too (the stack creates the tables the daemon is told to use).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from consumers.adapters.table_specs import KclTables

InitialPosition = Literal["TRIM_HORIZON", "LATEST"]
RetrievalMode = Literal["POLLING", "FANOUT"]
MetricsLevel = Literal["NONE", "SUMMARY", "DETAILED"]

MIN_IDLE_BETWEEN_READS_MILLIS = 200  # PollingConfig.MIN_IDLE_MILLIS_BETWEEN_READS

TABLE_FIELDS = ("lease_table_name", "coordinator_state_table_name", "worker_metrics_table_name")


class DaemonConfig(BaseModel):
    """Everything the MultiLangDaemon's properties file says."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    stream_name: str = Field(min_length=1)
    application_name: str = Field(min_length=1)
    executable: str = Field(min_length=1)
    region: str = Field("us-east-1", min_length=1)
    initial_position: InitialPosition = "TRIM_HORIZON"
    retrieval_mode: RetrievalMode = "POLLING"
    kinesis_endpoint: str | None = None
    dynamodb_endpoint: str | None = None
    metrics_level: MetricsLevel = "NONE"
    worker_id: str | None = None
    credentials_provider: str = Field("DefaultCredentialsProvider", min_length=1)
    processing_language: str = "python/3.11"
    # Unset: KclTables.of(application_name), the tables the stack creates.
    lease_table_name: str = ""
    coordinator_state_table_name: str = ""
    worker_metrics_table_name: str = ""
    consumer_name: str | None = None
    # Leases (DynamoDB): a lease not renewed within failover is up for grabs; the lease
    # assignment manager (KCL 3) runs every lease_assignment (KCL default: 2 x failover).
    failover_time_millis: int = Field(10_000, gt=0)
    lease_assignment_interval_millis: int | None = Field(None, gt=0)
    # Also the sleep after every shard sync task, including the one at start-up.
    shard_sync_interval_millis: int = Field(60_000, gt=0)
    parent_shard_poll_interval_millis: int = Field(10_000, gt=0)
    scheduler_initialization_backoff_millis: int = Field(1_000, gt=0)
    task_backoff_time_millis: int = Field(500, gt=0)
    max_leases_for_worker: int | None = Field(None, gt=0)
    # Polling retrieval (ignored for FANOUT).
    idle_time_between_reads_millis: int = Field(1_500, ge=MIN_IDLE_BETWEEN_READS_MILLIS)
    max_records: int = Field(10_000, gt=0, le=10_000)
    # KCL 3 worker metrics (CPU) drive lease balancing; off means balance by throughput only.
    # The lease assignment manager only assigns leases to workers that have reported stats;
    # the first report comes 2 x capture frequency after start, then every reporter period.
    disable_worker_metrics: bool = False
    in_memory_worker_metrics_capture_frequency_millis: int = Field(1_000, gt=0)
    worker_metrics_reporter_freq_millis: int = Field(30_000, gt=0)
    # On SIGTERM the daemon asks every record processor to checkpoint, waiting this long.
    # ECS gives a task 30 s (stopTimeout) between SIGTERM and SIGKILL.
    shutdown_grace_millis: int = Field(25_000, gt=0)
    graceful_lease_handoff_timeout_millis: int = Field(30_000, gt=0)
    call_process_records_even_for_empty_record_list: bool = False
    max_active_threads: int | None = Field(None, gt=0)
    extra_properties: dict[str, str] = Field(default_factory=dict)

    @field_validator("stream_name", "application_name", "executable")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value

    @model_validator(mode="before")
    @classmethod
    def _name_the_tables(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not isinstance(data.get("application_name"), str):
            return data
        named = dict(data)
        for field, default in zip(TABLE_FIELDS, KclTables.of(data["application_name"]).names(), strict=True):
            named[field] = named.get(field) or default
        return named

    @property
    def tables(self) -> KclTables:
        return KclTables(lease=self.lease_table_name, coordinator_state=self.coordinator_state_table_name,
                         worker_metrics=self.worker_metrics_table_name)

    @classmethod
    def for_local_tests(cls, *, stream_name: str, application_name: str, executable: str, kinesis_endpoint: str,
                        dynamodb_endpoint: str, region: str = "us-east-1", **overrides: Any) -> DaemonConfig:
        """Fast timings for one worker against kinesis-local + moto on 127.0.0.1.

        Credentials come from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (dummy values work).
        """
        values: dict[str, Any] = {
            "stream_name": stream_name, "application_name": application_name, "executable": executable,
            "region": region, "kinesis_endpoint": kinesis_endpoint, "dynamodb_endpoint": dynamodb_endpoint,
            **LOCAL_TIMINGS,
        }
        return cls(**{**values, **overrides})


LOCAL_TIMINGS: dict[str, Any] = {
    "credentials_provider": "EnvironmentVariableCredentialsProvider",
    "failover_time_millis": 5_000,
    "lease_assignment_interval_millis": 1_000,
    "shard_sync_interval_millis": 1_000,
    "parent_shard_poll_interval_millis": 1_000,
    "scheduler_initialization_backoff_millis": 500,
    "task_backoff_time_millis": 250,
    "idle_time_between_reads_millis": MIN_IDLE_BETWEEN_READS_MILLIS,
    "disable_worker_metrics": True,
    "in_memory_worker_metrics_capture_frequency_millis": 250,
    "worker_metrics_reporter_freq_millis": 5_000,
    "shutdown_grace_millis": 3_000,
    "graceful_lease_handoff_timeout_millis": 2_000,
}
