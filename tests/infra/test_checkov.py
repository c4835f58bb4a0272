"""checkov (CloudFormation checks) on the synthesized templates, next to cdk-nag: nothing fails, and every
skipped check is one of infra/nag.py's reviewed skips, with its reason.

checkov runs from its own environment (.local/checkov, installed by .ci/install-checkov.sh; another path
with GPU_RECOVERY_CHECKOV). Without it the tests skip here and fail in CI.
"""

from __future__ import annotations

import json
import os
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from infra.images import REPO_ROOT
from infra.nag import CHECKOV_SKIPS
from tests.infra.support import Synth
from tests.tools import missing_tool

CHECKOV = Path(os.environ.get("GPU_RECOVERY_CHECKOV", REPO_ROOT / ".local" / "checkov" / "bin" / "checkov"))
CHECKOV_VERSION = "3.3.30"


@pytest.fixture(params=["default_synth", "turned"])
def synth(request: pytest.FixtureRequest) -> Synth:
    found: Synth = request.getfixturevalue(request.param)
    return found


@cache
def _scan(template: Path) -> dict[str, Any]:
    # --skip-download: offline, no Prisma Cloud guideline lookups; the checks are the same.
    result = subprocess.run(
        [str(CHECKOV), "-f", str(template), "--framework", "cloudformation", "-o", "json", "--skip-download"],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert result.returncode in (0, 1), result.stderr[-3000:]  # 1: some check failed (asserted below)
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def checkov_report(synth: Synth) -> dict[str, Any]:
    if not CHECKOV.exists():
        missing_tool(f"checkov is not installed at {CHECKOV}: run bash .ci/install-checkov.sh")
    return _scan(synth.outdir / f"{synth.stack.stack_name}.template.json")


def test_checkov_is_the_pinned_version() -> None:
    if not CHECKOV.exists():
        missing_tool(f"checkov is not installed at {CHECKOV}: run bash .ci/install-checkov.sh")
    version = subprocess.run([str(CHECKOV), "--version"], capture_output=True, text=True, check=True).stdout
    assert version.strip() == CHECKOV_VERSION


def test_checkov_finds_no_unsuppressed_failure(synth: Synth) -> None:
    # GIVEN checkov's CloudFormation checks on the template `cdk synth` writes
    report = checkov_report(synth)
    summary = report["summary"]
    print(f"\ncheckov {summary['checkov_version']} on {synth.stack.stack_name}: passed {summary['passed']}, "
          f"failed {summary['failed']}, skipped {summary['skipped']}")
    # THEN it parsed the template, ran its checks, and none failed
    assert summary["parsing_errors"] == 0 and summary["passed"] > 100
    failed = [f"{c['check_id']} {c['resource']}: {c['check_name']}" for c in report["results"]["failed_checks"]]
    assert failed == []


def test_every_skipped_check_is_a_reviewed_skip_with_its_reason(synth: Synth) -> None:
    # GIVEN the checks checkov skipped (the template's Metadata, written by infra/nag.py)
    skipped = {(c["check_id"], c["check_result"]["suppress_comment"])
               for c in checkov_report(synth)["results"]["skipped_checks"]}
    reviewed = {(check, reason) for _suffix, check, reason in CHECKOV_SKIPS}
    # THEN each is one of the reviewed skips, word for word, and each reviewed skip is used
    assert skipped == reviewed
    assert all(len(reason) >= 40 for _check, reason in reviewed)


def test_the_log_groups_pass_the_kms_check_that_failed_before(default_synth: Synth) -> None:
    # GIVEN the stack's log groups (consumers, health check, VPC flow logs, Firehose delivery)
    groups = set(default_synth.resources("AWS::Logs::LogGroup"))
    passed = {c["resource"] for c in checkov_report(default_synth)["results"]["passed_checks"]
              if c["check_id"] == "CKV_AWS_158"}
    # THEN checkov sees each encrypted with a KMS key
    assert len(groups) == 4
    assert passed == {f"AWS::Logs::LogGroup.{name}" for name in groups}
