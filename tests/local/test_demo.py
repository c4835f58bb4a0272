"""The README's first command: `gpu-recovery demo` runs the whole pipeline on the embedded AWS."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def gpu_recovery(*args: str) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("gpu-recovery")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPU_RECOVERY_")}
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=600, cwd=REPO, env=env)


@pytest.mark.slow
def test_demo_json_shows_four_tasks_one_job_four_nodes() -> None:
    # WHEN a newcomer runs the demo with --json
    result = gpu_recovery("demo", "--json")
    # THEN it exits 0 and prints one JSON object with the tables
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    tables = out["tables"]
    assert out["events"] >= 16
    jobs = tables["ecs_job"]
    assert any(job["job_id"] == "job:llama-70b-run-42" for job in jobs)
    job_tasks = [t for t in tables["ecs_task"] if t["job_id"] == "job:llama-70b-run-42"]
    assert len({t["container_instance_arn"] for t in job_tasks}) >= 4
    assert len([n for n in tables["ecs_node"] if n["gpu_count"] == 8]) >= 4
    # AND where each job's ranks were restarted, by node name (the faulty node rebooted, so its own four)
    assert out["restarted_on"] == {"job:llama-70b-run-42": ["gpu-node-1", "gpu-node-2", "gpu-node-3", "gpu-node-4"]}
    assert "started embedded AWS" in result.stderr  # progress goes to stderr with --json


def test_readme_starts_with_the_two_commands() -> None:
    readme = (REPO / "README.md").read_text()
    blocks = readme.split("```")
    first_commands = "\n".join(blocks[1:4:2])
    assert "gpu-recovery demo" in first_commands
    assert "scripts/check.sh" in first_commands
    ci = (REPO / ".ci" / "run").read_text()
    assert "scripts/check.sh" in ci and "scripts/install.sh" in ci
