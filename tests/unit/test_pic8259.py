"""The dual 8259A driven port by port; sections cite the Intel 8259A datasheet, the ELCR
tests the Intel PIIX3 datasheet ("ELCR1/ELCR2 - Edge/Level Control Registers")."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyhvm.devices.pic8259 import (
    ICW1_IC4,
    ICW1_INIT,
    ICW1_LTIM,
    ICW1_SNGL,
    ICW4_AEOI,
    ICW4_SFNM,
    ICW4_UPM,
    OCW2_NONSPECIFIC_EOI,
    OCW2_ROTATE_AEOI_SET,
    OCW2_ROTATE_NONSPECIFIC_EOI,
    OCW2_ROTATE_SPECIFIC_EOI,
    OCW2_SET_PRIORITY,
    OCW2_SPECIFIC_EOI,
    OCW3_ESMM,
    OCW3_POLL,
    OCW3_RIS,
    OCW3_RR,
    OCW3_SELECT,
    OCW3_SMM,
    POLL_INTERRUPT,
    DualPic,
    DualPicState,
)
from tests.fakes import FakeIrq

CMD, DATA = 0, 1
EOI = OCW2_NONSPECIFIC_EOI
READ_IRR = OCW3_SELECT | OCW3_RR
READ_ISR = OCW3_SELECT | OCW3_RR | OCW3_RIS
SMM_ON = OCW3_SELECT | OCW3_ESMM | OCW3_SMM


class CallLog:
    """An IrqLine that records every call, repeats included."""

    def __init__(self) -> None:
        self.calls: list[bool] = []

    @property
    def level(self) -> bool:
        return self.calls[-1] if self.calls else False

    def set_level(self, level: bool) -> None:
        self.calls.append(level)


def make_pic() -> tuple[DualPic, FakeIrq]:
    intr = FakeIrq()
    return DualPic(intr), intr


def linux_init(pic: DualPic, master_mask: int = 0x00, slave_mask: int = 0x00,
               master_icw4: int = ICW4_UPM, slave_icw4: int = ICW4_UPM) -> None:
    """Linux's init_8259A: ICW1 0x11, ICW2 0x20/0x28, ICW3 4/2, ICW4 1, then the masks."""
    pic.master_port.write(CMD, 1, ICW1_INIT | ICW1_IC4)
    for value in (0x20, 0x04, master_icw4):
        pic.master_port.write(DATA, 1, value)
    pic.slave_port.write(CMD, 1, ICW1_INIT | ICW1_IC4)
    for value in (0x28, 0x02, slave_icw4):
        pic.slave_port.write(DATA, 1, value)
    pic.master_port.write(DATA, 1, master_mask)
    pic.slave_port.write(DATA, 1, slave_mask)


def ready_pic(**kwargs: int) -> tuple[DualPic, FakeIrq]:
    pic, intr = make_pic()
    linux_init(pic, **kwargs)
    intr.changes.clear()
    return pic, intr


def master_cmd(pic: DualPic, value: int) -> None:
    pic.master_port.write(CMD, 1, value)


def slave_cmd(pic: DualPic, value: int) -> None:
    pic.slave_port.write(CMD, 1, value)


def master_isr(pic: DualPic) -> int:
    master_cmd(pic, READ_ISR)
    return pic.master_port.read(CMD, 1)


def slave_isr(pic: DualPic) -> int:
    slave_cmd(pic, READ_ISR)
    return pic.slave_port.read(CMD, 1)


def repulse(pic: DualPic, irq: int) -> None:
    """A fresh rising edge on `irq`, left high."""
    pic.set_irq(irq, False)
    pic.set_irq(irq, True)


# -- initialisation ------------------------------------------------------------------------


def test_power_on_state_masks_every_input() -> None:
    """The chip's power-on state is undefined; ours masks all inputs until the guest inits."""
    pic, intr = make_pic()
    assert pic.master_port.read(DATA, 1) == 0xFF
    assert pic.slave_port.read(DATA, 1) == 0xFF
    pic.set_irq(0, True)
    assert not pic.has_interrupt() and intr.changes == []
    assert pic.master_port.read(CMD, 1) == 0x01  # the request waits in IRR, masked


