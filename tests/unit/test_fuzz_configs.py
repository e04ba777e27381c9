"""The fuzz configurations that mirror the firmware device and the whole PC: fw_cfg alone
(`build_fw_cfg`'s items on checked memory), the PC of a direct boot (`pc`: VGA and port
0x92, no fw_cfg) and of a firmware boot (`pc-bios`: fw_cfg, debugcon, PAM shadow), their
templates, and their reset paths (`Machine._reset`)."""

from __future__ import annotations

import random
import struct

import pytest

from pyhvm.devices import fw_cfg as f
from pyhvm.devices import vbe
from pyhvm.devices.vga_bios import MISC
from pyhvm.fuzz import ops as o
from pyhvm.fuzz import templates
from pyhvm.fuzz.configs import CONFIGS, FUZZ_ROM
from pyhvm.fuzz.engine import Campaign, profile_of
from pyhvm.fuzz.generate import pci_access
from pyhvm.fuzz.harness import Runner, Target
from pyhvm.fuzz.ops import Op

DESC = 0x1000  # where the tests put FWCfgDmaAccess descriptors
BUF = 0x2000


def run(target: Target, *program: Op) -> Runner:
    """Run ops untimed on a target the test keeps (and closes) itself."""
    runner = Runner(target, time_ops=False)
    result = runner.run(list(program))
    assert result.violation is None, result.violation.message
    return runner


@pytest.fixture
def fw_cfg_target() -> Target:
    target = CONFIGS["fw_cfg"]()
    yield target
    target.close()


def transfer(control: int, length: int, address: int, at: int = DESC) -> list[Op]:
    """A descriptor at `at`, started as SeaBIOS does (high half, then low half, swapped)."""
    return [o.fill(at, f.DMA_DESCRIPTOR.pack(control, length, address)),
            o.port_out(4, 0x514, templates._be32(at >> 32)),
            o.port_out(4, 0x518, templates._be32(at & 0xFFFFFFFF))]


def status(target: Target, at: int = DESC) -> int:
    return struct.unpack(">I", target.memory.read(at, 4))[0]


# -- fw_cfg alone ---------------------------------------------------------------------------


def test_fw_cfg_config_maps_both_windows_with_the_machine_items(fw_cfg_target: Target) -> None:
    t = fw_cfg_target
    assert t.pio.find(0x510).name == "fw_cfg" and t.pio.find(0x511).name == "fw_cfg"
    assert t.pio.find(0x514).name == "fw_cfg-dma" and t.pio.find(0x51B).name == "fw_cfg-dma"
    dev = t.roots["fw_cfg"]
    assert dev.item(f.FW_CFG_RAM_SIZE) == struct.pack("<Q", t.memory.size)
    for index, name in enumerate(templates.FW_CFG_FILES):  # the templates' keys are real
        assert dev.file_key(name) == f.FW_CFG_FILE_FIRST + index
    assert dev.file_key(templates.FW_CFG_WRITABLE) == templates.FW_CFG_WRITABLE_KEY
    assert len(dev.item(f.FW_CFG_KERNEL_DATA)) > f.DMA_CHUNK  # copied in several chunks
    run(t, o.port_out(2, 0x510, 0), *[o.port_in(1, 0x511)] * 4)
    assert dev.state().offset == 4


def test_a_dma_read_into_ram_is_accepted_and_reports_success(fw_cfg_target: Target) -> None:
    t = fw_cfg_target
    run(t, *transfer(f.DMA_CTL_SELECT | f.DMA_CTL_READ | f.FW_CFG_FILE_DIR << 16, 4, BUF))
    assert status(t) == 0
    assert struct.unpack(">I", t.memory.read(BUF, 4))[0] == len(templates.FW_CFG_FILES)


@pytest.mark.parametrize("buffer", [
    0x210000,            # the top of RAM (DEFAULT_LAYOUT's second region ends here)
    0x100000 - 2,        # straddles the hole between the two regions
    1 << 40,             # far past RAM
    (1 << 64) - 2,       # wraps the 64-bit address space
])
def test_a_dma_buffer_outside_ram_is_refused_and_counted(fw_cfg_target: Target,
                                                         buffer: int) -> None:
    t = fw_cfg_target
    runner = run(t, *transfer(f.DMA_CTL_SELECT | f.DMA_CTL_READ | f.FW_CFG_ID << 16, 4,
                              buffer))
    assert status(t) == f.DMA_CTL_ERROR  # the guest is told
    assert t.roots["fw_cfg"].dma_errors == 1
    assert sum(t.memory.rejected.values()) >= 1 and t.memory.findings == []
    assert runner.t.memory.accesses >= 2  # the descriptor read and the status were in RAM


