"""Tools the tests need that pip does not install (Java and the KCL jars, kinesis-local, the cdk CLI,
checkov): a test whose tool is missing skips on a developer's machine and fails in CI.

CI (`.ci/run`, which sets CI=true) installs every one of them, so a missing tool there means an install
step regressed: a skip would hide that behind a green run.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def in_ci() -> bool:
    return os.environ.get("CI") == "true"


def missing_tool(reason: str) -> NoReturn:
    """Skip the current test (or fixture) because ``reason``; under CI=true, fail it instead."""
    if in_ci():
        pytest.fail(f"{reason} (CI=true: CI installs this tool, so its absence is a failure, not a skip)",
                    pytrace=False)
    pytest.skip(reason)