def test_linux_init_sequence_programs_vector_bases_then_masks() -> None:
    """Initialization Command Words: ICW1-ICW4 in order, then OCW1 writes the IMR."""
    pic, intr = make_pic()
    linux_init(pic, master_mask=0xFA, slave_mask=0xFE)
    assert pic.master_port.read(DATA, 1) == 0xFA
    assert pic.slave_port.read(DATA, 1) == 0xFE
    pic.set_irq(1, True)
    assert not intr.level  # IRQ1 masked
    pic.set_irq(0, True)
    assert intr.level
    assert pic.acknowledge() == 0x20
    master_cmd(pic, EOI)
    pic.set_irq(8, True)
    assert pic.acknowledge() == 0x28


def test_icw2_low_three_bits_are_ignored_in_8086_mode() -> None:
    """ICW2 in 8086 mode: T7-T3 come from ICW2, the chip supplies D2-D0; SNGL skips ICW3."""
    pic, _ = make_pic()
    master_cmd(pic, ICW1_INIT | ICW1_IC4 | ICW1_SNGL)
    pic.master_port.write(DATA, 1, 0x47)  # ICW2
    pic.master_port.write(DATA, 1, ICW4_UPM)  # ICW4, straight after ICW2
    pic.master_port.write(DATA, 1, 0xF7)  # OCW1
    assert pic.master_port.read(DATA, 1) == 0xF7
    pic.set_irq(3, True)
    assert pic.acknowledge() == 0x43


def test_icw1_without_ic4_ends_the_sequence_after_icw3() -> None:
    """Initialization Command Words (f): with IC4 = 0 no ICW4 is read, its functions clear."""
    pic, _ = make_pic()
    master_cmd(pic, ICW1_INIT)
    pic.master_port.write(DATA, 1, 0x20)
    pic.master_port.write(DATA, 1, 0x04)
    pic.master_port.write(DATA, 1, 0x3C)  # OCW1 already
    assert pic.master_port.read(DATA, 1) == 0x3C
    assert pic.master.state().icw4 == 0


def test_icw1_resets_imr_isr_priority_and_edge_latches() -> None:
    """Initialization Command Words (a)-(e): edge sense reset so a held input must rise
    again, IMR cleared, IR7 lowest priority, special mask cleared, status read is IRR."""
    pic, _ = ready_pic()
    pic.set_irq(0, True)
    pic.acknowledge()  # ISR bit 0
    pic.set_irq(1, True)  # IRR bit 1, blocked by IR0 in service
    master_cmd(pic, OCW2_SET_PRIORITY | 3)
    master_cmd(pic, SMM_ON)
    master_cmd(pic, READ_ISR)
    pic.master_port.write(DATA, 1, 0x55)
    master_cmd(pic, ICW1_INIT | ICW1_IC4)
    state = pic.master.state()
    assert (state.imr, state.isr, state.irr) == (0, 0, 0)
    assert (state.lowest_priority, state.special_mask, state.read_isr) == (7, False, False)
    for value in (0x20, 0x04, ICW4_UPM):
        pic.master_port.write(DATA, 1, value)
    assert not pic.has_interrupt()  # lines 0 and 1 are still high: no new edge
    repulse(pic, 1)
    assert pic.acknowledge() == 0x21


# -- triggering ----------------------------------------------------------------------------


def test_edge_input_held_high_does_not_retrigger_after_eoi() -> None:
    """Edge and Level Triggered Modes: an edge input requests once per low-to-high change."""
    pic, intr = ready_pic()
    pic.set_irq(4, True)
    assert pic.acknowledge() == 0x24
    master_cmd(pic, EOI)
    assert not intr.level
    pic.set_irq(4, True)  # still high: not an edge
    assert not intr.level
    repulse(pic, 4)
    assert intr.level and pic.acknowledge() == 0x24


def test_edge_request_stays_latched_when_line_drops_before_inta() -> None:
    """Unlike the chip (default IR7), a pulsed edge request is kept so devices may pulse."""
    pic, intr = ready_pic()
    pic.set_irq(3, True)
    pic.set_irq(3, False)
    assert intr.level
    assert pic.acknowledge() == 0x23


