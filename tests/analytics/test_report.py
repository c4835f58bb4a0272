"""The report's figures on a known history equal the figures computed by hand (see scenario.py)."""

from __future__ import annotations

import json
from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analytics.history import decode_all
from analytics.report import Report, ReportConfig, build_report, p90
from consumers.adapters.kinesis import envelope_bytes
from events_schema.envelope import Envelope, Subject
from events_schema.events import HealthCheckReported, IncidentOpened, JobStateChanged
from tests.analytics import scenario
from tests.factories import at, node_arn, ours, task_event


def record_bytes(item: object) -> bytes:
    if isinstance(item, Envelope):
        return envelope_bytes(item)
    return json.dumps(item).encode()


def scenario_bytes() -> list[bytes]:
    return [record_bytes(item) for item in scenario.history()]


def build(**config: object) -> Report:
    decoded = decode_all([*scenario_bytes(), b"not json", b'{"detail-type": "AWS API Call via CloudTrail"}'])
    return build_report(decoded.events, since=scenario.SINCE, until=scenario.UNTIL,
                        config=ReportConfig(**config),  # type: ignore[arg-type]
                        unreadable=dict(decoded.unreadable))


@pytest.fixture(scope="module")
def report() -> Report:
    return build()


# Hand-computed phases (seconds) of the incidents with every phase known: A, B, C.
A = {"detect": 130 - 100, "diagnose": 190 - 130, "repair": 520 - 190, "restart": 580 - 520}
B = {"detect": 1010 - 1000, "diagnose": 1100 - 1010, "repair": 1130 - 1100, "restart": 1400 - 1130}
C = {"detect": 2005 - 2000, "diagnose": 2065 - 2005, "repair": 0, "restart": 2095 - 2065}


def test_incidents_in_range_and_their_outcomes(report: Report) -> None:
    # GIVEN the scenario: inc-Z opened before the range, inc-A delivered twice
    # WHEN the report is built for [T0, T0 + 2 days]
    # THEN it has exactly A, D, B, C in opening order, each outcome once
    assert [i.incident_id for i in report.incident_list] == ["inc-A", "inc-D", "inc-B", "inc-C"]
    assert report.incidents == 4
    assert report.outcomes == {"application_fault": 1, "escalated": 1, "quarantined": 1, "recovered": 1}
    # and the two records that are not events are counted, not dropped silently
    assert report.unreadable == {"not_json": 1, "unknown_event": 1}


def test_phases_of_each_incident(report: Report) -> None:
    # GIVEN / WHEN the scenario report
    by_id = {i.incident_id: i for i in report.incident_list}
    # THEN each incident's phases are the hand-computed ones
    for incident_id, phases in (("inc-A", A), ("inc-B", B), ("inc-C", C)):
        incident = by_id[incident_id]
        got = {"detect": incident.detect_s, "diagnose": incident.diagnose_s, "repair": incident.repair_s,
               "restart": incident.restart_s}
        assert got == phases, incident_id
        assert incident.time_to_recovery_s == sum(phases.values())
    # B's failure is timed by the task's stoppedAt (1000), not EventBridge's delivery time (1002)
    assert by_id["inc-B"].first_failure_at == scenario.at_day(1, 1000)
    # D: detected and diagnosed, never repaired nor restarted
    d = by_id["inc-D"]
    assert (d.detect_s, d.diagnose_s, d.repair_s, d.restart_s, d.time_to_recovery_s) == (20, 80, None, None, None)


def test_mean_and_p90_time_to_recovery(report: Report) -> None:
    # GIVEN time to recovery A = 480, B = 400, C = 95 (D never recovered)
    totals = [sum(A.values()), sum(B.values()), sum(C.values())]
    assert totals == [480, 400, 95]
    # THEN mean = 975 / 3 = 325; p90 between the 2nd and 3rd of [95, 400, 480], at 0.9 * (3 - 1) = 1.8:
    # 400 + 0.8 * (480 - 400) = 464
    assert report.incidents_complete == 3
    assert report.time_to_recovery.count == 3
    assert report.time_to_recovery.mean_s == pytest.approx(325.0)
    assert report.time_to_recovery.p90_s == pytest.approx(464.0)
    # and per phase over the same three incidents; the phase means add up to the mean
    expected = {
        "detect": ((30 + 10 + 5) / 3, 10 + 0.8 * 20),
        "diagnose": ((60 + 90 + 60) / 3, 60 + 0.8 * 30),
        "repair": ((330 + 30 + 0) / 3, 30 + 0.8 * 300),
        "restart": ((60 + 270 + 30) / 3, 60 + 0.8 * 210),
    }
    for phase, (mean_s, p90_s) in expected.items():
        assert report.phases[phase].mean_s == pytest.approx(mean_s), phase
        assert report.phases[phase].p90_s == pytest.approx(p90_s), phase
    assert sum(report.phases[p].mean_s or 0 for p in expected) == pytest.approx(325.0)


