"""The RTL8139 bugs other VMMs shipped, replayed against pyhvm's model: one test per bug
class. Each plays the guest's (or the wire's) part of the published reproducer register by
register, with a memory that records and judges every DMA, and checks the rule that keeps
pyhvm out of it. docs/security/device-bugs.md ("RTL8139") says what each bug was, where,
and which rule answers it."""

from __future__ import annotations

import struct
import zlib
from typing import Any, Callable

import pytest

from pyhvm.devices.rtl8139 import (
    CAPR,
    CBR,
    CR,
    CR_RE,
    CR_TE,
    IMR,
    INT_MASK,
    INT_RXOVW,
    INT_SERR,
    INT_TER,
    INT_TOK,
    ISR,
    MAX_FRAME,
    RBSTART,
    RCR,
    RCR_AB,
    RCR_APM,
    RCR_WRAP,
    RX_ROK,
    RX_PAM,
    TCR,
    TCR_LOOPBACK,
    TSAD0,
    TSD0,
    TSD_OWN,
    TSD_TOK,
    TSD_TUN,
    Rtl8139,
)
from pyhvm.machine.nic import NIC_MMIO_BASE
from pyhvm.memory import GuestMemory
from tests.fakes import FakeClock, FakeIrq
from tests.unit.test_rtl8139 import (
    FCS_RESIDUE,
    MAC,
    OTHER,
    RAM,
    RING,
    RING_8K,
    TXBUF,
    TrackingMemory,
    frame,
    span,
)
from tests.unit.test_rtl8139_nic import BACKEND_FD, NicRig

# 8139C+ registers and descriptor bits (RTL8139C+ data sheet), which pyhvm's 8139C lacks.
CPCMD = 0xE0          # C+ command: bit 0 TX enable, bit 1 RX enable
CP_TX_ENB, CP_RX_ENB = 1 << 0, 1 << 1
TXPOLL = 0xD9         # bit 6: poll the normal-priority TX descriptor ring
TXPOLL_NPQ = 1 << 6
TNPDS = 0x20          # C+ TX descriptor ring address (8 bytes; TSAD0-1 in C mode)
RDSAR = 0xE4          # C+ RX descriptor ring address
CPTX_OWN, CPTX_EOR, CPTX_FS, CPTX_LS = 1 << 31, 1 << 30, 1 << 29, 1 << 28
CPTX_LGSEN, CPTX_IPCS, CPTX_UDPCS, CPTX_TCPCS = 1 << 27, 1 << 18, 1 << 17, 1 << 16
WRAP_SLACK = MAX_FRAME + 8  # the most a WRAP=1 packet runs past the ring: 1522, rounded


def chip(memory: Any, *, transmit: Callable[[bytes], None] | None = None,
         irq: Any = None, kick: Callable[[], None] | None = None,
         aborts: list[int] | None = None) -> tuple[Rtl8139, list[bytes]]:
    """An RTL8139 on `memory`; frames it sends land in the returned list unless `transmit`
    is given. The driver's open has run (receiver and transmitter on, APM|AB, all IRQs)."""
    sent: list[bytes] = []
    nic = Rtl8139(memory, irq or FakeIrq(), transmit or sent.append, FakeClock(1_000_000),
                  mac=MAC, on_tx_pending=kick,
                  on_master_abort=(lambda: aborts.append(1)) if aborts is not None else None)
    nic.write(RBSTART, 4, RING)
    nic.write(CR, 1, CR_RE | CR_TE)
    nic.write(RCR, 4, RCR_APM | RCR_AB)
    nic.write(IMR, 2, INT_MASK)
    return nic, sent


def ring_judge(nic: Rtl8139, tx: set[tuple[int, int]], flagged: list[Any]):
    """Flags any DMA but a TX read of a posted (address, size) or an RX write inside the
    programmed ring plus the WRAP slack."""

    def judge(kind: str, gpa: int, size: int) -> None:
        if kind == "read":
            ok = (gpa, size) in tx
        else:
            base = nic.read(RBSTART, 4)
            ring = RING_8K << (nic.read(RCR, 4) >> 11 & 3)
            ok = kind == "view" and base <= gpa and gpa + size <= base + ring + WRAP_SLACK
        if not ok:
            flagged.append((kind, hex(gpa), size))

    return judge


