"""``e2e.kcl.latency_ms.*``: an ECS event put on kinesis-local to the recovery's first AWS call, through the
real KCL MultiLangDaemon. The figures' naming is checked on plain numbers; one tiny run proves the path."""

from __future__ import annotations

import pytest

from benchmarks.e2e_kcl import POLL_MS, _figures, bench_e2e_kcl
from benchmarks.stats import TAIL_MIN_SAMPLES, percentile
from benchmarks.suite import KEYS
from consumers.runtime import kcl_java
from local import kinesis_local
from tests.tools import missing_tool


def test_a_p99_is_given_only_over_enough_decisions() -> None:
    # GIVEN the latencies of 200 decisions, and of 1,000
    few = [float(ms) for ms in range(1_000, 1_200)]
    many = [float(ms) for ms in range(1_000, 1_000 + TAIL_MIN_SAMPLES)]
    # WHEN their figures are made
    from_few, from_many = _figures(few, len(few), 0.1, 30.0), _figures(many, len(many), 0.1, 30.0)
    # THEN both have every key; the few have a max and a p99 that says why it is missing
    assert set(from_few) == set(from_many) == set(KEYS["e2e"])
    assert from_few["e2e.kcl.latency_ms.max"]["value"] == 1_199
    assert from_few["e2e.kcl.latency_ms.p99"]["value"] is None
    assert "too few for a p99" in from_few["e2e.kcl.latency_ms.p99"]["error"]
    # AND the many have a real p99, under the target of the poll interval + 500 ms or not
    p99 = from_many["e2e.kcl.latency_ms.p99"]
    assert p99["value"] == pytest.approx(percentile(many, 99), rel=1e-3)
    assert p99["target"] == {"op": "<=", "value": POLL_MS + 500} and p99["met"] is True
    assert from_many["e2e.kcl.latency_ms.p50"]["value"] == pytest.approx(percentile(many, 50), rel=1e-3)
    # AND the drift over the run shows: the median of each tenth, in the order the events were put
    assert from_many["e2e.kcl.latency_ms.p50"]["inputs"]["p50_by_tenth_ms"] == [
        pytest.approx(1_049.5 + 100 * tenth, rel=1e-3) for tenth in range(10)]


@pytest.mark.slow  # ~50 s on 2 cores: kinesis-local, moto's server, a JVM with the KCL
@pytest.mark.serial  # a real daemon on wall-clock polls: alone, after the parallel tests
def test_three_decisions_through_the_real_kcl_worker_are_timed() -> None:
    try:
        kinesis_local.package_dir()
        kinesis_local.node_executable()
        kcl_java.jar_classpath()
        kcl_java.resolve_java()
    except (kinesis_local.KinesisLocalError, kcl_java.KclSetupError) as error:
        missing_tool(str(error))
    # GIVEN the local stack and one recovery KCL worker polling every 1.5 s
    # WHEN three new GPU tasks are seen RUNNING, one every 0.2 s
    figures = bench_e2e_kcl(3, pace_s=0.2)
    # THEN each was timed from its put to the recovery's tag-capture call: positive, within the drain's bound
    fig = figures["e2e.kcl.latency_ms.max"]
    assert fig["inputs"]["decisions"] == 3 and fig["inputs"]["poll_ms"] == POLL_MS
    assert 0 < fig["inputs"]["min_ms"] <= figures["e2e.kcl.latency_ms.p50"]["value"] <= fig["value"] < 120_000
