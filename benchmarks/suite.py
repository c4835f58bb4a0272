"""The whole suite: which benchmarks, at which sizes, and the one JSON object they make together."""

from __future__ import annotations

import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from benchmarks.stats import Figure, progress, unmeasured

GROUPS = ("core", "projector", "replay", "recovery", "cli", "burst", "scale", "dynamodb", "e2e")
KEYS: dict[str, tuple[str, ...]] = {
    "core": ("core.events_per_s", "core.ratio_vs_from_json", "core.ratio_vs_json_loads"),
    "projector": ("projector.ratio_vs_update_item", "projector.requests_per_event", "projector.events_per_s",
                  "projector.ratio_vs_naive", "projector.ddb_requests_per_event"),
    "replay": ("replay.ratio_vs_fastest_read", "replay.ratio_vs_bare_read", "replay.memory_growth_180d",
               "replay.peak_rss_mb"),
    "recovery": ("recovery.decision_latency_ms.p50", "recovery.decision_latency_ms.max",
                 "recovery.incident_overhead_s"),
    "cli": ("cli.startup_s",),
    "burst": ("burst.ratio_vs_floor", "burst.decision_latency_ms.p50", "burst.decision_latency_ms.tail",
              "burst.records_per_s_per_worker", "dynamodb.wcu_per_event", "dynamodb.rcu_per_event",
              "dynamodb.wcu_per_fault", "dynamodb.rcu_per_fault", "dynamodb.usd_per_month",
              "dynamodb.job_item_bytes"),
    "scale": ("scale.llama3.escalations", "scale.llama3.false_out_of_service", "scale.llama3.ettr",
              "scale.llama3.state_growth", "scale.llama3.automation_s.p50", "scale.llama3.automation_s.tail",
              "scale.llama3.peak_rss_mb"),
    "dynamodb": ("dynamodb.job_item_bytes_2048",),
    "e2e": ("e2e.kcl.latency_ms.p50", "e2e.kcl.latency_ms.p99", "e2e.kcl.latency_ms.max"),
}


@dataclass(frozen=True)
class Sizes:
    mode: str
    core_records: int
    core_runs: int
    projector_tasks: int
    projector_nodes: int
    projector_batches: int
    projector_runs: int
    kcl_events: int
    kcl_runs: int
    replay_sizes: tuple[int, int]
    replay_runs: int
    stream_events: int
    stream_rounds: int
    memory_nodes: int
    memory_days: tuple[int, int]
    recovery_rounds: int
    recovery_scenarios: tuple[str, ...]
    cli_runs: int
    burst_ranks: int = 16
    burst_runs: int = 1
    scale_nodes: int = 64  # scale.llama3: nodes x days of Llama 3's fault mix, one job on every node
    scale_days: float = 54
    job_item_ranks: int = 2_048  # dynamodb.job_item_bytes_2048: its job's ranks and restarts
    job_item_restarts: int = 5
    kcl_decisions: int = 120  # e2e.kcl: decisions through the real KCL worker (a p99 needs 1,000) ...
    kcl_pace_s: float = 0.5  # ... one event every this many seconds: fresh arrivals, not a backlog
    groups: tuple[str, ...] = GROUPS
    server: str = "process"
    extra: dict[str, Any] = field(default_factory=dict)

    @staticmethod
    def full() -> Sizes:
        return Sizes("full", core_records=100_000, core_runs=5, projector_tasks=40, projector_nodes=10,
                     projector_batches=2, projector_runs=3, kcl_events=1_000, kcl_runs=5,
                     replay_sizes=(100_000, 1_000_000), replay_runs=3, stream_events=20_000, stream_rounds=5,
                     memory_nodes=1_000, memory_days=(30, 180), recovery_rounds=3,
                     recovery_scenarios=("01-xid79-quarantine", "02-xid48-reboot", "10-breaker"), cli_runs=20,
                     burst_ranks=2_048, burst_runs=1, scale_nodes=2_048, scale_days=54,
                     kcl_decisions=1_000)

    @staticmethod
    def quick() -> Sizes:
        """Well under five minutes on 2 busy cores: smaller sizes, fewer runs (the JSON inputs say which)."""
        return Sizes("quick", core_records=20_000, core_runs=3, projector_tasks=10, projector_nodes=3,
                     projector_batches=1, projector_runs=2, kcl_events=210, kcl_runs=3,
                     replay_sizes=(20_000, 100_000), replay_runs=1, stream_events=5_000, stream_rounds=3,
                     memory_nodes=100, memory_days=(30, 180), recovery_rounds=1,
                     recovery_scenarios=("01-xid79-quarantine", "02-xid48-reboot", "10-breaker"), cli_runs=5,
                     burst_ranks=16, burst_runs=1, scale_nodes=64, scale_days=54)

    @staticmethod
    def tiny() -> Sizes:
        """For the smoke test: every benchmark once, at sizes that prove the shapes, not the speed."""
        return Sizes("tiny", core_records=300, core_runs=2, projector_tasks=2, projector_nodes=1,
                     projector_batches=1, projector_runs=2, kcl_events=70, kcl_runs=2, replay_sizes=(200, 400),
                     replay_runs=1, stream_events=100, stream_rounds=1, memory_nodes=8, memory_days=(30, 60),
                     recovery_rounds=1, recovery_scenarios=("02-xid48-reboot",),
                     cli_runs=2, burst_ranks=4, burst_runs=1, scale_nodes=32, scale_days=27, job_item_ranks=64,
                     job_item_restarts=2, kcl_decisions=3, kcl_pace_s=0.2)

    def only(self, groups: tuple[str, ...]) -> Sizes:
        return replace(self, groups=groups)


