"""Driver messages from the kernel log, as NVIDIA's drivers write them, and when they were written.

Messages (docs/healthcheck.md, "Kernel log"):
- ``NVRM: Xid (PCI:0000:3b:00): 79, pid='<unknown>', name=<unknown>, GPU has fallen off the bus.``; older
  drivers leave out ``pid=``/``name=``; a MIG instance reads ``(PCI:0000:01:00 GPU-I:05)``; XID 74 adds
  ``NVLink: fatal error detected on link 14(0x0, 0x0, 0x10000, 0x0, 0x0, 0x0, 0x0)``.
- ``nvidia-nvswitch3: SXid (PCI:0000:c1:00.0): 28006, Non-fatal, Link 46 ...`` (``Fatal`` for fatal ones).
- a GPU that fell off the bus without an XID: ``NVRM: The NVIDIA GPU 0000:b3:00.0`` / ``NVRM: (PCI ID:
  10de:26b5) installed in this system has`` / ``NVRM: fallen off the bus and is not responding to
  commands.`` (one message over three lines), or ``NVRM: GPU 0000:b9:00.0: GPU has fallen off the bus.``
- ``NVRM: GPU 0000:41:00.0: RmInitAdapter failed! (0x22:0x56:667)``: the driver could not start the GPU.

Time stamps, each honouring ``since`` and the boot time:
- ISO (``dmesg --time-format iso``, ``journalctl -o short-iso``, rsyslog's high-precision format);
- ``dmesg -T``: ``[Sat Nov 28 10:05:30 2026]`` (the node's local time);
- syslog (``/var/log/kern.log``, ``/var/log/messages``, ``journalctl``'s default): ``Nov 28 10:04:55 host
  kernel: ...`` (local time, no year: the year is the one that puts it at or before ``now``);
- seconds since boot (plain ``dmesg``): ``[12345.678901]``, converted with the host's boot time.
A line without a stamp of its own (a message's continuation line) takes the stamp of the line before it.

By default only the current boot counts: the kernel sources (``dmesg``, ``journalctl -k``) hold nothing
else, and in a file the lines stamped before the boot time, and every line before the last restart of
the seconds-since-boot clock or the last ``Linux version`` banner, belong to earlier boots.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path

from healthcheck.findings import Inconclusive, KernelEvent, XidOutcome, XidReport
from healthcheck.process import Runner

_BDF = r"[0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}(?:\.[0-9a-fA-F])?"
_XID = re.compile(r"NVRM: Xid \((?P<device>[^)]*)\):\s*(?P<xid>\d+)(?P<rest>.*)")
_DEVICE = re.compile(rf"(?:PCI:)?(?P<pci>{_BDF})(?:\s+GPU-I:\s*(?P<gi>\d+))?")
_SXID = re.compile(rf"SXid \((?:PCI:)?(?P<pci>{_BDF})\):\s*(?P<code>\d+)(?:,\s*(?P<cls>Non-fatal|Fatal)\b)?")
_NVLINK = re.compile(r"link\s+(?P<link>\d+)\s*\((?P<regs>0x[0-9a-fA-F]+(?:\s*,\s*0x[0-9a-fA-F]+){6})\s*\)")
_THE_GPU = re.compile(rf"NVRM: (?:The NVIDIA )?GPU (?:at )?(?:PCI:)?(?P<pci>{_BDF})")
_FELL_OFF = re.compile(r"fallen off the bus", re.IGNORECASE)
_RM_INIT = re.compile(r"RmInitAdapter failed|rm_init_adapter failed")
_BANNER = re.compile(r"\bLinux version \d")

_MONTHS = {m: i for i, m in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), start=1)}
_ISO = re.compile(
    r"^\s*\[?(?P<ts>\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?)\]?(?=\s)"
)
_CTIME = re.compile(
    r"^\s*\[(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) (?P<mon>[A-Z][a-z]{2})\s+(?P<day>\d{1,2}) "
    r"(?P<h>\d{2}):(?P<m>\d{2}):(?P<s>\d{2}) (?P<year>\d{4})\]"
)
_SYSLOG = re.compile(r"^(?P<mon>[A-Z][a-z]{2})\s+(?P<day>\d{1,2}) (?P<h>\d{2}):(?P<m>\d{2}):(?P<s>\d{2})\s")
_UPTIME = re.compile(r"(?:^|\bkernel:\s*)\[\s*(?P<up>\d+\.\d+)\]")

_KERNEL_SOURCES = (
    ("dmesg", ("dmesg", "--time-format", "iso")),
    ("journal", ("journalctl", "-k", "-o", "short-iso", "--no-pager")),
)
_NO_JOURNAL = "No journal files were found"


@dataclass(frozen=True, slots=True)
class Window:
    """Which lines count. ``since``: drop lines stamped earlier; ``boot_time``: the current boot (also
    converts seconds-since-boot stamps); ``now``: gives syslog stamps their year; ``tz``: the zone of
    local-time stamps (``dmesg -T``, syslog)."""

    since: datetime | None = None
    boot_time: datetime | None = None
    now: datetime | None = None
    tz: tzinfo = UTC
    current_boot_only: bool = True


@dataclass(frozen=True, slots=True)
class _Line:
    text: str
    stamp: datetime | None
    uptime: float | None


def parse_xids(
    lines: Iterable[str], *, since: datetime | None, source: str, boot_time: datetime | None = None,
    now: datetime | None = None, tz: tzinfo = UTC,
) -> XidReport:
    return parse_kernel_log(lines, window=Window(since, boot_time, now, tz), source=source)


def parse_kernel_log(lines: Iterable[str], *, window: Window, source: str) -> XidReport:
    return summarise(list(_scan(_current(_stamped(lines, window), window))), source)


def summarise(events: list[KernelEvent], source: str) -> XidReport:
    counts: Counter[int] = Counter()
    devices: defaultdict[int, set[str]] = defaultdict(set)
    for event in events:
        if event.kind == "xid" and event.code is not None:
            counts[event.code] += 1
            if event.device:
                devices[event.code].add(event.device)
    return XidReport(dict(sorted(counts.items())), source,
                     {x: tuple(sorted(d)) for x, d in sorted(devices.items())}, tuple(events))


def read_file(path: Path, *, since: datetime | None, window: Window | None = None) -> XidOutcome:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return Inconclusive("kernel_log", f"cannot read {path}: {exc.strerror or exc}")
    chosen = window if window is not None else Window(since=since)
    return parse_kernel_log(text.splitlines(), window=_with_since(chosen, since), source=f"file:{path}")


def read_kernel(*, since: datetime | None, runner: Runner, window: Window | None = None,
                timeout_s: float = 30.0) -> XidOutcome:
    """The current boot's kernel messages: dmesg, else the journal (both hold only this boot)."""
    chosen = _with_since(window if window is not None else Window(since=since), since)
    failures = []
    for name, argv in _KERNEL_SOURCES:
        result = runner(argv, timeout_s)
        if result.ran and result.returncode == 0 and _NO_JOURNAL not in result.stderr + result.stdout:
            return parse_kernel_log(result.stdout.splitlines(), window=chosen, source=name)
        failures.append(result.describe())
    return Inconclusive("kernel_log", "no kernel log readable: " + "; ".join(failures))


