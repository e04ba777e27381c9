"""Device models in a real device process, driven through the proxies the VMM maps on its
buses (pyhvm/devproc/): the same registers, interrupts, console and DMA as the local
models, the sandbox the process lives in, and what the VMM sees when it dies. No KVM:
the VMM's side is the proxies, an event loop and fake interrupt lines."""

from __future__ import annotations

import os
import signal
import struct
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pyhvm.backends.disk import RawImage
from pyhvm.bus import pio_bus
from pyhvm.devices.uart16550 import Uart16550
from pyhvm.devproc.host import DeviceHost
from pyhvm.devproc.launcher import DevprocStartError
from pyhvm.devproc.options import parse_device_process
from pyhvm.devproc.proxy import ProxyDevice
from pyhvm.machine.config import DriveConfig
from pyhvm.memory import GuestMemory
from pyhvm.memory_backing import BackingSpec
from pyhvm.runtime.eventloop import EventLoop
from tests.fakes import FakeIrq

WAIT_S = 10.0  # generous: the process shares two busy cores with other work


def wait_for(condition: Callable[[], bool], what: str) -> None:
    """Poll until `condition()`; the bound is only there so a broken build cannot hang."""
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.002)


class FakeConsole:
    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, data: bytes) -> None:
        self.data += data


class Host:
    """A DeviceHost with its event loop running in a thread, as the machine's would."""

    def __init__(self, spec: str, failure: str = "fail-device", irqchip: str = "user") -> None:
        self.lock = threading.Lock()
        self.loop = EventLoop(self.lock)
        self.stopped: list[str] = []
        self.host = DeviceHost(parse_device_process(spec, failure), irqchip_mode=irqchip,
                               lost_tick_policy="delay", ide_dma="sync", vm=None,
                               loop=self.loop, lock=self.lock, stop_vm=self.stopped.append,
                               exit_status=6)
        self.console = FakeConsole()
        self.irq4 = FakeIrq()
        self._running = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.host.start()
        self._running = True
        self._thread = threading.Thread(target=self.loop.run,
                                        args=(lambda: not self._running,), daemon=True)
        self._thread.start()

    @property
    def pid(self) -> int:
        assert self.host.process is not None
        return self.host.process.pid

    def close(self) -> None:
        self._running = False
        self.loop.wake()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.host.close()
        self.loop.close()


@pytest.fixture
def uart_host() -> Iterator[tuple[Host, Any]]:
    made = Host("uart")
    uart = made.host.uart(made.console, made.irq4)  # type: ignore[arg-type]
    made.start()
    yield made, uart
    made.close()


# --- the UART -------------------------------------------------------------------------------
def test_uart_registers_read_back_as_the_local_model_does(uart_host: tuple[Host, Any]) -> None:
    _, remote = uart_host
    local = Uart16550(FakeIrq(), lambda data: None)
    script = [("w", 3, 0x83), ("w", 0, 0x01), ("w", 1, 0x00), ("r", 0), ("r", 1),
              ("w", 3, 0x03), ("w", 2, 0xC7), ("w", 4, 0x0B), ("w", 7, 0x5A), ("w", 1, 0x05),
              ("r", 1), ("r", 2), ("r", 3), ("r", 4), ("r", 5), ("r", 6), ("r", 7), ("r", 2)]
    seen = {"local": [], "remote": []}  # type: dict[str, list[int]]
    for name, device in (("local", local), ("remote", remote)):
        for step in script:
            if step[0] == "w":
                device.write(step[1], 1, step[2])
            else:
                seen[name].append(device.read(step[1], 1))
    assert seen["remote"] == seen["local"]
    assert remote.read(5, 2) == local.read(5, 2)  # wide accesses take the byte lanes too


def test_uart_output_reaches_the_vmms_console(uart_host: tuple[Host, Any]) -> None:
    made, uart = uart_host
    for byte in b"hello, world\n":
        uart.write(0, 1, byte)
    wait_for(lambda: bytes(made.console.data) == b"hello, world\n", "console output")


def test_uart_interrupt_comes_back_as_line_changes(uart_host: tuple[Host, Any]) -> None:
    made, uart = uart_host
    uart.write(4, 1, 0x08)      # MCR.OUT2: the PC's gate to the PIC
    uart.write(1, 1, 0x02)      # IER.ETBEI with THR empty: interrupts at once
    wait_for(lambda: made.irq4.level, "IRQ 4 to rise")
    assert uart.read(2, 1) & 0x0F == 0x02  # IIR: THR empty; reading it clears the source
    wait_for(lambda: not made.irq4.level, "IRQ 4 to fall")
    assert made.irq4.changes == [True, False]