def test_automatic_recovery_rate(report: Report) -> None:
    # GIVEN A, B, C back without escalation, D escalated (deadline_expired) and never back
    # THEN 3 of 4 incidents recovered automatically
    assert report.automatic_recoveries == 3
    assert report.automatic_recovery_rate == 0.75
    assert [i.automatic for i in report.incident_list] == [True, False, True, True]


def test_faults_by_xid(report: Report) -> None:
    # GIVEN A reports XID 48 x3 (then x1 after the reboot: the larger count stands), D 48 x1, B 48 x2 + 79 x1,
    # C 13 x2
    # THEN 48: 3 incidents, 3 + 1 + 2 = 6 occurrences; 13: 1 incident, 2; 79: 1 incident, 1
    assert [(x.xid, x.incidents, x.occurrences, x.cls) for x in report.xids] == [
        (48, 3, 6, "reset"), (13, 1, 2, "application"), (79, 1, 1, "out_of_service"),
    ]


def test_nodes_ranked_by_faults_with_the_lemon_flagged(report: Report) -> None:
    # GIVEN node 3 with two hardware faults (D, B), node 1 with one (A), node 5 with an application fault (C)
    # THEN node 3 ranks first and is the only lemon at the default threshold of 2
    rows = [(n.node_arn, n.incidents, n.hardware_faults, n.application_faults, n.reboots, n.quarantined, n.lemon)
            for n in report.nodes]
    assert rows == [
        (node_arn(3), 2, 2, 0, 1, True, True),
        (node_arn(1), 1, 1, 0, 1, False, False),
        (node_arn(5), 1, 0, 1, 0, False, False),
    ]
    assert report.nodes[0].xids == [48, 79]


def test_lemon_threshold_is_configurable() -> None:
    # GIVEN a threshold of one hardware fault
    report = build(lemon_threshold=1)
    # THEN node 1 is a lemon too
    assert [n.lemon for n in report.nodes] == [True, True, False]
    assert report.lemon_threshold == 1


def test_job_interruptions_and_goodput_lost(report: Report) -> None:
    # GIVEN alpha down 100 -> 580 on 2 x 8 GPUs; delta down from 3000 to the range end (its RUNNING comes
    # later) on 8 GPUs; beta down 1000 -> 1400 on 2 x 4 GPUs; gamma down 2000 -> 2095 on 8 GPUs
    expected = [
        ("inc-A", "job:alpha", 480.0, 16, True),
        ("inc-D", "job:delta", 2 * scenario.DAY - 3000, 8, False),
        ("inc-B", "job:beta", 400.0, 8, True),
        ("inc-C", "job:gamma", 95.0, 8, True),
    ]
    # THEN each interruption and the GPU-hours lost are the hand-computed ones
    got = [(i.incident_id, i.job_id, i.duration_s, i.gpus, i.recovered) for i in report.interruptions]
    assert got == expected
    gpu_seconds = 480 * 16 + (2 * 86_400 - 3000) * 8 + 400 * 8 + 95 * 8
    assert gpu_seconds == 1_370_040
    assert report.gpu_hours_lost == pytest.approx(gpu_seconds / 3600)
    assert report.interruptions[1].running_at is None
    assert report.interruptions[0].failed_at == at(100)


def test_faults_over_time_and_heat_map(report: Report) -> None:
    # THEN day 0 has A and D (hardware), day 1 has B (hardware) and C (application)
    assert [(d.day, d.hardware, d.application, d.other) for d in report.faults_by_day] == [
        (date(2026, 11, 27), 2, 0, 0), (date(2026, 11, 28), 1, 1, 0),
    ]
    assert report.node_day == {
        node_arn(1): {"2026-11-27": 1},
        node_arn(3): {"2026-11-27": 1, "2026-11-28": 1},
        node_arn(5): {"2026-11-28": 1},
    }


