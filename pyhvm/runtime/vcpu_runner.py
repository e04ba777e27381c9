"""One thread per vCPU: enter the guest, dispatch the exit, repeat until told to stop.

The loop is an explicit state machine (running, halted, finished). A stop request from
another thread sets `immediate_exit` in the run page and sends SIGUSR1 to the vCPU thread:
KVM_RUN then returns EINTR whether the signal lands before or during the ioctl.
"""

from __future__ import annotations

import logging
import signal
import threading
from typing import TYPE_CHECKING

from ..kvm.exits import decode
from .dispatch import Action, handle_exit

if TYPE_CHECKING:
    from ..kvm.vcpu import Vcpu
    from ..machine.pc import Machine

log = logging.getLogger("pyhvm.vcpu")
KICK_SIGNAL = signal.SIGUSR1


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

    def start(self) -> None:
        self.thread.start()

    def kick(self) -> None:
        """Make the vCPU leave KVM_RUN soon (from any thread)."""
        self.vcpu.run_page.immediate_exit = 1
        self.wake.set()
        ident = self.thread.ident
        if ident is not None and self.thread.is_alive():
            try:
                signal.pthread_kill(ident, KICK_SIGNAL)
            except ProcessLookupError:
                pass

    def _main(self) -> None:
        try:
            self._loop()
        except BaseException as err:  # a bug in pyhvm: stop the VM loudly, not silently
            log.exception("vCPU %d thread crashed", self.vcpu.id)
            self.machine.fail(f"internal error in vCPU {self.vcpu.id}: {err!r}")

    def _loop(self) -> None:
        machine, vcpu = self.machine, self.vcpu
        run_page, page, buses = vcpu.run_page, vcpu.page, machine.buses
        lock = machine.io_lock
        while not machine.stopping:
            try:
                vcpu.run()
            except InterruptedError:
                run_page.immediate_exit = 0
                continue
            self.exits += 1
            exit = decode(run_page)
            with lock:
                action = handle_exit(buses, page, exit)
            if action is Action.CONTINUE:
                continue
            if action is Action.HALT:
                self._halt()
            elif action is Action.INTERRUPTED:
                run_page.immediate_exit = 0
            elif action is Action.SHUTDOWN:
                machine.guest_died("triple fault (KVM_EXIT_SHUTDOWN)", vcpu)
            elif action is Action.FATAL:
                machine.guest_died(f"KVM cannot continue: {exit}", vcpu)
        run_page.immediate_exit = 0

    def _halt(self) -> None:
        """Sleep until an interrupt or a stop can need this vCPU; never busy-wait."""
        while not self.machine.stopping and not self.machine.interrupt_pending(self.vcpu):
            self.wake.wait()
            self.wake.clear()
