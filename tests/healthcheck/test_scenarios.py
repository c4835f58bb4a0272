"""Each recorded dcgmi behaviour and kernel log, through the whole agent (the fake dcgmi runs as a real
process on PATH): the verdict, the event printed on stdout, and the exit code agree. Sources of the
fixtures: tests/fixtures/dcgm/README.md."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from events_schema.events import HealthCheckReported
from healthcheck.verdict import EXIT_CODES
from tests.healthcheck.conftest import CheckFn
from tests.healthcheck.fakes import NODE_ARN, TASK_ARN, FakeNvml, nvml_with

COVERAGE_GAPS = {"dcgm3_1_0_nvvs_level1", "nvvs_per_gpu_skips", "seven_gpus"}
CASES: list[tuple[str, str, FakeNvml | None, str, str, int, dict[str, Any]]] = [
    # scenario, kernel log, nvml, expected verdict, action, exit code, settings
    ("all_pass", "clean.log", None, "healthy", "none", 0, {}),
    ("memory_isolate", "clean.log", None, "hardware_fault", "quarantine", 1, {}),
    ("pcie_low_bandwidth", "clean.log", None, "hardware_fault", "reboot", 1, {}),  # TRIAGE
    ("runtime_error", "clean.log", None, "inconclusive", "none", 2, {}),
    ("crash", "clean.log", None, "inconclusive", "none", 2, {}),
    ("crash_exit", "clean.log", None, "inconclusive", "none", 2, {}),
    ("seven_gpus", "clean.log", nvml_with(7), "inconclusive", "none", 2, {}),
    ("dcgm3", "clean.log", None, "healthy", "none", 0, {}),
    ("dcgm3_1_0_nvvs_level1", "clean.log", None, "healthy", "none", 0, {"level": 1}),
    ("dcgm3_1_0_nvvs_level1", "clean.log", None, "inconclusive", "none", 2, {"level": 2}),
    ("gb10_persistence_mode_off", "clean.log", nvml_with(1), "misconfigured", "reconfigure", 3,
     {"level": 1, "expected_gpus": 1}),
    ("nvvs_per_gpu_skips", "clean.log", nvml_with(4), "inconclusive", "none", 2, {"level": 3, "expected_gpus": 4}),
    ("pass_but_nonzero_exit", "clean.log", None, "inconclusive", "none", 2, {}),
    ("health_not_enabled", "clean.log", None, "inconclusive", "none", 2, {}),
    ("all_pass", "xid13_application.log", None, "application_fault", "none", 0, {}),
    ("all_pass", "xid48_dbe.log", None, "hardware_fault", "reboot", 1, {}),
    ("all_pass", "xid79_fell_off_bus.log", None, "hardware_fault", "quarantine", 1, {}),
    ("all_pass", "xid154_recovery_action.log", None, "hardware_fault", "reboot", 1, {}),
    ("all_pass", "xid119_rm_init_failed.dmesg", None, "hardware_fault", "reboot", 1, {}),
    ("all_pass", "fell_off_bus_no_xid.dmesg", None, "hardware_fault", "quarantine", 1, {}),
    ("all_pass", "sxid_nvswitch.dmesg", None, "hardware_fault", "reboot", 1, {}),
    ("all_pass", "sxid_non_fatal.dmesg", None, "healthy", "none", 0, {}),
    ("all_pass", "xid74_reg2_bit16.dmesg", None, "hardware_fault", "reboot", 1, {}),
    ("all_pass", "xid74_reg0_bit16.messages", None, "hardware_fault", "quarantine", 1, {}),
    ("all_pass", "clean.log", FakeNvml(missing_library=True), "inconclusive", "none", 2, {}),
]


@pytest.mark.parametrize(("scenario", "kernel", "nvml", "verdict", "action", "code", "settings"), CASES,
                         ids=[f"{c[0]}-{c[1].rsplit('.', 1)[0]}-{c[6].get('level', 2)}" for c in CASES])
def test_scenario_maps_to_verdict_event_and_exit_code(
    check: CheckFn, scenario: str, kernel: str, nvml: FakeNvml | None, verdict: str, action: str, code: int,
    settings: dict[str, Any],
) -> None:
    # GIVEN the recorded dcgmi behaviour, kernel log and NVML state
    # WHEN the agent runs
    run = check(scenario, kernel=kernel, nvml=nvml, **settings)
    # THEN the event on stdout decodes, and it, the verdict and the exit code say the same thing
    report = run.report
    assert (report.verdict, report.recommended_action) == (verdict, action)
    assert run.outcome.exit_code == code == EXIT_CODES[report.verdict]
    assert report.model_extra is not None and report.model_extra["exit_code"] == code
    assert (report.node_arn, report.check_task_arn, report.incident_id, report.level) == \
        (NODE_ARN, TASK_ARN, "inc-7", settings.get("level", 2))
    assert run.event.subject.node == NODE_ARN and run.event.envelope.schema_version == HealthCheckReported.VERSION
    assert report.reason
    # AND what did not run is listed exactly when coverage was short
    assert bool(report.untested) == (verdict == "inconclusive" and scenario in COVERAGE_GAPS)


def test_isolate_event_names_the_gpu_the_test_and_the_dcgm_error(check: CheckFn) -> None:
    report = check("memory_isolate").report
    gpu3 = report.gpus[3]
    assert (gpu3.index, gpu3.status) == (3, "fail")
    assert any("memory" in e and "DCGM_FR_FAULTY_MEMORY (ISOLATE)" in e for e in gpu3.errors)
    assert [g.status for g in report.gpus].count("fail") == 1
    assert report.dcgm_version == "4.4.2" and report.found_gpus == 8 and report.expected_gpus == 8
    assert set(report.durations_s) == {"dcgm_diag", "dcgm_health", "nvml", "kernel_log", "total"}


def test_xids_are_counted_in_the_event(check: CheckFn) -> None:
    report = check("all_pass", kernel="xid13_application.log").report
    assert [(x.xid, x.count) for x in report.xids] == [(13, 2), (43, 1)]
    assert report.gpus[1].status == "warn"  # PCI 0000:64:00 is GPU 1


def test_xid79_is_laid_on_the_gpu_that_fell_off(check: CheckFn) -> None:
    report = check("all_pass", kernel="xid79_fell_off_bus.log").report
    assert report.gpus[6].status == "fail" and "XID 79" in report.gpus[6].errors[0]


def test_crash_reason_names_the_signal(check: CheckFn) -> None:
    assert "signal 11" in check("crash").report.reason


def test_hang_is_killed_at_the_deadline_and_is_inconclusive(check: CheckFn) -> None:
    # GIVEN a dcgmi that hangs and ignores SIGTERM, and a one-second diag deadline
    run = check("hang", diag_timeout_s=1.0)
    # THEN it was stopped, and the check is inconclusive with the reason
    assert run.outcome.exit_code == 2
    assert "no answer within" in run.report.reason
    assert run.report.durations_s["dcgm_diag"] >= 1.0


def test_level_and_commands_reach_dcgmi(check: CheckFn, dcgmi_calls: Callable[[], list[list[str]]]) -> None:
    # GIVEN a post-reboot check (level 1)
    run = check("all_pass", level=1)
    # THEN dcgmi was asked for a level-1 JSON diag, then health watches were set and read
    assert run.report.level == 1
    assert dcgmi_calls() == [["diag", "-r", "1", "-j"], ["health", "-s", "a"], ["health", "-c", "-j"]]


def test_missing_dcgmi_is_inconclusive(check: CheckFn) -> None:
    run = check("all_pass", dcgmi="/nonexistent/dcgmi")
    assert run.outcome.exit_code == 2 and "could not start" in run.report.reason


def test_fault_time_keeps_the_xid_that_came_just_before_it_and_drops_old_ones(check: CheckFn) -> None:
    # GIVEN an XID 48 the evening before (22:10) and an XID 13 at 10:02:41, and a fault noticed at 10:03
    # WHEN the fault time is given with the default one-hour look-back
    run = check("all_pass", kernel="xid48_before_fault_time.log", since="2026-11-28T10:03:00Z")
    # THEN the XID 13 a few seconds before the incident counts; last night's XID 48 does not
    assert [(x.xid, x.count) for x in run.report.xids] == [(13, 1)]
    assert run.report.verdict == "application_fault"
