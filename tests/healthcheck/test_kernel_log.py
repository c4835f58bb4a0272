"""XIDs from kernel log lines: the formats dmesg and journalctl write, and the fault time."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from healthcheck.findings import Inconclusive, XidReport
from healthcheck.kernel_log import parse_xids, read_file, read_kernel
from healthcheck.process import CommandResult
from tests.healthcheck.fakes import KERNEL


def read(name: str, since: datetime | None = None) -> XidReport:
    report = read_file(KERNEL / name, since=since)
    assert isinstance(report, XidReport)
    return report


def test_counts_xids_per_number_and_keeps_the_device() -> None:
    report = read("xid13_application.log")
    assert report.counts == {13: 2, 43: 1}
    assert report.devices[13] == ("0000:64:00",)


def test_each_recorded_format_parses() -> None:
    assert read("xid48_dbe.log").counts == {48: 1, 63: 1, 94: 1}  # dmesg --time-format iso
    assert read("xid79_fell_off_bus.log").counts == {79: 1}  # syslog/journal short
    assert read("xid154_recovery_action.log").counts == {62: 1, 154: 1}  # dmesg -T
    assert read("clean.log").counts == {}


def test_lines_before_the_fault_time_are_left_out() -> None:
    # GIVEN an XID 48 from the evening before and an XID 13 after the fault
    report = read("xid48_before_fault_time.log", since=datetime(2026, 11, 28, 10, 0, tzinfo=UTC))
    # THEN only the later one counts
    assert report.counts == {13: 1}


def test_lines_without_a_timestamp_are_kept_and_naive_since_means_utc() -> None:
    lines = ["NVRM: Xid (PCI:0000:53:00): 79, pid='<unknown>', name=<unknown>, GPU has fallen off the bus."]
    assert parse_xids(lines, since=datetime(2030, 1, 1), source="t").counts == {79: 1}


def test_unreadable_file_is_inconclusive(tmp_path: Path) -> None:
    outcome = read_file(tmp_path / "missing.log", since=None)
    assert isinstance(outcome, Inconclusive) and "missing.log" in outcome.reason


def test_kernel_falls_back_from_dmesg_to_journal_then_gives_up() -> None:
    # GIVEN dmesg refused (no CAP_SYSLOG) and a journal that answers
    calls: list[str] = []
    line = "2026-11-28T10:03:07+0000 host kernel: NVRM: Xid (PCI:0000:97:00): 48, pid=1, name=x, DBE"

    def runner(argv: Any, timeout_s: float) -> CommandResult:
        calls.append(argv[0])
        if argv[0] == "dmesg":
            return CommandResult(tuple(argv), 1, "", "dmesg: read kernel buffer failed: Operation not permitted", 0.0)
        return CommandResult(tuple(argv), 0, line + "\n", "", 0.0)

    report = read_kernel(since=None, runner=runner)
    assert calls == ["dmesg", "journalctl"]
    assert isinstance(report, XidReport) and report.counts == {48: 1} and report.source == "journal"

    # GIVEN neither source readable (journal not mounted)
    def nothing(argv: Any, timeout_s: float) -> CommandResult:
        return CommandResult(tuple(argv), 0 if argv[0] == "journalctl" else 1, "",
                             "No journal files were found.", 0.0)

    outcome = read_kernel(since=None, runner=nothing)
    assert isinstance(outcome, Inconclusive) and "no kernel log readable" in outcome.reason