def ipv4_tcp_frame_with_lying_lengths(size: int = 60) -> bytes:
    """An Ethernet/IPv4/TCP frame whose headers claim more than it holds: IHL 15 (60-byte
    IP header), total length 65535, TCP data offset 15; what CVE-2015-5165's offload
    code trusted."""
    ip = bytes([0x4F, 0]) + (0xFFFF).to_bytes(2, "big") + bytes(5) + bytes([6]) + bytes(10)
    tcp = bytes(12) + bytes([0xF0, 0x18]) + bytes(6)
    body = OTHER + MAC + b"\x08\x00" + ip + tcp
    return (body + bytes(size))[:size]


# -- 1. C+ offload parsing (CVE-2015-5165 / XSA-140; QEMU issue 3518) -------------------

def test_cve_2015_5165_no_cplus_mode_and_frames_leave_byte_for_byte() -> None:
    """The C+ checksum and segmentation offloads trusted the IP/TCP header lengths of the
    guest's frame and read past it, sending host heap bytes out. pyhvm is an 8139C: the
    C+ registers read 0 and do nothing, and a classic TX sends exactly TSD.SIZE bytes from
    TSAD, unparsed."""
    memory = TrackingMemory()
    nic, sent = chip(memory)
    desc_ring, buf = 0x2000, 0x3000
    lying = ipv4_tcp_frame_with_lying_lengths()
    memory.data[buf:buf + len(lying)] = lying
    for i in range(64):  # a full C+ ring of owned descriptors asking for every offload
        flags = CPTX_OWN | CPTX_FS | CPTX_LS | CPTX_LGSEN | CPTX_IPCS | CPTX_TCPCS
        memory.data[desc_ring + 16 * i:desc_ring + 16 * i + 16] = struct.pack(
            "<IIII", flags | (CPTX_EOR if i == 63 else 0) | len(lying), 0, buf, 0)
    memory.accesses.clear()
    nic.write(CPCMD, 2, CP_TX_ENB | CP_RX_ENB)
    nic.write(RDSAR, 4, desc_ring)
    nic.write(TNPDS, 4, desc_ring)
    nic.write(TNPDS + 4, 4, 0)
    nic.write(TXPOLL, 1, TXPOLL_NPQ)
    assert nic.read(CPCMD, 2) == 0 and nic.read(TXPOLL, 1) == 0 and nic.read(RDSAR, 4) == 0
    assert memory.accesses == [] and sent == [] and nic.read(ISR, 2) == 0

    nic.write(TSAD0, 4, buf)
    nic.write(TSD0, 4, len(lying))
    assert memory.accesses == [("read", buf, len(lying))]
    assert sent == [lying]
    assert nic.read(TSD0, 4) & (TSD_OWN | TSD_TOK) == TSD_OWN | TSD_TOK


def test_qemu_3518_loopback_of_a_short_vlan_tagged_frame_reads_only_its_bytes() -> None:
    """QEMU issue 3518: a VLAN-tagged C+ frame sent in loopback made the receive path read
    up to 48 bytes past its heap buffer (tag removal shortened the frame below the minimum,
    and the padding step read the missing bytes from beyond it). Here: an 18-byte 802.1Q
    frame in loopback is read once, 18 bytes, and stored padded with zeros to 60."""
    memory = TrackingMemory()
    nic, sent = chip(memory)
    nic.write(TCR, 4, TCR_LOOPBACK)
    tagged = MAC + OTHER + b"\x81\x00\x00\x05\x88\xb5"
    memory.data[TXBUF:TXBUF + len(tagged)] = tagged
    flagged: list[Any] = []
    memory.judge = ring_judge(nic, {(TXBUF, len(tagged))}, flagged)
    nic.write(TSAD0, 4, TXBUF)
    nic.write(TSD0, 4, len(tagged))
    assert flagged == [] and sent == []
    status, length = struct.unpack_from("<HH", memory.data, RING)
    assert status == RX_ROK | RX_PAM and length == 64
    stored = bytes(memory.data[RING + 4:RING + 4 + length])
    assert stored[:60] == tagged + bytes(60 - len(tagged))
    assert zlib.crc32(stored) == FCS_RESIDUE


