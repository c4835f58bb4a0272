"""The fleet-scale keys of ``python -m benchmarks``: ``scale.llama3.*`` read from the simulation's own report,
and ``dynamodb.job_item_bytes_2048`` folded with the projector's fold and sized by DynamoDB's rules.

Small sizes: they prove what each figure is read from, not the speed (that is ``python -m benchmarks``)."""

from __future__ import annotations

import copy
import json

import pytest

from benchmarks.__main__ import main
from benchmarks.job_item import DESIGN_BOUND, bench_job_item, job_item_sizes
from benchmarks.scale_llama3 import scale_figures, simulate_in_child, spares_for
from benchmarks.stats import TAIL_MIN_SAMPLES, rounded
from benchmarks.suite import KEYS, Sizes
from consumers.adapters.dynamodb import item_size as python_item_size


@pytest.fixture(scope="module")
def small_run() -> dict[str, object]:
    # A 32-node fleet for 27 days: a few of Llama 3's interruptions hit its job (about 2 s)
    return simulate_in_child(32, 27)


def test_the_scale_figures_are_the_simulations_own(small_run: dict[str, object]) -> None:
    # GIVEN the report of `gpu-recovery simulate --engine core --fault-mix llama3` run in a child process
    report = small_run["report"]
    assert isinstance(report, dict)
    # WHEN the benchmark makes its figures of it
    figures = scale_figures(report, peak_rss_mb=float(small_run["peak_rss_mb"]), wall_s=1.0)  # type: ignore[arg-type]
    # THEN every scale key is there, each the report's own number, on the fleet asked for, with its spares
    assert set(figures) == set(KEYS["scale"])
    assert report["nodes"] == 32 and report["spares"] == spares_for(32) and report["engine"] == "core"
    assert figures["scale.llama3.escalations"]["value"] == report["headline"]["escalated_to_humans"]
    assert figures["scale.llama3.false_out_of_service"]["value"] == report["headline"]["wrong_irreversible_actions"]
    assert figures["scale.llama3.ettr"]["value"] == pytest.approx(report["ettr"], rel=1e-3)
    assert figures["scale.llama3.state_growth"]["value"] == pytest.approx(report["state"]["growth_over_day_7"],
                                                                          rel=1e-3)
    assert figures["scale.llama3.automation_s.p50"]["value"] == pytest.approx(report["lost_s"]["lost"]["p50"])
    # AND the tail is the max over so few interruptions, and says so; the memory is the child's own
    tail = figures["scale.llama3.automation_s.tail"]
    assert report["lost_s"]["lost"]["count"] < TAIL_MIN_SAMPLES
    assert tail["stat"] == "max" and tail["value"] == pytest.approx(report["lost_s"]["lost"]["max"])
    assert 20 < figures["scale.llama3.peak_rss_mb"]["value"] < 2_000
    # AND each target is the issue's: Meta's escalation rate scaled, no false out-of-service, 90%, 1.2x
    assert figures["scale.llama3.false_out_of_service"]["target"] == {"op": "<=", "value": 0}
    assert figures["scale.llama3.ettr"]["target"] == {"op": ">=", "value": 0.9}
    assert figures["scale.llama3.state_growth"]["target"] == {"op": "<=", "value": 1.2}
    assert figures["scale.llama3.escalations"]["baseline"]["median"] == pytest.approx(
        3 / 419 * report["headline"]["interruptions"], rel=1e-2)


def test_a_run_with_nothing_to_measure_is_an_error_not_a_figure(small_run: dict[str, object]) -> None:
    # GIVEN a report in which no interruption hit the job
    report = copy.deepcopy(small_run["report"])
    assert isinstance(report, dict)
    report["lost_s"]["lost"] = {"count": 0, "mean": None, "p50": None, "p90": None, "max": None}
    # WHEN figures are made of it  THEN it says why instead of inventing numbers
    with pytest.raises(ValueError, match="no interruption hit the job"):
        scale_figures(report, peak_rss_mb=1.0, wall_s=1.0)


def test_the_job_item_stays_bounded_restart_after_restart() -> None:
    # GIVEN a 256-rank job restarted five times (the second time every rank failing at once)
    sizes, job = job_item_sizes(256, 5)
    # THEN its item was sized after each of the 21 phases, says what the job is at the end ...
    assert len(sizes) == 4 * 5 + 1
    assert (job["state"], job["task_count"], job["running_count"], job["restart_count"]) == ("RUNNING", 256, 256, 5)
    # ... the wire size agrees with the adapter's own sizing of the same item (to a few bytes a value) ...
    assert abs(sizes[-1] - python_item_size(job)) <= 0.02 * sizes[-1]
    # ... and later restarts do not make it grow
    assert max(sizes[8:]) <= max(sizes[:8]) + 64


def test_the_2048_rank_job_item_figure_and_the_suites_keys(capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN the full and quick sizes of the suite
    assert (Sizes.full().scale_nodes, Sizes.full().scale_days) == (2_048, 54)
    assert Sizes.quick().job_item_ranks == Sizes.full().job_item_ranks == 2_048
    # WHEN the job item figure runs (256 ranks here; the suite's quick and full sizes run 2,048)
    figure = bench_job_item(256, 2)["dynamodb.job_item_bytes_2048"]
    # THEN it is the largest size over the history (4 significant digits), under DESIGN's bound
    assert figure["value"] == rounded(max(figure["inputs"]["bytes_by_phase"])) and figure["met"] is True
    assert figure["target"] == {"op": "<=", "value": DESIGN_BOUND} and figure["inputs"]["ranks"] == 256
    # AND `python -m benchmarks --only scale,dynamodb --json` prints every key of both groups, measured
    assert main(["--tiny", "--json", "--only", "scale,dynamodb"]) == 0
    result = json.loads(capsys.readouterr().out)
    for key in (*KEYS["scale"], *KEYS["dynamodb"]):
        assert "error" not in result[key], f"{key}: {result[key].get('error')}"
        assert isinstance(result[key]["value"], int | float), key
