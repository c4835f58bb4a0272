"""The ``replay.*`` figures, from the replay engineer's ``benchmarks.replay_bench`` (called, not changed).

* ``replay.peak_rss_mb``: ``bench_file_replay(n)`` replays a synthetic history of ``n`` events from a
  file into ``file:`` in a child process and reports its peak RSS; the history has a fixed population,
  so memory must not grow with ``n``: the large size within 1.2x of the small one, run by run.

The stream figures (``replay.ratio_vs_fastest_read``, ``replay.ratio_vs_bare_read``) are in
``benchmarks.replay_stream``; memory over months of new task ids in ``benchmarks.replay_memory``.
"""

from __future__ import annotations

from benchmarks.stats import Figure, Target, figure, pair_ratios, progress, summary

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