# -- 2. Unbounded descriptor processing (CVE-2016-8910) ---------------------------------

def test_cve_2016_8910_one_kick_handles_at_most_four_descriptors() -> None:
    """QEMU's C+ transmit walked the descriptor ring while descriptors were owned by the
    chip, with no bound: a guest that kept them owned spun the host forever. Here a guest
    (another vCPU) re-posts every descriptor the moment it completes; each process_tx
    still returns after four frames, and the rest waits for the next kick."""
    memory = TrackingMemory()
    kicks: list[int] = []
    nic: Rtl8139 | None = None
    sent: list[bytes] = []

    def repost_everything(data: bytes) -> None:
        sent.append(data)
        assert nic is not None
        for i in range(4):
            if nic.read(TSD0 + 4 * i, 4) & TSD_OWN:
                nic.write(TSD0 + 4 * i, 4, 60)

    nic, _ = chip(memory, transmit=repost_everything, kick=lambda: kicks.append(1))
    for i in range(4):
        nic.write(TSAD0 + 4 * i, 4, TXBUF)
        nic.write(TSD0 + 4 * i, 4, 60)
    for round_ in range(1, 4):
        assert nic.process_tx() == 4
        assert len(sent) == 4 * round_ and nic.tx_pending
    assert all(gpa == TXBUF and size == 60 for _, gpa, size in memory.accesses)


# -- 3. Lengths from outside trusted (CVE-2018-17958) -----------------------------------

@pytest.mark.parametrize("length", [0, 1, 13, 14, 59, 60, 1514, MAX_FRAME, MAX_FRAME + 1,
                                    0x7FFF, 0xFFFF, 0x10000 + 60, 0x20000])
def test_cve_2018_17958_frame_length_from_the_backend_is_checked_before_use(length: int) -> None:
    """QEMU's receive kept the backend's size_t length in an int: a huge frame turned
    negative, passed the 'short frame: pad it' test and copied out of bounds. Here a
    length is an unbounded integer checked against 14..1518 before anything moves; the
    16-bit header length always holds the real one (0x10000 + 60 must not alias to 64)."""
    memory = TrackingMemory()
    nic, _ = chip(memory)
    flagged: list[Any] = []
    memory.judge = ring_judge(nic, set(), flagged)
    data = (MAC + OTHER + b"\x88\xb5" + bytes(range(256)) * 520)[:length]
    before = bytes(memory.data)
    stored = nic.receive(data)
    assert stored == (14 <= length <= MAX_FRAME) and flagged == []
    if not stored:
        assert bytes(memory.data) == before and nic.read(CBR, 2) == 0
        assert sum(nic.rx_dropped.values()) == 1
        return
    status, header_length = struct.unpack_from("<HH", memory.data, RING)
    assert header_length == max(length, 60) + 4
    assert nic.read(CBR, 2) == span(length)
    assert bytes(memory.data[RING + 4:RING + 4 + length]) == data


@pytest.mark.parametrize("size", [0, 1793, 0x1000, 0x1FFF])
def test_cve_2018_17958_tx_size_field_is_checked_before_any_read(size: int) -> None:
    """The other direction: TSD.SIZE is 13 bits (up to 8191), the chip's limit is 1792."""
    memory = TrackingMemory()
    nic, sent = chip(memory)
    nic.write(TSAD0, 4, TXBUF)
    nic.write(TSD0, 4, size)
    assert memory.accesses == [] and sent == []
    assert nic.read(TSD0, 4) & (TSD_OWN | TSD_TUN | TSD_TOK) == TSD_OWN | TSD_TUN
    assert nic.read(ISR, 2) == INT_TER


