"""One settings model: explicit > environment > default; bad values name the setting and the fix."""

from __future__ import annotations

import pytest

from consumers.core.errors import ConfigError
from gpu_recovery.settings import Settings, env_names, load_settings


def test_defaults() -> None:
    settings = load_settings()
    assert (settings.task_table, settings.job_table, settings.node_table) == ("ecs_task", "ecs_job", "ecs_node")
    assert settings.cluster_arn == "arn:aws:ecs:us-east-1:123456789012:cluster/gpu-training"


def test_old_tool_variables_still_work(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {"TASK_TABLE_NAME": "t", "JOB_TABLE_NAME": "j", "NODE_TABLE_NAME": "n",
                        "ECS_CLUSTER_NAME": "prod-gpu", "DCGM_HEALTH_CHECK_TASK": "dcgm",
                        "SNS_TOPIC_NAME": "alerts", "SNS_TOPIC_DISPLAY_NAME": "GPU alerts"}.items():
        monkeypatch.setenv(name, value)
    s = load_settings()
    assert (s.task_table, s.job_table, s.node_table, s.cluster_name, s.health_check_task, s.sns_topic_name,
            s.sns_topic_display_name) == ("t", "j", "n", "prod-gpu", "dcgm", "alerts", "GPU alerts")


def test_explicit_beats_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASK_TABLE_NAME", "from-env")
    assert load_settings(task_table="explicit").task_table == "explicit"
    assert load_settings(task_table=None).task_table == "from-env"


@pytest.mark.parametrize("text", ["False", "false", "0", "no", "off"])
def test_false_means_false(monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    # The old tool read "False" from the environment as true.
    monkeypatch.setenv("GPU_RECOVERY_DRY_RUN", text)
    assert load_settings().dry_run is False


def test_bad_value_names_setting_variable_and_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GPU_RECOVERY_BREAKER_FRACTION", "1.5")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert "breaker_fraction" in message and "GPU_RECOVERY_BREAKER_FRACTION" in message
    assert "less than or equal to 1" in message and "fix:" in message


def test_bool_that_is_not_a_bool_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GPU_RECOVERY_REPLACE_INSTANCES", "maybe")
    with pytest.raises(ConfigError, match="GPU_RECOVERY_REPLACE_INSTANCES"):
        load_settings()


def test_gpu_families_from_a_comma_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GPU_RECOVERY_GPU_TASK_FAMILIES", "llm-train, vision ,")
    assert load_settings().gpu_task_families == ["llm-train", "vision"]


def test_every_setting_has_an_environment_variable_documented_in_readme() -> None:
    from pathlib import Path

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    for field in Settings.model_fields:
        names = env_names(field)
        assert names, f"{field} has no environment variable"
        assert names[0] in readme, f"{names[0]} is not in the README configuration table"
