"""``gpu-recovery --help`` start-up, as a user runs it (a fresh process), versus ``python -c pass``."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.stats import Figure, Target, baseline, figure, progress, rounded

TARGET_S = Target("<", 0.5)
HEAVY = ("boto3", "botocore", "moto", "aws_cdk", "constructs", "pydantic_settings")
_IMPORTS = (
    "import sys\nfrom gpu_recovery.cli import main\n"
    "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
    f"print(','.join(m for m in {HEAVY!r} if m in sys.modules), file=sys.stderr)\n"
)


def command() -> list[str]:
    """The installed console script beside this interpreter, else the module."""
    script = Path(sys.executable).with_name("gpu-recovery")
    return [str(script), "--help"] if script.exists() else [sys.executable, "-m", "gpu_recovery.cli", "--help"]


def _wall(argv: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def heavy_imports() -> list[str]:
    """The heavy modules ``--help`` loads (should be none)."""
    done = subprocess.run([sys.executable, "-c", _IMPORTS], check=True, capture_output=True, text=True)
    return [m for m in done.stderr.strip().splitlines()[-1].split(",") if m] if done.stderr.strip() else []


def bench_cli(runs: int = 10) -> dict[str, Figure]:
    """``cli.startup_s``: median of ``runs`` fresh processes, each paired with a bare interpreter start."""
    argv = command()
    progress(f"cli: {runs} runs of `{' '.join(Path(a).name for a in argv)}` and `python -c pass`")
    _wall(argv)  # the first run pays for a cold page cache and writing .pyc files
    help_s: list[float] = []
    bare_s: list[float] = []
    for run in range(runs):
        pair = [(argv, help_s), ([sys.executable, "-c", "pass"], bare_s)]
        for cmd, into in pair if run % 2 == 0 else reversed(pair):
            into.append(_wall(cmd))
    inputs: dict[str, Any] = {"command": " ".join(argv), "runs": runs, "heavy_modules_loaded": heavy_imports(),
                              "python": sys.version.split()[0]}
    base = baseline("python -c pass (a bare interpreter start), same run", bare_s, "s", "python -c pass")
    out = figure(help_s, unit="s", inputs=inputs, target=TARGET_S, baseline=base)
    out["over_bare_interpreter_s"] = rounded(statistics.median(h - b for h, b in zip(help_s, bare_s, strict=True)))
    return {"cli.startup_s": out}