def test_level_input_reasserts_after_eoi_while_line_stays_high() -> None:
    """Edge and Level Triggered Modes: a level input still high at EOI interrupts again."""
    pic, intr = ready_pic()
    pic.elcr_port.write(0, 1, 0x20)  # IRQ5 level-triggered
    pic.set_irq(5, True)
    assert pic.acknowledge() == 0x25
    assert not intr.level  # in service: blocks itself
    master_cmd(pic, EOI)
    assert intr.level
    assert pic.acknowledge() == 0x25


def test_level_request_clears_from_irr_when_line_drops() -> None:
    """Edge and Level Triggered Modes: a level input's IRR bit follows the line."""
    pic, intr = ready_pic()
    pic.elcr_port.write(0, 1, 0x40)  # IRQ6 level-triggered
    pic.set_irq(6, True)
    assert intr.level
    assert pic.master_port.read(CMD, 1) == 0x40
    pic.set_irq(6, False)
    assert pic.master_port.read(CMD, 1) == 0x00
    assert not intr.level


def test_icw1_ltim_makes_every_input_level_triggered() -> None:
    """ICW1 LTIM: all eight inputs of the chip become level-triggered."""
    pic, intr = make_pic()
    pic.master_port.write(CMD, 1, ICW1_INIT | ICW1_IC4 | ICW1_LTIM)
    for value in (0x20, 0x04, ICW4_UPM, 0x00):
        pic.master_port.write(DATA, 1, value)
    pic.set_irq(0, True)
    assert pic.acknowledge() == 0x20
    master_cmd(pic, EOI)
    assert intr.level  # IRQ0 is edge-only in the ELCR, but LTIM overrides on the chip
    pic.set_irq(0, False)
    assert not intr.level


# -- cascade -------------------------------------------------------------------------------


def test_slave_request_takes_its_vector_from_the_slave_and_master_ir2_in_service() -> None:
    """Cascade Mode: the master grants IR2 and the slave supplies the vector."""
    pic, intr = ready_pic()
    pic.set_irq(12, True)
    assert intr.level
    assert pic.acknowledge() == 0x2C
    assert master_isr(pic) == 0x04
    assert slave_isr(pic) == 0x10
    slave_cmd(pic, EOI)
    master_cmd(pic, EOI)
    assert (master_isr(pic), slave_isr(pic)) == (0, 0)
    assert not intr.level


def test_master_ir1_beats_slave_while_ir3_waits() -> None:
    """Fully Nested Mode across the cascade: IR1 > IR2 (slave) > IR3."""
    pic, _ = ready_pic()
    for irq in (3, 9, 1):
        pic.set_irq(irq, True)
    assert pic.acknowledge() == 0x21
    master_cmd(pic, EOI)
    assert pic.acknowledge() == 0x29
    slave_cmd(pic, EOI)
    master_cmd(pic, EOI)
    assert pic.acknowledge() == 0x23


def test_special_fully_nested_mode_lets_a_higher_slave_request_nest() -> None:
    """Special Fully Nested Mode: with IR2 in service the master still passes on a
    higher-priority request from the same slave; without SFNM it waits for the EOI."""
    for icw4, expect_nested in ((ICW4_UPM | ICW4_SFNM, True), (ICW4_UPM, False)):
        pic, intr = ready_pic(master_icw4=icw4)
        pic.set_irq(12, True)
        assert pic.acknowledge() == 0x2C
        pic.set_irq(8, True)
        assert intr.level is expect_nested
        if expect_nested:
            assert pic.acknowledge() == 0x28
            assert slave_isr(pic) == 0x11


def test_slave_auto_eoi_with_a_second_request_is_not_lost() -> None:
    """Automatic End of Interrupt Mode on both chips: the slave still requests after INTA,
    and master IR2 (edge-triggered on a PC) must deliver that request too."""
    auto = ICW4_UPM | ICW4_AEOI
    pic, intr = ready_pic(master_icw4=auto, slave_icw4=auto)
    pic.set_irq(9, True)
    pic.set_irq(10, True)
    assert pic.acknowledge() == 0x29
    assert intr.level
    assert pic.acknowledge() == 0x2A
    assert not intr.level


# -- priorities and EOI --------------------------------------------------------------------


