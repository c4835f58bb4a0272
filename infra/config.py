"""What the CDK app needs to know, validated in one place, with errors that name the fix.

Two models: the runtime ``Settings`` (gpu_recovery/settings.py: table names, cluster, topic, policy; the
old Lambda tool's variables keep working) and ``InfraConfig`` below (what only a deployment needs:
stream capacity and retention, desired counts, emails, log retention, where to deploy).

Precedence for both: cdk context (``-c key=value`` or ``cdk.json``) > environment variable > default.
A context key is the setting's own name (``-c cluster_name=gpu-a``, ``-c retention_hours=720``).
Nothing here reads the environment on its own: the caller passes it in.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from consumers.config_loading import FieldHelp, load_model
from consumers.core.errors import ConfigError
from gpu_recovery.settings import Settings, load_settings

# The retention periods CloudWatch Logs accepts (PutRetentionPolicy).
LOG_RETENTION_DAYS = frozenset(
    {1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653}
)

# Environment variable of each InfraConfig field. Account and region use the names the CDK docs use
# for an explicit deployment target; the rest follow GPU_RECOVERY_<FIELD>.
_ENV_OVERRIDES = {"account": "CDK_DEPLOY_ACCOUNT", "region": "CDK_DEPLOY_REGION"}

_EMAIL = r"^[^@\s,]+@[^@\s,]+\.[^@\s,]+$"
# AWS::Chatbot::*ChannelConfiguration's own patterns for the ids.
_UUID = r"^[0-9A-Fa-f]{8}(?:-[0-9A-Fa-f]{4}){3}-[0-9A-Fa-f]{12}$"
_TEAMS_CHANNEL = r"^([a-zA-Z0-9-_=+/.,])*%3[aA]([a-zA-Z0-9-_=+/.,])*%40([a-zA-Z0-9-_=+/.,])*$"
_ROLE_ARN = r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+$"


class InfraConfig(BaseModel):
    """Deployment-only settings. Field names are the cdk context keys."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # --- where ----------------------------------------------------------------------------------
    # Both unset: an environment-agnostic stack (deploys wherever the CLI's credentials point).
    # EventBridge rules only see their own account and region, so this is the cluster's.
    account: str | None = Field(None, pattern=r"^\d{12}$")
    region: str | None = Field(None, pattern=r"^[a-z]{2}(-[a-z]+)+-\d$")
    stack_name: str = Field("GpuRecovery", pattern=r"^[A-Za-z][A-Za-z0-9-]{0,127}$")
    # Names of the rules, the consumers' cluster and the EFO consumer start with this.
    name_prefix: str = Field("gpu-recovery", pattern=r"^[a-z][a-z0-9-]{0,30}$")

    # --- the stream ------------------------------------------------------------------------------
    stream_mode: Literal["on_demand", "provisioned"] = "on_demand"
    # Kinesis keeps 24 h to 365 days; the Firehose archive keeps the rest.
    retention_hours: int = Field(168, ge=24, le=8760)

    # --- consumers and the health check ---------------------------------------------------------
    projector_desired_count: int = Field(2, ge=0, le=50)
    recovery_desired_count: int = Field(2, ge=0, le=50)
    log_retention_days: int = 30
    # GPUs the DCGM task reserves (all of a p4d/p5 node); the recovery may override it per node.
    health_check_gpus: int = Field(8, ge=1, le=16)
    # Prebuilt images (e.g. pushed by CI); unset: built from docker/consumer.Dockerfile and
    # healthcheck/Dockerfile at deploy time.
    consumer_image: str | None = Field(None, min_length=1)
    health_check_image: str | None = Field(None, min_length=1)
    # The node watcher (`gpu-recovery healthcheck --watch`) as an ECS daemon service on the GPU cluster's
    # nodes (infra/node_watcher.py); off by default.
    node_watcher: bool = False
    # Roles the training jobs' task definitions name (task and execution roles): restarting a task
    # passes them to ECS, so the recovery consumer needs iam:PassRole on exactly these.
    job_task_role_arns: tuple[str, ...] = ()

    # --- network (unset: a new VPC with private subnets and NAT) --------------------------------
    vpc_id: str | None = Field(None, pattern=r"^vpc-([0-9a-f]{8}|[0-9a-f]{17})$")
    vpc_subnet_ids: tuple[str, ...] = ()
    vpc_availability_zones: tuple[str, ...] = ()
    nat_gateways: int = Field(1, ge=1, le=3)

    # --- notifications, archive, alarms ----------------------------------------------------------
    notification_emails: tuple[str, ...] = ()
    archive_glacier_after_days: int = Field(90, ge=1, le=3650)
    iterator_age_alarm_seconds: int = Field(300, ge=60, le=86_400)
    open_incidents_alarm_threshold: int = Field(3, ge=1)

    # --- chat: Amazon Q Developer in chat applications (off unless a channel's ids are given) ----
    # docs/notifications.md says where to find them. Slack: workspace (team) id and channel id.
    slack_workspace_id: str | None = Field(None, pattern=r"^[0-9A-Z]{1,255}$")
    slack_channel_id: str | None = Field(None, pattern=r"^[A-Za-z0-9]{1,256}$")
    # Microsoft Teams: the team id, the channel id (URL-encoded, as in the channel's link) and the tenant id.
    teams_team_id: str | None = Field(None, pattern=_UUID)
    teams_channel_id: str | None = Field(None, max_length=256, pattern=_TEAMS_CHANNEL)
    teams_tenant_id: str | None = Field(None, pattern=_UUID)

    @field_validator(
        "notification_emails", "job_task_role_arns", "vpc_subnet_ids", "vpc_availability_zones", mode="before"
    )
    @classmethod
    def _split_lists(cls, value: Any) -> Any:
        # `-c key=a,b` arrives as one string; cdk.json may hold a JSON list.
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("vpc_subnet_ids")
    @classmethod
    def _subnets(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _each_matches(value, r"^subnet-([0-9a-f]{8}|[0-9a-f]{17})$", "a subnet id (subnet-0123abcd...)")

    @field_validator("notification_emails")
    @classmethod
    def _emails(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _each_matches(value, _EMAIL, "an email address")

    @field_validator("job_task_role_arns")
    @classmethod
    def _roles(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _each_matches(value, _ROLE_ARN, "an IAM role ARN (arn:aws:iam::ACCOUNT:role/NAME)")

    @field_validator("log_retention_days")
    @classmethod
    def _retention(cls, value: int) -> int:
        if value not in LOG_RETENTION_DAYS:
            raise ValueError(f"must be one of CloudWatch Logs' periods {sorted(LOG_RETENTION_DAYS)}")
        return value

    @model_validator(mode="after")
    def _vpc_complete(self) -> InfraConfig:
        given = [bool(self.vpc_id), bool(self.vpc_subnet_ids), bool(self.vpc_availability_zones)]
        if any(given) and not all(given):
            raise ValueError(
                "vpc_id, vpc_subnet_ids and vpc_availability_zones go together (private subnets with a "
                "route to the internet or VPC endpoints, one per availability zone, in the same order)"
            )
        if len(self.vpc_subnet_ids) != len(self.vpc_availability_zones):
            raise ValueError("vpc_subnet_ids and vpc_availability_zones must have the same length")
        return self

    @model_validator(mode="after")
    def _chat_complete(self) -> InfraConfig:
        for names in (("slack_workspace_id", "slack_channel_id"),
                      ("teams_team_id", "teams_channel_id", "teams_tenant_id")):
            given = [getattr(self, name) is not None for name in names]
            if any(given) and not all(given):
                raise ValueError(f"{', '.join(names)} go together (one chat channel); leave all unset for no chat")
        return self

    @property
    def chat_enabled(self) -> bool:
        """A Slack or Teams channel is configured."""
        return self.slack_channel_id is not None or self.teams_channel_id is not None


def _each_matches(values: tuple[str, ...], pattern: str, what: str) -> tuple[str, ...]:
    bad = [value for value in values if not re.match(pattern, value)]
    if bad:
        raise ValueError(f"{', '.join(map(repr, bad))} is not {what}")
    return values


def env_name(field: str) -> str:
    """The environment variable that sets an InfraConfig field."""
    return _ENV_OVERRIDES.get(field, f"GPU_RECOVERY_{field.upper()}")


def load_infra_config(context: Mapping[str, Any], environ: Mapping[str, str]) -> InfraConfig:
    """Context > environment > default; raises ConfigError naming the context key and the variable."""
    values: dict[str, Any] = {}
    for field in InfraConfig.model_fields:
        if context.get(field) is not None:
            values[field] = context[field]
        elif environ.get(env_name(field)):
            values[field] = environ[env_name(field)]
    return load_model(InfraConfig, values, title="invalid configuration", describe=_describe)


def load_runtime_settings(context: Mapping[str, Any]) -> Settings:
    """The runtime Settings with cdk context values as explicit arguments (environment next, then defaults)."""
    explicit = {field: context.get(field) for field in Settings.model_fields}
    try:
        return load_settings(**explicit)
    except ConfigError as exc:
        raise ConfigError(f"{exc}\n  (a cdk context key of the same name as the setting, "
                          "e.g. -c cluster_name=NAME, overrides the environment)") from None


def _describe(field: str) -> FieldHelp:
    variable = env_name(field)
    return FieldHelp(
        name=field, where=f"cdk context key {field}, environment variable {variable}",
        fix=f"pass -c {field}=VALUE (or set it in cdk.json's context), or set {variable}; "
            "leave both unset for the default.",
    )


__all__ = [
    "LOG_RETENTION_DAYS",
    "InfraConfig",
    "env_name",
    "load_infra_config",
    "load_runtime_settings",
]
