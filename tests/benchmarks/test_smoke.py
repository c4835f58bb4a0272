"""Smoke test of the benchmark suite: every benchmark runs at tiny sizes and the JSON has its shape.

No timing is asserted here: speed lives in ``python -m benchmarks``; this only proves it can run.
"""

from __future__ import annotations

import json

import pytest

from benchmarks.__main__ import main
from benchmarks.stats import Target, figure, pair_ratios, percentile
from benchmarks.suite import KEYS

WITH_TARGET = {"core.ratio_vs_json_loads", "projector.ratio_vs_naive", "projector.ddb_requests_per_event",
               "replay.ratio_vs_bare_read", "replay.peak_rss_mb", "recovery.decision_latency_ms.p99",
               "recovery.incident_overhead_s", "cli.startup_s"}
WITH_BASELINE = {"core.events_per_s", "core.ratio_vs_json_loads", "projector.events_per_s",
                 "projector.ratio_vs_naive", "projector.ddb_requests_per_event", "replay.ratio_vs_bare_read",
                 "cli.startup_s"}


def test_ratios_are_taken_run_by_run_and_figures_are_medians() -> None:
    # GIVEN three runs of a side and of its baseline, run 2 of the baseline disturbed by a neighbour
    measured, baseline = [10.0, 20.0, 30.0], [10.0, 2.0, 30.0]
    # WHEN the ratio figure is made
    ratios = pair_ratios(measured, baseline)
    made = figure(ratios, unit="ratio", inputs={"runs": 3}, target=Target(">=", 5))
    # THEN it is the median of the pairs (1), not the median over the median (2), with its spread
    assert ratios == [1.0, 10.0, 1.0]
    assert (made["value"], made["min"], made["max"], made["met"]) == (1.0, 1.0, 10.0, False)
    with pytest.raises(ValueError):
        pair_ratios([1.0], [1.0, 2.0])


def test_percentiles_interpolate_between_ranks() -> None:
    samples = [float(n) for n in range(1, 101)]
    assert percentile(samples, 50) == pytest.approx(50.5)
    assert percentile(samples, 99) == pytest.approx(99.01)
    assert percentile([7.0], 99) == 7.0


def test_the_tiny_suite_prints_one_json_object_with_every_key(capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN the suite at its tiny sizes (every benchmark once, on fresh embedded AWS servers)
    # WHEN it runs with --json
    assert main(["--tiny", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    # THEN one object holds every figure of the issue, each with its runs, inputs, target and baseline
    assert result["mode"] == "tiny"
    assert {"nproc", "cpu_model", "memory_gib", "python"} <= set(result["machine"])
    for key in (k for keys in KEYS.values() for k in keys):
        fig = result[key]
        assert "error" not in fig, f"{key}: {fig.get('error')}"
        assert isinstance(fig["value"], int | float), key
        assert fig["min"] <= fig["value"] <= fig["max"], key
        assert fig["inputs"], key
        if key in WITH_TARGET:
            assert fig["target"]["op"] in (">=", "<=", "<") and isinstance(fig["met"], bool), key
        if key in WITH_BASELINE:
            assert fig["baseline"]["what"], key
    # AND the measurements are of real work: both projectors built the same tables, the scenario passed
    assert result["projector.ratio_vs_naive"]["inputs"]["same_items_both_sides"] is True
    assert result["recovery.decision_latency_ms.p99"]["inputs"]["scenarios_ok"] is True
    assert result["recovery.decision_latency_ms.p99"]["inputs"]["decisions_timed"] > 0
    assert result["cli.startup_s"]["inputs"]["heavy_modules_loaded"] == []
    assert set(result["replay.peak_rss_mb"]["by_events"]) == {"200", "400"}
