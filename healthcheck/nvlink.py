"""XID 74 (NVLink error) decided by the error registers the driver logs with it. Pure.

``NVRM: Xid (PCI:0000:0a:00): 74, pid=..., NVLink: fatal error detected on link 14(0x0, 0x0, 0x10000, 0x0,
0x0, 0x0, 0x0)``: NVIDIA's Xid catalog resolves XID 74 with its NVLink workflow (WORKFLOW_NVLINK_ERR, quoted
in NVIDIA NVSentinel's design for it, docs/designs/ of github.com/NVIDIA/NVSentinel): the first, third,
fourth and fifth registers are read bit by bit. Mapped to what a node can get here:

- register 0 bits 0, 23, 30 ("can be safely ignored") and register 4 bits 20, 23, 26, 29 ("a threshold of
  ECC errors was exceeded, no uncorrectable error; continue operation"): no repair;
- ECC/parity bits (register 0 bits 4, 5; register 2 bits 0, 1, 2, 6; register 4 bits 18, 19, 21, 22, 24,
  25, 27, 28): a reboot, and out of service when seen more than twice on the same link;
- "if seen repeatedly" bits (register 0 bits 27, 29; register 2 bits 16-19): a reboot, out of service when
  seen twice on the same GPU; register 3 bit 18 ("a reset of the fabric is required"): a reboot;
- possible hardware (register 0 bits 8, 9, 12, 16, 17, 24, 28: "check link mechanical connections,
  re-seat"), marginal signal integrity (bits 21, 22), register 2 bit 13 ("not expected in production"),
  and any bit the workflow does not list ("please report a bug"): out of service, a person looks;
- sympathetic bits (register 0 bits 1, 20; register 3 bits 16, 17) follow the other errors when there are
  any; alone they are "report a bug": out of service.

A line without the registers (older drivers print only the link) keeps the XID catalog's rule for 74.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from consumers.core.xid_catalog import RepairAction, worst_action
from healthcheck.findings import KernelEvent

NVLINK_XID = 74
BitClass = Literal["ignore", "threshold", "ecc_parity", "repeat", "fabric_reset", "hardware", "unexpected",
                   "secondary"]

# (register index, bits, class), after WORKFLOW_NVLINK_ERR.
RULES: tuple[tuple[int, frozenset[int], BitClass], ...] = (
    (0, frozenset({0, 23, 30}), "ignore"),
    (0, frozenset({1, 20}), "secondary"),
    (0, frozenset({4, 5}), "ecc_parity"),
    (0, frozenset({8, 9, 12, 16, 17, 24, 28}), "hardware"),
    (0, frozenset({21, 22}), "hardware"),
    (0, frozenset({27, 29}), "repeat"),
    (2, frozenset({0, 1, 2, 6}), "ecc_parity"),
    (2, frozenset({13}), "unexpected"),
    (2, frozenset({16, 17, 18, 19}), "repeat"),
    (3, frozenset({16, 17}), "secondary"),
    (3, frozenset({18}), "fabric_reset"),
    (4, frozenset({18, 19, 21, 22, 24, 25, 27, 28}), "ecc_parity"),
    (4, frozenset({20, 23, 26, 29}), "threshold"),
)
ANALYSED = frozenset({0, 2, 3, 4})
_ACTION: dict[BitClass, RepairAction] = {
    "ignore": "none", "threshold": "none", "ecc_parity": "reboot", "repeat": "reboot", "fabric_reset": "reboot",
    "hardware": "quarantine", "unexpected": "quarantine", "secondary": "none",
}
ECC_PARITY_LIMIT, REPEAT_LIMIT = 2, 1  # out of service when seen more than this many times


@dataclass(frozen=True, slots=True)
class LinkAdvice:
    action: RepairAction
    reason: str


def bit_classes(registers: Sequence[int]) -> set[BitClass]:
    found: set[BitClass] = set()
    for index in ANALYSED & set(range(len(registers))):
        value = registers[index]
        for bit in range(32):
            if value >> bit & 1:
                found.add(_class_of(index, bit))
    return found


def _class_of(register: int, bit: int) -> BitClass:
    return next((cls for reg, bits, cls in RULES if reg == register and bit in bits), "unexpected")


def advise(events: Sequence[KernelEvent], *, other_errors: bool) -> LinkAdvice | None:
    """The repair the XID 74 lines ask for, or None when none of them carries its registers."""
    decoded = [e for e in events if e.kind == "xid" and e.code == NVLINK_XID and len(e.registers) >= 5]
    if not decoded:
        return None
    seen: Counter[tuple[str | None, int | None, BitClass]] = Counter()
    actions: list[tuple[RepairAction, str]] = []
    for event in decoded:
        classes = bit_classes(event.registers)
        for cls in classes:
            seen[(event.device, event.link if cls == "ecc_parity" else None, cls)] += 1
        actions.append(_event_action(event, classes, other_errors=other_errors))
    actions.extend(_repeats(seen))
    action = worst_action(a for a, _ in actions)
    reasons = [why for a, why in actions if a == action]
    return LinkAdvice(action, "; ".join(dict.fromkeys(reasons)))


def _event_action(event: KernelEvent, classes: set[BitClass], *, other_errors: bool) -> tuple[RepairAction, str]:
    where = f"link {event.link} of {event.device}"
    primary = classes - {"secondary", "ignore", "threshold"}
    if "secondary" in classes and not primary and not other_errors:
        return "quarantine", f"XID 74 on {where}: only sympathetic error bits, alone (NVIDIA: report a bug)"
    if not primary:
        return "none", f"XID 74 on {where}: only bits NVIDIA says to ignore or keep running with"
    action = worst_action(_ACTION[c] for c in primary)
    named = ", ".join(sorted(c for c in primary if _ACTION[c] == action))
    return action, f"XID 74 on {where}: {named.replace('_', ' ')} error bits"


def _repeats(seen: Counter[tuple[str | None, int | None, BitClass]]) -> list[tuple[RepairAction, str]]:
    out: list[tuple[RepairAction, str]] = []
    for (device, link, cls), count in seen.items():
        limit = ECC_PARITY_LIMIT if cls == "ecc_parity" else REPEAT_LIMIT if cls == "repeat" else None
        if limit is not None and count > limit:
            where = f"link {link} of {device}" if link is not None else f"{device}"
            out.append(("quarantine", f"XID 74 {cls.replace('_', ' ')} bits {count} times on {where}"))
    return out