def test_in_service_level_blocks_lower_but_not_higher_requests() -> None:
    """Fully Nested Mode: a higher level interrupts a lower one in service, not vice versa."""
    pic, intr = ready_pic()
    pic.set_irq(4, True)
    assert pic.acknowledge() == 0x24
    pic.set_irq(6, True)
    assert not intr.level
    pic.set_irq(3, True)
    assert pic.acknowledge() == 0x23
    assert master_isr(pic) == 0x18


def test_nonspecific_eoi_clears_the_highest_priority_isr_bit() -> None:
    """End of Interrupt: a non-specific EOI resets the highest-priority IS bit."""
    pic, _ = ready_pic()
    pic.set_irq(4, True)
    pic.acknowledge()
    pic.set_irq(3, True)
    pic.acknowledge()
    master_cmd(pic, EOI)
    assert master_isr(pic) == 0x10


def test_specific_eoi_clears_only_that_isr_bit() -> None:
    """End of Interrupt: a specific EOI resets the named IS bit, whatever its priority."""
    pic, _ = ready_pic()
    pic.set_irq(4, True)
    pic.acknowledge()
    pic.set_irq(3, True)
    pic.acknowledge()
    master_cmd(pic, OCW2_SPECIFIC_EOI | 4)
    assert master_isr(pic) == 0x08
    master_cmd(pic, OCW2_SPECIFIC_EOI | 7)  # not in service: nothing happens
    assert master_isr(pic) == 0x08


def test_rotate_on_nonspecific_eoi_makes_the_serviced_level_lowest() -> None:
    """Automatic Rotation: after rotate-on-EOI, the level just serviced becomes lowest."""
    pic, _ = ready_pic()
    pic.set_irq(0, True)
    pic.set_irq(1, True)
    assert pic.acknowledge() == 0x20
    master_cmd(pic, OCW2_ROTATE_NONSPECIFIC_EOI)
    repulse(pic, 0)
    assert pic.acknowledge() == 0x21  # IR1 is now the highest, IR0 the lowest
    assert pic.master.state().lowest_priority == 0


def test_set_priority_command_picks_the_lowest_level() -> None:
    """Specific Rotation: set priority with L = 3 makes IR4 highest and IR3 lowest."""
    pic, _ = ready_pic()
    master_cmd(pic, OCW2_SET_PRIORITY | 3)
    pic.set_irq(1, True)
    pic.set_irq(5, True)
    assert pic.acknowledge() == 0x25


def test_rotate_on_specific_eoi_clears_and_makes_that_level_lowest() -> None:
    """Specific Rotation: rotate on specific EOI resets IS bit L and makes L lowest."""
    pic, _ = ready_pic()
    pic.set_irq(3, True)
    pic.acknowledge()
    master_cmd(pic, OCW2_ROTATE_SPECIFIC_EOI | 3)
    assert master_isr(pic) == 0
    pic.set_irq(0, True)
    pic.set_irq(4, True)
    assert pic.acknowledge() == 0x24


def test_special_mask_mode_lets_lower_levels_past_a_masked_level_in_service() -> None:
    """Special Mask Mode: masking the level in service enables all other unmasked levels,
    and a non-specific EOI skips IS bits masked by the IMR."""
    pic, intr = ready_pic()
    pic.set_irq(0, True)
    pic.acknowledge()
    pic.set_irq(3, True)
    assert not intr.level
    pic.master_port.write(DATA, 1, 0x01)  # mask IR0, the level in service
    assert not intr.level  # plain masking does not lift IR0's block
    master_cmd(pic, SMM_ON)
    assert intr.level
    assert pic.acknowledge() == 0x23
    assert master_isr(pic) == 0x09
    master_cmd(pic, EOI)
    assert master_isr(pic) == 0x01  # IR0 is masked, so the EOI went to IR3
    master_cmd(pic, OCW3_SELECT | OCW3_ESMM)  # reset special mask mode
    assert not pic.master.state().special_mask


def test_auto_eoi_leaves_isr_clear() -> None:
    """Automatic End of Interrupt Mode: the IS bit is reset at the end of INTA."""
    pic, _ = ready_pic(master_icw4=ICW4_UPM | ICW4_AEOI)
    pic.set_irq(4, True)
    pic.set_irq(6, True)
    assert pic.acknowledge() == 0x24
    assert master_isr(pic) == 0
    assert pic.acknowledge() == 0x26  # nothing in service blocks IR6


