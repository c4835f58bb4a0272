"""Lean installs: the base install is what the consumers need, each image installs only its extras, and a
command whose extra is missing says what to install. (No Docker engine here: Dockerfiles are read as text.)"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
# What only the demo, the local stack and the scenarios need (moto), or cdk synth (the CDK).
NOT_FOR_CONSUMERS = {"moto", "aws-cdk-lib", "constructs", "cdk-nag", "rich", "pyyaml"}


def _name(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower()


def requirements(extras: set[str]) -> set[str]:
    """The distributions ``pip install .[extras]`` brings from this project (self-references followed)."""
    names = {_name(r) for r in PROJECT["dependencies"]}
    for extra in extras:
        for requirement in PROJECT["optional-dependencies"][extra]:
            inner = re.fullmatch(r"gpu-recovery\[([\w,-]+)\]", requirement)
            names |= requirements(set(inner.group(1).split(","))) if inner else {_name(requirement)}
    return names


def image_extras(dockerfile: str) -> set[str]:
    """The extras of the project in the Dockerfile's ``pip install`` line (``.`` is none)."""
    text = (ROOT / dockerfile).read_text().replace("\\\n", " ")
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    (line,) = [line for line in lines if re.search(r"\bpip install\b", line)]
    words = shlex.split(line.split("pip install", 1)[1].split("&&")[0])
    (target,) = [w for w in words if w == "." or w.startswith(".[")]
    return set(target[2:-1].split(",")) if target != "." else set()


def test_the_consumer_image_installs_the_base_only_no_moto_no_cdk() -> None:
    extras = image_extras("docker/consumer.Dockerfile")
    installed = requirements(extras)
    assert extras == set()
    assert "amazon-kclpy" in installed and "boto3" in installed
    assert not installed & NOT_FOR_CONSUMERS, installed & NOT_FOR_CONSUMERS


def test_the_health_check_image_installs_the_healthcheck_extra_only() -> None:
    extras = image_extras("healthcheck/Dockerfile")
    installed = requirements(extras)
    assert extras == {"healthcheck"}
    assert "nvidia-ml-py" in installed
    assert not installed & NOT_FOR_CONSUMERS, installed & NOT_FOR_CONSUMERS


def test_dev_installs_every_other_extra_and_the_tools_check_sh_runs() -> None:
    dev = requirements({"dev"})
    others = set(PROJECT["optional-dependencies"]) - {"dev"}
    assert requirements(others) <= dev
    assert {"pytest", "ruff", "mypy", "import-linter", "moto", "aws-cdk-lib", "nvidia-ml-py"} <= dev


def test_install_sh_installs_dev() -> None:
    assert '-e ".[dev]"' in (ROOT / "scripts" / "install.sh").read_text()


# A child Python in which the modules of every extra are missing, as in the consumer image.
_WITHOUT_EXTRAS = textwrap.dedent("""
    import importlib.abc, sys
    from gpu_recovery.extras import EXTRA_OF

    class NotInstalled(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in EXTRA_OF:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, NotInstalled())
""")


def _run_without_extras(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", _WITHOUT_EXTRAS + textwrap.dedent(code)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False)


def test_the_consumers_run_on_the_base_install() -> None:
    # WHEN every consumer entry point is imported and the consume command parses, with no extra installed
    done = _run_without_extras("""
        import consumers.runtime.kcl_entry, consumers.runtime.kcl_daemon, consumers.runtime.local_reader
        import gpu_recovery.wiring, gpu_recovery.commands.consume, gpu_recovery.kcl_worker
        from gpu_recovery.cli import main
        main(["consume", "--help"])
    """)
    # THEN nothing asked for a module of an extra
    assert done.returncode == 0, done.stderr
    assert "usage: gpu-recovery consume" in done.stdout


def test_a_command_whose_extra_is_missing_says_what_to_install() -> None:
    # WHEN the demo (moto, rich) runs without the [local] extra
    done = _run_without_extras("""
        from gpu_recovery.cli import main
        sys.exit(main(["demo"]))
    """)
    # THEN one line says what to install, and the exit code is a user's mistake
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("gpu-recovery: error: demo: ") and "pip install 'gpu-recovery[local]'" in line
