"""The verdict table, on plain findings (no processes, no files)."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from healthcheck.coverage import expected_tests
from healthcheck.findings import (
    SEVERITY_CONFIG,
    SEVERITY_ISOLATE,
    SEVERITY_MONITOR,
    SEVERITY_RESET,
    SEVERITY_TRIAGE,
    DiagError,
    DiagReport,
    DiagResult,
    Findings,
    GpuNvml,
    HealthIncident,
    HealthReport,
    Inconclusive,
    KernelEvent,
    NvmlReport,
    XidReport,
)
from healthcheck.kernel_log import summarise
from healthcheck.verdict import EXIT_CODES, RETIRED_PAGES_LIMIT, decide

GPUS = tuple(range(8))


def diag(*results: DiagResult, gpus: tuple[int, ...] = GPUS, level: int = 2) -> DiagReport:
    """Every test of the level passing on every GPU, plus the given results."""
    passing = tuple(DiagResult(t, "Hardware", g, "pass") for t in expected_tests(level) for g in gpus)
    return DiagReport("4.4.2", "570.172.08", gpus, passing + results)


def nvml(*gpus: GpuNvml, count: int = 8) -> NvmlReport:
    given_ = {g.index: g for g in gpus}
    all_gpus = tuple(given_.get(i, GpuNvml(i, uuid=f"GPU-{i}", pci_bus_id=f"00000000:{0x53 + i:02X}:00.0",
                                           nvlink_active=18)) for i in range(count))
    return NvmlReport("570.172.08", count, all_gpus)


def xids(**counts: int) -> XidReport:
    return XidReport({int(k.removeprefix("x")): v for k, v in counts.items()}, "file:test")


def events(*found: KernelEvent) -> XidReport:
    return summarise(list(found), "file:test")


def findings(**parts: object) -> Findings:
    base = Findings(2, 8, diag(), HealthReport("pass"), nvml(), xids())
    return replace(base, **parts)  # type: ignore[arg-type]


def fail(gpu: int, severity: int | None, test: str = "memory", error_id: int = 52) -> DiagResult:
    return DiagResult(test, "Hardware", gpu, "fail", (DiagError(error_id, severity, 10, "Found 4 faulty memory"),))


def test_everything_passing_is_healthy_exit_0() -> None:
    verdict = decide(findings())
    assert (verdict.verdict, verdict.action, verdict.exit_code) == ("healthy", "none", 0)
    assert [g.status for g in verdict.gpus] == ["pass"] * 8
    assert verdict.untested == () and verdict.fix == ""


def test_isolate_severity_quarantines_and_marks_that_gpu() -> None:
    # GIVEN GPU 3 failing memory with ISOLATE severity
    verdict = decide(findings(diag=diag(fail(3, SEVERITY_ISOLATE))))
    # THEN hardware fault, quarantine, exit 1, GPU 3 failed with the DCGM error in its errors
    assert (verdict.verdict, verdict.action, verdict.exit_code) == ("hardware_fault", "quarantine", 1)
    gpu3 = verdict.gpus[3]
    assert gpu3.status == "fail" and "DCGM_FR_FAULTY_MEMORY (ISOLATE)" in gpu3.errors[0]
    assert all(g.status == "pass" for g in verdict.gpus if g.index != 3)


def test_reset_triage_and_unknown_severities_reboot() -> None:
    for severity in (SEVERITY_RESET, SEVERITY_TRIAGE, 3, 0):
        result = DiagResult("pcie", "Integration", 5, "fail", (DiagError(30, severity, 13, "Bandwidth too low"),))
        verdict = decide(findings(diag=diag(result)))
        assert (verdict.verdict, verdict.action, verdict.exit_code) == ("hardware_fault", "reboot", 1), severity


def test_a_failure_without_severity_takes_dcgms_table_for_its_error_id() -> None:
    # GIVEN an older document that leaves the severity out: 52 (faulty memory) is ISOLATE in DCGM's table
    assert decide(findings(diag=diag(fail(2, None)))).action == "quarantine"
    # AND 29 (persistence mode) is CONFIG
    assert decide(findings(diag=diag(fail(2, None, "software", error_id=29)))).verdict == "misconfigured"


def test_monitor_severity_is_a_warning_not_a_repair() -> None:
    # GIVEN a failure whose only error DCGM calls MONITOR (dcgmi 4 prints a warning as "Fail" in JSON)
    verdict = decide(findings(diag=diag(fail(1, SEVERITY_MONITOR, "pcie", error_id=10))))
    # THEN nothing to repair: the GPU is marked warn and the node is usable
    assert (verdict.verdict, verdict.action, verdict.exit_code) == ("healthy", "none", 0)
    assert verdict.gpus[1].status == "warn"


def test_config_severity_is_misconfigured_never_a_reboot() -> None:
    # GIVEN software failing on every GPU with DCGM_FR_PERSISTENCE_MODE (29), severity CONFIG
    failures = tuple(fail(g, SEVERITY_CONFIG, "software", error_id=29) for g in GPUS)
    verdict = decide(findings(diag=diag(*failures)))
    # THEN misconfigured, action reconfigure, exit 3 (never 1), with the fix
    assert (verdict.verdict, verdict.action, verdict.exit_code) == ("misconfigured", "reconfigure", 3)
    assert "persistence mode" in verdict.fix and "nvidia-persistenced" in verdict.fix
    assert "DCGM_FR_PERSISTENCE_MODE" in verdict.reason


def test_hardware_evidence_outranks_a_configuration_finding() -> None:
    verdict = decide(findings(diag=diag(fail(0, SEVERITY_CONFIG, "software", 29), fail(3, SEVERITY_ISOLATE))))
    assert (verdict.verdict, verdict.action) == ("hardware_fault", "quarantine")
    assert verdict.fix == "" and len(verdict.configuration) == 1


@given(st.lists(st.tuples(st.sampled_from(GPUS), st.sampled_from(["software", "pcie", "memory"]),
                          st.sampled_from([18, 20, 23, 28, 29, 46, 55, 68, 72, 82, 96, 112])),
                min_size=1, max_size=6))
def test_no_config_error_ever_reboots(failures: list[tuple[int, str, int]]) -> None:
    # GIVEN any mix of failures that carry only CONFIG errors (by severity and by DCGM's table)
    results = tuple(fail(gpu, SEVERITY_CONFIG, test, error_id) for gpu, test, error_id in failures)
    verdict = decide(findings(diag=diag(*results)))
    # THEN the action is reconfigure, never a reboot or quarantine, and the exit code never says "repair"
    assert (verdict.verdict, verdict.action, verdict.exit_code) == ("misconfigured", "reconfigure", 3)
    assert verdict.fix


def test_skipped_and_missing_tests_are_untested_and_inconclusive() -> None:
    # GIVEN memory skipped on GPU 0 (ECC off) and pcie never reported for GPU 6
    skipped = DiagResult("memory", "Hardware", 0, "skip", (DiagError(55, 5, 11, "ECC memory is not active"),))
    report = diag(skipped)
    report = replace(report, results=tuple(r for r in report.results
                                           if not (r.test == "pcie" and r.gpu == 6)
                                           and not (r.test == "memory" and r.gpu == 0 and r.status == "pass")))
    verdict = decide(findings(diag=report))
    # THEN inconclusive, exit 2, naming both, and those GPUs are marked skip
    assert (verdict.verdict, verdict.exit_code) == ("inconclusive", 2)
    assert verdict.untested == ("dcgm pcie: did not run on GPU 6",
                                "dcgm memory: skipped on GPU 0: ECC memory is not active")
    assert verdict.gpus[0].status == "skip" and verdict.gpus[6].status == "skip"
    assert "untested: dcgm memory: skipped on GPU 0" in verdict.reason


def test_a_level_test_missing_from_the_document_is_untested() -> None:
    report = diag(level=1)  # only software: a level-2 check also needs pcie and memory
    verdict = decide(findings(diag=report))
    assert verdict.verdict == "inconclusive"
    assert verdict.untested == ("dcgm pcie: not in the report (the level runs it)",
                                "dcgm memory: not in the report (the level runs it)")


def test_untested_never_hides_a_hardware_fault() -> None:
    report = replace(diag(fail(3, SEVERITY_ISOLATE)), results=(fail(3, SEVERITY_ISOLATE),))
    verdict = decide(findings(diag=report))
    assert (verdict.verdict, verdict.action) == ("hardware_fault", "quarantine") and verdict.untested


def test_a_skip_by_error_id_inside_a_failure_is_untested() -> None:
    # GIVEN a "Fail" whose error is DCGM_FR_TEST_SKIPPED (117): nothing was judged
    verdict = decide(findings(diag=diag(fail(4, SEVERITY_CONFIG, "memory", error_id=117))))
    assert verdict.verdict == "inconclusive" and "the test was skipped" in verdict.untested[0]


def test_the_strongest_action_wins() -> None:
    verdict = decide(findings(diag=diag(fail(1, SEVERITY_RESET), fail(3, SEVERITY_ISOLATE))))
    assert verdict.action == "quarantine"
    assert "GPU 3" in verdict.reason and "GPU 1" not in verdict.reason


def test_each_probe_that_cannot_tell_makes_it_inconclusive_exit_2() -> None:
    for part in ("diag", "health", "nvml", "xids"):
        verdict = decide(findings(**{part: Inconclusive(part, "could not tell")}))
        assert (verdict.verdict, verdict.action, verdict.exit_code) == ("inconclusive", "none", 2), part
        assert "could not tell" in verdict.reason


def test_short_gpu_count_is_inconclusive() -> None:
    # GIVEN seven GPUs seen by both DCGM and NVML where eight are expected
    verdict = decide(findings(diag=diag(gpus=GPUS[:7]), nvml=nvml(count=7)))
    # THEN inconclusive, naming the GPU that was not tested and the count
    assert verdict.verdict == "inconclusive"
    assert "expected 8" in verdict.reason
    assert "dcgm software: did not run on GPU 7" in verdict.untested


def test_hardware_evidence_beats_an_inconclusive_probe() -> None:
    # GIVEN dcgmi hung, but the kernel says XID 79 (fell off the bus)
    verdict = decide(findings(diag=Inconclusive("dcgm_diag", "hung"), xids=xids(x79=1)))
    # THEN hardware fault (quarantine per the XID catalog); the hang is kept as a detail
    assert (verdict.verdict, verdict.action) == ("hardware_fault", "quarantine")
    assert verdict.inconclusive == ("dcgm_diag: hung",)


def test_application_xid_with_dcgm_passing_is_application_fault_exit_0() -> None:
    verdict = decide(findings(xids=xids(x13=2, x43=1)))
    assert (verdict.verdict, verdict.action, verdict.exit_code) == ("application_fault", "none", 0)
    assert verdict.application_xids == (13, 43)


def test_application_xid_with_dcgm_inconclusive_stays_inconclusive() -> None:
    verdict = decide(findings(diag=Inconclusive("dcgm_diag", "crashed"), xids=xids(x13=1)))
    assert verdict.verdict == "inconclusive"


def test_xid_classes_follow_the_catalog() -> None:
    assert decide(findings(xids=xids(x48=1))).action == "reboot"
    assert decide(findings(xids=xids(x79=1))).action == "quarantine"
    # XID 74 without its registers keeps the catalog's rule
    assert decide(findings(xids=xids(x74=3))).action == "quarantine"
    # 154 ("GPU recovery action changed") is not in the catalog: its default is a reboot
    assert decide(findings(xids=xids(x154=1))).action == "reboot"


def test_xid_lands_on_the_gpu_with_that_pci_bus() -> None:
    report = XidReport({48: 1}, "file:test", {48: ("0000:57:00",)})  # GPU 4's bus in nvml() is 0x57
    verdict = decide(findings(xids=report))
    assert verdict.gpus[4].status == "fail" and "XID 48" in verdict.gpus[4].errors[0]


def test_xid74_is_decided_by_its_nvlink_registers() -> None:
    def xid74(*registers: int) -> KernelEvent:
        return KernelEvent("xid", 74, "0000:57:00", link=6, registers=registers)

    # register 0 bit 16: "could possibly be a HW issue: check link mechanical connections" -> out of service
    assert decide(findings(xids=events(xid74(0x10000, 0, 0, 0, 0, 0, 0)))).action == "quarantine"
    # register 2 bit 16 once: "if seen repeatedly, run field diags" -> a reboot
    assert decide(findings(xids=events(xid74(0, 0, 0x10000, 0, 0, 0, 0)))).action == "reboot"
    # register 4 bit 20: an ECC threshold, no uncorrectable error: keep running
    ecc_threshold = decide(findings(xids=events(xid74(0, 0, 0, 0, 1 << 20, 0, 0))))
    assert (ecc_threshold.verdict, ecc_threshold.gpus[4].status) == ("healthy", "warn")


def test_a_gpu_off_the_bus_without_an_xid_is_a_hardware_fault() -> None:
    off = KernelEvent("fell_off_bus", device="0000:55:00", text="NVRM: fallen off the bus")  # GPU 2
    verdict = decide(findings(xids=events(off)))
    assert (verdict.verdict, verdict.action) == ("hardware_fault", "quarantine")
    assert verdict.gpus[2].status == "fail" and "fell off the bus" in verdict.reason


def test_rm_init_failed_and_a_fatal_sxid_reboot_a_non_fatal_sxid_does_not() -> None:
    init = KernelEvent("rm_init_failed", device="0000:53:00", text="NVRM: GPU 0000:53:00.0: RmInitAdapter failed!")
    fatal = KernelEvent("sxid", 24007, "0000:c3:00", fatal=True, text="SXid 24007, Fatal")
    benign = KernelEvent("sxid", 20009, "0000:06:00", fatal=False, text="SXid 20009, Non-fatal")
    assert decide(findings(xids=events(init))).action == "reboot"
    assert decide(findings(xids=events(fatal))).action == "reboot"
    assert decide(findings(xids=events(benign))).verdict == "healthy"


def test_health_failure_reboots_and_warning_does_not_fault() -> None:
    failing = HealthReport("fail", (HealthIncident(3, "Memory system", "fail", "row remap pending"),))
    warning = HealthReport("warn", (HealthIncident(2, "PCIe system", "warn", "replays"),))
    failed = decide(findings(health=failing))
    assert (failed.verdict, failed.action) == ("hardware_fault", "reboot")
    warned = decide(findings(health=warning))
    assert warned.verdict == "healthy" and warned.gpus[2].status == "warn"


def test_health_skipped_is_not_inconclusive() -> None:
    assert decide(findings(health=None)).verdict == "healthy"


def test_nvml_counters() -> None:
    cases = {
        "quarantine": [GpuNvml(2, uuid="u", row_remap_failed=True), GpuNvml(2, uuid="u", lost=True),
                       GpuNvml(2, uuid="u", retired_pages=RETIRED_PAGES_LIMIT),
                       GpuNvml(2, uuid="u", nvlink_active=16, nvlink_down=(4, 9))],
        "reboot": [GpuNvml(2, uuid="u", row_remap_pending=True), GpuNvml(2, uuid="u", uncorrectable_ecc_volatile=1),
                   GpuNvml(2, uuid="u", retired_pages=3, retired_pages_pending=True)],
    }
    for action, gpus in cases.items():
        for gpu in gpus:
            verdict = decide(findings(nvml=nvml(gpu)))
            assert (verdict.verdict, verdict.action) == ("hardware_fault", action), gpu
            assert verdict.gpus[2].status == "fail"


def test_nvlink_down_everywhere_alike_is_not_a_fault() -> None:
    # GIVEN a platform where every GPU has the same links up (e.g. unbridged PCIe cards: no NVLink at all)
    same = NvmlReport("570", 8, tuple(GpuNvml(i, uuid=f"u{i}", nvlink_active=None) for i in range(8)))
    assert decide(findings(nvml=same)).verdict == "healthy"


def test_unreadable_counter_warns_and_unopenable_gpu_is_inconclusive() -> None:
    warned = decide(findings(nvml=nvml(GpuNvml(1, uuid="u", call_errors=("ecc: Insufficient Permissions",)))))
    unopened = decide(findings(nvml=nvml(GpuNvml(1, call_errors=("handle: Unknown Error",)))))
    assert warned.verdict == "healthy" and warned.gpus[1].status == "warn"
    assert unopened.verdict == "inconclusive"


def test_exit_codes_say_what_the_node_needs() -> None:
    assert EXIT_CODES == {"healthy": 0, "application_fault": 0, "hardware_fault": 1, "inconclusive": 2,
                          "misconfigured": 3}


_parts = st.sampled_from(["diag", "health", "nvml", "xids"])


@given(st.sets(_parts, min_size=1), st.sets(st.sampled_from([13, 31, 43, 45, 68, 94]), max_size=3))
def test_inconclusive_is_never_healthy(broken: set[str], app_xids: set[int]) -> None:
    # GIVEN any non-empty set of probes that could not tell, with or without application XIDs
    parts: dict[str, object] = {p: Inconclusive(p, "x") for p in broken}
    if "xids" not in broken:
        parts["xids"] = XidReport(dict.fromkeys(app_xids, 1), "file:test")
    # WHEN decided
    verdict = decide(findings(**parts))
    # THEN never healthy, never an application fault, and the exit code says "could not tell"
    assert verdict.verdict == "inconclusive" and verdict.exit_code == 2
