"""Which install extra brings which module, so that a command run without it says what to install.

The base install is what the consumers need; ``[local]``, ``[infra]`` and ``[healthcheck]`` are for the
other users (pyproject.toml). Modules that need an extra import it where only that extra's users get.
"""

from __future__ import annotations

# Top-level module -> the extra that installs it.
EXTRA_OF = {
    "moto": "local", "werkzeug": "local", "flask": "local", "rich": "local", "yaml": "local", "tenacity": "local",
    "aws_cdk": "infra", "constructs": "infra", "cdk_nag": "infra", "jsii": "infra",
    "pynvml": "healthcheck",
}


def missing_extra(exc: ModuleNotFoundError) -> str | None:
    """``<module> is not installed (pip install 'gpu-recovery[<extra>]')``, or None when no extra brings it."""
    module = (exc.name or "").split(".")[0]
    extra = EXTRA_OF.get(module)
    if extra is None:
        return None
    return f"{module} is not installed (pip install 'gpu-recovery[{extra}]')"