# -- 4. DMA and loopback re-entrancy (CVE-2021-3416; QEMU issue 4854) --------------------

def test_cve_2021_3416_dma_aimed_at_device_registers_reaches_nothing() -> None:
    """QEMU's loopback delivered a frame straight to the receiver, whose DMA could land on
    the NIC's own MMIO registers (or, in QEMU issue 4854, on the hotplug register that
    unplugs it), re-entering the device until the stack overflowed. pyhvm's DMA port is
    guest RAM only (GuestMemory): TSAD or RBSTART aimed at the register BAR is a master
    abort, nothing is read or written, and the registers stay as the guest left them."""
    ram = GuestMemory.with_size(RAM)
    aborts: list[int] = []
    nic, sent = chip(ram, aborts=aborts)
    nic.write(TCR, 4, TCR_LOOPBACK)
    nic.write(RBSTART, 4, NIC_MMIO_BASE + CR)  # the receiver would write over CR
    ram.write(TXBUF, frame(MAC, 64))
    nic.write(TSAD0, 4, TXBUF)
    nic.write(TSAD0 + 4, 4, NIC_MMIO_BASE + TSD0)  # the transmitter would read TSD0 itself
    before = nic.state().registers
    nic.write(TSD0, 4, 64)
    nic.write(TSD0 + 4, 4, 64)
    after = nic.state().registers
    changed = {i for i in range(256) if before[i] != after[i]}
    assert changed <= {*range(TSD0, TSD0 + 8), ISR, ISR + 1}
    assert nic.read(CR, 1) & (CR_RE | CR_TE) == CR_RE | CR_TE and nic.read(CBR, 2) == 0
    assert sent == [] and nic.rx_dropped["dma-error"] == 1 and len(aborts) == 2
    assert nic.read(ISR, 2) & (INT_SERR | INT_TER | INT_TOK) == INT_SERR | INT_TER | INT_TOK
    ram.close()


def test_cve_2021_3416_ports_calling_back_into_the_chip_do_not_recurse() -> None:
    """The same class from the other side: a port (transmit, the interrupt line) that calls
    back into the chip while it moves a frame. A nested process_tx does nothing (the
    running one goes on, four frames at most); a nested receive is refused and counted.
    Before the guard this recursed until Python's stack limit."""
    memory = TrackingMemory()
    depth = [0, 0]
    nic: Rtl8139 | None = None

    def transmit(data: bytes) -> None:  # re-posts and kicks from inside the send
        assert nic is not None
        depth[0] += 1
        depth[1] = max(depth)
        nic.write(TSAD0 + 4 * (len(sent_log) % 4), 4, TXBUF)
        nic.write(TSD0 + 4 * (len(sent_log) % 4), 4, 60)
        sent_log.append(data)
        nic.process_tx()
        depth[0] -= 1

    class LoopingIrq(FakeIrq):
        def set_level(self, level: bool) -> None:
            super().set_level(level)
            if level and nic is not None:
                nic.receive(frame(MAC, 64))

    sent_log: list[bytes] = []
    nic, _ = chip(memory, transmit=transmit, irq=LoopingIrq())
    nic.write(TSAD0, 4, TXBUF)
    nic.write(TSD0, 4, 60)
    assert depth[1] == 1 and 1 <= len(sent_log) <= 4
    assert nic.receive(frame(MAC, 64)) is True  # the interrupt it raises calls back in
    assert nic.rx_dropped["reentrant"] == 0  # ROK was already pending: no edge, no call
    nic.write(ISR, 2, 0xFFFF)
    assert nic.receive(frame(MAC, 64)) is True
    assert nic.rx_dropped["reentrant"] == 1 and nic.rx_frames == 3


# -- 5. Ring bounds programmed by the guest (ne2000 CVE-2016-2841, its sibling) ----------

