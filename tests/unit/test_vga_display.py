"""The VGA's machine wiring without KVM: memslots and dirty logs through a fake VM, the
placement switch, BAR moves, and frame sources."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import numpy as np
import pytest

from pyhvm.bus import mmio_bus, pio_bus
from pyhvm.devices import vbe as v
from pyhvm.devices import vga_regs as r
from pyhvm.devices.pci import PciHost
from pyhvm.kvm import KvmError
from pyhvm.kvm.constants import KVM_MEM_LOG_DIRTY_PAGES
from pyhvm.machine.config import ConfigError
from pyhvm.machine.display import (LEGACY_SLOT, LFB_SLOT, RAM_ABOVE_WINDOW_SLOT, VgaConfig,
                                   VgaDisplay, parse_vga, ram_memslots)
from pyhvm.memory import GuestMemory

MiB = 1 << 20
FONT = bytes((i * 5) & 0xFF for i in range(256 * 32))


class FakeVm:
    """Records memslot changes; hands out the dirty bitmaps a test queues per slot."""

    def __init__(self) -> None:
        self.slots: dict[int, tuple[int, int, int, int]] = {}
        self.calls: list[tuple[int, int, int, int]] = []
        self.dirty: dict[int, bytes] = {}
        self.refuse: set[int] = set()

    def set_user_memory_region(self, slot: int, gpa: int, size: int, host: int,
                               flags: int = 0) -> None:
        if size and gpa in self.refuse:
            raise KvmError("KVM_SET_USER_MEMORY_REGION failed: File exists (errno 17)")
        self.calls.append((slot, gpa, size, flags))
        if size:
            self.slots[slot] = (gpa, size, host, flags)
        else:
            self.slots.pop(slot, None)

    def get_dirty_log(self, slot: int, pages: int) -> bytearray:
        bitmap = bytearray(((pages + 63) // 64) * 8)
        queued = self.dirty.pop(slot, b"")
        bitmap[:len(queued)] = queued
        return bitmap


def machine() -> SimpleNamespace:
    return SimpleNamespace(vm=FakeVm(), chipset=SimpleNamespace(host=PciHost()),
                           buses=SimpleNamespace(pio=pio_bus(), mmio=mmio_bus()),
                           loop=SimpleNamespace(now_ns=lambda: 0), io_lock=threading.Lock())


def display(placement: str = "shared", size: int = 16 * MiB
            ) -> tuple[VgaDisplay, SimpleNamespace]:
    m = machine()
    return VgaDisplay(m, VgaConfig("std", size, placement), font=FONT), m  # type: ignore


def out(m: SimpleNamespace, port: int, value: int) -> None:
    m.buses.pio.write(port, 1, value)


def mode13(m: SimpleNamespace) -> None:
    out(m, r.SEQ_INDEX, r.SR_MEMORY_MODE)
    out(m, r.SEQ_DATA, 0x0E)
    out(m, r.SEQ_INDEX, r.SR_MAP_MASK)
    out(m, r.SEQ_DATA, 0x0F)
    out(m, r.GC_INDEX, r.GR_MISC)
    out(m, r.GC_DATA, 0x05)


def test_shared_framebuffer_is_a_dirty_logged_memslot_at_bar0() -> None:
    d, m = display()
    gpa, size, host, flags = m.vm.slots[LFB_SLOT]
    assert (gpa, size, flags) == (0xFD000000, 16 * MiB, KVM_MEM_LOG_DIRTY_PAGES)
    assert LEGACY_SLOT not in m.vm.slots  # text mode: the window traps
    names = {mapping.name: mapping.base for mapping in m.buses.mmio.mappings}
    assert names == {"vga-window": 0xA0000, "vga-mmio": 0xFEBF0000}
    assert m.chipset.host.function_at(2, 0) is d.function


def test_trap_placement_maps_the_framebuffer_on_the_mmio_bus() -> None:
    d, m = display("trap")
    assert not m.vm.slots
    m.buses.mmio.write(0xFD000000 + 0x1000, 4, 0x11223344)
    assert d.vram[0x1000:0x1004].tobytes() == bytes((0x44, 0x33, 0x22, 0x11))
    assert m.buses.mmio.read(0xFD000000 + 0x1000, 2) == 0x3344
    assert d.take_dirty()[1]


def test_mode_13h_shares_the_window_and_planar_writes_trap_again() -> None:
    d, m = display()
    mode13(m)
    gpa, size, host, flags = m.vm.slots[LEGACY_SLOT]
    assert (gpa, size, flags) == (0xA0000, 0x10000, KVM_MEM_LOG_DIRTY_PAGES)
    assert host == m.vm.slots[LFB_SLOT][2]  # the same host memory as the framebuffer
    d.take_dirty()
    m.vm.dirty[LEGACY_SLOT] = b"\x04"       # the guest wrote page 2 through the window
    out(m, r.SEQ_INDEX, r.SR_MEMORY_MODE)
    out(m, r.SEQ_DATA, 0x06)                 # planar: the alias goes
    assert LEGACY_SLOT not in m.vm.slots
    assert np.flatnonzero(d.take_dirty()).tolist() == [2]  # harvested before deletion


def test_vbe_bank_switch_moves_the_window_alias() -> None:
    d, m = display()
    for index, value in ((v.INDEX_XRES, 800), (v.INDEX_YRES, 600), (v.INDEX_BPP, 8),
                         (v.INDEX_ENABLE, v.ENABLED)):
        m.buses.pio.write(v.INDEX_PORT, 4, value << 16 | index)
    assert m.vm.slots[LEGACY_SLOT][:2] == (0xA0000, 0x10000)
    base = m.vm.slots[LEGACY_SLOT][2]
    m.buses.pio.write(v.INDEX_PORT, 4, 3 << 16 | v.INDEX_BANK)
    assert m.vm.slots[LEGACY_SLOT][2] == base + 3 * 0x10000


def test_dirty_log_bits_become_video_memory_pages() -> None:
    d, m = display()
    d.take_dirty()
    m.vm.dirty[LFB_SLOT] = bytes((0b1000_0001, 0, 0, 0, 0, 0, 0, 0, 0x01))
    assert np.flatnonzero(d.take_dirty()).tolist() == [0, 7, 64]
    assert not d.take_dirty().any()


def test_guest_moving_bar0_remaps_the_slot() -> None:
    d, m = display()
    d.function.config_write(0x10, 4, 0xE0000000)
    assert m.vm.slots[LFB_SLOT][0] == 0xE0000000
    d.function.config_write(0x04, 2, 0x0001)  # memory decode off
    assert LFB_SLOT not in m.vm.slots
    assert not [b for b in m.buses.mmio.mappings if b.name == "vga-mmio"]


def test_trap_bar_move_follows_on_the_bus() -> None:
    d, m = display("trap")
    d.function.config_write(0x10, 4, 0xE0000000)
    assert m.buses.mmio.find(0xE0000010).name == "vga-lfb"
    assert m.buses.mmio.find(0xFD000010) is None


def test_a_bar_over_something_else_is_logged_not_raised(caplog) -> None:
    d, m = display()
    m.vm.refuse.add(0x01000000)  # KVM refuses a slot over RAM
    d.function.config_write(0x10, 4, 0x01000000)
    assert LFB_SLOT not in m.vm.slots and "does not decode" in caplog.text
    d.function.config_write(0x18, 4, 0xA0000)  # BAR2 over the legacy window
    assert "does not decode" in caplog.text


def test_frame_sources_each_see_changes_since_their_own_last_frame() -> None:
    d, m = display()
    a, b = d.frame_source(blink=False), d.frame_source(blink=False)
    first = a.frame()
    assert first.serial == 1 and first.dirty_rows is None and first.pixels.shape == (400, 720, 3)
    assert a.frame().dirty_rows == (0, 0)
    assert b.frame().dirty_rows is None  # b's first frame
    m.buses.mmio.write(0xB8000 + 2 * 80 * 3, 2, 0x1F41)  # 'A' on row 3
    assert b.frame().dirty_rows == (48, 64)
    assert a.frame().dirty_rows == (48, 64)  # a was not there when b took it: still told
    frame = a.frame()
    frame.pixels[:] = 0  # the receiver owns its copy
    assert a.frame().pixels.any()


def test_reset_restores_text_mode_and_the_bars() -> None:
    d, m = display()
    mode13(m)
    m.chipset.host.reset()
    assert LFB_SLOT not in m.vm.slots
    d.reset()
    assert m.vm.slots[LFB_SLOT][0] == 0xFD000000 and LEGACY_SLOT not in m.vm.slots
    assert d.vga.regs.misc == 0x67


def test_ram_memslots_leave_the_legacy_window_to_the_vga() -> None:
    memory = GuestMemory.with_size(8 * MiB)
    try:
        base = memory.regions[0].host_address
        assert ram_memslots(memory, True) == [(0, 0, 0xA0000, base),
                                              (RAM_ABOVE_WINDOW_SLOT, 0xC0000,
                                               8 * MiB - 0xC0000, base + 0xC0000)]
        assert ram_memslots(memory, False) == [(0, 0, 8 * MiB, base)]
    finally:
        memory.close()


@pytest.mark.parametrize("spec,placement,size", [("std", "shared", 16 * MiB),
                                                 ("std,vgamem=32M", "trap", 32 * MiB),
                                                 ("none", "shared", 16 * MiB)])
def test_parse_vga(spec: str, placement: str, size: int) -> None:
    config = parse_vga(spec, placement)
    assert (config.vram_size, config.placement) == (size, placement)


@pytest.mark.parametrize("spec,placement", [("cirrus", "shared"), ("std,vgamem=3M", "shared"),
                                            ("std,vgamem=512M", "shared"), ("std,x=1", "shared"),
                                            ("std", "mmio")])
def test_parse_vga_refuses_with_one_line(spec: str, placement: str) -> None:
    with pytest.raises(ConfigError):
        parse_vga(spec, placement)


def test_large_vgamem_bar_sits_aligned_below_the_ioapic() -> None:
    d, m = display(size=64 * MiB)
    assert m.vm.slots[LFB_SLOT][0] == 0xF8000000