def test_rotate_in_auto_eoi_mode_rotates_at_each_inta() -> None:
    """Automatic Rotation in AEOI mode: each level granted becomes the lowest."""
    pic, _ = ready_pic(master_icw4=ICW4_UPM | ICW4_AEOI)
    master_cmd(pic, OCW2_ROTATE_AEOI_SET)
    pic.set_irq(4, True)
    assert pic.acknowledge() == 0x24
    repulse(pic, 4)
    pic.set_irq(5, True)
    assert pic.acknowledge() == 0x25  # IR5 now outranks IR4


# -- status reads and poll -----------------------------------------------------------------


def test_ocw3_selects_irr_or_isr_for_command_port_reads() -> None:
    """Reading the 8259A Status: RR/RIS pick IRR or ISR; OCW3 with RR = 0 keeps the choice;
    the data port always reads the IMR."""
    pic, _ = ready_pic(master_mask=0x80)
    pic.set_irq(5, True)
    pic.acknowledge()
    pic.set_irq(6, True)
    assert pic.master_port.read(CMD, 1) == 0x40  # IRR by default after ICW1
    master_cmd(pic, READ_ISR)
    assert pic.master_port.read(CMD, 1) == 0x20
    master_cmd(pic, OCW3_SELECT | OCW3_RIS)  # RR clear: no change
    assert pic.master_port.read(CMD, 1) == 0x20
    master_cmd(pic, READ_IRR)
    assert pic.master_port.read(CMD, 1) == 0x40
    assert pic.master_port.read(DATA, 1) == 0x80


def test_poll_returns_the_level_and_acts_as_inta() -> None:
    """Poll Command: the next read returns I (D7) and the level, and sets the IS bit."""
    pic, intr = ready_pic()
    pic.set_irq(3, True)
    master_cmd(pic, OCW3_SELECT | OCW3_POLL)
    assert pic.master_port.read(CMD, 1) == POLL_INTERRUPT | 3
    assert not intr.level
    assert master_isr(pic) == 0x08
    assert pic.acknowledged[3] == 1
    master_cmd(pic, OCW3_SELECT | OCW3_POLL)
    assert pic.master_port.read(CMD, 1) == 0x00  # nothing requesting: I clear
    assert pic.master_port.read(CMD, 1) == 0x08  # poll used up: back to the ISR select


def test_poll_is_answered_on_the_data_port_too() -> None:
    """Poll Command: the chip treats the next RD pulse, whatever A0, as the poll's INTA."""
    pic, _ = ready_pic(slave_mask=0x00)
    pic.set_irq(13, True)
    slave_cmd(pic, OCW3_SELECT | OCW3_POLL)
    assert pic.slave_port.read(DATA, 1) == POLL_INTERRUPT | 5
    assert pic.slave_port.read(DATA, 1) == 0x00  # the IMR again


# -- spurious interrupts -------------------------------------------------------------------


def test_spurious_irq7_when_level_request_drops_before_inta() -> None:
    """Interrupt Sequence: a request gone before INTA gets a default IR7, no IS bit set."""
    pic, intr = ready_pic()
    pic.elcr_port.write(0, 1, 0x20)
    pic.set_irq(5, True)
    assert intr.level
    pic.set_irq(5, False)
    assert pic.acknowledge() == 0x27
    assert master_isr(pic) == 0
    assert pic.spurious == 1
    assert pic.acknowledged == [0] * 16


def test_spurious_irq7_when_the_guest_masks_the_request_after_intr() -> None:
    pic, _ = ready_pic()
    pic.set_irq(3, True)
    pic.master_port.write(DATA, 1, 0x08)
    assert pic.acknowledge() == 0x27


def test_spurious_irq15_leaves_master_ir2_in_service_for_a_master_only_eoi() -> None:
    """Interrupt Sequence with Cascade Mode: the slave's request vanished, so the slave
    answers its IR7 with no IS bit while master IR2 stays in service; the PC convention
    (Linux's spurious-15 path) is one EOI to the master."""
    pic, intr = ready_pic()
    pic.elcr_port.write(1, 1, 0x04)  # IRQ10 level-triggered
    pic.set_irq(10, True)
    pic.set_irq(10, False)
    assert intr.level  # master IR2 is edge-triggered: its latch holds the request
    assert pic.acknowledge() == 0x2F
    assert (master_isr(pic), slave_isr(pic)) == (0x04, 0x00)
    assert pic.spurious == 1
    master_cmd(pic, EOI)
    assert (master_isr(pic), slave_isr(pic)) == (0x00, 0x00)
    assert not intr.level


