"""Which XID means what, and what to do about it (DESIGN section 5, after NVIDIA's XID catalog).

This is the one place the mapping lives: the health-check agent and the recovery policy both read it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

XidClass = Literal["application", "reset", "out_of_service", "unknown"]
RepairAction = Literal["none", "reboot", "quarantine"]

# Faults raised by what the application did (bad memory access, illegal instruction, ...): the GPU is fine.
APPLICATION_XIDS = frozenset({13, 31, 43, 45, 68, 94})
# Faults a GPU reset (a reboot, for us) clears: contained ECC errors, GPU stopped processing, ...
RESET_XIDS = frozenset({48, 62, 64, 95, 119, 120})
# Faults a reboot does not fix: NVLink errors, the GPU fell off the bus.
OUT_OF_SERVICE_XIDS = frozenset({74, 79})


@dataclass(frozen=True)
class XidAdvice:
    xid: int
    cls: XidClass
    action: RepairAction
    meaning: str


_MEANINGS = {
    13: "graphics engine exception (application)", 31: "GPU memory page fault (application)",
    43: "GPU stopped processing (application)", 45: "preemptive cleanup (application)",
    48: "double-bit ECC error", 62: "internal micro-controller halt", 64: "ECC page retirement or row "
    "remap failure", 68: "video processor exception (application)", 74: "NVLink error", 79: "GPU has "
    "fallen off the bus", 94: "contained ECC error (application)", 95: "uncontained ECC error",
    119: "GSP RPC timeout", 120: "GSP error",
}


def classify_xid(xid: int) -> XidAdvice:
    meaning = _MEANINGS.get(xid, "not in our catalog")
    if xid in OUT_OF_SERVICE_XIDS:
        return XidAdvice(xid, "out_of_service", "quarantine", meaning)
    if xid in RESET_XIDS:
        return XidAdvice(xid, "reset", "reboot", meaning)
    if xid in APPLICATION_XIDS:
        return XidAdvice(xid, "application", "none", meaning)
    # Unknown XIDs: a reboot is the conservative repair; a second fault within the window quarantines.
    return XidAdvice(xid, "unknown", "reboot", meaning)


_SEVERITY = {"none": 0, "reboot": 1, "quarantine": 2}


def worst_action(actions: Iterable[RepairAction]) -> RepairAction:
    """The strongest repair among several findings (quarantine > reboot > none)."""
    worst: RepairAction = "none"
    for action in actions:
        if _SEVERITY[action] > _SEVERITY[worst]:
            worst = action
    return worst


def action_for_xids(xids: Iterable[int]) -> RepairAction:
    return worst_action(classify_xid(x).action for x in xids)
