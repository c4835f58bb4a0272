"""Reading dcgmi's JSON, DCGM 3 and 4 alike (told from the document), and what a crash, a hang or a missing
binary become. Fixtures and their sources: tests/fixtures/dcgm/README.md."""

from __future__ import annotations

import json
from typing import Any

import pytest

from healthcheck.dcgm import interpret_diag, interpret_health, json_document, parse_diag, parse_health, run_health
from healthcheck.findings import SEVERITY_CONFIG, SEVERITY_ISOLATE, DiagReport, HealthReport, Inconclusive
from healthcheck.process import CommandResult
from tests.healthcheck.fakes import FIXTURES


def fixture(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return loaded


def ran(stdout: str, rc: int = 0) -> CommandResult:
    return CommandResult(("dcgmi", "diag", "-r", "2", "-j"), rc, stdout, "", 1.0)


def report_of(outcome: object) -> DiagReport:
    assert isinstance(outcome, DiagReport), outcome
    return outcome


def reason_of(outcome: object) -> str:
    assert isinstance(outcome, Inconclusive), outcome
    return outcome.reason


def matrix(report: DiagReport) -> set[tuple[str, int | None, str]]:
    return {(r.test, r.gpu, r.status) for r in report.results}


# ---- DCGM 4 -----------------------------------------------------------------------------------------------
def test_dcgm4_all_pass_reads_eight_gpus_three_tests_and_the_version() -> None:
    # GIVEN a level-2 DCGM 4.4.2 document on eight H100s
    report = report_of(parse_diag(fixture("diag_r2_all_pass.json")))
    # THEN every GPU passed software, pcie and memory, and version, driver and serials are kept
    assert report.format == "dcgm4" and report.gpu_ids == tuple(range(8))
    assert matrix(report) == {(t, g, "pass") for t in ("software", "pcie", "memory") for g in range(8)}
    assert (report.dcgm_version, report.driver_version) == ("4.4.2", "570.172.08")
    assert report.gpu_serials[3] == "1652123000003"


def test_memory_failure_carries_error_id_and_isolate_severity() -> None:
    report = report_of(parse_diag(fixture("diag_r2_memory_isolate.json")))
    (failed,) = [r for r in report.results if r.status == "fail"]
    assert (failed.test, failed.category, failed.gpu) == ("memory", "Hardware", 3)
    (error,) = failed.errors
    assert (error.error_id, error.severity, error.severity_name) == (52, SEVERITY_ISOLATE, "ISOLATE")
    assert error.message == "Found 4 faulty memory elements on GPU 3"


def test_gb10_level1_with_persistence_mode_off_is_a_config_error_on_gpu_0() -> None:
    # GIVEN the document dcgmi 4.2.3 printed on a GB10 (exit 226): software fails for persistence mode
    report = report_of(interpret_diag(ran((FIXTURES / "diag_dcgm4_2_3_gb10_r1_persistence_mode.json").read_text(),
                                          rc=226)))
    # THEN one failed software result on GPU 0 with error 29, severity CONFIG; DCGM's "no serial" is not a serial
    assert [(r.test, r.gpu, r.status) for r in report.results] == [("software", 0, "fail")]
    (error,) = report.results[0].errors
    assert (error.error_id, error.severity) == (29, SEVERITY_CONFIG)
    assert "nvidia-smi -i <gpuId> -pm 1" in error.message
    assert (report.dcgm_version, report.driver_version, report.gpu_ids, report.gpu_serials) == \
        ("4.2.3", "580.82.09", (0,), {})


def test_dcgm4_test_that_did_not_run_keeps_its_name_only() -> None:
    # GIVEN dcgmi 4 listing memory with no results and no summary (DCGM_DIAG_RESULT_NOT_RUN), and a "Not Run"
    doc = fixture("diag_r2_all_pass.json")
    memory = doc["DCGM Diagnostic"]["test_categories"][2]["tests"][0]
    assert memory["name"] == "memory"
    doc["DCGM Diagnostic"]["test_categories"][2]["tests"][0] = {"name": "memory"}
    doc["DCGM Diagnostic"]["test_categories"][1]["tests"][0]["results"][4]["status"] = "Not Run"
    report = report_of(parse_diag(doc))
    # THEN memory did not run anywhere, and pcie did not run on GPU 4
    assert ("memory", None, "not_run") in matrix(report)
    assert ("pcie", 4, "not_run") in matrix(report)


def test_a_later_major_in_the_dcgm4_shape_is_read_not_refused() -> None:
    # GIVEN a DCGM 4-shaped document that says 5.0.1: the format is told from the document, not pinned
    doc = fixture("diag_r2_all_pass.json")
    doc["metadata"]["version"] = "5.0.1"
    report = report_of(parse_diag(doc))
    assert report.dcgm_version == "5.0.1" and len(report.results) == 24


def test_runtime_error_is_inconclusive_with_dcgms_message() -> None:
    outcome = interpret_diag(ran((FIXTURES / "diag_runtime_error.json").read_text(), rc=1))
    assert "Host engine connection invalid" in reason_of(outcome)


def test_test_wide_failure_without_a_gpu_result_counts() -> None:
    # GIVEN a test whose summary failed but whose per-GPU results all passed (a global error)
    doc = fixture("diag_r2_all_pass.json")
    doc["DCGM Diagnostic"]["test_categories"][1]["tests"][0]["test_summary"] = {
        "status": "Fail", "warnings": [{"warning": "NVVS timed out", "error_id": 44, "error_category": 16,
                                        "error_severity": 4}],
    }
    report = report_of(parse_diag(doc))
    (failed,) = [r for r in report.results if r.status == "fail"]
    assert (failed.test, failed.gpu, failed.errors[0].error_id) == ("pcie", None, 44)


# ---- DCGM 3 and older -------------------------------------------------------------------------------------
def test_nvidias_dcgm_3_1_0_recording_reads_software_passing_on_eight_gpus() -> None:
    # GIVEN NVIDIA's own recorded DCGM 3.1.0 output: a warning line first, `null` entries, "gpu_ids" strings
    text = (FIXTURES / "diag_dcgm3_1_0_nvvs_8gpu_pass.txt").read_text()
    report = report_of(interpret_diag(ran(text)))
    # THEN the deployment checks count as software on each of the eight GPUs, plus the software plugin
    assert report.format == "dcgm3" and report.dcgm_version == "3.1.0" and report.gpu_ids == tuple(range(8))
    assert {(r.test, r.status) for r in report.results} == {("software", "pass")}
    assert {r.gpu for r in report.results} == set(range(8))
    subtests = {r.subtest for r in report.results if r.subtest}
    assert {"Denylist", "Persistence Mode", "Inforom"} <= subtests and len(subtests) == 9


def test_dcgmi_3_3_9_document_puts_version_and_gpus_at_the_root_and_uses_display_names() -> None:
    report = report_of(parse_diag(fixture("diag_dcgm3_3_9_dcgmi_r2_all_pass.json")))
    assert (report.format, report.dcgm_version, report.driver_version) == ("dcgm3", "3.3.9", "550.127.05")
    assert report.gpu_ids == tuple(range(8)) and report.gpu_serials[7] == "1652123000007"
    assert {(t, g) for t, g, s in matrix(report) if s == "pass"} == \
        {(t, g) for t in ("software", "pcie", "memory") for g in range(8)}


def test_dcgm3_per_gpu_skips_keep_their_reason() -> None:
    # GIVEN NVIDIA's per-GPU nvvs document: memory skipped on GPU 0 (ECC off), diagnostic skipped everywhere
    report = report_of(parse_diag(fixture("diag_nvvs_1_7_per_gpu_skips.json")))
    skips = {(r.test, r.gpu): r for r in report.results if r.status == "skip"}
    assert skips[("memory", 0)].errors[0].error_id == 55
    assert "nvidia-smi -i 0 -e 1" in skips[("memory", 0)].errors[0].message
    assert {g for t, g in skips if t == "diagnostic"} == {0, 1, 2, 3}
    assert ("memory", 1, "pass") in matrix(report)


def test_dcgm3_gpu_missing_from_a_test_is_simply_absent() -> None:
    # GIVEN dcgmi 3 leaving GPU 5 out of GPU Memory (it writes no entry for a test that did not run there)
    doc = fixture("diag_dcgm3_3_9_dcgmi_r2_all_pass.json")
    memory = doc["DCGM GPU Diagnostic"]["test_categories"][2]["tests"][0]
    memory["results"] = [r for r in memory["results"] if r["gpu_id"] != "5"]
    report = report_of(parse_diag(doc))
    assert ("memory", 5, "pass") not in matrix(report) and ("pcie", 5, "pass") in matrix(report)


# ---- what cannot be read --------------------------------------------------------------------------------
@pytest.mark.parametrize(("doc", "said"), [
    ({"something else": {}}, "not a dcgmi diag document (keys: something else)"),
    ({"DCGM Diagnostic": {"test_categories": []}, "metadata": {"version": "4.4.2"}}, "dcgmi diag ran no test"),
    ({"DCGM Diagnostic": {"test_categories": {"category": "x"}}}, "test_categories: expected a list"),
    ({"DCGM GPU Diagnostic": {"test_categories": [{"category": "Hardware", "tests": [
        {"name": "GPU Memory", "results": [{"gpu_id": "zero", "status": "Pass"}]}]}]}}, "unexpected GPU list"),
])
def test_documents_that_cannot_be_read_are_inconclusive_with_the_reason(doc: dict[str, Any], said: str) -> None:
    assert said in reason_of(parse_diag(doc))


def test_unknown_status_word_is_inconclusive_naming_it() -> None:
    odd = fixture("diag_r2_all_pass.json")
    odd["DCGM Diagnostic"]["test_categories"][0]["tests"][0]["results"][0]["status"] = "Maybe"
    assert reason_of(parse_diag(odd)) == "unrecognised status 'Maybe' in dcgmi test 'software'"


def test_crash_without_json_is_inconclusive() -> None:
    outcome = interpret_diag(CommandResult(("dcgmi", "diag"), -11, "", "starting", 0.2))
    assert "signal 11" in reason_of(outcome)


def test_hang_and_missing_binary_are_inconclusive() -> None:
    hung = interpret_diag(CommandResult(("dcgmi", "diag"), None, "", "", 900.0, timed_out=True))
    missing = interpret_diag(CommandResult(("dcgmi", "diag"), None, "", "", 0.0, not_found="FileNotFoundError"))
    assert "900s" in reason_of(hung)
    assert "could not start" in reason_of(missing)


def test_pass_with_nonzero_exit_is_not_trusted() -> None:
    outcome = interpret_diag(ran((FIXTURES / "diag_r2_all_pass.json").read_text(), rc=3))
    assert reason_of(outcome) == "dcgmi diag exited 3 but reported no failure"


def test_failure_with_nonzero_exit_is_read_from_the_json() -> None:
    # GIVEN dcgmi exiting non-zero because a test failed (as it does)
    report = report_of(interpret_diag(ran((FIXTURES / "diag_r2_memory_isolate.json").read_text(), rc=1)))
    # THEN the JSON is what counts: GPU 3's memory failure is there
    assert [(r.test, r.gpu) for r in report.results if r.status == "fail"] == [("memory", 3)]


def test_log_lines_with_braces_before_the_json_are_tolerated() -> None:
    # GIVEN dcgmi output with log lines before the JSON, one of them holding braces
    text = ("Successfully ran diagnostic for group.\nWARNING {plugin} could not load: {}\n"
            + (FIXTURES / "diag_r2_all_pass.json").read_text() + "\ntrailing line\n")
    # THEN the document is found and read in full
    assert len(report_of(interpret_diag(ran(text))).results) == 24
    assert json_document("no json here", ("body",)) is None


# ---- dcgmi health -----------------------------------------------------------------------------------------
def test_health_report_reads_failure_per_gpu_and_joins_the_message() -> None:
    report = parse_health(fixture("health_memory_failure.json"))
    assert isinstance(report, HealthReport) and report.overall == "fail"
    (incident,) = report.incidents
    assert (incident.gpu, incident.system, incident.health) == (3, "Memory system", "fail")
    assert incident.message == "GPU 3 had uncorrectable memory errors and row remappings are pending"


def test_health_healthy_and_health_errors() -> None:
    # GIVEN a healthy report, an 'Internal error' overall health, and the plain-text error dcgmi prints
    healthy = parse_health(fixture("health_healthy.json"))
    internal = parse_health({"body": {"Overall Health": {"value": "Internal error"}}})
    text = (FIXTURES / "health_watches_not_enabled.txt").read_text()
    not_enabled = interpret_health(CommandResult(("dcgmi", "health", "-c", "-j"), 255, text, "", 0.1))
    # THEN healthy is healthy; the others are inconclusive and say why
    assert healthy == HealthReport("pass", ())
    assert reason_of(internal) == "health is 'Internal error'"
    assert "Health watches not enabled" in reason_of(not_enabled)


def test_health_sets_watches_then_waits_then_checks() -> None:
    calls: list[tuple[str, ...]] = []
    slept: list[float] = []

    def runner(argv: Any, timeout_s: float) -> CommandResult:
        calls.append(tuple(argv))
        out = (FIXTURES / "health_healthy.json").read_text() if "-c" in argv else "set\n"
        return CommandResult(tuple(argv), 0, out, "", 0.5)

    outcome, seconds = run_health("dcgmi", sample_s=7.0, timeout_s=30.0, runner=runner, sleep=slept.append)
    assert calls == [("dcgmi", "health", "-s", "a"), ("dcgmi", "health", "-c", "-j")]
    assert slept == [7.0]
    assert outcome == HealthReport("pass", ()) and seconds == 8.0


def test_health_watches_that_cannot_be_set_are_inconclusive_without_waiting() -> None:
    slept: list[float] = []

    def runner(argv: Any, timeout_s: float) -> CommandResult:
        return CommandResult(tuple(argv), 255, "", "Error: unable to establish a connection", 0.2)

    outcome, _seconds = run_health("dcgmi", sample_s=7.0, timeout_s=30.0, runner=runner, sleep=slept.append)
    assert "setting health watches failed" in reason_of(outcome) and slept == []
