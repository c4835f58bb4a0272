"""Figures: the median of several runs with min and max, a target, the inputs, and the baseline.

Every benchmark returns plain dicts built here, so the JSON object, the table and the README all
read the same shape::

    {"value": 0.31, "median": 0.31, "min": 0.28, "max": 0.33, "runs": [0.31, 0.28, 0.33],
     "unit": "ratio", "target": {"op": ">=", "value": 0.25}, "met": true,
     "inputs": {...}, "baseline": {"what": "json.loads", "median": ..., "min": ..., "max": ...}}
"""

from __future__ import annotations

import math
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

Figure = dict[str, Any]


@dataclass(frozen=True)
class Target:
    op: str  # ">=", "<=" or "<"
    value: float

    def met(self, measured: float | None) -> bool | None:
        if measured is None or math.isnan(measured):
            return None
        if self.op == ">=":
            return measured >= self.value
        if self.op == "<=":
            return measured <= self.value
        if self.op == "<":
            return measured < self.value
        raise ValueError(f"unknown target operator {self.op!r}")

    def as_json(self) -> dict[str, Any]:
        return {"op": self.op, "value": self.value}

    def __str__(self) -> str:
        return f"{self.op} {self.value:g}"


def rounded(value: float, digits: int = 4) -> float:
    """Round to ``digits`` significant digits: 123456.7 -> 123500.0, 0.0123456 -> 0.01235."""
    if value == 0 or math.isnan(value) or math.isinf(value):
        return value
    return round(value, digits - 1 - math.floor(math.log10(abs(value))))


def summary(runs: Sequence[float]) -> dict[str, Any]:
    """Median, min and max of several runs (and the runs themselves, in the order they ran)."""
    if not runs:
        raise ValueError("a figure needs at least one run")
    return {
        "median": rounded(statistics.median(runs)),
        "min": rounded(min(runs)),
        "max": rounded(max(runs)),
        "runs": [rounded(r) for r in runs],
    }


def figure(
    runs: Sequence[float],
    *,
    unit: str,
    inputs: dict[str, Any],
    target: Target | None = None,
    baseline: dict[str, Any] | None = None,
    note: str | None = None,
) -> Figure:
    stats = summary(runs)
    out: Figure = {"value": stats["median"], **stats, "unit": unit}
    if target is not None:
        out["target"] = target.as_json()
        out["met"] = target.met(stats["median"])
    out["inputs"] = inputs
    if baseline is not None:
        out["baseline"] = baseline
    if note:
        out["note"] = note
    return out


def baseline(what: str, runs: Sequence[float], unit: str, label: str = "") -> dict[str, Any]:
    """The baseline measured in the same run; ``label`` is its short name in the table."""
    return {"what": what, "label": label or what, **summary(runs), "unit": unit}


def pair_ratios(numerators: Sequence[float], denominators: Sequence[float]) -> list[float]:
    """Ratios run by run (run i of one side over run i of the other), never median over median."""
    if len(numerators) != len(denominators):
        raise ValueError("pairs need as many runs on each side")
    return [n / d for n, d in zip(numerators, denominators, strict=True)]


def percentile(samples: Sequence[float], q: int) -> float:
    """The q-th percentile (1..99), linear between closest ranks (``statistics.quantiles``, inclusive:
    numpy's default method)."""
    if not samples:
        raise ValueError("no samples")
    if len(samples) == 1:
        return float(samples[0])  # quantiles needs two points before Python 3.13
    return statistics.quantiles(samples, n=100, method="inclusive")[q - 1]


TAIL_MIN_SAMPLES = 1_000


def tail(samples: Sequence[float], q: int = 99) -> tuple[str, float]:
    """The q-th percentile where there are enough samples for one (1,000 or more), else the max: a
    "p99" of 78 samples is the second-largest sample, and calling it a p99 claims more than it is."""
    if len(samples) >= TAIL_MIN_SAMPLES:
        return f"p{q:g}", percentile(samples, q)
    return "max", max(samples)


def progress(message: str) -> None:
    """One line per step on stderr, so a long run shows what it is doing; stdout stays for results."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def timed(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    """Wall seconds, CPU seconds of this process, and the result of one call."""
    wall0, cpu0 = time.perf_counter(), time.process_time()
    result = fn()
    return time.perf_counter() - wall0, time.process_time() - cpu0, result


def unmeasured(keys: tuple[str, ...], exc: BaseException) -> dict[str, Figure]:
    """Figures that could not be measured say why, instead of stopping the suite."""
    import traceback

    reason = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    return {key: {"value": None, "met": None, "error": reason[:500]} for key in keys}
