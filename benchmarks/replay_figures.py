"""The ``replay.*`` figures, from the replay engineer's ``benchmarks.replay_bench`` (called, not changed).

* ``replay.peak_rss_mb``: ``bench_file_replay(n)`` replays a synthetic history of ``n`` events from a
  file into ``file:`` in a child process and reports its peak RSS; the history has a fixed population,
  so memory must not grow with ``n``: the large size within 1.2x of the small one, run by run.
* ``replay.ratio_vs_bare_read``: ``bench_stream_replay(endpoint, n)`` puts ``n`` events in a stream on
  the embedded AWS and times, interleaved and best of three, a bare read of every shard and a replay
  (decode, fold, write the state) through the reader ``gpu-recovery replay`` uses by default (a child
  process). Each call gives one ratio; the figure is the median over calls.
"""

from __future__ import annotations

from typing import Any

from benchmarks.stats import Figure, Target, figure, pair_ratios, progress, summary

TARGET_RATIO = Target(">=", 0.8)
TARGET_RSS_GROWTH = Target("<=", 1.2)


def bench_replay_memory(sizes: tuple[int, int], runs: int) -> dict[str, Figure]:
    from benchmarks.replay_bench import bench_file_replay

    small, large = sizes
    peaks: dict[int, list[float]] = {small: [], large: []}
    rates: dict[int, list[float]] = {small: [], large: []}
    for run in range(runs):
        for n in sizes:
            progress(f"replay: run {run + 1}/{runs}: file replay of {n} events (peak RSS, child process)")
            result = bench_file_replay(n)
            peaks[n].append(float(result["peak_rss_mib"]))
            rates[n].append(float(result["events_per_s"] or 0))
    growth = pair_ratios(peaks[large], peaks[small])
    out = figure(peaks[large], unit="MiB", inputs={
        "sizes": [small, large], "runs": runs, "function": "benchmarks.replay_bench.bench_file_replay",
        "fleet": {"nodes": 2000, "jobs": 500}, "target_applies_to": "growth (peak at the large size over the small)",
    })
    out["by_events"] = {str(n): {**summary(peaks[n]), "unit": "MiB"} for n in sizes}
    out["growth"] = {**summary(growth), "unit": "ratio"}
    out["target"] = TARGET_RSS_GROWTH.as_json()
    out["met"] = TARGET_RSS_GROWTH.met(out["growth"]["median"])
    out["file_replay_events_per_s"] = {str(n): {**summary(rates[n]), "unit": "events/s"} for n in sizes}
    return {"replay.peak_rss_mb": out}


def bench_replay_stream(endpoint_url: str, n_events: int, runs: int) -> dict[str, Figure]:
    from benchmarks.replay_bench import bench_stream_replay

    ratios: list[float] = []
    details: list[dict[str, Any]] = []
    for run in range(runs):
        progress(f"replay: run {run + 1}/{runs}: stream replay vs bare read of {n_events} events")
        result = bench_stream_replay(endpoint_url, n_events)
        ratios.append(float(result["ratio"]))
        details.append({k: result.get(k) for k in ("process", "thread")})
    return {"replay.ratio_vs_bare_read": figure(
        ratios, unit="ratio", target=TARGET_RATIO,
        inputs={"events": n_events, "shards": 4, "runs": runs, "reader": "process (replay's default)",
                "function": "benchmarks.replay_bench.bench_stream_replay", "per_run": details},
        baseline={"what": "a bare read of the same stream through the same reader, same call",
                  "bare_read_events_per_s": [d["process"]["bare_read_events_per_s"] for d in details
                                             if d.get("process")]},
        note="bare-read seconds over replay seconds (interleaved, best of three inside each call)",
    )}
