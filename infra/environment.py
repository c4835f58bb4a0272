"""The runtime Settings as a container environment: the containers read them back with load_settings."""

from __future__ import annotations

from collections.abc import Mapping

from gpu_recovery.settings import Settings, env_names

# Local-only settings: endpoints point at the embedded moto/kinesis-mock, never at AWS.
LOCAL_ONLY = frozenset({"endpoint_url", "kinesis_endpoint_url"})


def settings_environment(settings: Settings, *, overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    """Every deployable setting under its first environment variable, as the settings model parses it.

    ``overrides`` replaces values by field name (the stack passes the real account and region as
    CloudFormation references: the settings' own defaults are for local runs).
    """
    given = dict(overrides or {})
    env: dict[str, str] = {}
    for field in Settings.model_fields:
        if field in LOCAL_ONLY:
            continue
        names = env_names(field)
        if not names:
            continue
        value = given[field] if field in given else _render(getattr(settings, field))
        if value is not None:
            env[names[0]] = value
    return env


def _render(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):  # "False" would read back as true in the old tool; ours parses "false"
        return "true" if value else "false"
    if isinstance(value, list | tuple | frozenset | set):
        return ",".join(str(item) for item in value)
    return str(value)
