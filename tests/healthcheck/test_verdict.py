"""The verdict table, on plain findings (no processes, no files)."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from healthcheck.findings import (
    SEVERITY_ISOLATE,
    SEVERITY_MONITOR,
    SEVERITY_RESET,
    DiagError,
    DiagReport,
    DiagResult,
    Findings,
    GpuNvml,
    HealthIncident,
    HealthReport,
    Inconclusive,
    NvmlReport,
    XidReport,
)
from healthcheck.verdict import RETIRED_PAGES_LIMIT, decide

GPUS = tuple(range(8))


def diag(*results: DiagResult, gpus: tuple[int, ...] = GPUS) -> DiagReport:
    passing = tuple(DiagResult(t, "Hardware", g, "pass") for t in ("software", "memory") for g in gpus)
    return DiagReport("4.4.2", "570.172.08", gpus, passing + results)


def nvml(*gpus: GpuNvml, count: int = 8) -> NvmlReport:
    given_ = {g.index: g for g in gpus}
    all_gpus = tuple(given_.get(i, GpuNvml(i, uuid=f"GPU-{i}", pci_bus_id=f"00000000:{0x53 + i:02X}:00.0",
                                           nvlink_active=18)) for i in range(count))
    return NvmlReport("570.172.08", count, all_gpus)


def xids(**counts: int) -> XidReport:
    return XidReport({int(k.removeprefix("x")): v for k, v in counts.items()}, "file:test")


def findings(**parts: object) -> Findings:
    base = Findings(2, 8, diag(), HealthReport("pass"), nvml(), xids())
    return replace(base, **parts)  # type: ignore[arg-type]


def fail(gpu: int, severity: int, test: str = "memory") -> DiagResult:
    return DiagResult(test, "Hardware", gpu, "fail", (DiagError(52, severity, 10, "Found 4 faulty memory"),))


def test_everything_passing_is_healthy_exit_0() -> None:
    verdict = decide(findings())
    assert (verdict.verdict, verdict.action, verdict.exit_code) == ("healthy", "none", 0)
    assert [g.status for g in verdict.gpus] == ["pass"] * 8


def test_isolate_severity_quarantines_and_marks_that_gpu() -> None:
    # GIVEN GPU 3 failing memory with ISOLATE severity
    verdict = decide(findings(diag=diag(fail(3, SEVERITY_ISOLATE))))
    # THEN hardware fault, quarantine, exit 1, GPU 3 failed with the DCGM error in its errors
    assert (verdict.verdict, verdict.action, verdict.exit_code) == ("hardware_fault", "quarantine", 1)
    gpu3 = verdict.gpus[3]
    assert gpu3.status == "fail" and "error 52 (ISOLATE)" in gpu3.errors[0]
    assert all(g.status == "pass" for g in verdict.gpus if g.index != 3)


def test_other_failing_diag_reboots() -> None:
    for severity in (SEVERITY_MONITOR, SEVERITY_RESET, None):
        result = DiagResult("pcie", "Integration", 5, "fail",
                            (DiagError(30, severity, 13, "Bandwidth too low"),))
        verdict = decide(findings(diag=diag(result)))
        assert (verdict.verdict, verdict.action) == ("hardware_fault", "reboot"), severity


def test_the_strongest_action_wins() -> None:
    verdict = decide(findings(diag=diag(fail(1, SEVERITY_MONITOR), fail(3, SEVERITY_ISOLATE))))
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
    # THEN inconclusive, and the reason says so
    assert verdict.verdict == "inconclusive"
    assert "expected 8" in verdict.reason


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
    assert decide(findings(xids=xids(x74=3))).action == "quarantine"
    # 154 ("GPU recovery action changed") is not in the catalog: its default is a reboot
    assert decide(findings(xids=xids(x154=1))).action == "reboot"


def test_xid_lands_on_the_gpu_with_that_pci_bus() -> None:
    report = XidReport({48: 1}, "file:test", {48: ("0000:57:00",)})  # GPU 4's bus in nvml() is 0x57
    verdict = decide(findings(xids=report))
    assert verdict.gpus[4].status == "fail" and "XID 48" in verdict.gpus[4].errors[0]


def test_health_failure_reboots_and_warning_does_not_fault() -> None:
    failing = HealthReport("fail", (HealthIncident(3, "Memory system", "fail", "row remap pending"),))
    warning = HealthReport("warn", (HealthIncident(2, "PCIe system", "warn", "replays"),))
    assert (decide(findings(health=failing)).verdict, decide(findings(health=failing)).action) == \
        ("hardware_fault", "reboot")
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