def test_without_until_the_range_ends_at_the_last_event() -> None:
    # GIVEN no --until: the history's last event is delta's RUNNING at day 2 + 1 h
    decoded = decode_all(scenario_bytes())
    report = build_report(decoded.events, since=scenario.SINCE)
    # THEN delta came back (for inc-D), and D still is not automatic (it was escalated)
    delta = next(i for i in report.interruptions if i.job_id == "job:delta")
    assert delta.running_at == at(2 * scenario.DAY + 3600)
    assert delta.duration_s == 2 * scenario.DAY + 3600 - 3000
    assert report.range_end == at(2 * scenario.DAY + 3600)
    assert report.automatic_recoveries == 3


def test_json_round_trip(report: Report) -> None:
    # WHEN the report is dumped for tools THEN it reads back to the same report
    text = json.dumps(report.model_dump(mode="json"))
    assert Report.model_validate_json(text) == report


def test_an_empty_history_gives_an_empty_report() -> None:
    report = build_report([], since=scenario.SINCE, until=scenario.UNTIL)
    assert (report.incidents, report.automatic_recovery_rate, report.time_to_recovery.mean_s) == (0, None, None)
    assert report.faults_by_day == [] and report.nodes == [] and report.gpu_hours_lost == 0


@pytest.mark.parametrize(("values", "expected"), [
    # position 0.9 * (n - 1) in the sorted values, interpolated: numpy's default percentile
    ([], None), ([5.0], 5.0), ([2.0, 1.0], 1.9), ([float(n) for n in range(10, 0, -1)], 9.1),
    ([float(n) for n in range(1, 12)], 10.0),
])
def test_p90_interpolates_between_the_closest_ranks(values: list[float], expected: float | None) -> None:
    assert p90(values) == pytest.approx(expected)


SCENARIO_EVENTS = decode_all(scenario_bytes()).events


@settings(max_examples=60, deadline=None)
@given(order=st.permutations(range(len(SCENARIO_EVENTS))),
       again=st.lists(st.integers(0, len(SCENARIO_EVENTS) - 1), max_size=12))
def test_delivery_order_and_duplicates_do_not_change_the_figures(order: list[int], again: list[int]) -> None:
    # GIVEN the history delivered in any order, some records twice (at-least-once, across shards)
    delivered = [SCENARIO_EVENTS[i] for i in order] + [SCENARIO_EVENTS[i] for i in again]
    # WHEN the report is built
    report = build_report(delivered, since=scenario.SINCE, until=scenario.UNTIL)
    # THEN every figure is the one of the clean history
    clean = build_report(SCENARIO_EVENTS, since=scenario.SINCE, until=scenario.UNTIL)
    assert report.model_dump(exclude={"events"}) == clean.model_dump(exclude={"events"})


def test_a_job_that_joins_an_incident_counts_in_its_restart_and_goodput() -> None:
    # GIVEN incident X on node 7 opened for job a (failed at 10); job b on the same node failed at 15 and
    # joined at 25; the check at 40 finds an application fault; a runs again at 70, b at 90
    def job_event(job: str, state: str, seconds: float) -> bytes:
        return envelope_bytes(ours(JobStateChanged(job_id=job, state=state, incident_id="inc-X"),  # type: ignore[arg-type]
                                   when=at(seconds), subject=Subject(job=job, incident="inc-X")))

    history = [
        json.dumps(task_event(70, node=7, group="a", status="RUNNING", when=at(0), gpus=8)).encode(),
        json.dumps(task_event(71, node=7, group="b", status="RUNNING", when=at(0), gpus=4)).encode(),
        json.dumps(task_event(70, node=7, group="a", status="STOPPED", exit_code=1, when=at(10), version=2)).encode(),
        json.dumps(task_event(71, node=7, group="b", status="STOPPED", exit_code=1, when=at(15), version=2,
                              gpus=4)).encode(),
        envelope_bytes(ours(IncidentOpened(incident_id="inc-X", node_arn=node_arn(7), job_ids=["a"]), when=at(20))),
        job_event("b", "RECOVERING", 25),
        envelope_bytes(ours(HealthCheckReported(node_arn=node_arn(7), incident_id="inc-X", level=2,
                                                verdict="application_fault"), when=at(40))),
        job_event("a", "RUNNING", 70),
        job_event("b", "RUNNING", 90),
    ]
    # WHEN the report is built
    report = build_report(decode_all(history).events)
    [incident] = report.incident_list
    # THEN b is one of the incident's jobs: restart waits for it, and its interruption starts at its own failure
    assert incident.jobs == ["a", "b"]
    assert (incident.detect_s, incident.diagnose_s, incident.repair_s, incident.restart_s) == (10, 20, 0, 50)
    assert [(i.job_id, i.duration_s, i.gpus) for i in report.interruptions] == [("a", 60, 8), ("b", 75, 4)]
