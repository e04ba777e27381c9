"""RTL8139 corners a driver or a hostile guest reaches: the internal PHY's BMCR (forced
10 Mbit/s, autonegotiation off, PHY reset) as MSR and BMSR report it, a transmit buffer
that runs past the chip's 32 address bits, and the receiver's refusal with bus mastering
off (RTL8139C data sheet: MSR, BMCR, BMSR, 9346CR; IEEE 802.3 clause 22 register 0)."""

from __future__ import annotations

from pyhvm.devices.rtl8139 import (ANAR, BMCR, BMCR_ANE, BMCR_FULL_DUPLEX, BMCR_RESET,
                                   BMCR_SPEED_100, BMSR, BMSR_AN_COMPLETE, BMSR_LINK, CR9346,
                                   DEFAULT_ANAR, DEFAULT_BMCR, EEM_CONFIG_WRITE, INT_LINKCHG,
                                   INT_SERR, INT_TER, ISR, MSR, MSR_SPEED_10, TSAD0, TSD0,
                                   TSD_OWN, TSD_TUN)
from tests.unit.test_rtl8139 import Rig, frame


def config_write(rig: Rig, offset: int, size: int, value: int) -> None:
    rig.w(CR9346, 1, EEM_CONFIG_WRITE << 6)
    rig.w(offset, size, value)
    rig.w(CR9346, 1, 0)


def test_bmcr_is_locked_outside_config_write_mode() -> None:
    rig = Rig()
    rig.start()
    rig.w(BMCR, 2, 0)
    assert rig.r(BMCR, 2) == DEFAULT_BMCR


def test_forced_10_mbit_without_autonegotiation_shows_in_msr_and_bmsr() -> None:
    rig = Rig()
    rig.start()
    config_write(rig, BMCR, 2, BMCR_FULL_DUPLEX)  # ANE off, speed 100 off: forced 10 Mbit/s
    assert rig.r(BMCR, 2) & (BMCR_ANE | BMCR_SPEED_100) == 0
    assert rig.r(MSR, 1) & MSR_SPEED_10
    assert rig.r(BMSR, 2) & (BMSR_LINK | BMSR_AN_COMPLETE) == BMSR_LINK  # no AN was done
    config_write(rig, BMCR, 2, BMCR_SPEED_100)  # forced 100 Mbit/s
    assert not rig.r(MSR, 1) & MSR_SPEED_10


def test_bmcr_reset_restores_the_phy_defaults_and_anar() -> None:
    rig = Rig()
    rig.start()
    rig.w(ANAR, 2, 0x0021)  # advertise 10BASE-T half duplex only
    config_write(rig, BMCR, 2, 0)
    config_write(rig, BMCR, 2, BMCR_RESET)
    assert rig.r(BMCR, 2) == DEFAULT_BMCR and rig.r(ANAR, 2) == DEFAULT_ANAR
    assert rig.r(BMSR, 2) & BMSR_AN_COMPLETE and not rig.r(MSR, 1) & MSR_SPEED_10


def test_tx_buffer_past_4_gib_is_a_master_abort_without_touching_memory() -> None:
    """TSAD is 32 bits: a 60-byte buffer at 0xFFFFFFF0 would need address 2^32 and up."""
    rig = Rig()
    rig.start()
    rig.memory.accesses.clear()
    rig.w(TSAD0, 4, 0xFFFFFFF0)
    rig.w(TSD0, 4, 60)
    assert rig.memory.accesses == [] and rig.sent == [] and rig.aborts == 1
    assert rig.r(TSD0, 4) & (TSD_OWN | TSD_TUN) == TSD_OWN | TSD_TUN
    assert rig.r(ISR, 2) == INT_TER | INT_SERR


def test_receiver_refuses_frames_while_bus_mastering_is_off() -> None:
    rig = Rig()
    rig.start()
    rig.master = False
    assert rig.nic.can_receive(60) is False
    assert rig.nic.receive(frame()) is False
    assert rig.nic.rx_dropped["bus-master-off"] == 1
    rig.master = True
    assert rig.nic.can_receive(60) is True


def test_link_state_unchanged_raises_no_link_change_interrupt() -> None:
    rig = Rig()
    rig.start()
    rig.nic.set_link(True)  # already up
    assert not rig.r(ISR, 2) & INT_LINKCHG and not rig.irq.level
