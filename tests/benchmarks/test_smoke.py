"""Smoke test of the benchmark suite: every benchmark runs at tiny sizes and the JSON has its shape.

No timing is asserted here: speed lives in ``python -m benchmarks``; this only proves it can run.
"""

from __future__ import annotations

import json

import pytest

from benchmarks.__main__ import main
from benchmarks.stats import TAIL_MIN_SAMPLES, Target, figure, pair_ratios, percentile, tail
from benchmarks.suite import GROUPS, KEYS

# Their own tests run them (test_the_tiny_burst..., tests/benchmarks/test_e2e_kcl.py): slow, each a stack of its own.
SLOW_GROUPS = {"burst", "e2e"}
WITH_TARGET = {"core.ratio_vs_from_json", "core.ratio_vs_json_loads", "projector.ratio_vs_update_item",
               "projector.requests_per_event", "projector.ratio_vs_naive", "projector.ddb_requests_per_event",
               "replay.ratio_vs_fastest_read", "replay.ratio_vs_bare_read", "replay.memory_growth_180d",
               "replay.peak_rss_mb", "recovery.decision_latency_ms.max", "recovery.incident_overhead_s",
               "cli.startup_s"}
WITH_BASELINE = {"core.events_per_s", "core.ratio_vs_from_json", "core.ratio_vs_json_loads",
                 "projector.ratio_vs_update_item", "projector.requests_per_event", "projector.events_per_s",
                 "projector.ratio_vs_naive", "projector.ddb_requests_per_event", "replay.ratio_vs_fastest_read",
                 "replay.ratio_vs_bare_read", "replay.memory_growth_180d", "cli.startup_s"}
# The honest baselines: each against the strongest baseline measured in the same run.
HONEST = {"core.ratio_vs_from_json": "pydantic_core.from_json", "replay.ratio_vs_fastest_read": "fastest bare read",
          "projector.ratio_vs_update_item": "per-event UpdateItem x 8 threads",
          "replay.memory_growth_180d": "live tables' items under TTL"}


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


def test_a_tail_is_a_p99_only_over_enough_samples() -> None:
    # GIVEN 78 samples (the recovery figure's count) and 1,000 samples
    few, many = [float(n) for n in range(78)], [float(n) for n in range(TAIL_MIN_SAMPLES)]
    # WHEN their tails are taken
    # THEN the few give their max, called max; the many a p99, called p99
    assert tail(few) == ("max", 77.0)
    name, value = tail(many)
    assert name == "p99" and value == pytest.approx(percentile(many, 99))


