"""XIDs from the kernel log: ``NVRM: Xid (PCI:0000:3b:00): 79, pid=..., GPU has fallen off the bus.``

Sources, in order: a file given by the operator (``--kernel-log``), else ``dmesg --time-format iso``, else
``journalctl -k -o short-iso``. Both kernel sources cover the current boot only, so XIDs from before a
reboot do not follow the node into its post-reboot check. Lines with an ISO timestamp older than the fault
time are left out; lines without a timestamp are kept (we cannot tell, and an XID is worth a look).
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

from healthcheck.findings import Inconclusive, XidOutcome, XidReport
from healthcheck.process import Runner

_XID = re.compile(r"NVRM: Xid \((?P<device>[^)]*)\):\s*(?P<xid>\d+)")
_STAMP = re.compile(
    r"^\s*\[?(?P<ts>\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?)"
)
_KERNEL_SOURCES = (
    ("dmesg", ("dmesg", "--time-format", "iso")),
    ("journal", ("journalctl", "-k", "-o", "short-iso", "--no-pager")),
)
_NO_JOURNAL = "No journal files were found"


def parse_xids(lines: Iterable[str], *, since: datetime | None, source: str) -> XidReport:
    counts: Counter[int] = Counter()
    devices: defaultdict[int, set[str]] = defaultdict(set)
    for line in lines:
        match = _XID.search(line)
        if match is None or _before(line, since):
            continue
        xid = int(match.group("xid"))
        counts[xid] += 1
        devices[xid].add(match.group("device").removeprefix("PCI:"))
    return XidReport(
        dict(sorted(counts.items())), source, {x: tuple(sorted(d)) for x, d in sorted(devices.items())}
    )


def read_file(path: Path, *, since: datetime | None) -> XidOutcome:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return Inconclusive("kernel_log", f"cannot read {path}: {exc.strerror or exc}")
    return parse_xids(text.splitlines(), since=since, source=f"file:{path}")


def read_kernel(*, since: datetime | None, runner: Runner, timeout_s: float = 30.0) -> XidOutcome:
    failures = []
    for name, argv in _KERNEL_SOURCES:
        result = runner(argv, timeout_s)
        if result.ran and result.returncode == 0 and _NO_JOURNAL not in result.stderr + result.stdout:
            return parse_xids(result.stdout.splitlines(), since=since, source=name)
        failures.append(result.describe())
    return Inconclusive("kernel_log", "no kernel log readable: " + "; ".join(failures))


def _before(line: str, since: datetime | None) -> bool:
    if since is None:
        return False
    stamp = _timestamp(line)
    return stamp is not None and stamp < _aware(since)


def _timestamp(line: str) -> datetime | None:
    match = _STAMP.match(line)
    if match is None:
        return None
    text = match.group("ts").replace(",", ".").replace(" ", "T")
    # journalctl short-iso writes +0000; fromisoformat wants +00:00 before Python 3.11's wider parser.
    text = re.sub(r"([+-]\d{2})(\d{2})$", r"\1:\2", text)
    try:
        return _aware(datetime.fromisoformat(text))
    except ValueError:
        return None


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
