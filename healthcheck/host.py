"""Facts about the host the agent runs on: when it last booted.

``/proc/stat``'s ``btime`` is the boot time in seconds since the epoch. A container shares the host's
kernel, so inside the check task it is the node's own boot time: the reboot proof recovery checks.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

log = logging.getLogger(__name__)
PROC_STAT = Path("/proc/stat")


def boot_time(read: Callable[[], str] | None = None) -> datetime | None:
    """None when it cannot be read (not Linux, /proc not mounted): the report then says nothing."""
    reader = read or (lambda: PROC_STAT.read_text())
    try:
        text = reader()
    except OSError as exc:
        log.warning("boot time unknown: cannot read %s: %s", PROC_STAT, exc)
        return None
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name == "btime" and value.strip().isdigit():
            return datetime.fromtimestamp(int(value.strip()), UTC)
    log.warning("boot time unknown: no btime line in %s", PROC_STAT)
    return None
