"""Coverage before verdict, over generated dcgmi documents of both families: no document with a skipped,
missing or not-run test on any expected GPU is ever healthy, and a complete all-pass one always is."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from healthcheck.coverage import LEVEL_TESTS, expected_tests
from healthcheck.dcgm import parse_diag
from healthcheck.findings import DiagReport, Findings, GpuNvml, HealthReport, NvmlReport, XidReport
from healthcheck.verdict import decide
from tests.healthcheck.fakes import FIXTURES

Outcome = str  # "pass", "skip", "not_run" (listed, did not run), "missing" (absent from the document)
DISPLAY = {"pcie": "PCIe", "memory": "GPU Memory", "diagnostic": "Diagnostic", "targeted_stress": "Targeted Stress",
           "targeted_power": "Targeted Power", "memory_bandwidth": "Memory Bandwidth", "memtest": "Memtest",
           "pulse_test": "Pulse Test"}
CATEGORY = {"software": "Deployment", "pcie": "Integration", "memory": "Hardware", "diagnostic": "Hardware"}


@st.composite
def runs(draw: st.DrawFn) -> tuple[int, int, dict[str, dict[int, Outcome]], frozenset[str], frozenset[int]]:
    """A level, a GPU count, each test's outcome per GPU, tests left out entirely, GPUs DCGM does not list."""
    level = draw(st.integers(1, 4))
    gpus = draw(st.integers(1, 8))
    weights = st.sampled_from(["pass"] * 6 + ["skip", "not_run", "missing"])
    outcomes = {t: {g: draw(weights) for g in range(gpus)} for t in LEVEL_TESTS[level]}
    dropped = draw(st.frozensets(st.sampled_from(LEVEL_TESTS[level]), max_size=1))
    unlisted = draw(st.frozensets(st.integers(0, gpus - 1), max_size=1))
    return level, gpus, outcomes, dropped, unlisted


def dcgm4(outcomes: dict[str, dict[int, Outcome]], dropped: frozenset[str], listed: list[int]) -> dict[str, Any]:
    tests = []
    for test, per_gpu in outcomes.items():
        if test in dropped:
            continue
        results = [{"entity_group": "GPU", "entity_group_id": 1, "entity_id": g, "status": _word(o),
                    "warnings": [{"warning": f"{test} skipped on GPU {g}", "error_id": 117, "error_severity": 5}]
                    if o == "skip" else []}
                   for g, o in per_gpu.items() if o != "missing" and g in listed]
        tests.append({"category": CATEGORY.get(test, "Stress"), "name": test, "results": results})
    return {"DCGM Diagnostic": {"test_categories": [{"category": t["category"], "tests": [t]} for t in tests]},
            "entity_groups": [{"entity_group": "GPU", "entity_group_id": 1,
                               "entities": [{"entity_id": g} for g in listed]}],
            "metadata": {"version": "4.4.2"}}


def dcgm3(outcomes: dict[str, dict[int, Outcome]], dropped: frozenset[str], listed: list[int]) -> dict[str, Any]:
    categories = []
    for test, per_gpu in outcomes.items():
        if test in dropped:
            continue
        if test == "software":  # node-wide deployment checks: the worst GPU's outcome stands for the node
            worst = next((o for o in ("missing", "not_run", "skip") if o in per_gpu.values()), "pass")
            if worst == "missing":
                continue
            tests = [{"name": "Persistence Mode", "results": [{"status": _word(worst)}]}]
        else:
            tests = [{"name": DISPLAY[test], "results": [{"gpu_id": str(g), "status": _word(o)}
                                                         for g, o in per_gpu.items()
                                                         if o not in ("missing", "not_run") and g in listed]}]
        categories.append({"category": CATEGORY.get(test, "Stress"), "tests": tests})
    return {"DCGM GPU Diagnostic": {"test_categories": categories}, "version": "3.3.9",
            "GPU Device IDs": ["2330"] * len(listed)}


def _word(outcome: Outcome) -> str:
    return {"pass": "Pass", "skip": "Skip", "not_run": "Not Run"}[outcome]


def verdict_for(doc: dict[str, Any], level: int, gpus: int) -> str:
    diag = parse_diag(doc)
    nvml = NvmlReport("570", gpus, tuple(GpuNvml(i, uuid=f"GPU-{i}") for i in range(gpus)))
    findings = Findings(level, gpus, diag, HealthReport("pass"), nvml, XidReport({}, "t"))
    return decide(findings).verdict


def complete(level: int, outcomes: dict[str, dict[int, Outcome]], dropped: frozenset[str],
             unlisted: frozenset[int]) -> bool:
    return not dropped and not unlisted and all(o == "pass" for per in outcomes.values() for o in per.values())


@settings(max_examples=300, deadline=None)
@given(runs())
def test_dcgm4_healthy_exactly_when_every_test_ran_and_passed_on_every_gpu(
    run: tuple[int, int, dict[str, dict[int, Outcome]], frozenset[str], frozenset[int]],
) -> None:
    level, gpus, outcomes, dropped, unlisted = run
    listed = [g for g in range(gpus) if g not in unlisted]
    verdict = verdict_for(dcgm4(outcomes, dropped, listed), level, gpus)
    if complete(level, outcomes, dropped, unlisted):
        assert verdict == "healthy"
    else:
        assert verdict == "inconclusive"


@settings(max_examples=300, deadline=None)
@given(runs())
def test_dcgm3_healthy_exactly_when_every_test_ran_and_passed_on_every_gpu(
    run: tuple[int, int, dict[str, dict[int, Outcome]], frozenset[str], frozenset[int]],
) -> None:
    level, gpus, outcomes, dropped, unlisted = run
    # DCGM 3 lists the run's GPUs by count: a GPU left out is the last one.
    listed = list(range(gpus - len(unlisted)))
    unlisted = frozenset(range(len(listed), gpus))
    verdict = verdict_for(dcgm3(outcomes, dropped, listed), level, gpus)
    if complete(level, outcomes, dropped, unlisted):
        assert verdict == "healthy"
    else:
        assert verdict == "inconclusive"


def test_the_level_table_follows_dcgms_suites() -> None:
    assert expected_tests(1) == ("software",)
    assert expected_tests(2) == ("software", "pcie", "memory")
    assert set(expected_tests(3)) - set(expected_tests(2)) == {"diagnostic", "targeted_stress", "targeted_power",
                                                               "memory_bandwidth"}
    assert set(expected_tests(4)) - set(expected_tests(3)) == {"memtest", "pulse_test"}


def test_real_dcgm3_all_pass_reads_healthy_at_its_level() -> None:
    text = (FIXTURES / "diag_dcgm3_1_0_nvvs_8gpu_pass.txt").read_text()
    doc = json.loads(text[text.index("{"):])
    report = parse_diag(doc)
    assert isinstance(report, DiagReport)
    assert verdict_for(doc, 1, 8) == "healthy"
    assert verdict_for(doc, 2, 8) == "inconclusive"  # a level-2 check needs pcie and memory too