# -- the INTR output -----------------------------------------------------------------------


def test_intr_is_driven_only_when_its_level_changes() -> None:
    """INT goes high with a grantable request and low when none is (Interrupt Sequence)."""
    log = CallLog()
    pic = DualPic(log)
    linux_init(pic)
    assert log.calls == []
    pic.set_irq(3, True)
    pic.set_irq(5, True)  # lower than IR3: INTR already high, no call
    assert log.calls == [True]
    assert pic.acknowledge() == 0x23  # IR5 blocked by IR3 in service
    pic.set_irq(1, True)
    assert pic.acknowledge() == 0x21
    master_cmd(pic, EOI)  # clears IR1; IR5 still blocked by IR3
    master_cmd(pic, EOI)
    assert log.calls == [True, False, True, False, True]


# -- ELCR ----------------------------------------------------------------------------------


def test_elcr_forces_edge_mode_on_irq_0_1_2_8_13() -> None:
    """PIIX3 ELCR1 bits 0-2 and ELCR2 bits 0 and 5 are read-only zero."""
    pic, _ = make_pic()
    pic.elcr_port.write(0, 2, 0xFFFF)
    assert pic.elcr_port.read(0, 1) == 0xF8
    assert pic.elcr_port.read(1, 1) == 0xDE
    assert pic.elcr_port.read(0, 2) == 0xDEF8
    assert pic.elcr_port.read(1, 2) == 0xFFDE  # the lane past 0x4D1 floats high


def test_switching_a_held_input_to_level_mode_requests_at_once() -> None:
    """PIIX3 ELCR: a level-triggered input requests while high, whatever edges came before."""
    pic, intr = ready_pic()
    pic.set_irq(5, True)
    assert pic.acknowledge() == 0x25
    master_cmd(pic, EOI)
    assert not intr.level  # edge mode: the held line is spent
    pic.elcr_port.write(0, 1, 0x20)
    assert intr.level
    pic.elcr_port.write(0, 1, 0x00)  # back to edge: the latched request stays
    assert pic.acknowledge() == 0x25


# -- bus access ----------------------------------------------------------------------------


def test_wide_access_is_successive_byte_cycles_on_consecutive_ports() -> None:
    """A word write to 0x20 is ICW1 then ICW2; lanes past port 1 read 0xFF, writes drop."""
    pic, _ = make_pic()
    pic.master_port.write(CMD, 2, 0x2011)
    pic.master_port.write(DATA, 2, 0xAA04)  # ICW3; the 0xAA lane falls off the end
    pic.master_port.write(DATA, 1, ICW4_UPM)
    pic.master_port.write(DATA, 1, 0xF0)
    assert pic.master_port.read(CMD, 2) == 0xF000
    assert pic.master_port.read(CMD, 4) == 0xFFFFF000
    assert pic.master_port.read(2, 1) == 0xFF
    pic.set_irq(1, True)
    assert pic.acknowledge() == 0x21


def test_irq2_and_out_of_range_lines_are_refused_at_wiring_time() -> None:
    pic, _ = make_pic()
    for irq in (2, -1, 16):
        with pytest.raises(ValueError):
            pic.line(irq)
        with pytest.raises(ValueError):
            pic.set_irq(irq, True)


def test_line_adapter_drives_its_irq() -> None:
    pic, intr = ready_pic()
    pic.line(14).set_level(True)
    assert intr.level and pic.acknowledge() == 0x2E
    assert pic.acknowledged[14] == 1 and pic.acknowledged[2] == 0


# -- reset and snapshots -------------------------------------------------------------------


def test_reset_restores_power_on_registers_and_keeps_input_levels() -> None:
    pic, intr = ready_pic()
    pic.set_irq(4, True)
    pic.acknowledge()
    pic.elcr_port.write(0, 1, 0x20)
    pic.reset()
    assert pic.state() == DualPicState(
        master=dataclasses.replace(DualPicState().master, lines=0x10), slave=DualPicState().slave
    )
    assert not intr.level


