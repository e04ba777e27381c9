"""One thread per vCPU: enter the guest, dispatch the exit, repeat until told to stop.

The loop is an explicit state machine (running, halted, paused, finished). A stop request
from another thread sets `immediate_exit` in the run page and sends SIGUSR1 to the vCPU
thread: KVM_RUN then returns EINTR whether the signal lands before or during the ioctl.
A pause (QMP `stop`) is the same kick: the thread looks at `machine.paused` only where it
clears `immediate_exit`, so the per-exit path is unchanged, and no kick can be missed (the
flag is set before the kick, and `immediate_exit` stays set until one of those checks).
"""

from __future__ import annotations

import fcntl
import logging
import signal
import struct
import threading
import time
from collections import Counter
from typing import TYPE_CHECKING

from ..kvm.constants import KVM_EXIT_IO, KVM_EXIT_MMIO, KVM_RUN
from ..kvm.exits import FailEntryExit, InternalErrorExit, IoExit, decode
from ..kvm.structs import _run_io, kvm_run
from ..trace.records import Kind
from .dispatch import MMIO_DATA_OFFSET, Action, handle_exit

if TYPE_CHECKING:
    from ..kvm.vcpu import Vcpu
    from ..machine.interrupts import UserspaceInjector
    from ..trace.recorder import ThreadBuffer
    from ..machine.pc import Machine

log = logging.getLogger("pyhvm.vcpu")
_REASON = struct.Struct("<I")
_REASON_OFFSET = kvm_run.exit_reason.offset
_IO = struct.Struct("<BBHIQ")  # direction, size, port, count, data_offset
_IO_OFFSET = kvm_run.u.offset + _run_io.direction.offset
_MMIO = struct.Struct("<Q8sIB")  # phys_addr, data, len, is_write
_MMIO_OFFSET = kvm_run.u.offset
_EXIT_PIO, _EXIT_MMIO, _EXIT_OTHER, _HALT = (int(Kind.EXIT_PIO), int(Kind.EXIT_MMIO),
                                          int(Kind.EXIT_OTHER), int(Kind.HALT))
_RIP_SAMPLE = int(Kind.RIP_SAMPLE)
_ALL_ONES = {1: b"\xff", 2: b"\xff" * 2, 4: b"\xff" * 4, 8: b"\xff" * 8}
_MASK = {1: 0xFF, 2: 0xFFFF, 4: 0xFFFFFFFF}
KICK_SIGNAL = signal.SIGUSR1


def describe_fatal(exit: object) -> str:
    """One line for an exit KVM cannot continue from."""
    if isinstance(exit, InternalErrorExit):
        data = " ".join(f"{word:#x}" for word in exit.data)
        return f"{exit.describe()} (KVM_EXIT_INTERNAL_ERROR suberror {exit.suberror}; {data})"
    if isinstance(exit, FailEntryExit):
        return (f"VM entry failed (KVM_EXIT_FAIL_ENTRY, hardware reason "
                f"{exit.hardware_entry_failure_reason:#x} on CPU {exit.cpu})")
    return f"unexpected exit {exit}"


def install_kick_handler() -> None:
    """Must run in the main thread: a no-op handler so SIGUSR1 interrupts KVM_RUN."""
    signal.signal(KICK_SIGNAL, lambda signum, frame: None)


