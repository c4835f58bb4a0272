"""Reading dcgmi's DCGM 4 JSON, and what a crash, a hang or a missing binary become."""

from __future__ import annotations

import json
from typing import Any

from healthcheck.dcgm import interpret_diag, interpret_health, parse_diag, parse_health, run_health
from healthcheck.findings import SEVERITY_ISOLATE, DiagReport, HealthReport, Inconclusive
from healthcheck.process import CommandResult
from tests.healthcheck.fakes import FIXTURES


def fixture(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return loaded


def ran(stdout: str, rc: int = 0) -> CommandResult:
    return CommandResult(("dcgmi", "diag", "-r", "2", "-j"), rc, stdout, "", 1.0)


def test_all_pass_reads_eight_gpus_three_tests_and_the_version() -> None:
    # GIVEN a recorded level-2 run on eight healthy H100s
    # WHEN it is parsed
    report = parse_diag(fixture("diag_r2_all_pass.json"))
    # THEN every GPU passed software, pcie and memory, and the DCGM version is kept
    assert isinstance(report, DiagReport)
    assert report.gpu_ids == tuple(range(8))
    assert {r.test for r in report.results} == {"software", "pcie", "memory"}
    assert all(r.status == "pass" for r in report.results)
    assert (report.dcgm_version, report.driver_version) == ("4.4.2", "570.172.08")
    assert report.gpu_serials[3] == "1652123000003"


def test_memory_failure_carries_error_id_and_isolate_severity() -> None:
    # GIVEN GPU 3 failing the memory test with DCGM_FR_FAULTY_MEMORY (52), severity ISOLATE
    report = parse_diag(fixture("diag_r2_memory_isolate.json"))
    # THEN exactly that result failed, with its error
    assert isinstance(report, DiagReport)
    (failed,) = [r for r in report.results if r.status == "fail"]
    assert (failed.test, failed.category, failed.gpu) == ("memory", "Hardware", 3)
    (error,) = failed.errors
    assert (error.error_id, error.severity, error.severity_name) == (52, SEVERITY_ISOLATE, "ISOLATE")
    assert error.message == "Found 4 faulty memory elements on GPU 3"


def test_runtime_error_is_inconclusive_with_dcgms_message() -> None:
    # GIVEN dcgmi reporting that it could not run the diagnostic at all
    outcome = interpret_diag(ran((FIXTURES / "diag_runtime_error.json").read_text(), rc=1))
    # THEN that is inconclusive, and says why
    assert isinstance(outcome, Inconclusive)
    assert "Host engine connection invalid" in outcome.reason


def test_crash_without_json_is_inconclusive() -> None:
    # GIVEN dcgmi killed by SIGSEGV before printing anything
    outcome = interpret_diag(CommandResult(("dcgmi", "diag"), -11, "", "starting", 0.2))
    # THEN inconclusive, naming the signal
    assert isinstance(outcome, Inconclusive)
    assert "signal 11" in outcome.reason


def test_hang_and_missing_binary_are_inconclusive() -> None:
    # GIVEN a diag killed at its deadline, and a dcgmi that is not installed
    hung = interpret_diag(CommandResult(("dcgmi", "diag"), None, "", "", 900.0, timed_out=True))
    missing = interpret_diag(CommandResult(("dcgmi", "diag"), None, "", "", 0.0, not_found="FileNotFoundError"))
    # THEN both are inconclusive with the reason
    assert isinstance(hung, Inconclusive) and "900s" in hung.reason
    assert isinstance(missing, Inconclusive) and "could not start" in missing.reason


def test_pass_with_nonzero_exit_is_not_trusted() -> None:
    # GIVEN all tests passing but dcgmi exiting 3
    outcome = interpret_diag(ran((FIXTURES / "diag_r2_all_pass.json").read_text(), rc=3))
    # THEN the contradiction is inconclusive, not healthy
    assert isinstance(outcome, Inconclusive)
    assert "exited 3" in outcome.reason


def test_failure_with_nonzero_exit_is_read_from_the_json() -> None:
    # GIVEN dcgmi exiting non-zero because a test failed (as it does)
    outcome = interpret_diag(ran((FIXTURES / "diag_r2_memory_isolate.json").read_text(), rc=1))
    # THEN the JSON is what counts
    assert isinstance(outcome, DiagReport)


def test_dcgm3_output_and_other_majors_are_inconclusive() -> None:
    # GIVEN DCGM 3's key, and a DCGM 4-shaped document claiming version 5
    old = parse_diag(fixture("diag_dcgm3_format.json"))
    future = fixture("diag_r2_all_pass.json")
    future["metadata"]["version"] = "5.0.1"
    # THEN neither is guessed at
    assert isinstance(old, Inconclusive) and "3.x" in old.reason
    future_outcome = parse_diag(future)
    assert isinstance(future_outcome, Inconclusive) and "5.0.1" in future_outcome.reason


def test_unknown_status_word_and_empty_run_are_inconclusive() -> None:
    # GIVEN a status word DCGM 4 does not write, and a run with no test at all
    odd = fixture("diag_r2_all_pass.json")
    odd["DCGM Diagnostic"]["test_categories"][0]["tests"][0]["results"][0]["status"] = "Maybe"
    empty = {"DCGM Diagnostic": {"test_categories": []}, "metadata": {"version": "4.4.2"}}
    # THEN both are inconclusive
    assert isinstance(parse_diag(odd), Inconclusive)
    assert isinstance(parse_diag(empty), Inconclusive)


def test_test_wide_failure_without_a_gpu_result_counts() -> None:
    # GIVEN a test whose summary failed but whose per-GPU results all passed (a global error)
    doc = fixture("diag_r2_all_pass.json")
    doc["DCGM Diagnostic"]["test_categories"][1]["tests"][0]["test_summary"] = {
        "status": "Fail", "warnings": [{"warning": "NVVS timed out", "error_id": 44, "error_category": 16,
                                        "error_severity": 4}],
    }
    report = parse_diag(doc)
    # THEN a failed result with no GPU is recorded
    assert isinstance(report, DiagReport)
    (failed,) = [r for r in report.results if r.status == "fail"]
    assert (failed.test, failed.gpu, failed.errors[0].error_id) == ("pcie", None, 44)


def test_log_lines_around_the_json_are_tolerated() -> None:
    # GIVEN dcgmi output with a line before the JSON
    text = "Successfully ran diagnostic for group.\n" + (FIXTURES / "diag_r2_all_pass.json").read_text()
    # THEN it still parses
    assert isinstance(interpret_diag(ran(text)), DiagReport)


def test_health_report_reads_failure_per_gpu_and_joins_the_message() -> None:
    # GIVEN dcgmi health -c -j with a memory failure on GPU 3 (message split in 54-character pieces)
    report = parse_health(fixture("health_memory_failure.json"))
    # THEN one failing incident on GPU 3 with the whole message
    assert isinstance(report, HealthReport)
    assert report.overall == "fail"
    (incident,) = report.incidents
    assert (incident.gpu, incident.system, incident.health) == (3, "Memory system", "fail")
    assert incident.message == "GPU 3 had uncorrectable memory errors and row remappings are pending"


def test_health_healthy_and_health_errors() -> None:
    # GIVEN a healthy report, an 'Internal error' overall health, and the plain-text error dcgmi prints
    healthy = parse_health(fixture("health_healthy.json"))
    internal = parse_health({"body": {"Overall Health": {"value": "Internal error"}}})
    text = (FIXTURES / "health_watches_not_enabled.txt").read_text()
    not_enabled = interpret_health(CommandResult(("dcgmi", "health", "-c", "-j"), 255, text, "", 0.1))
    # THEN healthy is healthy; the others are inconclusive
    assert healthy == HealthReport("pass", ())
    assert isinstance(internal, Inconclusive)
    assert isinstance(not_enabled, Inconclusive)


def test_health_sets_watches_then_waits_then_checks() -> None:
    # GIVEN a runner that records the commands
    calls: list[tuple[str, ...]] = []
    slept: list[float] = []

    def runner(argv: Any, timeout_s: float) -> CommandResult:
        calls.append(tuple(argv))
        out = (FIXTURES / "health_healthy.json").read_text() if "-c" in argv else "set\n"
        return CommandResult(tuple(argv), 0, out, "", 0.5)

    # WHEN the health check runs
    outcome, seconds = run_health("dcgmi", sample_s=7.0, timeout_s=30.0, runner=runner, sleep=slept.append)
    # THEN watches were set on everything, sampled for 7 s, then read as JSON
    assert calls == [("dcgmi", "health", "-s", "a"), ("dcgmi", "health", "-c", "-j")]
    assert slept == [7.0]
    assert outcome == HealthReport("pass", ()) and seconds == 8.0
