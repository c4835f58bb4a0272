"""Configuration of the CDK app: precedence, validation messages, and what reaches the containers.

Pure tests: nothing here synthesizes.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from aws_cdk import aws_logs as logs

from consumers.core.errors import ConfigError
from events_schema.rules import ingest_rules
from infra.config import LOG_RETENTION_DAYS, InfraConfig, env_name, load_infra_config, load_runtime_settings
from infra.environment import settings_environment
from infra.images import CONSUMER_DOCKERFILE, container_image
from infra.ingest import event_pattern
from infra.stack import retention_days

LEGACY_VARIABLES = {
    "TASK_TABLE_NAME": ("task_table", "old_tasks"),
    "JOB_TABLE_NAME": ("job_table", "old_jobs"),
    "NODE_TABLE_NAME": ("node_table", "old_nodes"),
    "ECS_CLUSTER_NAME": ("cluster_name", "gpu-prod"),
    "DCGM_HEALTH_CHECK_TASK": ("health_check_task", "dcgm-check"),
    "SNS_TOPIC_NAME": ("sns_topic_name", "gpu-alerts"),
    "SNS_TOPIC_DISPLAY_NAME": ("sns_topic_display_name", "GPU alerts"),
}


def test_defaults_need_no_configuration() -> None:
    # GIVEN no context and no environment
    # WHEN the infra config loads
    config = load_infra_config({}, {})
    # THEN every default holds: on-demand stream kept a week, two workers per consumer, no emails
    assert config == InfraConfig()
    assert (config.stream_mode, config.retention_hours, config.account) == ("on_demand", 168, None)
    assert (config.projector_desired_count, config.recovery_desired_count) == (2, 2)
    assert config.notification_emails == ()


def test_context_wins_over_environment_which_wins_over_default() -> None:
    # GIVEN a retention in both the context and the environment, and desired counts only in the environment
    environ = {"GPU_RECOVERY_RETENTION_HOURS": "720", "GPU_RECOVERY_PROJECTOR_DESIRED_COUNT": "4"}
    # WHEN loaded
    config = load_infra_config({"retention_hours": "8760"}, environ)
    # THEN the context value is used, then the environment, then the default
    assert config.retention_hours == 8760
    assert config.projector_desired_count == 4
    assert config.recovery_desired_count == 2


def test_lists_come_comma_separated_from_cli_or_as_json_lists() -> None:
    # GIVEN emails as one `-c` string and role ARNs as a cdk.json list
    context = {
        "notification_emails": "ops@example.com, oncall@example.com",
        "job_task_role_arns": ["arn:aws:iam::123456789012:role/trainer"],
    }
    # WHEN loaded
    config = load_infra_config(context, {})
    # THEN both are tuples of clean values
    assert config.notification_emails == ("ops@example.com", "oncall@example.com")
    assert config.job_task_role_arns == ("arn:aws:iam::123456789012:role/trainer",)


@pytest.mark.parametrize(
    ("context", "named"),
    [
        ({"retention_hours": "9000"}, "retention_hours"),
        ({"retention_hours": "12"}, "retention_hours"),
        ({"stream_mode": "ondemand"}, "stream_mode"),
        ({"log_retention_days": "31"}, "log_retention_days"),
        ({"notification_emails": "not-an-email"}, "notification_emails"),
        ({"job_task_role_arns": "arn:aws:s3:::bucket"}, "job_task_role_arns"),
        ({"account": "12345"}, "account"),
        ({"projector_desired_count": "-1"}, "projector_desired_count"),
    ],
)
def test_a_bad_value_names_the_context_key_the_variable_and_the_fix(context: dict[str, str], named: str) -> None:
    # GIVEN one invalid value
    # WHEN loaded
    with pytest.raises(ConfigError) as caught:
        load_infra_config(context, {})
    # THEN the message names the key, its environment variable and how to fix it
    message = str(caught.value)
    assert f"cdk context key {named}" in message
    assert env_name(named) in message
    assert f"fix: pass -c {named}=VALUE" in message


def test_account_and_region_use_the_cdk_deploy_variables() -> None:
    # GIVEN the deployment target in the CDK's conventional variables
    environ = {"CDK_DEPLOY_ACCOUNT": "210987654321", "CDK_DEPLOY_REGION": "eu-west-1"}
    # WHEN loaded
    config = load_infra_config({}, environ)
    # THEN the stack gets that environment
    assert (config.account, config.region) == ("210987654321", "eu-west-1")


def test_an_existing_vpc_needs_its_subnets_and_zones() -> None:
    # GIVEN a VPC id without subnets
    # WHEN loaded
    with pytest.raises(ConfigError, match="vpc_id, vpc_subnet_ids and vpc_availability_zones go together"):
        load_infra_config({"vpc_id": "vpc-0abc1234"}, {})
    # THEN a complete trio loads
    config = load_infra_config(
        {"vpc_id": "vpc-0abc1234", "vpc_subnet_ids": "subnet-0123abcd,subnet-4567cdef",
         "vpc_availability_zones": "az-a,az-b"}, {}
    )
    assert config.vpc_subnet_ids == ("subnet-0123abcd", "subnet-4567cdef")
    # AND an id that is not an AWS id is refused before CloudFormation sees it
    with pytest.raises(ConfigError, match="vpc_subnet_ids"):
        load_infra_config({"vpc_id": "vpc-0abc1234", "vpc_subnet_ids": "subnet-1",
                           "vpc_availability_zones": "az-a"}, {})


def test_the_old_tools_variables_still_configure_the_stack(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN the old Lambda tool's environment
    for variable, (_field, value) in LEGACY_VARIABLES.items():
        monkeypatch.setenv(variable, value)
    # WHEN the runtime settings load with no context
    settings = load_runtime_settings({})
    # THEN every variable took effect
    for _variable, (field, value) in LEGACY_VARIABLES.items():
        assert getattr(settings, field) == value


def test_context_overrides_the_old_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN ECS_CLUSTER_NAME in the environment and cluster_name in the context
    monkeypatch.setenv("ECS_CLUSTER_NAME", "from-env")
    # WHEN loaded
    settings = load_runtime_settings({"cluster_name": "from-context"})
    # THEN the explicit context value wins
    assert settings.cluster_name == "from-context"


def test_a_bad_runtime_setting_says_the_context_key_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN "False"-style garbage where a boolean belongs
    monkeypatch.setenv("GPU_RECOVERY_REPLACE_INSTANCES", "maybe")
    # WHEN loaded
    with pytest.raises(ConfigError) as caught:
        load_runtime_settings({})
    # THEN the settings model names the variable, and the app adds the context key
    assert "GPU_RECOVERY_REPLACE_INSTANCES" in str(caught.value)
    assert "-c cluster_name=NAME" in str(caught.value)


def test_container_environment_round_trips_through_the_settings_model(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN settings with a list, a boolean that is false and a legacy table name
    settings = load_runtime_settings(
        {"gpu_task_families": "train-a,train-b", "dry_run": False, "task_table": "old_tasks"}
    )
    # WHEN rendered as a container environment
    env = settings_environment(settings, overrides={"region": "eu-west-1", "account_id": "210987654321"})
    # THEN the old variables are there, "false" is spelled out, local endpoints are not
    assert env["TASK_TABLE_NAME"] == "old_tasks"
    assert env["GPU_RECOVERY_DRY_RUN"] == "false"
    assert env["GPU_RECOVERY_GPU_TASK_FAMILIES"] == "train-a,train-b"
    assert "GPU_RECOVERY_ENDPOINT_URL" not in env
    # AND a container reading that environment gets the same settings back
    for name in list(env):
        monkeypatch.setenv(name, env[name])
    again = load_runtime_settings({})
    assert again.model_dump(exclude={"region", "account_id"}) == settings.model_dump(
        exclude={"region", "account_id"}
    )
    assert (again.region, again.account_id) == ("eu-west-1", "210987654321")


def test_every_allowed_log_retention_maps_to_cdks_enum() -> None:
    # GIVEN the periods CloudWatch Logs accepts
    # WHEN mapped
    mapped = {days: retention_days(days) for days in LOG_RETENTION_DAYS}
    # THEN each maps to a distinct finite CDK period, in order
    assert mapped[1] is logs.RetentionDays.ONE_DAY
    assert mapped[30] is logs.RetentionDays.ONE_MONTH
    assert mapped[3653] is logs.RetentionDays.TEN_YEARS
    assert len(set(mapped.values())) == len(LOG_RETENTION_DAYS)


def test_rule_patterns_convert_field_for_field() -> None:
    # GIVEN the rules module's patterns
    for rule in ingest_rules("arn:aws:ecs:us-east-1:123456789012:cluster/gpu"):
        # WHEN converted to CDK's EventPattern
        pattern = event_pattern(rule.event_pattern)
        # THEN nothing is lost
        assert pattern.source == rule.event_pattern["source"]
        assert pattern.detail_type == rule.event_pattern["detail-type"]
        assert pattern.detail == rule.event_pattern["detail"]
        assert pattern.account == rule.event_pattern.get("account")
        assert pattern.region == rule.event_pattern.get("region")
    # AND a field CDK cannot express is refused rather than dropped
    with pytest.raises(ValueError, match="no EventPattern equivalent"):
        event_pattern({"source": ["aws.ecs"], "replay-name": ["x"]})


def test_a_missing_dockerfile_says_how_to_deploy_anyway(tmp_path: Path) -> None:
    # GIVEN a checkout without the consumer Dockerfile
    # WHEN its image is resolved
    with pytest.raises(ConfigError) as caught:
        container_image(configured=None, source_root=tmp_path, dockerfile=CONSUMER_DOCKERFILE,
                        setting="consumer_image")
    # THEN the error names the file and the prebuilt-image settings
    assert CONSUMER_DOCKERFILE in str(caught.value)
    assert "-c consumer_image=IMAGE_URI" in str(caught.value)
    assert "GPU_RECOVERY_CONSUMER_IMAGE" in str(caught.value)
    # AND a configured image needs no Dockerfile at all
    image = container_image(configured="registry.example.com/consumer:1", source_root=tmp_path,
                            dockerfile=CONSUMER_DOCKERFILE, setting="consumer_image")
    assert image is not None


@pytest.mark.parametrize("page", ["deploy.md", "deploy.zh-CN.md"])
def test_the_deploy_guide_documents_every_infra_setting(page: str) -> None:
    # GIVEN the deploy guide (English and Chinese)
    text = (Path(__file__).resolve().parents[2] / "docs" / page).read_text(encoding="utf-8")
    # THEN every deployment setting appears with its context key and its environment variable
    for field in InfraConfig.model_fields:
        assert f"`{field}`" in text, field
        assert f"`{env_name(field)}`" in text, env_name(field)
    # AND so do the old tool's variables
    for variable in LEGACY_VARIABLES:
        assert variable in text, variable