def test_console_input_reaches_the_guest_through_the_fifo(uart_host: tuple[Host, Any]) -> None:
    _, uart = uart_host
    assert uart.receive(b"o") == 1        # without FIFOs the UART holds one byte at a time
    wait_for(lambda: uart.read(5, 1) & 0x01, "data ready")
    assert uart.read(0, 1) == ord("o")
    uart.write(2, 1, 0x07)                # FCR: FIFOs on
    assert uart.receive(b"k!") == 2
    wait_for(lambda: uart.read(5, 1) & 0x01, "data ready")
    assert [uart.read(0, 1), uart.read(0, 1)] == [ord("k"), ord("!")]
    assert uart.read(5, 1) & 0x01 == 0


def test_a_machine_reset_reaches_the_device(uart_host: tuple[Host, Any]) -> None:
    _, uart = uart_host
    uart.write(1, 1, 0x0F)
    assert uart.read(1, 1) == 0x0F
    uart.reset()
    assert uart.read(1, 1) == 0x00  # master reset clears IER (PC16550D Table IV)


def test_the_device_process_refuses_requests_it_cannot_serve(uart_host: tuple[Host, Any]) -> None:
    """Every slot is checked before a device sees it: a range this process does not serve,
    an IRQ for a PIC it does not have, or a control command for a group it lacks is
    answered "refused" (a read then floats high) and the process carries on."""
    made, uart = uart_host
    channel = made.host.channel
    assert ProxyDevice(channel, "pit").read(0, 1) == 0xFF
    ProxyDevice(channel, "ide-bus-master").write(0, 1, 0x01)
    channel.set_irq(5, True)
    assert channel.inta() is None
    assert uart.read(7, 1) == 0x00            # still serving what it has
    stats = made.host.stats()
    assert stats["process"]["refused"] == 4
    assert stats["channel"]["failed"] is False


# --- the PIC and PIT ------------------------------------------------------------------------
@pytest.fixture
def pic_host() -> Iterator[tuple[Host, Any, Any]]:
    made = Host("pic")
    bus = pio_bus()
    chip = made.host.irqchip(bus)
    made.start()
    yield made, bus, chip
    made.close()


def init_pics(bus: Any, master_mask: int, slave_mask: int = 0xFF) -> None:
    """Linux's init_8259A: ICW1 0x11, ICW2 0x20/0x28, ICW3 4/2, ICW4 1, then the masks."""
    for base, vector, icw3, mask in ((0x20, 0x20, 0x04, master_mask),
                                     (0xA0, 0x28, 0x02, slave_mask)):
        bus.write(base, 1, 0x11)
        bus.write(base + 1, 1, vector)
        bus.write(base + 1, 1, icw3)
        bus.write(base + 1, 1, 0x01)
        bus.write(base + 1, 1, mask)


def test_a_vmm_devices_line_reaches_the_pic_and_intr_comes_back(
        pic_host: tuple[Host, Any, Any]) -> None:
    _, bus, chip = pic_host
    init_pics(bus, master_mask=0xFB, slave_mask=0xFE)   # IRQ 2 (cascade) and 8 open
    assert bus.read(0x21, 1) == 0xFB and bus.read(0xA1, 1) == 0xFE
    chip.line(8).set_level(True)                         # the RTC, say, in the VMM
    wait_for(lambda: chip.pin.level, "INTR")
    assert chip.pic.acknowledge() == 0x28                # the INTA cycle, synchronous
    bus.write(0xA0, 1, 0x20)                             # EOI to the slave
    bus.write(0x20, 1, 0x20)                             # and to the master
    bus.write(0xA0, 1, 0x0B)                             # OCW3: read ISR
    assert bus.read(0xA0, 1) == 0
    wait_for(lambda: not chip.pin.level, "INTR to fall")
    assert chip.pic.acknowledge() is None                # nothing pending: no vector


def test_the_pit_ticks_on_the_device_process_clock(pic_host: tuple[Host, Any, Any]) -> None:
    _, bus, chip = pic_host
    init_pics(bus, master_mask=0xFE)                     # IRQ 0 only
    bus.write(0x43, 1, 0x34)                             # channel 0, lo/hi, mode 2
    bus.write(0x40, 1, 1193 & 0xFF)                      # ~1 kHz
    bus.write(0x40, 1, 1193 >> 8)
    wait_for(lambda: chip.pin.level, "the first tick")
    assert chip.pic.acknowledge() == 0x20
    bus.write(0x20, 1, 0x20)
    stats = chip.stats()
    assert stats["pit_ticks"]["delivered"] >= 1 and stats["pic_acknowledged"][0] >= 1


# --- IDE with guest RAM shared --------------------------------------------------------------
COMMAND, STATUS, DEVICE, COUNT = 7, 7, 6, 2
BM_PRD, BM_COMMAND, BM_STATUS = 4, 0, 2


