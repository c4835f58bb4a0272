"""The agent's settings: explicit argument > environment variable > default, validated in one model.

The recovery consumer starts the check task with container overrides that set the environment variables
below (``GPU_RECOVERY_CHECK_LEVEL``, ``GPU_RECOVERY_INCIDENT_ID``, ``GPU_RECOVERY_NODE_ARN``, ...); an
operator running it by hand passes the same values as flags. Stream, region and endpoint come from
``gpu_recovery.settings`` (``GPU_RECOVERY_STREAM_NAME``, ``AWS_REGION``, ``AWS_ENDPOINT_URL``).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from consumers.config_loading import environment_help, load_model


def _env(default: Any, name: str, field: str, **kwargs: Any) -> Any:
    return Field(default, validation_alias=AliasChoices(name, field), **kwargs)


class AgentConfig(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True, frozen=True)

    level: int = _env(2, "GPU_RECOVERY_CHECK_LEVEL", "level", ge=1, le=4)
    incident_id: str | None = _env(None, "GPU_RECOVERY_INCIDENT_ID", "incident_id")
    node_arn: str | None = _env(None, "GPU_RECOVERY_NODE_ARN", "node_arn")
    instance_id: str | None = _env(None, "GPU_RECOVERY_INSTANCE_ID", "instance_id")
    check_task_arn: str | None = _env(None, "GPU_RECOVERY_CHECK_TASK_ARN", "check_task_arn")
    # The recovery consumer sets GPU_RECOVERY_SINCE (the incident's opening time); FAULT_TIME reads the same.
    since: datetime | None = Field(None, validation_alias=AliasChoices("GPU_RECOVERY_SINCE", "GPU_RECOVERY_FAULT_TIME",
                                                                      "since"))
    # The XID comes before the task stops and the incident opens: look back this far before ``since``.
    since_margin_s: float = _env(3600.0, "GPU_RECOVERY_SINCE_MARGIN_S", "since_margin_s", ge=0)
    expected_gpus: int | None = _env(None, "GPU_RECOVERY_EXPECTED_GPUS", "expected_gpus", ge=1)
    dcgmi: str = _env("dcgmi", "GPU_RECOVERY_DCGMI", "dcgmi", min_length=1)
    kernel_log: Path | None = _env(None, "GPU_RECOVERY_KERNEL_LOG", "kernel_log")
    diag_timeout_s: float | None = _env(None, "GPU_RECOVERY_DIAG_TIMEOUT_S", "diag_timeout_s", gt=0)
    health_timeout_s: float = _env(60.0, "GPU_RECOVERY_HEALTH_TIMEOUT_S", "health_timeout_s", gt=0)
    health_sample_s: float = _env(10.0, "GPU_RECOVERY_HEALTH_SAMPLE_S", "health_sample_s", ge=0)
    skip_health: bool = _env(False, "GPU_RECOVERY_SKIP_HEALTH", "skip_health")
    kill_grace_s: float = _env(10.0, "GPU_RECOVERY_KILL_GRACE_S", "kill_grace_s", ge=0)
    stdout_only: bool = _env(False, "GPU_RECOVERY_STDOUT_ONLY", "stdout_only")
    put_attempts: int = _env(5, "GPU_RECOVERY_PUT_ATTEMPTS", "put_attempts", ge=1, le=20)
    # The check attempt this run answers, and the secret that signs its report (both from the StartTask
    # overrides recovery sends). The secret is never printed or logged; without it the report has no proof.
    check_key: str | None = _env(None, "GPU_RECOVERY_CHECK_KEY", "check_key", min_length=1)
    check_secret: SecretStr | None = _env(None, "GPU_RECOVERY_CHECK_SECRET", "check_secret")
    # The node watcher (--watch): how often to ask dcgmi health, and how long an XID on a GPU stays one signal.
    watch_interval_s: float = _env(300.0, "GPU_RECOVERY_WATCH_INTERVAL_S", "watch_interval_s", ge=1, le=86_400)
    watch_xid_repeat_s: float = _env(3600.0, "GPU_RECOVERY_WATCH_XID_REPEAT_S", "watch_xid_repeat_s", ge=0)


ENV_VARS = {
    name: str(next(c for c in field.validation_alias.choices if isinstance(c, str) and c.isupper()))
    for name, field in AgentConfig.model_fields.items()
    if isinstance(field.validation_alias, AliasChoices)
}


_SECRET_FIELDS = frozenset({"check_secret"})


def load_config(**overrides: Any) -> AgentConfig:
    """Explicit values (None means "not given"), then the environment, then defaults."""
    return load_model(AgentConfig, overrides, title="invalid health-check configuration",
                      describe=environment_help(AgentConfig, options=True), hidden=_SECRET_FIELDS)
