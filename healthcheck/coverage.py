"""Coverage before verdict: what the diagnostic did not test. Pure.

A GPU is cleared only when every test of the requested level ran on it and did not fail: a skipped test,
a test that did not run, a GPU the document does not cover, or a test the level should have run and the
document does not name, each makes the check inconclusive and is listed by name.

The tests of each level follow DCGM's own suites (``NvidiaValidationSuite::FillTestVectors`` in DCGM 3.3.9
and 4.6.0; docs/healthcheck.md): each level adds to the one below. Tests that run only where a plugin is
installed (eud, cpu_eud, nvbandwidth, nccl_tests) are not required, but are judged like the others when
the document has them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from healthcheck.findings import DiagReport, DiagResult

LEVEL_TESTS: dict[int, tuple[str, ...]] = {
    1: ("software",),
    2: ("software", "pcie", "memory"),
    3: ("software", "pcie", "memory", "diagnostic", "targeted_stress", "targeted_power", "memory_bandwidth"),
    4: ("software", "pcie", "memory", "diagnostic", "targeted_stress", "targeted_power", "memory_bandwidth",
        "memtest", "pulse_test"),
}
RAN = frozenset({"pass", "warn", "fail"})


@dataclass(frozen=True, slots=True)
class Gap:
    """One test that did not run (or was skipped) on some GPUs, in words."""

    test: str
    gpus: tuple[int, ...]
    text: str


def expected_tests(level: int) -> tuple[str, ...]:
    """The tests ``dcgmi diag -r LEVEL`` runs on every GPU (what a simulator must report to be healthy)."""
    return LEVEL_TESTS[level]


def gaps(diag: DiagReport, level: int, gpus: Iterable[int]) -> tuple[Gap, ...]:
    """What did not run, one entry per test and kind, naming the GPUs: empty when coverage is complete."""
    expected = sorted(set(gpus))
    by_test: dict[str, list[DiagResult]] = defaultdict(list)
    for result in diag.results:
        by_test[result.test].append(result)
    tests = list(dict.fromkeys([*LEVEL_TESTS[level], *by_test]))
    found: list[Gap] = []
    for test in tests:
        found.extend(_test_gaps(test, by_test.get(test, []), expected, required=test in LEVEL_TESTS[level]))
    return tuple(found)


def _test_gaps(test: str, results: list[DiagResult], gpus: list[int], *, required: bool) -> list[Gap]:
    if not results:
        return [Gap(test, tuple(gpus), f"{test}: not in the report (the level runs it)")] if required else []
    skipped: dict[int, str] = {}
    not_run: list[int] = []
    wide = [r for r in results if r.gpu is None]
    for gpu in gpus:
        # Only a result for the GPU itself clears it; a test-wide result can only say what did not run.
        mine = [r for r in results if r.gpu == gpu]
        if any(r.status in RAN for r in mine) and not any(r.status == "skip" for r in mine):
            continue
        skip = next((r for r in [*mine, *wide] if r.status == "skip"), None)
        if skip is not None:
            skipped[gpu] = _why(skip)
        else:
            not_run.append(gpu)
    out = []
    if skipped:
        out.append(Gap(test, tuple(sorted(skipped)),
                       f"{test}: skipped on {_gpus(skipped)}{_first_reason(skipped.values())}"))
    if not_run:
        out.append(Gap(test, tuple(not_run), f"{test}: did not run on {_gpus(not_run)}"))
    return out


def _why(result: DiagResult) -> str:
    message = next((e.message for e in result.errors if e.message), "")
    name = f" ({result.subtest})" if result.subtest else ""
    return f"{name} {message}".strip()


def _first_reason(reasons: Iterable[str]) -> str:
    first = next((r for r in reasons if r), "")
    return f": {first[:160]}" if first else ""


def _gpus(gpus: Iterable[int]) -> str:
    ids = sorted(set(gpus))
    return ("GPU " if len(ids) == 1 else "GPUs ") + ",".join(map(str, ids))
