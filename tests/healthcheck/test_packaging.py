"""The health-check image definition: NVIDIA's DCGM base image of the major healthcheck.dcgm names, the project with
the healthcheck extra, and the agent as entrypoint. (No Docker engine here: the file is checked as text.)"""

from __future__ import annotations

import json
import re
from pathlib import Path

from healthcheck.dcgm import IMAGE_DCGM_MAJOR

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "healthcheck" / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def test_base_image_is_nvidias_dcgm_pinned_to_the_parsed_major() -> None:
    bases = [arg for op, arg in instructions() if op == "FROM"]
    final = bases[-1]
    match = re.fullmatch(r"nvcr\.io/nvidia/cloud-native/dcgm:(\d+)\.(\d+)\.(\d+)-\d+-ubuntu\d+\.\d+", final)
    assert match, final
    assert int(match.group(1)) == IMAGE_DCGM_MAJOR
    assert all(":" in b.split()[0] and not b.split()[0].endswith(":latest") for b in bases)


def test_installs_the_project_with_the_healthcheck_extra_and_runs_the_agent() -> None:
    ops = instructions()
    assert any(op == "RUN" and '".[healthcheck]"' in arg for op, arg in ops)
    (entrypoint,) = [json.loads(arg) for op, arg in ops if op == "ENTRYPOINT"]
    assert entrypoint[-2:] == ["gpu-recovery", "healthcheck"]
    wrapper = (ROOT / "healthcheck" / "docker-entrypoint.sh")
    assert wrapper.stat().st_mode & 0o111 and 'exec "$@"' in wrapper.read_text()


def test_every_copied_source_exists() -> None:
    for op, arg in instructions():
        if op == "COPY" and not arg.startswith("--from"):
            for source in arg.split()[:-1]:
                assert (ROOT / source).exists(), source
