"""``gpu-recovery simulate``: a fault trace (Llama 3's root causes, or a fleet's own) played on a simulated
GPU fleet with the real recovery consumer, on a virtual clock; what it cost in training time and people."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from gpu_recovery.commands.common import number

MAX_NODES = 4096
MAX_DAYS = 400


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "simulate", help="play a fault trace on a simulated GPU fleet with the real recovery consumer",
        description="Draws a fault trace (the Llama 3 root-cause mix scaled to --nodes and --days, or a mix "
        "file, or a 'gpu-recovery report --json' output), plays it on a simulated ECS fleet with the recovery "
        "consumer on a virtual clock, and reports the effective training time, time lost per interruption "
        "(detect, diagnose, repair, restart), escalations to people, nodes taken out of service and actions. "
        "See docs/simulate.md.",
    )
    parser.add_argument("--nodes", type=number(1, MAX_NODES, integer=True), default=256,
                        help=f"GPU nodes the jobs run on (1 to {MAX_NODES}; default 256)")
    parser.add_argument("--gpus-per-node", type=number(1, 16, integer=True), default=8, metavar="N",
                        help="GPUs per node (default 8)")
    parser.add_argument("--days", type=number(0.01, MAX_DAYS), default=54, help="virtual days (default 54)")
    parser.add_argument("--jobs", metavar="SPEC", help="RANKS or COUNTxRANKS, comma-separated (2048, 4x512, "
                        "2x256,8x64), one rank per node; default: one job on every node")
    parser.add_argument("--spares", type=number(0, MAX_NODES, integer=True), default=0, metavar="K",
                        help="idle nodes besides --nodes, for restarts (default 0)")
    parser.add_argument("--fault-mix", default="llama3", metavar="llama3|FILE",
                        help="the llama3 preset, a mix file (JSON/YAML) or a 'gpu-recovery report --json' output")
    parser.add_argument("--history-nodes", type=number(1, integer=True), metavar="N",
                        help="the fleet size a 'report --json' --fault-mix was taken on")
    parser.add_argument("--seed", type=number(0, integer=True), default=1, help="the trace's seed (default 1)")
    parser.add_argument("--settings", metavar="FILE", help="recovery settings to try, JSON or YAML (e.g. "
                        "{\"max_job_restarts\": 5}); see docs/simulate.md")
    parser.add_argument("--engine", choices=("core", "embedded"), default="core",
                        help="core: the recovery consumer on in-process AWS (fast, any size; default); "
                        "embedded: the whole pipeline on the embedded AWS (moto; small fleets)")
    parser.add_argument("--checkpoint-every", type=number(0), default=0.0, metavar="SECONDS",
                        help="count the work since the last checkpoint as lost at each interruption (0: not)")
    parser.add_argument("--repair-hours", type=number(0, 24 * MAX_DAYS), default=24.0, metavar="H",
                        help="a person replaces a quarantined node H hours after (0: never; default 24)")
    parser.add_argument("--no-planned", action="store_true", help="leave the mix's planned interruptions out")
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object")
    parser.add_argument("--html", metavar="PATH", help="also write a self-contained HTML page with charts")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from local.fault_trace import load_mix
    from local.simulation import SimulationSpec, parse_jobs, run_simulation

    mix = load_mix(args.fault_mix, history_nodes=args.history_nodes)
    overrides = _settings_file(args.settings)
    from gpu_recovery.settings import load_settings

    settings = load_settings(**overrides)  # a bad value fails here, before the run
    spec = SimulationSpec(
        nodes=args.nodes, days=args.days, mix=mix, seed=args.seed, gpus_per_node=args.gpus_per_node,
        spares=args.spares, jobs=parse_jobs(args.jobs, args.nodes), engine=args.engine,
        settings=overrides, checkpoint_s=args.checkpoint_every,
        include_planned=not args.no_planned, repair_s=args.repair_hours * 3600)
    from gpu_recovery import wiring

    bar = ProgressBar(spec.days * 86_400.0, sys.stderr)
    simulation = run_simulation(spec, settings, wiring, progress=bar.update)  # type: ignore[arg-type]
    report = simulation.report
    bar.done(report.interruptions["injected"])
    if args.html:
        from analytics.simulation_html import simulation_html

        Path(args.html).write_text(simulation_html(report), encoding="utf-8")
    if args.json:
        print(json.dumps(report.model_dump(mode="json"), indent=2, sort_keys=True))
    else:
        from analytics.simulation import report_lines

        print("\n".join(report_lines(report)))
        if args.html:
            print(f"wrote {args.html}")
    return 0


def _settings_file(path: str | None) -> dict[str, Any]:
    """Recovery settings to try, as a mapping (validated with the rest of the settings when the run starts)."""
    if path is None:
        return {}
    from consumers.core.errors import ConfigError

    text = Path(path).read_text(encoding="utf-8")
    try:
        import yaml

        loaded = yaml.safe_load(text)  # JSON is YAML
    except yaml.YAMLError as exc:
        raise ConfigError(f"--settings {path} is not JSON or YAML: {exc}\nfix: give a mapping of settings") from exc
    if not isinstance(loaded, dict):
        raise ConfigError(f"--settings {path} is not a mapping\nfix: e.g. {{\"max_job_restarts\": 5}}")
    from gpu_recovery.settings import Settings

    unknown = sorted(str(k) for k in loaded if k not in Settings.model_fields)
    if unknown:
        raise ConfigError(f"--settings {path}: unknown settings {', '.join(unknown)}\n"
                          "fix: use the names in gpu_recovery/settings.py (e.g. max_job_restarts)")
    return loaded


class ProgressBar:
    """Virtual days done and interruptions injected, on stderr: redrawn in place on a terminal, one line per
    tenth of the run otherwise (a CI log stays short)."""

    WIDTH = 30

    def __init__(self, total_s: float, stream: Any) -> None:
        self.total_s = max(total_s, 1.0)
        self.stream = stream
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self.started = time.monotonic()
        self._shown: tuple[int, int] = (-1, 0)

    def update(self, done_s: float, injected: int) -> None:
        share = min(1.0, done_s / self.total_s)
        step = int(share * (1000 if self.tty else 10))
        if step == self._shown[0] and (injected == self._shown[1] or step < (1000 if self.tty else 10)):
            return
        self._shown = (step, injected)
        filled = int(share * self.WIDTH)
        line = (f"[{'#' * filled}{'.' * (self.WIDTH - filled)}] day {done_s / 86_400:.1f}/"
                f"{self.total_s / 86_400:g}, {injected} interruptions, {time.monotonic() - self.started:.0f} s")
        print(f"\r{line}" if self.tty else line, end="" if self.tty else "\n", file=self.stream, flush=True)

    def done(self, injected: int) -> None:
        self.update(self.total_s, injected)  # the last line, unless it was shown with this count
        if self.tty:
            print(file=self.stream, flush=True)
