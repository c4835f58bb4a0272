"""XID 74 by NVLink error register bits (NVIDIA's WORKFLOW_NVLINK_ERR), on plain kernel events."""

from __future__ import annotations

import pytest

from healthcheck.findings import KernelEvent
from healthcheck.nvlink import advise, bit_classes


def xid74(*registers: int, device: str = "0000:b9:00", link: int = 6) -> KernelEvent:
    return KernelEvent("xid", 74, device, link=link, registers=registers)


def regs(index: int, bit: int) -> tuple[int, ...]:
    values = [0] * 7
    values[index] = 1 << bit
    return tuple(values)


@pytest.mark.parametrize(("register", "bit", "action"), [
    (0, 0, "none"), (0, 23, "none"), (0, 30, "none"),  # "can be safely ignored"
    (4, 20, "none"), (4, 29, "none"),  # ECC threshold exceeded, no uncorrectable error: continue
    (0, 4, "reboot"), (2, 6, "reboot"), (4, 25, "reboot"),  # ECC/parity: reset, repeated -> report
    (0, 27, "reboot"), (2, 16, "reboot"), (2, 18, "reboot"),  # "if seen repeatedly"
    (3, 18, "reboot"),  # "a reset of the fabric is required"
    (0, 8, "quarantine"), (0, 16, "quarantine"), (0, 28, "quarantine"),  # check mechanical connections
    (0, 21, "quarantine"),  # marginal signal integrity
    (2, 13, "quarantine"),  # "not expected in production"
    (0, 2, "quarantine"),  # a bit the workflow does not list: "please report a bug"
    (1, 5, "none"), (6, 9, "none"),  # registers 2, 6 and 7 are not analysed
])
def test_each_register_bit_maps_to_an_action(register: int, bit: int, action: str) -> None:
    advice = advise([xid74(*regs(register, bit))], other_errors=False)
    assert advice is not None and advice.action == action


def test_sympathetic_bits_follow_the_other_errors_and_alone_need_a_person() -> None:
    alone = advise([xid74(*regs(0, 1))], other_errors=False)
    with_others = advise([xid74(*regs(0, 1))], other_errors=True)
    with_bits = advise([xid74(1 << 1 | 1 << 4, 0, 0, 0, 0, 0, 0)], other_errors=False)
    assert alone is not None and alone.action == "quarantine" and "report a bug" in alone.reason
    assert with_others is not None and with_others.action == "none"
    assert with_bits is not None and with_bits.action == "reboot"


def test_ecc_parity_bits_more_than_twice_on_one_link_take_the_node_out() -> None:
    twice = [xid74(*regs(0, 4)), xid74(*regs(0, 5))]
    three = [*twice, xid74(*regs(2, 0))]
    other_link = [*twice, xid74(*regs(2, 0), link=7)]
    assert (advise(twice, other_errors=False) or pytest.fail()).action == "reboot"
    assert (advise(three, other_errors=False) or pytest.fail()).action == "quarantine"
    assert (advise(other_link, other_errors=False) or pytest.fail()).action == "reboot"


def test_repeat_bits_twice_on_one_gpu_take_the_node_out() -> None:
    repeated = [xid74(*regs(0, 27)), xid74(*regs(0, 27), link=9)]
    advice = advise(repeated, other_errors=False)
    assert advice is not None and advice.action == "quarantine" and "2 times" in advice.reason


def test_lines_without_registers_leave_it_to_the_catalog() -> None:
    assert advise([KernelEvent("xid", 74, "0000:b9:00", link=6)], other_errors=False) is None
    assert advise([KernelEvent("xid", 48, "0000:b9:00")], other_errors=False) is None


def test_bit_classes_read_only_the_analysed_registers() -> None:
    assert bit_classes((0, 0xFFFFFFFF, 0, 0, 0, 0xFFFFFFFF, 0xFFFFFFFF)) == set()
    assert bit_classes((1 << 16 | 1, 0, 0, 0, 1 << 23, 0, 0)) == {"hardware", "ignore", "threshold"}
