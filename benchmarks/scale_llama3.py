"""``scale.llama3``: Llama 3's fault mix on a fleet, through ``gpu-recovery simulate --engine core``.

The simulation runs in a child process (``python -m benchmarks.scale_llama3 NODES DAYS SPARES SEED``) as the
command runs it (``local.simulation.run_simulation``: the fleet simulator and the real recovery consumer on
a virtual clock, one job on every node, the Llama 3 preset scaled to the fleet and the days) and prints its
report as JSON, with the child's peak resident set (``VmHWM``: the kernel's high-water mark of this
process's memory, reset at ``exec``; the report's own ``timing.peak_rss_mb`` is ``ru_maxrss``, which Linux
carries over from the forking parent). Every figure is read from that report, as the command prints it:
escalations (``headline.escalated_to_humans``), nodes taken out of service for a cause that was not their
hardware (``headline.wrong_irreversible_actions``), effective training time (``ettr``), the recovery
state's growth from day 7 to the last day (``state.growth_over_day_7``) and the time lost per interruption
(``lost_s.lost``; its tail from ``interruption_list``, the same interruptions ``lost_s`` spreads).

Meta's run is the baseline (The Llama 3 Herd of Models, 2024, section 3.3.4 and Table 5,
https://arxiv.org/abs/2407.21783): 2,048 nodes of 8 H100s for 54 days, 419 unexpected interruptions,
"significant manual intervention" 3 times, effective training time above 90%.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

from benchmarks.stats import Figure, Target, figure, progress, rounded, tail

META: dict[str, Any] = {
    "nodes": 2_048, "days": 54, "unexpected_interruptions": 419, "manual_interventions": 3, "ettr": 0.90,
    "source": "The Llama 3 Herd of Models (2024), section 3.3.4, Table 5, https://arxiv.org/abs/2407.21783"}
STATE_GROWTH_TARGET = Target("<=", 1.2)


def spares_for(nodes: int) -> int:
    """One spare per 32 nodes (docs/simulate.md's 256-node run has 8), at least 2."""
    return max(2, nodes // 32)


def simulate_in_child(nodes: int, days: float, seed: int = 1, timeout_s: float = 4 * 3_600) -> dict[str, Any]:
    """The simulation's report and the child's peak RSS, from a fresh interpreter."""
    command = [sys.executable, "-m", "benchmarks.scale_llama3", str(nodes), f"{days:g}", str(spares_for(nodes)),
               str(seed)]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"simulate {nodes} nodes x {days:g} days failed (exit {done.returncode}): "
                           f"{done.stderr.strip()[-400:]}")
    out: dict[str, Any] = json.loads(done.stdout)
    out["child_wall_s"] = round(time.perf_counter() - started, 2)
    return out


def bench_scale_llama3(nodes: int, days: float, seed: int = 1) -> dict[str, Figure]:
    progress(f"scale.llama3: simulate --engine core --fault-mix llama3 --nodes {nodes} --days {days:g} "
             f"--spares {spares_for(nodes)} --seed {seed} (a child process)")
    run = simulate_in_child(nodes, days, seed)
    return scale_figures(run["report"], peak_rss_mb=run["peak_rss_mb"], wall_s=run["child_wall_s"])


def scale_figures(report: dict[str, Any], *, peak_rss_mb: float, wall_s: float) -> dict[str, Figure]:
    """The figures, each read from the simulation's report."""
    headline, timing = report["headline"], report["timing"]
    if not report["lost_s"]["lost"]["count"] or report["state"]["growth_over_day_7"] is None:
        raise ValueError(f"{report['nodes']} nodes x {report['days']:g} days: no interruption hit the job or the run "
                         "ended before day 8, so there is nothing to measure (run more nodes or days)")
    unexpected = headline["interruptions"]
    meta_rate = META["manual_interventions"] / META["unexpected_interruptions"]
    inputs = {
        "nodes": report["nodes"], "gpus_per_node": report["gpus_per_node"], "days": report["days"],
        "spares": report["spares"], "seed": report["seed"], "engine": report["engine"], "runs": 1,
        "jobs": [{"job_id": j["job_id"], "ranks": j["ranks"]} for j in report["jobs"]],
        "fault_mix": report["fault_mix"]["name"], "injected": report["interruptions"]["injected"],
        "unexpected_interruptions_hit": unexpected, "by_outcome": report["interruptions"]["by_outcome"],
        "command": f"gpu-recovery simulate --engine core --fault-mix llama3 --nodes {report['nodes']} "
                   f"--days {report['days']:g} --spares {report['spares']} --seed {report['seed']}",
        "timing": timing, "wall_s_with_start": wall_s,
    }
    lost = [i["lost_s"] for i in report["interruption_list"]
            if i["outcome"] in ("recovered", "escalated") and i["category"] != "planned" and i["lost_s"] is not None]
    spread = report["lost_s"]["lost"]
    if len(lost) != spread["count"]:
        raise RuntimeError(f"the report's interruption list has {len(lost)} timed interruptions, its spread "
                           f"{spread['count']}")
    stat, tail_s = tail(lost) if lost else ("max", float("nan"))
    phases = ", ".join(str(report["lost_s"][p]["p50"]) for p in ("detect", "diagnose", "repair", "restart"))
    return {
        "scale.llama3.escalations": figure(
            [float(headline["escalated_to_humans"])], unit="interruptions escalated to people", inputs=inputs,
            target=Target("<=", rounded(meta_rate * unexpected, 3)),
            baseline={"what": "Meta's significant manual interventions (3 in 419 unexpected interruptions), scaled "
                      "to this run's unexpected interruptions", "label": "Meta, scaled",
                      "median": rounded(meta_rate * unexpected, 3), "unit": "interventions", "source": META["source"]},
            note=f"escalations by kind: {report['escalations']['by_kind']}"),
        "scale.llama3.false_out_of_service": figure(
            [float(headline["wrong_irreversible_actions"])], unit="nodes", inputs=inputs, target=Target("<=", 0),
            note=f"nodes taken out of service whose last injected cause was not hardware; "
                 f"{headline['node_repair_tickets']} nodes out of service in all"),
        "scale.llama3.ettr": figure(
            [float(report["ettr"])], unit="ratio", inputs=inputs, target=Target(">=", META["ettr"]),
            baseline={"what": "Meta's effective training time on Llama 3 405B (> 90%)", "label": "Meta",
                      "median": META["ettr"], "unit": "ratio", "source": META["source"]},
            note="recovery's time only: a simulated job restarts in seconds, a real one loads its checkpoint"),
        "scale.llama3.state_growth": figure(
            [float(report["state"]["growth_over_day_7"])], unit="ratio", inputs=inputs, target=STATE_GROWTH_TARGET,
            note=f"recovery state bytes at day {report['days']:g} over day 7: {report['state']['bytes']:,} bytes in "
                 f"{report['state']['records']:,} records at the end; by day: {_state_days(report)}"),
        "scale.llama3.automation_s.p50": figure(
            [float(spread["p50"])], unit="s", inputs=inputs,
            note="per unexpected interruption that hit a job, from the injection to every rank running again "
                 f"(report lost_s.lost; detect / diagnose / repair / restart p50: {phases} s)"),
        "scale.llama3.automation_s.tail": {**figure(
            [tail_s], unit="s", inputs=inputs,
            note=f"{stat} over {len(lost)} interruptions (a p99 needs 1,000; report lost_s.lost.p90 "
                 f"{spread['p90']}, max {spread['max']})"), "stat": stat},
        "scale.llama3.peak_rss_mb": figure(
            [peak_rss_mb], unit="MiB", inputs=inputs,
            note="VmHWM of the child running the simulation (fleet simulator and recovery consumer in one process)"),
    }


def _state_days(report: dict[str, Any]) -> str:
    """The state's bytes at day 7, day 30 (records live ``ttl_days``, 30 by default, after they end) and the end."""
    days = {7.0, 30.0, float(report["days"])}
    return ", ".join(f"day {d['day']:g} {d['bytes']:,}" for d in report["state"]["by_day"] if float(d["day"]) in days)


def _child(argv: list[str]) -> int:
    nodes, days, spares, seed = int(argv[0]), float(argv[1]), int(argv[2]), int(argv[3])
    from gpu_recovery import wiring
    from gpu_recovery.settings import load_settings
    from local.fault_trace import load_mix
    from local.simulation import SimulationSpec, parse_jobs, run_simulation

    spec = SimulationSpec(nodes=nodes, days=days, mix=load_mix("llama3", history_nodes=None), seed=seed,
                          spares=spares, jobs=parse_jobs(None, nodes), engine="core")
    simulation = run_simulation(spec, load_settings(), wiring)  # type: ignore[arg-type]
    print(json.dumps({"report": simulation.report.model_dump(mode="json"), "peak_rss_mb": _vm_hwm_mb()}))
    return 0


def _vm_hwm_mb() -> float:
    with open("/proc/self/status", encoding="utf-8") as status:
        kib = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    return round(kib / 1024, 1)


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1:]))