def _busy_pic() -> DualPic:
    pic, _ = ready_pic(master_mask=0x00, slave_mask=0x40)
    pic.elcr_port.write(1, 1, 0x08)
    pic.set_irq(11, True)
    pic.set_irq(4, True)
    assert pic.acknowledge() == 0x2B  # IR2 (the slave's IRQ11) outranks IR4
    pic.set_irq(1, True)
    master_cmd(pic, OCW2_SET_PRIORITY | 5)
    slave_cmd(pic, READ_ISR)
    return pic


def test_state_round_trip_restores_registers_and_reraises_intr() -> None:
    pic = _busy_pic()
    assert pic.has_interrupt()
    intr = FakeIrq()
    clone = DualPic.from_state(pic.state(), intr)
    assert clone.state() == pic.state()
    assert intr.changes == [True]
    assert clone.acknowledge() == pic.acknowledge()


@pytest.mark.parametrize("chip, change", [
    ("master", {"irr": 0x100}),
    ("master", {"imr": -1}),
    ("master", {"vector_base": 0x21}),
    ("master", {"icw1": 0x01}),
    ("master", {"icw4": 0x20}),
    ("master", {"init_step": 1}),
    ("master", {"lowest_priority": 8}),
    ("master", {"poll": 1}),
    ("master", {"elcr": 0x01}),  # IRQ0 is edge-only
    ("slave", {"elcr": 0x20}),  # IRQ13 is edge-only
    ("slave", {"elcr": 0x08, "irr": 0x00, "lines": 0x08}),  # level IRR must follow its line
    ("master", {"lines": 0x04}),  # IR2 high while the slave's INT is low
])
def test_from_state_refuses_impossible_states(chip: str, change: dict[str, int]) -> None:
    good = DualPicState()
    bad = dataclasses.replace(good, **{chip: dataclasses.replace(getattr(good, chip), **change)})
    with pytest.raises(ValueError):
        DualPic.from_state(bad, FakeIrq())


# -- guest-hostile sequences ---------------------------------------------------------------

PORTS = [("master_port", 0), ("master_port", 1), ("slave_port", 0), ("slave_port", 1),
         ("elcr_port", 0), ("elcr_port", 1)]
INTERESTING = [0x11, 0x19, 0x13, 0x10, 0x20, 0x28, 0x04, 0x02, 0x01, 0x03, 0x13, 0x00, 0xFF,
               0x0A, 0x0B, 0x0C, 0x68, 0x48, 0x60, 0x67, 0x80, 0xA0, 0xC7, 0xE2]
BYTES = st.one_of(st.sampled_from(INTERESTING), st.integers(0, 0xFF))
OPS = st.one_of(
    st.tuples(st.just("write"), st.sampled_from(PORTS), st.sampled_from([1, 1, 1, 2, 4]),
              st.one_of(BYTES, st.integers(0, 0xFFFFFFFF))),
    st.tuples(st.just("read"), st.sampled_from(PORTS), st.sampled_from([1, 2, 4])),
    st.tuples(st.just("irq"), st.sampled_from([i for i in range(16) if i != 2]),
              st.booleans()),
    st.tuples(st.just("ack")),
)


@settings(max_examples=300, deadline=None)
@given(initialised=st.booleans(), ops=st.lists(OPS, max_size=80))
def test_random_port_and_line_traffic_keeps_invariants(
    initialised: bool, ops: list[tuple]
) -> None:
    pic, intr = make_pic()
    if initialised:
        linux_init(pic)
    for op in ops:
        if op[0] == "write":
            (name, offset), size, value = op[1], op[2], op[3]
            getattr(pic, name).write(offset, size, value)
        elif op[0] == "read":
            (name, offset), size = op[1], op[2]
            assert 0 <= getattr(pic, name).read(offset, size) < 1 << (8 * size)
        elif op[0] == "irq":
            pic.set_irq(op[1], op[2])
        else:
            assert 0 <= pic.acknowledge() <= 0xFF
        state = pic.state()
        for chip in (state.master, state.slave):
            chip.validate()  # registers within 0..255, level IRR bits follow their lines
        assert intr.level == pic.has_interrupt()
    assert DualPic.from_state(pic.state(), FakeIrq()).state() == pic.state()