class VcpuRunner:
    def __init__(self, machine: "Machine", vcpu: "Vcpu") -> None:
        self.machine = machine
        self.vcpu = vcpu
        self.wake = threading.Event()
        self.thread = threading.Thread(target=self._main, name=f"vcpu{vcpu.id}", daemon=True)
        self.exits = 0
        # The exit profile, always on (a list index costs ~30 ns against a ~10 us exit):
        # exits per port, MMIO exits, and every other exit by reason.
        self.pio_exits = [0] * 0x10000
        self.mmio_exits = 0
        self.other_exits: Counter[str] = Counter()
        # Set by the irqchip placement: injects interrupts before each entry (userspace
        # irqchip, BSP only), or None when KVM delivers them itself.
        self.injector: UserspaceInjector | None = None
        self.trace: ThreadBuffer | None = None  # set on the vCPU thread when tracing exits
        self.rip_trace: ThreadBuffer | None = None  # set when tracing guest RIP samples
        self.rip_due = False  # the sampler asks for one RIP sample at the next kick
        # Where the thread is, for Machine.pause() and `pyhvm top`: "running" (in or near
        # KVM_RUN), "halted" (HLT, userspace irqchip) or "paused" (parked by a pause).
        self.state = "running"

    def start(self) -> None:
        self.thread.start()

    def in_guest(self) -> bool:
        """Whether this vCPU may still be running guest code (what pause() waits out)."""
        return self.thread.is_alive() and self.state == "running"

    def adopt_counters(self, previous: "VcpuRunner") -> None:
        """Carry a replaced runner's exit profile (a reboot) so totals never go back."""
        self.exits = previous.exits
        self.pio_exits = previous.pio_exits
        self.mmio_exits = previous.mmio_exits
        self.other_exits = previous.other_exits

    def kick(self) -> None:
        """Make the vCPU leave KVM_RUN, or HLT, soon (from any thread)."""
        self.wake.set()
        self.kick_for_interrupt()

    def request_rip_sample(self) -> None:
        """From the sampling timer: leave KVM_RUN and record where the guest was."""
        self.rip_due = True
        self.kick_for_interrupt()

    def _sample_rip(self) -> None:
        self.rip_due = False
        if self.rip_trace is None:
            return
        regs = self.vcpu.get_regs()
        cpl = self.vcpu.get_sregs().cs.selector & 3
        self.rip_trace.add(_RIP_SAMPLE, time.monotonic_ns(), 0, 0, regs.rip, cpl)

    def kick_for_interrupt(self) -> None:
        """An interrupt became pending on another thread: leave KVM_RUN to inject it.
        `immediate_exit` covers a signal that lands just before the thread enters KVM_RUN."""
        self.vcpu.run_page.immediate_exit = 1
        ident = self.thread.ident
        if ident is not None and self.thread.is_alive():
            try:
                signal.pthread_kill(ident, KICK_SIGNAL)
            except ProcessLookupError:
                pass

    def _main(self) -> None:
        recorder = self.machine.recorder
        if recorder is not None and recorder.wants("exits"):
            self.trace = recorder.buffer(self.vcpu.id)
        if recorder is not None and recorder.wants("irq") and self.injector is not None:
            self.injector.trace = recorder.buffer(self.vcpu.id)
        if recorder is not None and recorder.wants("rip"):
            self.rip_trace = recorder.buffer(self.vcpu.id)
        try:
            if self.machine.paused:  # a runner started by a reboot while paused
                self._park()
            self._loop()
        except BaseException as err:  # a bug in pyhvm: stop the VM loudly, not silently
            log.exception("vCPU %d thread crashed", self.vcpu.id)
            self.machine.fail(f"internal error in vCPU {self.vcpu.id}: {err!r}")

    def _loop(self) -> None:
        """The hot path: port I/O and MMIO are read straight from the run page and
        dispatched inline (the same semantics as `dispatch.handle_exit`, without building a
        record per exit); every other exit is decoded into a record and handled there."""
        machine, vcpu = self.machine, self.vcpu
        run_page, page, buses = vcpu.run_page, vcpu.page, machine.buses
        lock = machine.io_lock
        pio_table = buses.pio.dense_table()
        unclaimed_reads, unclaimed_writes = buses.pio.unclaimed_reads, buses.pio.unclaimed_writes
        ioctl, fd = fcntl.ioctl, vcpu.fd
        unpack_reason, unpack_io = _REASON.unpack_from, _IO.unpack_from
        unpack_mmio, mmio = _MMIO.unpack_from, buses.mmio
        injector = self.injector
        pio_exits, other_exits = self.pio_exits, self.other_exits
        trace = self.trace
        now = time.monotonic_ns
        t_exit = 0
        exits = self.exits
        while not machine.stopping:
            if injector is not None:
                injector.before_entry()
            try:
                ioctl(fd, KVM_RUN, 0)
            except InterruptedError:
                run_page.immediate_exit = 0
                if self.rip_due:
                    self._sample_rip()
                if machine.paused:
                    self.exits = exits
                    self._park()
                continue
            except BlockingIOError:
                # EAGAIN: an AP waiting for SIPI took an INIT (firmware starting the APs);
                # KVM asks userspace to simply enter again.
                continue
            if trace is not None:
                t_exit = now()
            exits += 1
            reason = unpack_reason(page, _REASON_OFFSET)[0]
            if reason == KVM_EXIT_IO:
                is_write, size, port, count, at = unpack_io(page, _IO_OFFSET)
                pio_exits[port] += 1
                if count == 1:
                    target = pio_table[port]
                    if is_write:
                        value = int.from_bytes(page[at:at + size], "little")
                        if target is None:  # nobody claims it: the write is dropped
                            unclaimed_writes[port] += 1
                        else:
                            with lock:
                                target[0].write(port - target[1], size, value)
                    else:
                        if target is None:  # nobody claims it: the bus floats high
                            unclaimed_reads[port] += 1
                            value = _MASK[size]
                        else:
                            with lock:
                                value = target[0].read(port - target[1], size)
                        page[at:at + size] = value.to_bytes(size, "little")
                    if trace is not None:
                        trace.add(_EXIT_PIO, t_exit, now() - t_exit, port, value,
                                  size | is_write << 8 | 1 << 16)
                    continue
            elif reason == KVM_EXIT_MMIO:
                self.mmio_exits += 1
                addr, data, size, is_write = unpack_mmio(page, _MMIO_OFFSET)
                if size in _ALL_ONES:
                    with lock:
                        if is_write:
                            mmio.write(addr, size, int.from_bytes(data[:size], "little"))
                        else:
                            page[MMIO_DATA_OFFSET:MMIO_DATA_OFFSET + size] = mmio.read(
                                addr, size).to_bytes(size, "little")
                    if trace is not None:
                        trace.add(_EXIT_MMIO, t_exit, now() - t_exit, 0, addr,
                                  size | is_write << 8)
                    continue
            exit = decode(run_page)
            if reason != KVM_EXIT_IO:
                other_exits[type(exit).__name__] += 1
            with lock:
                action = handle_exit(buses, page, exit)
            if trace is not None:
                if isinstance(exit, IoExit):
                    trace.add(_EXIT_PIO, t_exit, now() - t_exit, exit.port, 0,
                              exit.size | exit.is_write << 8 | exit.count << 16)
                else:
                    trace.add(_EXIT_OTHER, t_exit, now() - t_exit, reason)
            if action is Action.CONTINUE:
                continue
            if action is Action.HALT:
                self._halt()
            elif action in (Action.INTERRUPTED, Action.IRQ_WINDOW):
                run_page.immediate_exit = 0
                if machine.paused:  # a pause kick that landed while we handled this exit
                    self._park()
            elif action is Action.SHUTDOWN:
                machine.guest_died("triple fault (KVM_EXIT_SHUTDOWN)", vcpu)
            elif action is Action.FATAL:
                machine.guest_died(f"KVM cannot continue: {describe_fatal(exit)}", vcpu)
            self.exits = exits
        self.exits = exits
        run_page.immediate_exit = 0

    def _halt(self) -> None:
        """Sleep until an interrupt or a stop can need this vCPU; never busy-wait."""
        injector = self.injector
        start = time.monotonic_ns()
        self.state = "halted"
        while not self.machine.stopping and not (injector and injector.interrupt_pending()):
            self.wake.wait()
            self.wake.clear()
        self.state = "running"
        if self.trace is not None:
            self.trace.add(_HALT, start, time.monotonic_ns() - start)
        if self.machine.paused:  # woken by an interrupt while paused: inject it on resume
            self._park()

    def _park(self) -> None:
        """Paused: out of the guest until resume() or a stop sets `wake` (both do)."""
        machine = self.machine
        self.state = "paused"
        while machine.paused and not machine.stopping:
            self.wake.wait()
            self.wake.clear()
        self.state = "running"
