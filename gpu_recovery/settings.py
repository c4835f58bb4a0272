"""All configuration in one validated model: explicit argument > environment variable > default.

The old Lambda tool's variables (TASK_TABLE_NAME, JOB_TABLE_NAME, NODE_TABLE_NAME, ECS_CLUSTER_NAME,
DCGM_HEALTH_CHECK_TASK, SNS_TOPIC_NAME, SNS_TOPIC_DISPLAY_NAME) keep working. A bad value fails at
start with the setting's name, the variable to set and what was expected. "False" means false.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from consumers.core.errors import ConfigError


def _env(default: Any, *names: str) -> Any:
    return Field(default, validation_alias=AliasChoices(*names))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True, frozen=True)

    # --- where AWS is --------------------------------------------------------------------------
    region: str = Field("us-east-1", validation_alias=AliasChoices("GPU_RECOVERY_REGION", "AWS_REGION",
                                                                    "AWS_DEFAULT_REGION", "region"))
    endpoint_url: str | None = _env(None, "GPU_RECOVERY_ENDPOINT_URL", "AWS_ENDPOINT_URL", "endpoint_url")
    kinesis_endpoint_url: str | None = _env(None, "GPU_RECOVERY_KINESIS_ENDPOINT_URL", "kinesis_endpoint_url")
    account_id: str = Field("123456789012", pattern=r"^\d{12}$",
                            validation_alias=AliasChoices("GPU_RECOVERY_ACCOUNT_ID", "account_id"))

    # --- the stream and tables -------------------------------------------------------------------
    stream_name: str = Field("gpu-recovery-events",
                             validation_alias=AliasChoices("GPU_RECOVERY_STREAM_NAME", "stream_name"))
    stream_shards: int = Field(4, ge=1, le=500,
                               validation_alias=AliasChoices("GPU_RECOVERY_STREAM_SHARDS", "stream_shards"))
    task_table: str = Field("ecs_task", validation_alias=AliasChoices("TASK_TABLE_NAME", "task_table"))
    job_table: str = Field("ecs_job", validation_alias=AliasChoices("JOB_TABLE_NAME", "job_table"))
    node_table: str = Field("ecs_node", validation_alias=AliasChoices("NODE_TABLE_NAME", "node_table"))
    parked_table: str = Field("gpu_recovery_parked",
                              validation_alias=AliasChoices("GPU_RECOVERY_PARKED_TABLE", "parked_table"))
    recovery_table: str = Field("gpu_recovery_state",
                                validation_alias=AliasChoices("GPU_RECOVERY_STATE_TABLE", "recovery_table"))
    ledger_table: str = Field("gpu_recovery_ledger",
                              validation_alias=AliasChoices("GPU_RECOVERY_LEDGER_TABLE", "ledger_table"))
    checkpoint_table: str = Field(
        "gpu_recovery_checkpoints",
        validation_alias=AliasChoices("GPU_RECOVERY_CHECKPOINT_TABLE", "checkpoint_table"),
    )
    parked_archive_bucket: str | None = _env(None, "GPU_RECOVERY_PARKED_ARCHIVE_BUCKET", "parked_archive_bucket")
    ttl_days: int = Field(30, ge=1, validation_alias=AliasChoices("GPU_RECOVERY_TTL_DAYS", "ttl_days"))

    # --- the cluster ------------------------------------------------------------------------------
    cluster_name: str = Field("gpu-training", min_length=1,
                              validation_alias=AliasChoices("ECS_CLUSTER_NAME", "cluster_name"))
    health_check_task: str = Field(
        "gpu-recovery-healthcheck", min_length=1,
        validation_alias=AliasChoices("DCGM_HEALTH_CHECK_TASK", "health_check_task"),
    )
    job_id_source: Literal["group", "startedBy"] = _env("group", "GPU_RECOVERY_JOB_ID_SOURCE", "job_id_source")
    gpu_task_families: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        validation_alias=AliasChoices("GPU_RECOVERY_GPU_TASK_FAMILIES", "gpu_task_families"),
    )

    # --- notifications ---------------------------------------------------------------------------
    sns_topic_name: str = Field("gpu-recovery-notifications",
                                validation_alias=AliasChoices("SNS_TOPIC_NAME", "sns_topic_name"))
    sns_topic_display_name: str = Field(
        "GPU recovery", validation_alias=AliasChoices("SNS_TOPIC_DISPLAY_NAME", "sns_topic_display_name")
    )

    # --- recovery policy (DESIGN section 5) ------------------------------------------------------
    max_job_restarts: int = Field(3, ge=0, validation_alias=AliasChoices("GPU_RECOVERY_MAX_JOB_RESTARTS",
                                                                          "max_job_restarts"))
    breaker_fraction: float = Field(0.2, gt=0, le=1, validation_alias=AliasChoices(
        "GPU_RECOVERY_BREAKER_FRACTION", "breaker_fraction"))
    fault_window_days: int = Field(7, ge=1, validation_alias=AliasChoices("GPU_RECOVERY_FAULT_WINDOW_DAYS",
                                                                           "fault_window_days"))
    health_check_deadline_s: int = Field(1200, ge=1, validation_alias=AliasChoices(
        "GPU_RECOVERY_HEALTH_CHECK_DEADLINE_S", "health_check_deadline_s"))
    reboot_deadline_s: int = Field(900, ge=1, validation_alias=AliasChoices(
        "GPU_RECOVERY_REBOOT_DEADLINE_S", "reboot_deadline_s"))
    restart_deadline_s: int = Field(600, ge=1, validation_alias=AliasChoices(
        "GPU_RECOVERY_RESTART_DEADLINE_S", "restart_deadline_s"))
    capacity_deadline_s: int = Field(3600, ge=1, validation_alias=AliasChoices(
        "GPU_RECOVERY_CAPACITY_DEADLINE_S", "capacity_deadline_s"))
    restart_backoff_s: int = Field(30, ge=0, validation_alias=AliasChoices(
        "GPU_RECOVERY_RESTART_BACKOFF_S", "restart_backoff_s"))
    replace_instances: bool = Field(False, validation_alias=AliasChoices(
        "GPU_RECOVERY_REPLACE_INSTANCES", "replace_instances"))
    dry_run: bool = Field(False, validation_alias=AliasChoices("GPU_RECOVERY_DRY_RUN", "dry_run"))
    metrics: bool = Field(True, validation_alias=AliasChoices("GPU_RECOVERY_METRICS", "metrics"))

    @field_validator("gpu_task_families", mode="before")
    @classmethod
    def _split_families(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

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


def env_names(field_name: str) -> list[str]:
    """The environment variables that set a field, most specific first."""
    alias = Settings.model_fields[field_name].validation_alias
    choices = alias.choices if isinstance(alias, AliasChoices) else []
    return [str(c) for c in choices if isinstance(c, str) and c.isupper()]


def load_settings(**overrides: Any) -> Settings:
    """Build settings from explicit values (None means 'not given'), then the environment, then defaults."""
    given = {key: value for key, value in overrides.items() if value is not None}
    try:
        return Settings(**given)
    except ValidationError as exc:
        raise ConfigError(_explain(exc)) from None


def _explain(exc: ValidationError) -> str:
    lines = ["invalid configuration:"]
    for error in exc.errors():
        name = str(error["loc"][0]) if error["loc"] else "?"
        field = _field_for(name)
        variables = env_names(field) if field else []
        where = f" (environment variable {' or '.join(variables)})" if variables else ""
        got = error.get("input")
        shown = "" if isinstance(got, dict) else f"; got {got!r}"
        lines.append(f"  setting {field or name}{where}: {error['msg']}{shown}.")
        if variables:
            lines.append(f"    fix: set {variables[0]} to a valid value, or unset it to use the default.")
    return "\n".join(lines)


def _field_for(name: str) -> str | None:
    if name in Settings.model_fields:
        return name
    for field_name in Settings.model_fields:
        if name in env_names(field_name):
            return field_name
    return None