@pytest.mark.parametrize("setup", ["ring-past-4g", "ring-past-ram", "capr-garbage",
                                   "ring-shrinks", "wrap-at-the-end"])
def test_ring_registers_the_guest_programs_never_steer_dma_outside_the_ring(setup: str) -> None:
    """QEMU's NE2000 (a ring-buffer NIC like this one) looped forever on crafted PSTART/
    PSTOP ring bounds (CVE-2016-2841); e1000 (CVE-2016-1981) and PCnet (CVE-2016-7909)
    on ring heads outside or lengths of zero. The RTL8139's ring is RBSTART, RCR.RBLEN and
    CAPR: here each is set to something hostile, then 40 frames arrive. Every store stays
    inside RBSTART + ring + WRAP slack (or is a master abort), CBR stays aligned inside
    the ring, and every receive returns."""
    memory = TrackingMemory(0x40000)
    aborts: list[int] = []
    nic, _ = chip(memory, aborts=aborts)
    flagged: list[Any] = []
    memory.judge = ring_judge(nic, set(), flagged)
    if setup == "ring-past-4g":
        nic.write(RBSTART, 4, 0xFFFFFFF0)
    elif setup == "ring-past-ram":
        nic.write(RBSTART, 4, 0x40000 - 100)
    elif setup == "capr-garbage":
        nic.write(CAPR, 2, 0x2003)  # unaligned, beyond the 8K ring
    elif setup == "ring-shrinks":
        nic.write(RCR, 4, RCR_APM | 3 << 11)  # 64K
        for _ in range(40):
            nic.receive(frame(MAC, 1514))
            nic.write(CAPR, 2, (nic.read(CBR, 2) - 16) & 0xFFFF)
        nic.write(RCR, 4, RCR_APM)  # 8K, with CBR far past its end
    else:
        nic.write(RCR, 4, RCR_APM | RCR_WRAP)  # packets run past the end: the slack
    results = []
    for i in range(40):
        results.append(nic.receive(frame(MAC, 60 + 37 * i % 1458)))
        cbr = nic.read(CBR, 2)
        assert cbr % 4 == 0 and cbr < RING_8K << (nic.read(RCR, 4) >> 11 & 3)
        if i % 3 == 0:
            nic.write(CAPR, 2, (cbr - 16) & 0xFFFF)
    assert flagged == []
    if setup == "ring-past-4g":
        assert not any(results) and aborts and memory.accesses == []
    elif setup == "ring-past-ram":  # what fits in the last 100 bytes of RAM is stored
        assert results[0] and not all(results) and aborts and nic.read(ISR, 2) & INT_SERR
    else:
        assert any(results) and (all(results) or nic.read(ISR, 2) & INT_RXOVW)


# -- 6. A full ring consumed the frame (QEMU commit f6737604, 2015) ----------------------

def test_full_ring_keeps_frames_in_the_backend_not_dropped(monkeypatch) -> None:
    """QEMU's rtl8139 answered a frame that met a full ring in normal mode as 'taken', so
    its net layer threw it away (lost fragments of large messages) until the commit 'Do
    not consume the packet during overflow in standard mode'. pyhvm's machine asks the
    chip before it reads the backend: while the ring is full the frames wait there."""
    rig = NicRig(monkeypatch)
    rig.open()
    frames = [frame(MAC, 1514, fill=i) for i in range(12)]
    rig.backend.inbox.extend(frames)
    rig.loop.readable()
    stored = rig.nic.model.rx_frames
    assert 0 < stored < len(frames) and BACKEND_FD not in rig.loop.readers
    assert len(rig.backend.inbox) == len(frames) - stored
    assert rig.nic.model.rx_dropped["overflow"] == 0 and rig.r(ISR, 2) & INT_RXOVW == 0
    rig.consume_all()
    rig.loop.advance(1_000_000)  # the machine looks again (RING_FULL_RETRY_NS)
    assert rig.nic.model.rx_frames == 2 * stored
    assert len(rig.backend.inbox) == len(frames) - 2 * stored