def test_a_descriptor_outside_ram_is_refused_and_counted(fw_cfg_target: Target) -> None:
    t = fw_cfg_target
    top = t.memory.ram_top
    run(t, o.port_out(4, 0x514, 0), o.port_out(4, 0x518, templates._be32(top - 8)),
        o.port_out(4, 0x514, templates._be32(1)), o.port_out(4, 0x518, 0))
    # The first straddles the end of RAM: the error lands in its control word, which is
    # RAM; the second (4 GiB) is nowhere, so nothing is written.
    assert struct.unpack(">I", t.memory.read(top - 8, 4))[0] == f.DMA_CTL_ERROR
    assert t.roots["fw_cfg"].dma_errors == 2
    assert t.memory.rejected["read"] == 2 and t.memory.findings == []


def test_dma_writes_stay_inside_the_writable_file(fw_cfg_target: Target) -> None:
    t = fw_cfg_target
    key, size = templates.FW_CFG_WRITABLE_KEY, templates.FW_CFG_WRITABLE_SIZE
    run(t, o.fill(BUF, b"\xaa" * (size + 1)),
        *transfer(f.DMA_CTL_SELECT | f.DMA_CTL_WRITE | key << 16, size + 1, BUF))
    assert status(t) == f.DMA_CTL_ERROR  # one byte too many: refused whole
    run(t, *transfer(f.DMA_CTL_SELECT | f.DMA_CTL_WRITE | key << 16, size, BUF))
    assert status(t) == 0
    assert t.roots["fw_cfg"].item(key) == b"\xaa" * size
    run(t, *transfer(f.DMA_CTL_SELECT | f.DMA_CTL_WRITE | f.FW_CFG_ID << 16, 4, BUF))
    assert status(t) == f.DMA_CTL_ERROR  # read-only


def test_fw_cfg_templates_reach_the_dma_paths() -> None:
    """The SeaBIOS-like templates, on their own, walk the directory, read, skip, write and
    hit the error paths (so a campaign does not wait for random ops to build a descriptor)."""
    target = CONFIGS["fw_cfg"]()
    try:
        profile = target.profile
        rng = random.Random(5)
        program: list[Op] = []
        for template in (templates.fw_cfg_probe, templates.fw_cfg_directory,
                         templates.fw_cfg_dma, templates.fw_cfg_write,
                         templates.fw_cfg_split_address, templates.fw_cfg_read) * 20:
            program += template(rng, profile)
        runner = run(target, *program)
        assert target.roots["fw_cfg"].dma_errors > 0
        assert runner.t.memory.accesses > 100
        text = o.format_program(program, "fw_cfg")  # every op survives a reproducer file
        assert o.parse_program(text) == ("fw_cfg", program)
    finally:
        target.close()


@pytest.mark.parametrize("config", ["fw_cfg", "pc", "pc-bios"])
def test_a_short_campaign_is_clean_and_deterministic(config: str) -> None:
    first = Campaign(config, seed=11, engine="random", minimize_findings=False).run(1500)
    assert first.ops >= 1500 and not first.findings, \
        {s: f.violation.message for s, f in first.findings.items()}
    second = Campaign(config, seed=11, engine="random", minimize_findings=False).run(1500)
    assert (second.ops, second.programs, second.rejected_dma) == \
        (first.ops, first.programs, first.rejected_dma)


# -- the PC -----------------------------------------------------------------------------------


def names(target: Target, bus: str, *where: int) -> list[str | None]:
    mappings = [getattr(target, bus).find(address) for address in where]
    return [m.name if m is not None else None for m in mappings]


def test_pc_maps_the_vga_ranges_and_port92_as_a_direct_boot_does() -> None:
    target = CONFIGS["pc"]()
    try:
        assert names(target, "mmio", 0xA0000, 0xBFFFF, templates.VGA_LFB_BASE,
                     templates.VGA_MMIO_BASE) == ["vga-window", "vga-window", "vga-lfb",
                                                  "vga-mmio"]
        assert names(target, "pio", 0x3C0, 0x3DF, 0x1CE, 0x1CF, 0x92) == \
            ["vga", "vga", "vbe", "vbe", "port92"]
        # No firmware in a direct boot: no fw_cfg, no debug console (Firmware.attach).
        assert names(target, "pio", 0x510, 0x514, 0x402) == [None, None, None]
        assert target.pio.read(0x3CC, 1) == MISC  # mode 03h, as VgaDisplay leaves it
        assert (0x92, 1) in target.profile.ports
    finally:
        target.close()


