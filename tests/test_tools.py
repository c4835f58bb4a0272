"""CI fails instead of skipping when a tool it installs is missing (tests/tools.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

NEEDS_A_TOOL = """
from tests.tools import missing_tool

def test_needs_a_tool():
    missing_tool("frobnicator is not installed: run bash .ci/install-frobnicator.sh")
"""


def test_a_missing_tool_skips_on_a_developer_machine(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a test whose tool is missing, outside CI
    monkeypatch.delenv("CI", raising=False)
    pytester.makepyfile(NEEDS_A_TOOL)
    # WHEN it runs
    result = pytester.runpytest("-rs")
    # THEN it is skipped with the install hint
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*frobnicator is not installed: run bash .ci/install-frobnicator.sh*"])


def test_a_missing_tool_fails_in_ci(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN the same test under CI=true (what .ci/run exports)
    monkeypatch.setenv("CI", "true")
    pytester.makepyfile(NEEDS_A_TOOL)
    # WHEN it runs
    result = pytester.runpytest()
    # THEN it fails, saying why a skip is not enough
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*frobnicator is not installed*CI=true: CI installs this tool*"])


@pytest.mark.parametrize("ci", ["false", "1", ""])
def test_only_ci_true_turns_the_skip_into_a_failure(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, ci: str
) -> None:
    monkeypatch.setenv("CI", ci)
    pytester.makepyfile(NEEDS_A_TOOL)
    pytester.runpytest().assert_outcomes(skipped=1)


def test_ci_run_exports_ci_true() -> None:
    # GIVEN the CI entry point / THEN it sets CI=true before installing and checking
    script = (Path(__file__).parent.parent / ".ci" / "run").read_text()
    lines = [line.strip() for line in script.splitlines()]
    assert "export CI=true" in lines
    assert lines.index("export CI=true") < lines.index("bash scripts/check.sh")
