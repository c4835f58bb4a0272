"""All configuration in one validated model: explicit argument > environment variable > default.

The old Lambda tool's variables (TASK_TABLE_NAME, JOB_TABLE_NAME, NODE_TABLE_NAME, ECS_CLUSTER_NAME,
DCGM_HEALTH_CHECK_TASK, SNS_TOPIC_NAME, SNS_TOPIC_DISPLAY_NAME) keep working. A bad value fails at
start with the setting's name, the variable to set and what was expected. "False" means false.

Every duration, TTL and count has an upper bound, every name the shape AWS accepts, every endpoint
is an http(s) URL with a host: a value that would validate here and then crash the consumers in a
loop fails at start instead. The README's configuration table lists each default and bound
(tests/test_settings.py holds the two together). A new setting follows the same pattern: a bound
on every number, a pattern or a minimum length on every name, a README row.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from consumers.config_loading import environment_variables, load_model

# Names as AWS accepts them (each service's API reference: CreateStream, CreateTable, CreateCluster,
# RegisterTaskDefinition, CreateTopic). A wrong name fails here, not at the first AWS call.
REGION = r"^[a-z]{2}(-[a-z]+)+-\d{1,2}$"
STREAM_NAME = r"^[A-Za-z0-9_.-]{1,128}$"
TABLE_NAME = r"^[A-Za-z0-9_.-]{3,255}$"
CLUSTER_NAME = r"^[A-Za-z0-9_-]{1,255}$"
FAMILY_NAME = r"^[A-Za-z0-9_-]{1,255}$"
TOPIC_NAME = r"^[A-Za-z0-9_-]{1,256}$"
DAY_S = 86_400
# The last restart waits restart_backoff_s x 2^(max_job_restarts - 1); beyond this the job is as good as lost.
LONGEST_BACKOFF_S = 7 * DAY_S
ENDPOINT_FIELDS = ("endpoint_url", "kinesis_endpoint_url")

DEFAULT_IDENTITY: tuple[Literal["group", "tag", "startedBy"], ...] = ("group", "tag", "startedBy")


def _env(default: Any, *names: str) -> Any:
    return Field(default, validation_alias=AliasChoices(*names))


def _table(default: str, *names: str) -> Any:
    return Field(default, pattern=TABLE_NAME, validation_alias=AliasChoices(*names))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True, frozen=True)

    # --- where AWS is --------------------------------------------------------------------------
    region: str = Field("us-east-1", pattern=REGION, validation_alias=AliasChoices(
        "GPU_RECOVERY_REGION", "AWS_REGION", "AWS_DEFAULT_REGION", "region"))
    endpoint_url: str | None = _env(None, "GPU_RECOVERY_ENDPOINT_URL", "AWS_ENDPOINT_URL", "endpoint_url")
    kinesis_endpoint_url: str | None = _env(None, "GPU_RECOVERY_KINESIS_ENDPOINT_URL", "kinesis_endpoint_url")
    account_id: str = Field("123456789012", pattern=r"^\d{12}$",
                            validation_alias=AliasChoices("GPU_RECOVERY_ACCOUNT_ID", "account_id"))

    # --- the stream and tables -------------------------------------------------------------------
    stream_name: str = Field("gpu-recovery-events", pattern=STREAM_NAME,
                             validation_alias=AliasChoices("GPU_RECOVERY_STREAM_NAME", "stream_name"))
    stream_shards: int = Field(4, ge=1, le=500,
                               validation_alias=AliasChoices("GPU_RECOVERY_STREAM_SHARDS", "stream_shards"))
    task_table: str = _table("ecs_task", "TASK_TABLE_NAME", "task_table")
    job_table: str = _table("ecs_job", "JOB_TABLE_NAME", "job_table")
    node_table: str = _table("ecs_node", "NODE_TABLE_NAME", "node_table")
    parked_table: str = _table("gpu_recovery_parked", "GPU_RECOVERY_PARKED_TABLE", "parked_table")
    recovery_table: str = _table("gpu_recovery_state", "GPU_RECOVERY_STATE_TABLE", "recovery_table")
    ledger_table: str = _table("gpu_recovery_ledger", "GPU_RECOVERY_LEDGER_TABLE", "ledger_table")
    checkpoint_table: str = _table("gpu_recovery_checkpoints", "GPU_RECOVERY_CHECKPOINT_TABLE", "checkpoint_table")
    parked_archive_bucket: str | None = Field(None, pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$",
                                              validation_alias=AliasChoices("GPU_RECOVERY_PARKED_ARCHIVE_BUCKET",
                                                                            "parked_archive_bucket"))
    ttl_days: int = Field(30, ge=1, le=3650, validation_alias=AliasChoices("GPU_RECOVERY_TTL_DAYS", "ttl_days"))

    # --- the cluster ------------------------------------------------------------------------------
    cluster_name: str = Field("gpu-training", pattern=CLUSTER_NAME,
                              validation_alias=AliasChoices("ECS_CLUSTER_NAME", "cluster_name"))
    health_check_task: str = Field(
        "gpu-recovery-healthcheck", pattern=FAMILY_NAME,
        validation_alias=AliasChoices("DCGM_HEALTH_CHECK_TASK", "health_check_task"),
    )
    job_id_source: Literal["group", "startedBy"] = _env("group", "GPU_RECOVERY_JOB_ID_SOURCE", "job_id_source")
    gpu_task_families: Annotated[list[str], NoDecode] = Field(
        default_factory=list, max_length=100,
        validation_alias=AliasChoices("GPU_RECOVERY_GPU_TASK_FAMILIES", "gpu_task_families"),
    )

    # --- notifications ---------------------------------------------------------------------------
    sns_topic_name: str = Field("gpu-recovery-notifications", pattern=TOPIC_NAME,
                                validation_alias=AliasChoices("SNS_TOPIC_NAME", "sns_topic_name"))
    sns_topic_display_name: str = Field(
        "GPU recovery", min_length=1, max_length=100,
        validation_alias=AliasChoices("SNS_TOPIC_DISPLAY_NAME", "sns_topic_display_name")
    )
    # A second topic for Amazon Q Developer in chat applications (Slack, Teams): it gets the chat card
    # (docs/notifications.md). Unset: no chat topic, nothing published for chat.
    sns_chat_topic_name: str | None = Field(None, pattern=r"^[A-Za-z0-9_-]{1,256}$", validation_alias=AliasChoices(
        "GPU_RECOVERY_SNS_CHAT_TOPIC_NAME", "sns_chat_topic_name"))

    # --- recovery policy (DESIGN section 5) ------------------------------------------------------
    max_job_restarts: int = Field(3, ge=0, le=20, validation_alias=AliasChoices(
        "GPU_RECOVERY_MAX_JOB_RESTARTS", "max_job_restarts"))
    breaker_fraction: float = Field(0.2, gt=0, le=1, validation_alias=AliasChoices(
        "GPU_RECOVERY_BREAKER_FRACTION", "breaker_fraction"))
    fault_window_days: int = Field(7, ge=1, le=365, validation_alias=AliasChoices(
        "GPU_RECOVERY_FAULT_WINDOW_DAYS", "fault_window_days"))
    health_check_deadline_s: int = Field(1200, ge=1, le=DAY_S, validation_alias=AliasChoices(
        "GPU_RECOVERY_HEALTH_CHECK_DEADLINE_S", "health_check_deadline_s"))
    reboot_deadline_s: int = Field(900, ge=1, le=DAY_S, validation_alias=AliasChoices(
        "GPU_RECOVERY_REBOOT_DEADLINE_S", "reboot_deadline_s"))
    restart_deadline_s: int = Field(600, ge=1, le=DAY_S, validation_alias=AliasChoices(
        "GPU_RECOVERY_RESTART_DEADLINE_S", "restart_deadline_s"))
    capacity_deadline_s: int = Field(3600, ge=1, le=7 * DAY_S, validation_alias=AliasChoices(
        "GPU_RECOVERY_CAPACITY_DEADLINE_S", "capacity_deadline_s"))
    restart_backoff_s: int = Field(30, ge=0, le=3600, validation_alias=AliasChoices(
        "GPU_RECOVERY_RESTART_BACKOFF_S", "restart_backoff_s"))
    replace_instances: bool = Field(False, validation_alias=AliasChoices(
        "GPU_RECOVERY_REPLACE_INSTANCES", "replace_instances"))
    restart_budget_window_s: int = Field(86_400, ge=60, le=90 * 86_400, validation_alias=AliasChoices(
        "GPU_RECOVERY_RESTART_BUDGET_WINDOW_S", "restart_budget_window_s"))
    max_out_of_service_fraction: float = Field(0.2, gt=0, le=1, validation_alias=AliasChoices(
        "GPU_RECOVERY_MAX_OUT_OF_SERVICE_FRACTION", "max_out_of_service_fraction"))
    min_out_of_service_nodes: int = Field(2, ge=1, le=10_000, validation_alias=AliasChoices(
        "GPU_RECOVERY_MIN_OUT_OF_SERVICE_NODES", "min_out_of_service_nodes"))
    proactive_action: Literal["notify", "stop_job"] = Field("notify", validation_alias=AliasChoices(
        "GPU_RECOVERY_PROACTIVE_ACTION", "proactive_action"))
    future_skew_s: int = Field(300, ge=0, le=86_400, validation_alias=AliasChoices(
        "GPU_RECOVERY_FUTURE_SKEW_S", "future_skew_s"))
    notice_window_s: int = Field(60, ge=0, le=3_600, validation_alias=AliasChoices(
        "GPU_RECOVERY_NOTICE_WINDOW_S", "notice_window_s"))
    maintenance_lead_s: int = Field(7_200, ge=0, le=30 * 86_400, validation_alias=AliasChoices(
        "GPU_RECOVERY_MAINTENANCE_LEAD_S", "maintenance_lead_s"))
    siblings_deadline_s: int = Field(120, ge=1, le=86_400, validation_alias=AliasChoices(
        "GPU_RECOVERY_SIBLINGS_DEADLINE_S", "siblings_deadline_s"))
    job_identity: Annotated[list[Literal["group", "tag", "startedBy"]], NoDecode] = Field(
        default_factory=lambda: list(DEFAULT_IDENTITY),
        validation_alias=AliasChoices("GPU_RECOVERY_JOB_IDENTITY", "job_identity"))
    job_tag_key: str = Field("gpu-recovery:job", min_length=1, max_length=128, validation_alias=AliasChoices(
        "GPU_RECOVERY_JOB_TAG_KEY", "job_tag_key"))
    services_are_jobs: bool = Field(False, validation_alias=AliasChoices(
        "GPU_RECOVERY_SERVICES_ARE_JOBS", "services_are_jobs"))
    dry_run: bool = Field(False, validation_alias=AliasChoices("GPU_RECOVERY_DRY_RUN", "dry_run"))
    metrics: bool = Field(True, validation_alias=AliasChoices("GPU_RECOVERY_METRICS", "metrics"))

    @field_validator("job_identity", mode="before")
    @classmethod
    def _split_identity(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("gpu_task_families", mode="before")
    @classmethod
    def _split_families(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("gpu_task_families")
    @classmethod
    def _family_names(cls, value: list[str]) -> list[str]:
        bad = [name for name in value if not re.match(FAMILY_NAME, name)]
        if bad:
            raise ValueError(f"{', '.join(map(repr, bad))} is not a task definition family (1-255 of A-Z a-z 0-9 _ -)")
        return value

    @field_validator(*ENDPOINT_FIELDS, mode="before")
    @classmethod
    def _unset_when_empty(cls, value: Any) -> Any:
        # `export AWS_ENDPOINT_URL=` is how a shell unsets it.
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator(*ENDPOINT_FIELDS)
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        return None if value is None else endpoint_url(value)

    @model_validator(mode="after")
    def _backoff_within_reach(self) -> Settings:
        longest = self.restart_backoff_s * 2 ** max(0, self.max_job_restarts - 1)
        if longest > LONGEST_BACKOFF_S:
            raise ValueError(
                f"settings restart_backoff_s and max_job_restarts: the last restart would wait {longest} s "
                f"(restart_backoff_s x 2^(max_job_restarts - 1)), over {LONGEST_BACKOFF_S} s (7 days).\n"
                "    fix: lower GPU_RECOVERY_RESTART_BACKOFF_S or GPU_RECOVERY_MAX_JOB_RESTARTS."
            )
        return self

    @property
    def cluster_arn(self) -> str:
        return f"arn:aws:ecs:{self.region}:{self.account_id}:cluster/{self.cluster_name}"

    def table_names(self) -> dict[str, str]:
        """Logical table -> physical name (see consumers/adapters/table_specs.py)."""
        return {
            "ecs_task": self.task_table, "ecs_job": self.job_table, "ecs_node": self.node_table,
            "parked": self.parked_table, "recovery": self.recovery_table, "ledger": self.ledger_table,
            "checkpoints": self.checkpoint_table,
        }

    def projection_tables(self) -> dict[str, str]:
        return {"ecs_task": self.task_table, "ecs_job": self.job_table, "ecs_node": self.node_table}


def endpoint_url(value: str) -> str:
    """An http(s) URL with a host (and a valid port, if any); raises ValueError saying what is wrong."""
    try:
        parts = urlsplit(value.strip())
        parts.port  # noqa: B018 - parsing the port is the check
    except ValueError as exc:
        raise ValueError(f"not a URL ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL with a host, e.g. http://127.0.0.1:5000")
    return value.strip()


def env_names(field_name: str) -> list[str]:
    """The environment variables that set a field, most specific first."""
    return environment_variables(Settings, field_name)


def load_settings(**overrides: Any) -> Settings:
    """Build settings from explicit values (None means 'not given'), then the environment, then defaults."""
    return load_model(Settings, overrides, title="invalid configuration")