def machine() -> dict[str, Any]:
    """Where the figures came from: cores, memory, CPU model, Python, and how busy the machine was."""
    cpu = "unknown"
    memory_gib: float | None = None
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            cpu = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), cpu)
        with open("/proc/meminfo", encoding="utf-8") as info:
            kib = next(int(line.split()[1]) for line in info if line.startswith("MemTotal"))
            memory_gib = round(kib / 2**20, 1)
    except (OSError, StopIteration, ValueError):
        pass
    return {
        "nproc": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "memory_gib": memory_gib, "cpu_model": cpu, "python": sys.version.split()[0],
        "platform": platform.platform(), "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def _guarded(keys: tuple[str, ...], bench: Callable[[], dict[str, Figure]]) -> dict[str, Figure]:
    try:
        return bench()
    except Exception as exc:  # one broken benchmark must not hide the other figures
        progress(f"FAILED: {', '.join(keys)}: {exc!r}")
        return unmeasured(keys, exc)


def run_suite(sizes: Sizes) -> dict[str, Any]:
    """Run the chosen groups; one JSON-ready object: every figure by key, the machine, the sizes."""
    started = time.perf_counter()
    out: dict[str, Any] = {"suite": "gpu-recovery benchmarks", "mode": sizes.mode,
                           "started_at": datetime.now(UTC).isoformat(timespec="seconds"), "machine": machine()}
    figures: dict[str, Figure] = {}
    if "core" in sizes.groups:
        from benchmarks.core_bench import bench_core

        figures |= _guarded(KEYS["core"], lambda: bench_core(sizes.core_records, sizes.core_runs))
    if "cli" in sizes.groups:
        from benchmarks.cli_bench import bench_cli

        figures |= _guarded(KEYS["cli"], lambda: bench_cli(sizes.cli_runs))
    if "projector" in sizes.groups or "replay" in sizes.groups:
        figures |= _with_server(sizes)
    if "replay" in sizes.groups:
        from benchmarks.replay_figures import bench_replay_memory
        from benchmarks.replay_memory import bench_replay_memory_growth

        figures |= _guarded(("replay.peak_rss_mb",), lambda: bench_replay_memory(sizes.replay_sizes, sizes.replay_runs))
        figures |= _guarded(("replay.memory_growth_180d",), lambda: bench_replay_memory_growth(
            sizes.memory_nodes, 1, sizes.memory_days))
    if "recovery" in sizes.groups:
        from benchmarks.recovery_bench import bench_recovery

        figures |= _guarded(KEYS["recovery"], lambda: bench_recovery(sizes.recovery_rounds, sizes.recovery_scenarios,
                                                                     sizes.server))
    if "burst" in sizes.groups:
        from benchmarks.burst_bench import bench_burst

        figures |= _guarded(KEYS["burst"], lambda: bench_burst(sizes.burst_ranks, runs=sizes.burst_runs))
    if "scale" in sizes.groups:
        from benchmarks.scale_llama3 import bench_scale_llama3

        figures |= _guarded(KEYS["scale"], lambda: bench_scale_llama3(sizes.scale_nodes, sizes.scale_days))
    if "dynamodb" in sizes.groups:
        from benchmarks.job_item import bench_job_item

        figures |= _guarded(KEYS["dynamodb"], lambda: bench_job_item(sizes.job_item_ranks, sizes.job_item_restarts))
    if "e2e" in sizes.groups:
        from benchmarks.e2e_kcl import bench_e2e_kcl

        figures |= _guarded(KEYS["e2e"], lambda: bench_e2e_kcl(sizes.kcl_decisions, sizes.kcl_pace_s))
    for group in sizes.groups:
        for key in KEYS[group]:
            figures.setdefault(key, {"value": None, "met": None, "error": "not measured"})
    out |= {key: figures[key] for group in GROUPS if group in sizes.groups for key in KEYS[group]}
    out["machine"]["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    out["seconds"] = round(time.perf_counter() - started, 1)
    return out


def _with_server(sizes: Sizes) -> dict[str, Figure]:
    """The benchmarks that share one embedded AWS: the projector pair and stream replay."""
    from benchmarks.server import embedded_aws

    figures: dict[str, Figure] = {}
    progress(f"starting the embedded AWS ({sizes.server})")
    with embedded_aws(sizes.server) as endpoint:
        if "projector" in sizes.groups:
            from benchmarks.projector_bench import bench_projector
            from benchmarks.projector_kcl import bench_projector_kcl

            figures |= _guarded(KEYS["projector"][:2], lambda: bench_projector_kcl(
                endpoint, events=sizes.kcl_events, runs=sizes.kcl_runs, server=sizes.server))
            figures |= _guarded(KEYS["projector"][2:], lambda: bench_projector(
                endpoint, batches=sizes.projector_batches, runs=sizes.projector_runs, tasks=sizes.projector_tasks,
                nodes=sizes.projector_nodes, server=sizes.server))
        if "replay" in sizes.groups:
            from benchmarks.replay_stream import bench_replay_stream

            figures |= _guarded(KEYS["replay"][:2], lambda: bench_replay_stream(
                endpoint, sizes.stream_events, sizes.stream_rounds))
    return figures
