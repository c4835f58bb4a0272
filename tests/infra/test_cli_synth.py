"""`npx cdk synth` as a user runs it: the pinned CLI from node_modules reads the app's cloud assembly.

cdk.json runs the app with the active Python, as every CDK Python app does, so `cdk synth` works from any
environment the project is installed in: the project's `.venv`, or a fresh one made elsewhere.
Slow (a virtual environment to install, the CLI starts Node, then the Python app): marked so.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest

from infra.images import CONSUMER_DOCKERFILE, HEALTH_CHECK_DOCKERFILE, REPO_ROOT
from tests.tools import missing_tool

CLI = REPO_ROOT / "node_modules" / ".bin" / "cdk"


def require_cli() -> None:
    """The pinned CLI (.ci/install-node.sh): skipped on a machine without it, a failure in CI."""
    if shutil.which("npx") is None or not CLI.exists():
        missing_tool("the pinned aws-cdk CLI is not installed: run bash .ci/install-node.sh")


def active_environment(bin_dir: Path) -> dict[str, str]:
    """The environment of a shell that activated the virtual environment ``bin_dir`` belongs to.

    No AWS account (AWS_ and CDK_ variables dropped), no telemetry, and prebuilt images named where a
    checkout has no Dockerfile (as the docs say).
    """
    env = {key: value for key, value in os.environ.items() if not key.startswith(("AWS_", "CDK_"))}
    env.update({"CDK_DISABLE_CLI_TELEMETRY": "true", "JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION": "1",
                "VIRTUAL_ENV": str(bin_dir.parent), "PATH": f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
                "GPU_RECOVERY_GPU_TASK_FAMILIES": "train-llm"})
    env.pop("PYTHONHOME", None)
    for dockerfile, variable in ((CONSUMER_DOCKERFILE, "GPU_RECOVERY_CONSUMER_IMAGE"),
                                 (HEALTH_CHECK_DOCKERFILE, "GPU_RECOVERY_HEALTH_CHECK_IMAGE")):
        if not (REPO_ROOT / dockerfile).is_file():
            env[variable] = "public.ecr.aws/docker/library/busybox:stable"
    return env


def synth(command: list[str], *, cwd: Path, env: Mapping[str, str], output: Path) -> dict[str, object]:
    """Run the CLI's synth; returns the stack's template after checking the manifest."""
    result = subprocess.run([*command, "synth", "--quiet", "--no-notices", "--output", str(output)],
                            cwd=cwd, env=dict(env), capture_output=True, text=True, timeout=900, check=False)
    assert result.returncode == 0, result.stderr[-4000:]
    manifest = json.loads((output / "manifest.json").read_text())
    assert manifest["artifacts"]["GpuRecovery"]["type"] == "aws:cloudformation:stack"
    template: dict[str, object] = json.loads((output / "GpuRecovery.template.json").read_text())
    return template


def resource_types(template: Mapping[str, object]) -> set[str]:
    resources = template["Resources"]
    assert isinstance(resources, dict)
    return {resource["Type"] for resource in resources.values()}


@pytest.mark.slow
def test_npx_cdk_synth_writes_the_stack_offline(tmp_path: Path) -> None:
    # GIVEN the pinned CLI, no AWS account or network, and this test's environment activated
    require_cli()
    env = active_environment(Path(sys.executable).parent)
    # WHEN a user synthesizes from the repository root
    template = synth(["npx", "--no-install", "cdk"], cwd=REPO_ROOT, env=env, output=tmp_path)
    # THEN it writes the stack's template
    assert {"AWS::Kinesis::Stream", "AWS::Events::Rule", "AWS::ECS::Service", "AWS::KinesisFirehose::DeliveryStream",
            "AWS::Kinesis::StreamConsumer", "AWS::CloudWatch::Alarm"} <= resource_types(template)


@pytest.mark.slow
def test_cdk_synth_works_from_a_fresh_environment_that_is_not_the_project_venv(tmp_path: Path) -> None:
    # GIVEN a new virtual environment outside the repository, with the project installed in it the ordinary
    # way for deploying (pip install -e '.[infra]': the CDK extra, from the registry or pip's cache; no dev tools)
    require_cli()
    venv = tmp_path / "elsewhere"
    subprocess.run([_base_python(), "-m", "venv", str(venv)], check=True, timeout=300)
    install = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "-e",
                              f"{REPO_ROOT}[infra]"],
                             capture_output=True, text=True, timeout=1200, check=False)
    assert install.returncode == 0, install.stderr[-4000:]
    env = active_environment(venv / "bin")
    # AND a project folder that holds only cdk.json: no .venv to fall back on, the package comes from the install
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(REPO_ROOT / "cdk.json", project / "cdk.json")
    python3 = subprocess.run(["python3", "-c", "import sys; print(sys.prefix)"], cwd=project, env=env,
                             capture_output=True, text=True, check=True).stdout.strip()
    assert Path(python3) == venv  # the `python3` cdk.json runs is the fresh environment's
    # WHEN the project's pinned CLI synthesizes there
    template = synth([str(CLI)], cwd=project, env=env, output=tmp_path / "cdk.out")
    # THEN the stack is synthesized, cdk-nag included (a runtime dependency, not a dev tool)
    assert {"AWS::Kinesis::Stream", "AWS::ECS::Service", "AWS::SNS::Topic"} <= resource_types(template)
    resources = template["Resources"]
    assert isinstance(resources, dict)
    assert any("cdk_nag" in resource.get("Metadata", {}) for resource in resources.values())


def _base_python() -> str:
    """The interpreter this test's virtual environment was made from (python3 on PATH may be older)."""
    return str(getattr(sys, "_base_executable", None) or shutil.which("python3") or sys.executable)


def test_cdk_json_runs_the_app_with_the_active_python() -> None:
    # GIVEN cdk.json
    config = json.loads((REPO_ROOT / "cdk.json").read_text())
    # THEN the CLI runs this package's app with whatever python3 the active environment has, as every CDK
    # Python app does (a path into .venv fails with exit 127 in any other environment)
    assert config["app"] == "python3 -m infra.app"


def test_the_cli_is_pinned_exactly_in_package_json() -> None:
    # GIVEN package.json and its lock file
    package = json.loads((REPO_ROOT / "package.json").read_text())
    lock = json.loads((REPO_ROOT / "package-lock.json").read_text())
    pinned = package["devDependencies"]["aws-cdk"]
    # THEN the version is exact (no range) and the lock agrees
    assert pinned[0].isdigit(), pinned
    assert lock["packages"]["node_modules/aws-cdk"]["version"] == pinned