def test_pc_bios_adds_what_firmware_attach_adds() -> None:
    target = CONFIGS["pc-bios"]()
    try:
        assert names(target, "pio", 0x510, 0x514, 0x402, 0x1F0) == \
            ["fw_cfg", "fw_cfg-dma", "debugcon", "ide0-command"]
        assert names(target, "mmio", 0xC0000, 0xFFFFF, FUZZ_ROM.base, 0xFFFFFFFF) == \
            ["pam-shadow", "pam-shadow", "bios-rom", "bios-rom"]
        assert target.pio.read(0x402, 1) == 0xE9
        assert target.mmio.read(0xFFFF0, 1) == FUZZ_ROM.data[-0x10]  # PAM off: the ROM
    finally:
        target.close()


def vga_state(target: Target) -> tuple[object, ...]:
    vga = target.roots["vga"]
    regs = vga.regs
    return (regs.misc, bytes(regs.sr), bytes(regs.gr), bytes(regs.cr), bytes(regs.ar),
            bytes(regs.dac), regs.pel_mask, tuple(vga.vbe.regs), vga.vbe.bank_offset)


def mapped(target: Target) -> list[tuple[int, int, str]]:
    return sorted((m.base, m.size, m.name) for bus in (target.pio, target.mmio)
                  for m in bus.mappings)


def scramble_vga() -> list[Op]:
    """A VBE mode on, the LFB moved, attribute and DAC registers changed."""
    return [o.port_out(2, vbe.INDEX_PORT, 4), o.port_out(2, vbe.INDEX_PORT + 1, 0x41),
            o.port_out(4, 0xCF8, 0x80001010), o.port_out(4, 0xCFC, 0xE0000000),
            o.port_out(1, 0x3C8, 7), o.port_out(1, 0x3C9, 0x3F), o.port_in(1, 0x3DA),
            o.port_out(1, 0x3C0, 0x12), o.port_out(1, 0x3C0, 0x05)]


def test_a_pc_reset_puts_the_vga_and_port92_back_as_at_boot() -> None:
    fresh, target = CONFIGS["pc"](), CONFIGS["pc"]()
    try:
        run(target, *scramble_vga(), o.port_out(1, 0x92, 0x02))
        assert vga_state(target) != vga_state(fresh) and target.pio.read(0x92, 1) == 0x02
        assert target.mmio.find(0xE0000000).name == "vga-lfb"
        run(target, o.port_out(1, 0x92, 0x03))  # fast reset (bit 0 rising)
        assert target.pio.read(0x92, 1) == 0x00
        assert vga_state(target) == vga_state(fresh)
        assert mapped(target) == mapped(fresh)  # BARs back where firmware puts them
    finally:
        fresh.close()
        target.close()


def test_a_pc_bios_reset_puts_fw_cfg_and_the_vga_in_reset_state() -> None:
    target = CONFIGS["pc-bios"]()
    try:
        dev = target.roots["fw_cfg"]
        run(target, *scramble_vga(), o.port_out(2, 0x510, f.FW_CFG_FILE_DIR),
            o.port_in(1, 0x511), o.port_out(4, 0x514, templates._be32(0x12)))
        assert dev.state() != f.FwCfgState()
        # PAM0's high nibble: 0xF0000-0xFFFFF reads and writes shadow RAM.
        run(target, *pci_access(0, 0, 0x59, 1, 0x30), o.mmio_write(1, 0xFFFF0, 0x5A))
        assert target.mmio.read(0xFFFF0, 1) == 0x5A
        run(target, o.port_out(1, 0x64, 0xFE))  # the i8042's reset pulse
        assert dev.state() == f.FwCfgState()  # signature selected, offset 0, no address
        vga = target.roots["vga"]
        assert tuple(vga.vbe.regs) == (vbe.ID5,) + (0,) * (vbe.REGISTER_COUNT - 1)
        assert vga.regs.misc == 0 and bytes(vga.regs.sr) == bytes(len(vga.regs.sr))
        # Under firmware nothing is assigned at reset: SeaBIOS does it.
        assert names(target, "mmio", 0xE0000000, templates.VGA_LFB_BASE,
                     templates.VGA_MMIO_BASE) == [None, None, None]
        assert names(target, "pio", 0x1F0, 0xC000) == [None, None]
        assert target.mmio.read(0xFFFF0, 1) == FUZZ_ROM.data[-0x10]  # PAM reset too
    finally:
        target.close()


def test_new_configurations_are_in_the_ci_campaign() -> None:
    """tests/unit/test_fuzz_ci.py runs a fixed-seed campaign on every entry of CONFIGS."""
    for name in ("fw_cfg", "pc", "pc-bios"):
        assert name in CONFIGS and profile_of(name).templates