def _with_since(window: Window, since: datetime | None) -> Window:
    if since is None or window.since is not None:
        return window
    return Window(since, window.boot_time, window.now, window.tz, window.current_boot_only)


# ---- time -------------------------------------------------------------------------------------------------
def _stamped(lines: Iterable[str], window: Window) -> Iterator[tuple[_Line, int]]:
    """Each line with its stamp (inherited by continuation lines) and the boot it belongs to (0, 1, ...)."""
    boot, last_uptime, last_stamp = 0, None, None
    for text in lines:
        uptime = _uptime(text)
        restarted = uptime is not None and last_uptime is not None and uptime + 1.0 < last_uptime
        if restarted or (_BANNER.search(text) and last_uptime is not None):
            boot += 1
        last_uptime = uptime if uptime is not None else last_uptime
        stamp = _absolute(text, uptime, window)
        if stamp is None and text[:1].isspace():
            stamp = last_stamp
        last_stamp = stamp if stamp is not None else last_stamp
        yield _Line(text, stamp, uptime), boot


def _current(lines: Iterable[tuple[_Line, int]], window: Window) -> Iterator[_Line]:
    listed = list(lines)
    last_boot = max((boot for _line, boot in listed), default=0)
    for line, boot in listed:
        if window.current_boot_only and boot < last_boot:
            continue
        if line.stamp is not None and _before(line.stamp, window):
            continue
        yield line


def _before(stamp: datetime, window: Window) -> bool:
    if window.since is not None and stamp < _aware(window.since, UTC):
        return True
    return window.current_boot_only and window.boot_time is not None and stamp < _aware(window.boot_time, UTC)