def test_ide_dma_writes_into_guest_ram_the_vmm_shares(tmp_path: Path) -> None:
    image_path = tmp_path / "disk.img"
    pattern = bytes(range(256)) * 2 * 8               # 8 sectors
    image_path.write_bytes(pattern + bytes(1 << 20))
    memory = GuestMemory.with_size(2 << 20, BackingSpec(kind="memfd", thp=False))
    image = RawImage(str(image_path))
    made = Host("ide")
    irqs = [FakeIrq(), FakeIrq()]
    try:
        ide = made.host.ide(memory, [DriveConfig(str(image_path), 0)], [image.fd], irqs,
                            lambda: True)
        made.start()
        ide.bus_master_changed()                       # PCI bus mastering on
        command, _, _, _ = (device for _, _, device, _ in ide.legacy_ports())
        table, buffer = 0x1000, 0x10000
        memory.write(table, struct.pack("<II", buffer, 8 * 512 | 0x8000_0000))
        ide.bmide_port.write(BM_PRD, 4, table)
        ide.bmide_port.write(BM_COMMAND, 1, 0x08)     # to memory
        command.write(DEVICE, 1, 0xE0)
        command.write(COUNT, 1, 8)
        for reg in (3, 4, 5):
            command.write(reg, 1, 0)
        command.write(COMMAND, 1, 0xC8)               # READ DMA
        ide.bmide_port.write(BM_COMMAND, 1, 0x09)     # start
        wait_for(lambda: ide.bmide_port.read(BM_STATUS, 1) & 0x04, "the DMA interrupt bit")
        assert ide.bmide_port.read(BM_STATUS, 1) & 0x03 == 0  # not active, no error
        assert memory.read(buffer, len(pattern)) == pattern
        assert command.read(STATUS, 1) == 0x50        # DRDY DSC: done
        wait_for(lambda: irqs[0].rising_edges >= 1, "IRQ 14")
    finally:
        made.close()
        image.close()
        memory.close()


def test_a_setup_the_device_process_cannot_use_is_reported_in_one_line(tmp_path: Path) -> None:
    memory = GuestMemory.with_size(2 << 20, BackingSpec(kind="memfd", thp=False))
    made = Host("ide")
    try:
        made.host.ide(memory, [], [], [FakeIrq(), FakeIrq()], lambda: True)
        made.host._setup["ide"]["regions"] = []
        with pytest.raises(DevprocStartError, match="guest RAM: expected 1 to 8 regions"):
            made.host.start()
    finally:
        made.close()
        memory.close()


# --- the sandbox ----------------------------------------------------------------------------
def _status(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/status") as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


def test_the_device_process_is_confined(uart_host: tuple[Host, Any]) -> None:
    made, _ = uart_host
    status = _status(made.pid)
    assert status["NoNewPrivs"].strip() == "1"
    assert status["Seccomp"].strip() == "2"             # a filter
    if os.geteuid() == 0:
        assert status["Uid"].split()[1] == "65534"      # nobody
        assert status["Groups"].strip() == ""
    fds = {int(name): os.readlink(f"/proc/{made.pid}/fd/{name}")
           for name in os.listdir(f"/proc/{made.pid}/fd")}
    assert not any("kvm" in target for target in fds.values())
    assert len(fds) <= 10                               # stdio, socket, eventfds, loop pipe
    report = made.host.stats()["sandbox"]
    assert report["seccomp"] == "kill" and report["no_new_privs"] is True


# --- failure --------------------------------------------------------------------------------
def test_a_dead_device_process_fails_as_absent_hardware_and_lowers_its_lines(
        uart_host: tuple[Host, Any], capsys: pytest.CaptureFixture[str]) -> None:
    made, uart = uart_host
    uart.write(4, 1, 0x08)
    uart.write(1, 1, 0x02)
    wait_for(lambda: made.irq4.level, "IRQ 4 to rise")
    os.kill(made.pid, signal.SIGKILL)
    wait_for(lambda: made.host.channel.failed, "the death to be noticed")
    wait_for(lambda: not made.irq4.level, "IRQ 4 to be lowered")
    assert uart.read(5, 1) == 0xFF and uart.read(0, 2) == 0xFFFF
    uart.write(0, 1, 0x41)                               # dropped, no error
    err = capsys.readouterr().err
    assert "pyhvm: device process (uart) died (killed by SIGKILL); its devices now fail" in err
    assert made.stopped == []                            # the VM runs on


def test_with_the_stop_policy_a_dead_device_process_stops_the_vm() -> None:
    made = Host("uart", failure="stop")
    uart = made.host.uart(made.console, made.irq4)  # type: ignore[arg-type]
    made.start()
    try:
        os.kill(made.pid, signal.SIGKILL)
        assert uart.read(5, 1) == 0xFF
        wait_for(lambda: made.stopped, "the stop request")
        assert made.stopped[0].startswith("device process (uart) died")
    finally:
        made.close()
