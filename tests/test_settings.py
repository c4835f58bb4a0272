"""One settings model: explicit > environment > default; bad values name the setting and the fix."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import annotated_types
import pytest
from pydantic.fields import FieldInfo

from consumers.core.errors import ConfigError
from gpu_recovery.settings import ENDPOINT_FIELDS, LONGEST_BACKOFF_S, Settings, env_names, load_settings

README = Path(__file__).parent.parent / "README.md"


def test_defaults() -> None:
    settings = load_settings()
    assert (settings.task_table, settings.job_table, settings.node_table) == ("ecs_task", "ecs_job", "ecs_node")
    assert settings.cluster_arn == "arn:aws:ecs:us-east-1:123456789012:cluster/gpu-training"


def test_old_tool_variables_still_work(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {"TASK_TABLE_NAME": "tasks", "JOB_TABLE_NAME": "jobs", "NODE_TABLE_NAME": "nodes",
                        "ECS_CLUSTER_NAME": "prod-gpu", "DCGM_HEALTH_CHECK_TASK": "dcgm",
                        "SNS_TOPIC_NAME": "alerts", "SNS_TOPIC_DISPLAY_NAME": "GPU alerts"}.items():
        monkeypatch.setenv(name, value)
    s = load_settings()
    assert (s.task_table, s.job_table, s.node_table, s.cluster_name, s.health_check_task, s.sns_topic_name,
            s.sns_topic_display_name) == ("tasks", "jobs", "nodes", "prod-gpu", "dcgm", "alerts", "GPU alerts")


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
    readme = README.read_text()
    for field in Settings.model_fields:
        names = env_names(field)
        assert names, f"{field} has no environment variable"
        assert names[0] in readme, f"{names[0]} is not in the README configuration table"


# --- bounds: every value that validates can be used; every one that cannot fails at start ---------------


_ATTRIBUTE = {annotated_types.Ge: "ge", annotated_types.Gt: "gt", annotated_types.Le: "le",
              annotated_types.Lt: "lt", annotated_types.MinLen: "min_length"}


def _bound(info: FieldInfo, kind: type) -> Any:
    return next((getattr(m, _ATTRIBUTE[kind]) for m in info.metadata if isinstance(m, kind)), None)


def _numbers() -> dict[str, FieldInfo]:
    return {name: info for name, info in Settings.model_fields.items() if info.annotation in (int, float)}


def _readme_rows() -> dict[str, list[str]]:
    """The README configuration table: setting -> its cells (variables, default, bounds, what it is)."""
    rows: dict[str, list[str]] = {}
    for line in README.read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split(" | ")]
        if len(cells) == 5 and re.fullmatch(r"`\w+`", cells[0]):
            rows[cells[0].strip("`")] = cells[1:]
    return rows


def test_every_number_has_an_upper_bound() -> None:
    # GIVEN every duration, TTL, count and fraction of the settings
    # THEN each has a ceiling (a lead adding a setting adds its bound, or this fails)
    unbounded = [name for name, info in _numbers().items()
                 if _bound(info, annotated_types.Le) is None and _bound(info, annotated_types.Lt) is None]
    assert unbounded == []


def test_every_name_has_a_shape_and_every_endpoint_is_checked() -> None:
    # GIVEN every text setting
    texts = {name: info for name, info in Settings.model_fields.items() if info.annotation in (str, str | None)}
    for name, info in texts.items():
        # THEN it has a pattern or a minimum length (no empty names), or it is an endpoint URL
        pattern = any(getattr(m, "pattern", None) for m in info.metadata)
        assert pattern or _bound(info, annotated_types.MinLen) or name in ENDPOINT_FIELDS, name


def test_the_readme_table_lists_every_setting_with_its_default_and_bounds() -> None:
    # GIVEN the README's one configuration table
    rows = _readme_rows()
    assert set(rows) == set(Settings.model_fields)
    for name, info in Settings.model_fields.items():
        variables, default, bounds, _what = rows[name]
        # THEN it names the setting's variables, its default as the model has it, and its bounds
        assert [v.strip("` ") for v in variables.split(" / ")] == env_names(name)
        assert default == f"`{info.get_default(call_default_factory=True)}`", name
        assert bounds, name
        if name in _numbers():
            assert bounds.startswith(_rendered_bounds(info)), (name, bounds, _rendered_bounds(info))


def _rendered_bounds(info: FieldInfo) -> str:
    low = _bound(info, annotated_types.Ge)
    high = _bound(info, annotated_types.Le)
    if low is not None and high is not None:
        return f"{low}-{high}"
    parts = [f"> {_bound(info, annotated_types.Gt)}" if _bound(info, annotated_types.Gt) is not None else "",
             f"≥ {low}" if low is not None else "", f"≤ {high}" if high is not None else ""]
    return ", ".join(part for part in parts if part)


@pytest.mark.parametrize("name", sorted(_numbers()))
def test_one_past_each_ceiling_fails_naming_the_setting_its_variable_and_the_fix(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a value just above the setting's upper bound, in its environment variable
    info = Settings.model_fields[name]
    high = _bound(info, annotated_types.Le)
    variable = env_names(name)[0]
    monkeypatch.setenv(variable, str(high + 1))
    # WHEN loaded / THEN it fails at start with the setting, its variable, the bound and a fix
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert f"setting {name} (environment variable {variable}" in message
    assert f"less than or equal to {high}" in message and f"fix: set {variable}" in message


@pytest.mark.parametrize(("variable", "value", "named"), [
    # The values the issue measured: they validated, then crashed the consumers in a loop.
    ("GPU_RECOVERY_TTL_DAYS", "3000000", "ttl_days"),
    ("GPU_RECOVERY_RESTART_BACKOFF_S", "999999999999", "restart_backoff_s"),
    ("GPU_RECOVERY_HEALTH_CHECK_DEADLINE_S", "99999999999", "health_check_deadline_s"),
    ("GPU_RECOVERY_ENDPOINT_URL", "not-a-url", "endpoint_url"),
    ("AWS_ENDPOINT_URL", "ftp://127.0.0.1:5000", "endpoint_url"),
    ("GPU_RECOVERY_KINESIS_ENDPOINT_URL", "http://", "kinesis_endpoint_url"),
    ("GPU_RECOVERY_KINESIS_ENDPOINT_URL", "http://127.0.0.1:99999", "kinesis_endpoint_url"),
    ("GPU_RECOVERY_REGION", "", "region"),
    ("GPU_RECOVERY_STREAM_NAME", "", "stream_name"),
    ("GPU_RECOVERY_STREAM_NAME", "has space", "stream_name"),
    ("TASK_TABLE_NAME", "", "task_table"),
    ("GPU_RECOVERY_LEDGER_TABLE", "ab", "ledger_table"),
    ("SNS_TOPIC_NAME", "", "sns_topic_name"),
    ("SNS_TOPIC_DISPLAY_NAME", "", "sns_topic_display_name"),
    ("ECS_CLUSTER_NAME", "a/b", "cluster_name"),
    ("DCGM_HEALTH_CHECK_TASK", "", "health_check_task"),
    ("GPU_RECOVERY_GPU_TASK_FAMILIES", "train, bad name", "gpu_task_families"),
])
def test_a_bad_value_fails_at_start_naming_the_setting(
    variable: str, value: str, named: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN one bad value in the environment
    monkeypatch.setenv(variable, value)
    # WHEN loaded / THEN the error names the setting and says how to fix it
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert f"setting {named} (environment variable" in str(caught.value)
    assert "fix: set" in str(caught.value)


def test_the_longest_backoff_is_bounded_across_two_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN two values each within its own bound whose product is not: 3600 s x 2^19
    monkeypatch.setenv("GPU_RECOVERY_RESTART_BACKOFF_S", "3600")
    monkeypatch.setenv("GPU_RECOVERY_MAX_JOB_RESTARTS", "20")
    # WHEN loaded / THEN it fails, naming both settings, the wait and the fix
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert "restart_backoff_s and max_job_restarts" in message and f"over {LONGEST_BACKOFF_S} s" in message
    assert "fix: lower GPU_RECOVERY_RESTART_BACKOFF_S or GPU_RECOVERY_MAX_JOB_RESTARTS" in message
    # AND the longest that fits is accepted: 3600 s x 2^7 = 460800 s
    assert load_settings(max_job_restarts=8).max_job_restarts == 8


@pytest.mark.parametrize("url", ["http://127.0.0.1:5000", "https://kinesis.eu-west-1.amazonaws.com", "http://moto"])
def test_endpoint_urls_with_a_host_are_accepted(url: str) -> None:
    assert load_settings(endpoint_url=url, kinesis_endpoint_url=url).endpoint_url == url


def test_an_empty_endpoint_variable_means_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN `export AWS_ENDPOINT_URL=` (a shell's way to unset it)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "")
    # THEN real AWS is used, as with no variable at all
    assert load_settings().endpoint_url is None


def test_every_default_is_within_its_bounds() -> None:
    # GIVEN the model with nothing set / THEN it validates (a bound must never exclude its own default)
    assert Settings() == load_settings()
