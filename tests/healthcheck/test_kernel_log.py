"""Driver messages from kernel logs as drivers and log tools write them, and which of them count: the fault
time in every timestamp form, and only the current boot."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from healthcheck.findings import Inconclusive, XidReport
from healthcheck.kernel_log import Window, parse_kernel_log, parse_xids, read_file, read_kernel
from healthcheck.process import CommandResult
from tests.healthcheck.fakes import KERNEL

SINCE = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)
BOOT = datetime(2026, 11, 21, 0, 40, tzinfo=UTC)  # the stale_* fixtures' boot: uptime 9309 s is 03:15:09
NOW = datetime(2026, 11, 28, 10, 10, tzinfo=UTC)


def read(name: str, window: Window | None = None) -> XidReport:
    report = read_file(KERNEL / name, since=None, window=window or Window(now=NOW))
    assert isinstance(report, XidReport), report
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


@pytest.mark.parametrize("name", ["stale_xid119_iso.log", "stale_xid119_dmesg_t.log", "stale_xid119_syslog.log",
                                  "stale_xid119_uptime.dmesg"])
def test_a_stale_xid_before_since_is_ignored_in_every_timestamp_form(name: str) -> None:
    # GIVEN an XID 119 a week before the fault and an XID 13 after it, in ISO, dmesg -T, syslog or uptime stamps
    window = Window(since=SINCE, boot_time=BOOT, now=NOW)
    # THEN only the XID 13 counts; without a fault time both do
    assert read(name, window).counts == {13: 1}
    assert read(name, Window(boot_time=BOOT, now=NOW)).counts == {13: 1, 119: 1}


def test_local_time_stamps_use_the_nodes_zone() -> None:
    # GIVEN the dmesg -T fixture read on a node whose clock is UTC+2: 10:02:41 local is 08:02:41 UTC
    plus_two = timezone(timedelta(hours=2))
    report = read("stale_xid119_dmesg_t.log", Window(since=datetime(2026, 11, 28, 8, 0, tzinfo=UTC), tz=plus_two))
    assert report.counts == {13: 1}
    assert read("stale_xid119_dmesg_t.log", Window(since=SINCE, tz=plus_two)).counts == {}


def test_syslog_stamps_take_the_year_that_is_not_in_the_future() -> None:
    # GIVEN a December line read on January 2nd: it is last year's
    line = "Dec 31 23:59:00 host kernel: NVRM: Xid (PCI:0000:53:00): 48, pid=1, name=x, DBE"
    after_new_year = Window(since=datetime(2027, 1, 1, tzinfo=UTC), now=datetime(2027, 1, 2, tzinfo=UTC))
    assert parse_kernel_log([line], window=after_new_year, source="t").counts == {}
    before = Window(since=datetime(2026, 12, 31, tzinfo=UTC), now=datetime(2027, 1, 2, tzinfo=UTC))
    assert parse_kernel_log([line], window=before, source="t").counts == {48: 1}


def test_only_the_current_boot_counts_by_default() -> None:
    # GIVEN /var/log/kern.log with an XID 119 from the boot before the reboot, and a clean current boot
    booted = datetime(2026, 11, 28, 10, 6, 10, tzinfo=UTC)
    # THEN with the boot time, or without it (the kernel banner and the uptime clock restarting), none counts
    assert read("kern_log_across_reboot.log", Window(boot_time=booted, now=NOW)).counts == {}
    assert read("kern_log_across_reboot.log", Window(now=NOW)).counts == {}
    # AND asked for every boot, it is there
    every = Window(boot_time=booted, now=NOW, current_boot_only=False)
    assert read("kern_log_across_reboot.log", every).counts == {119: 1}


def test_uptime_stamps_before_the_boot_time_are_converted_and_before_since_dropped() -> None:
    # GIVEN a real dmesg (XID 119 storm and RmInitAdapter at 113 s after boot) with the boot time known
    window = Window(since=BOOT + timedelta(seconds=200), boot_time=BOOT)
    assert read("xid119_rm_init_failed.dmesg", window).counts == {}
    assert read("xid119_rm_init_failed.dmesg", Window(boot_time=BOOT)).counts == {119: 13}


def test_rm_init_adapter_failure_is_an_event_with_its_gpu() -> None:
    report = read("xid119_rm_init_failed.dmesg")
    failed = [e for e in report.events if e.kind == "rm_init_failed"]
    assert {e.device for e in failed} == {"0000:00:06"} and "RmInitAdapter failed!" in failed[0].text


def test_fell_off_the_bus_without_an_xid_over_three_lines_names_the_gpu() -> None:
    # GIVEN the driver's three-line message (continuation lines carry no stamp)
    report = read("fell_off_bus_no_xid.dmesg", Window(since=BOOT, boot_time=BOOT))
    # THEN one event for that GPU, timed by the first line (kept: 1843 s after boot is after since)
    (event,) = report.events
    assert (event.kind, event.device) == ("fell_off_bus", "0000:b3:00") and report.counts == {}
    # AND with a fault time after it, the continuation line is dropped with its first line
    assert read("fell_off_bus_no_xid.dmesg", Window(since=BOOT + timedelta(hours=1), boot_time=BOOT)).events == ()


def test_nvswitch_sxids_keep_their_class() -> None:
    report = read("sxid_nvswitch.dmesg")
    assert [(e.kind, e.code, e.device, e.fatal) for e in report.events] == [
        ("sxid", 24007, "0000:c3:00", True), ("sxid", 20009, "0000:06:00", False)]


def test_xid74_keeps_its_link_and_seven_registers() -> None:
    (event,) = read("xid74_reg2_bit16.dmesg").events
    assert (event.code, event.device, event.link) == (74, "0003:00:00", 14)
    assert event.registers == (0, 0, 0x10000, 0, 0, 0, 0)
    (sample,) = read("xid74_reg0_bit16.messages").events
    assert (sample.link, sample.registers[0]) == (6, 0x10000)


def test_mig_device_strings_are_tied_to_their_gpu() -> None:
    (event,) = read("xid43_mig.log").events
    assert (event.code, event.device, event.gpu_instance) == (43, "0000:64:00", 5)
    assert read("xid43_mig.log").devices == {43: ("0000:64:00",)}


@pytest.mark.parametrize("line", [
    "NVRM: Xid (PCI:0000:3b:00): 31, pid=1234, name=python, Ch 0000000a, intr 10000000. MMU Fault",
    "NVRM: Xid (PCI:0000:3b:00): 13, Graphics Exception: ESR 0x505648=0x1000e",  # older drivers: no pid/name
    "NVRM: Xid (0000:3b:00): 79, GPU has fallen off the bus.",  # without "PCI:"
    "NVRM: Xid (PCI:0000:3B:00.0): 48, pid=9, name=x, DBE",  # upper case and a function number
])
def test_xid_line_variants_name_the_xid_and_the_device(line: str) -> None:
    report = parse_xids([line], since=None, source="t")
    (xid,) = report.counts
    assert report.devices[xid] == ("0000:3b:00",)


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
