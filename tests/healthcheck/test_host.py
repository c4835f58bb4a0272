"""The host's boot time from /proc/stat (``btime``): the reboot proof the report carries."""

from __future__ import annotations

from datetime import UTC, datetime

from healthcheck.host import boot_time

# The head of a real /proc/stat (Linux 6.1): cpu lines, then intr/ctxt/btime/processes.
PROC_STAT = """cpu  10132153 290696 3084719 46828483 16683 0 25195 0 0 0
cpu0 1393991 20832 354548 5869927 2005 0 8221 0 0 0
intr 199292524 0 9 0 0 0 0 0 0 1 0 0 0 0 0 0 0 0
ctxt 343509521
btime 1764323881
processes 1236254
procs_running 2
procs_blocked 0
"""


def test_boot_time_is_btime_in_utc() -> None:
    assert boot_time(lambda: PROC_STAT) == datetime.fromtimestamp(1764323881, UTC)


def test_unreadable_or_without_btime_is_unknown() -> None:
    def unreadable() -> str:
        raise PermissionError(13, "Permission denied")

    assert boot_time(unreadable) is None
    assert boot_time(lambda: "cpu 1 2 3\n") is None