def test_the_tiny_suite_prints_one_json_object_with_every_key(capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN the suite at its tiny sizes (every benchmark once, on fresh embedded AWS servers)
    # WHEN it runs with --json
    assert main(["--tiny", "--json", "--only", ",".join(g for g in GROUPS if g not in SLOW_GROUPS)]) == 0
    result = json.loads(capsys.readouterr().out)
    # THEN one object holds every figure of the issue, each with its runs, inputs, target and baseline
    assert result["mode"] == "tiny"
    assert {"nproc", "cpu_model", "memory_gib", "python"} <= set(result["machine"])
    for key in (k for group, keys in KEYS.items() if group not in SLOW_GROUPS for k in keys):
        fig = result[key]
        assert "error" not in fig, f"{key}: {fig.get('error')}"
        assert isinstance(fig["value"], int | float), key
        assert fig["min"] <= fig["value"] <= fig["max"], key
        assert fig["inputs"], key
        if key in WITH_TARGET:
            assert fig["target"]["op"] in (">=", "<=", "<") and isinstance(fig["met"], bool), key
        if key in WITH_BASELINE:
            assert fig["baseline"]["what"], key
    # AND each honest ratio names the strongest baseline it was measured against, in the same run
    for key, label in HONEST.items():
        assert result[key]["baseline"]["label"] == label, key
        assert len(result[key]["runs"]) == result[key]["inputs"]["runs" if "runs" in result[key]["inputs"]
                                                                 else "rounds"], key
    # AND the measurements are of real work: both projectors built the same tables, the scenario passed
    assert result["projector.ratio_vs_naive"]["inputs"]["same_items_both_sides"] is True
    kcl = result["projector.ratio_vs_update_item"]["inputs"]
    assert kcl["same_registers_both_sides"] is True
    assert 20 <= kcl["batch_size"]["min"] <= kcl["batch_size"]["max"] <= 50
    assert kcl["updates_per_item_per_batch"]["ecs_task"] < 1.5  # what the KCL delivers: ~1 update per batch
    stream = result["replay.ratio_vs_fastest_read"]["inputs"]["rates_events_per_s"]
    assert set(stream) == {"bare_thread", "bare_process", "replay_process", "replay_thread"}
    memory = result["replay.memory_growth_180d"]["inputs"]["per_run"][0]
    assert memory["expired"] > 0 and memory["late_dropped"] == 0 and memory["malformed"] == 0
    assert memory["at_long"]["tasks_launched"] > memory["at_short"]["tasks_launched"]
    latency = result["recovery.decision_latency_ms.max"]
    assert "recovery.decision_latency_ms.p99" not in result
    assert 0 < max(latency["samples_per_round"]) < TAIL_MIN_SAMPLES
    assert latency["inputs"]["scenarios_ok"] is True
    assert latency["inputs"]["decisions_timed"] > 0
    assert result["cli.startup_s"]["inputs"]["heavy_modules_loaded"] == []
    assert set(result["replay.peak_rss_mb"]["by_events"]) == {"200", "400"}


BURST_WITH_BASELINE = {"burst.ratio_vs_floor", "burst.decision_latency_ms.p50", "burst.decision_latency_ms.tail",
                       "burst.records_per_s_per_worker", "dynamodb.wcu_per_event"}


@pytest.mark.slow  # ~35 s on 2 cores: the embedded AWS, a 4-node fleet, two rounds of recovery workers
def test_the_tiny_burst_measures_every_figure_against_its_baseline(capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN the burst at its tiny size: a 4-rank job, every rank stopping within a second
    # WHEN it runs with one and then two recovery workers
    assert main(["--tiny", "--json", "--only", "burst"]) == 0
    result = json.loads(capsys.readouterr().out)
    # THEN every figure was measured, the ones with a baseline name it, and both rounds restarted the job once
    for key in KEYS["burst"]:
        fig = result[key]
        assert "error" not in fig, f"{key}: {fig.get('error')}"
        assert isinstance(fig["value"], int | float) and fig["value"] > 0, key
        if key in BURST_WITH_BASELINE:
            assert fig["baseline"]["what"], key
    burst = result["burst.ratio_vs_floor"]["inputs"]
    assert burst["all_ok"] is True and [r["workers"] for r in burst["per_round"]] == [1, 2]
    assert all(r["restart_start_tasks"] == burst["ranks"] and r["duplicate_stops"] == 0 for r in burst["per_round"])
    # AND two workers split the stream: each read records of its own shards
    two = next(r for r in burst["per_round"] if r["workers"] == 2)
    assert set(two["records_per_s_by_worker"]) == {"0", "1"}
    # AND the tail is named for what it is; the units are counted and priced with their source
    tail_fig = result["burst.decision_latency_ms.tail"]
    assert tail_fig["stat"] == ("p99" if tail_fig["inputs"]["samples"] >= TAIL_MIN_SAMPLES else "max")
    ddb = result["dynamodb.wcu_per_event"]["inputs"]
    assert ddb["per_round"][0]["by_table"]["recovery"]["wcu"] > 0 and ddb["per_round"][0]["records"] > 0
    assert "aws.amazon.com/dynamodb/pricing" in ddb["price_source"]
    assert result["dynamodb.job_item_bytes"]["met"] is True