def _absolute(text: str, uptime: float | None, window: Window) -> datetime | None:
    for parse in (_iso, _ctime, _syslog):
        stamp = parse(text, window)
        if stamp is not None:
            return stamp
    if uptime is not None and window.boot_time is not None:
        return _aware(window.boot_time, UTC) + timedelta(seconds=uptime)
    return None


def _iso(text: str, window: Window) -> datetime | None:
    match = _ISO.match(text)
    if match is None:
        return None
    value = match.group("ts").replace(",", ".").replace(" ", "T")
    value = re.sub(r"([+-]\d{2})(\d{2})$", r"\1:\2", value)  # journalctl writes +0000
    try:
        return _aware(datetime.fromisoformat(value), window.tz)
    except ValueError:
        return None


def _ctime(text: str, window: Window) -> datetime | None:
    match = _CTIME.match(text)
    return _local(match, int(match.group("year")), window) if match else None


def _syslog(text: str, window: Window) -> datetime | None:
    match = _SYSLOG.match(text)
    reference = window.now or window.since or window.boot_time
    if match is None or reference is None:
        return None
    reference = _aware(reference, UTC)
    stamp = _local(match, reference.year, window)
    # No year in the line: the latest one that does not put it in the future.
    if stamp is not None and stamp > reference + timedelta(days=1):
        stamp = _local(match, reference.year - 1, window)
    return stamp


def _local(match: re.Match[str], year: int, window: Window) -> datetime | None:
    month = _MONTHS.get(match.group("mon"))
    if month is None:
        return None
    try:
        moment = datetime(year, month, int(match.group("day")), int(match.group("h")), int(match.group("m")),
                          int(match.group("s")), tzinfo=window.tz)
    except ValueError:
        return None
    return moment.astimezone(UTC)


def _uptime(text: str) -> float | None:
    match = _UPTIME.search(text[:120])
    return float(match.group("up")) if match else None


def _aware(moment: datetime, tz: tzinfo) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=tz)


# ---- messages ---------------------------------------------------------------------------------------------
def _scan(lines: Iterable[_Line]) -> Iterator[KernelEvent]:
    """The events, remembering the GPU a message names on its first line for the lines that follow."""
    recent, age = None, 0
    for line in lines:
        named = _mentioned(line.text)
        recent, age = (named, 0) if named else (recent, age + 1)
        yield from _events(line.text, recent if age <= 3 else None)


def _events(text: str, recent_device: str | None) -> Iterator[KernelEvent]:
    xid = _XID.search(text)
    if xid is not None:
        yield _xid_event(xid, text)
        return
    sxid = _SXID.search(text)
    if sxid is not None:
        fatal = {"Fatal": True, "Non-fatal": False}.get(sxid.group("cls") or "")
        yield KernelEvent("sxid", int(sxid.group("code")), _device(sxid.group("pci")), fatal=fatal,
                          text=_message(text))
        return
    if _FELL_OFF.search(text):
        yield KernelEvent("fell_off_bus", device=_mentioned(text) or recent_device, text=_message(text))
    elif _RM_INIT.search(text):
        yield KernelEvent("rm_init_failed", device=_mentioned(text) or recent_device, text=_message(text))


def _xid_event(match: re.Match[str], text: str) -> KernelEvent:
    device_match = _DEVICE.match(match.group("device").strip())
    device = _device(device_match.group("pci")) if device_match else None
    instance = int(device_match.group("gi")) if device_match and device_match.group("gi") else None
    link: int | None = None
    registers: tuple[int, ...] = ()
    nvlink = _NVLINK.search(match.group("rest"))
    if nvlink is not None:
        link = int(nvlink.group("link"))
        registers = tuple(int(r, 16) for r in re.split(r"\s*,\s*", nvlink.group("regs")))
    return KernelEvent("xid", int(match.group("xid")), device, instance, link, registers, text=_message(text))


def _mentioned(text: str) -> str | None:
    match = _THE_GPU.search(text)
    return _device(match.group("pci")) if match else None


def _device(pci: str) -> str:
    """'0000:B3:00.0' and 'PCI:0000:b3:00' -> '0000:b3:00'."""
    return pci.lower().removeprefix("pci:").split(".")[0]


def _message(text: str) -> str:
    at = text.find("NVRM:")
    at = at if at >= 0 else text.find("nvidia-nvswitch")
    return (text[at:] if at >= 0 else text).strip()[:300]
