"""The fault trace: the Llama 3 mix as Meta published it, scaled to other fleets, drawn the same per seed.

Source of the counts: Meta, The Llama 3 Herd of Models (2024), Table 5 (419 unexpected interruptions in
54 days on 2,048 nodes of 8 H100s); https://arxiv.org/abs/2407.21783.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consumers.core.errors import ConfigError
from local.fault_trace import LLAMA3, draw_trace, load_mix, mix_from_report, scaled_counts

# Table 5 of the paper, copied by hand (not from the module) so a typo in the preset fails here.
TABLE_5 = {
    "faulty GPU": 148, "GPU HBM3 memory": 72, "software bug": 54, "network switch/cable": 35,
    "host maintenance": 32, "GPU SRAM memory": 19, "GPU system processor": 17, "NIC": 7,
    "NCCL watchdog timeouts": 7, "silent data corruption": 6, "GPU thermal interface + sensor": 6, "SSD": 3,
    "power supply": 3, "server chassis": 2, "IO expansion board": 2, "dependency": 2, "CPU": 2, "system memory": 2,
}


def test_the_llama3_preset_is_table_5() -> None:
    # GIVEN the preset WHEN its unexpected causes are read THEN they are Table 5's, 419 in all, plus 47 planned
    unexpected = {c.name: c.count for c in LLAMA3.causes if c.category != "planned"}
    assert unexpected == TABLE_5
    assert LLAMA3.unexpected == 419
    assert sum(c.count for c in LLAMA3.causes) == 466
    assert (LLAMA3.nodes, LLAMA3.days) == (2048, 54)


def test_the_mix_at_its_own_size_gives_back_its_own_counts() -> None:
    assert scaled_counts(LLAMA3, 2048, 54) == {c.name: int(c.count) for c in LLAMA3.causes}


def test_256_nodes_for_54_days_is_an_eighth_of_the_interruptions() -> None:
    # GIVEN 1/8 of the fleet WHEN scaled THEN 466/8 = 58.25 -> 58 interruptions, faulty GPU 148/8 -> 18 or 19
    counts = scaled_counts(LLAMA3, 256, 54)
    assert sum(counts.values()) == 58
    assert counts["faulty GPU"] in (18, 19)
    assert counts["GPU HBM3 memory"] == 9


@settings(max_examples=60, deadline=None)
@given(nodes=st.integers(1, 4096), days=st.floats(0.1, 400))
def test_scaled_counts_keep_the_total_and_stay_within_one_of_exact(nodes: int, days: float) -> None:
    factor = nodes / 2048 * days / 54
    counts = scaled_counts(LLAMA3, nodes, days)
    assert sum(counts.values()) == round(466 * factor)
    for cause in LLAMA3.causes:
        assert abs(counts[cause.name] - cause.count * factor) < 1


def test_the_same_seed_draws_the_same_trace_and_another_seed_another() -> None:
    first = draw_trace(LLAMA3, nodes=256, days=54, seed=7)
    assert first == draw_trace(LLAMA3, nodes=256, days=54, seed=7)
    assert first != draw_trace(LLAMA3, nodes=256, days=54, seed=8)


def test_a_trace_is_in_time_order_inside_the_run_with_the_scaled_counts() -> None:
    trace = draw_trace(LLAMA3, nodes=256, days=54, seed=3)
    times = [i.at for i in trace]
    assert times == sorted(times)
    assert times[0] >= 600 and times[-1] <= 54 * 86_400
    by_cause: dict[str, int] = {}
    for interruption in trace:
        by_cause[interruption.cause] = by_cause.get(interruption.cause, 0) + 1
    assert by_cause == {k: v for k, v in scaled_counts(LLAMA3, 256, 54).items() if v}
    assert [i.index for i in trace] == list(range(len(trace)))


def test_without_planned_the_trace_has_only_unexpected_interruptions() -> None:
    trace = draw_trace(LLAMA3, nodes=2048, days=54, seed=1, include_planned=False)
    assert len(trace) == 419
    assert all(i.category != "planned" for i in trace)


def test_gpu_causes_look_like_xids_and_a_failing_dcgm_software_like_a_healthy_one() -> None:
    by_name = {c.name: c for c in LLAMA3.causes}
    assert all(look.dcgm == "fail" for look in by_name["faulty GPU"].looks_like)
    assert {79, 74, 62} == {x for look in by_name["faulty GPU"].looks_like for x in look.xids}
    assert all(look.dcgm == "pass" for look in by_name["software bug"].looks_like)
    assert all(look.kind == "instance" for look in by_name["power supply"].looks_like)
    assert by_name["host maintenance"].looks_like[0].kind == "maintenance"
    assert not any(c.hardware for c in LLAMA3.causes if c.category in ("software", "network", "maintenance"))


def _report(incidents: list[dict[str, object]]) -> dict[str, object]:
    return {"since": "2026-01-01T00:00:00+00:00", "range_end": "2026-01-11T00:00:00+00:00",
            "incident_list": incidents}


def test_a_report_becomes_a_mix_by_what_its_incidents_looked_like() -> None:
    # GIVEN a 10-day report of 3 incidents: a quarantined XID 79, a rebooted XID 48, a healthy node
    report = _report([
        {"incident_id": "a", "verdict": "hardware_fault", "outcome": "quarantined", "xids": {"79": 2},
         "opened_at": "2026-01-02T00:00:00+00:00"},
        {"incident_id": "b", "verdict": "hardware_fault", "outcome": "recovered", "xids": {"48": 1},
         "opened_at": "2026-01-03T00:00:00+00:00"},
        {"incident_id": "c", "verdict": "healthy", "outcome": "recovered", "xids": {},
         "opened_at": "2026-01-04T00:00:00+00:00"},
    ])
    # WHEN it becomes a mix for a 64-node history
    mix = mix_from_report(report, nodes=64)
    # THEN it covers 10 days of 64 nodes, and each incident keeps how it looked
    assert (mix.nodes, mix.days) == (64, 10)
    looks = {c.name: c.looks_like[0] for c in mix.causes}
    assert looks["hardware fault XID 79, out of service"].after_reboot == "fail"
    assert looks["hardware fault XID 48, rebooted"].after_reboot == "pass"
    assert looks["healthy node (NCCL timeout)"].dcgm == "pass"
    assert scaled_counts(mix, 128, 20) == {name: 4 for name in looks}


def test_a_report_file_needs_the_size_of_its_fleet(tmp_path: Path) -> None:
    path = tmp_path / "report.json"
    path.write_text(json.dumps(_report([{"verdict": "healthy", "opened_at": "2026-01-02T00:00:00+00:00"}])))
    with pytest.raises(ConfigError, match="--history-nodes"):
        load_mix(str(path))
    assert load_mix(str(path), history_nodes=8).nodes == 8


def test_a_mix_file_round_trips_and_a_bad_one_says_where_to_look(tmp_path: Path) -> None:
    good = tmp_path / "mix.json"
    good.write_text(LLAMA3.model_dump_json())
    assert load_mix(str(good)) == LLAMA3
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"name": "x", "nodes": 0, "days": 1, "causes": []}))
    with pytest.raises(ConfigError, match=r"docs/simulate\.md"):
        load_mix(str(bad))
    with pytest.raises(ConfigError, match="neither a preset"):
        load_mix(str(tmp_path / "missing.json"))
