"""`npx cdk synth` as a user runs it: the pinned CLI from node_modules reads the app's cloud assembly.

Slow (the CLI starts Node, then the Python app): marked so, and run once.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from infra.images import CONSUMER_DOCKERFILE, HEALTH_CHECK_DOCKERFILE, REPO_ROOT
from tests.tools import missing_tool

CLI = REPO_ROOT / "node_modules" / ".bin" / "cdk"


@pytest.mark.slow
def test_npx_cdk_synth_writes_the_stack_offline(tmp_path: Path) -> None:
    # GIVEN the pinned CLI installed by .ci/install-node.sh, and no AWS account or network
    if shutil.which("npx") is None or not CLI.exists():
        missing_tool("the pinned aws-cdk CLI is not installed: run bash .ci/install-node.sh")
    env = {key: value for key, value in os.environ.items() if not key.startswith(("AWS_", "CDK_"))}
    env.update({"CDK_DISABLE_CLI_TELEMETRY": "true", "JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION": "1",
                "GPU_RECOVERY_GPU_TASK_FAMILIES": "train-llm"})
    # A checkout without an image's Dockerfile deploys a prebuilt image instead, as the docs say.
    for dockerfile, variable in ((CONSUMER_DOCKERFILE, "GPU_RECOVERY_CONSUMER_IMAGE"),
                                 (HEALTH_CHECK_DOCKERFILE, "GPU_RECOVERY_HEALTH_CHECK_IMAGE")):
        if not (REPO_ROOT / dockerfile).is_file():
            env[variable] = "public.ecr.aws/docker/library/busybox:stable"
    # WHEN a user synthesizes from the repository root
    result = subprocess.run(
        ["npx", "--no-install", "cdk", "synth", "--quiet", "--no-notices", "--output", str(tmp_path)],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600, check=False,
    )
    # THEN it succeeds and writes the stack's template and a manifest the CLI could read
    assert result.returncode == 0, result.stderr[-4000:]
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["artifacts"]["GpuRecovery"]["type"] == "aws:cloudformation:stack"
    template = json.loads((tmp_path / "GpuRecovery.template.json").read_text())
    types = {resource["Type"] for resource in template["Resources"].values()}
    assert {"AWS::Kinesis::Stream", "AWS::Events::Rule", "AWS::ECS::Service", "AWS::KinesisFirehose::DeliveryStream",
            "AWS::Kinesis::StreamConsumer", "AWS::CloudWatch::Alarm"} <= types


def test_cdk_json_runs_the_app_from_the_project_venv() -> None:
    # GIVEN cdk.json
    config = json.loads((REPO_ROOT / "cdk.json").read_text())
    # THEN the CLI runs this package's app with the project's interpreter
    assert config["app"] == ".venv/bin/python -m infra.app"


def test_the_cli_is_pinned_exactly_in_package_json() -> None:
    # GIVEN package.json and its lock file
    package = json.loads((REPO_ROOT / "package.json").read_text())
    lock = json.loads((REPO_ROOT / "package-lock.json").read_text())
    pinned = package["devDependencies"]["aws-cdk"]
    # THEN the version is exact (no range) and the lock agrees
    assert pinned[0].isdigit(), pinned
    assert lock["packages"]["node_modules/aws-cdk"]["version"] == pinned
