"""`pyhvm top ADDRESS`: a live view of a running VM's exits and interrupts, like kvm_stat.

It is a QMP client (a small blocking one: the standard library only, since `qemu.qmp` is a
test dependency) that polls `x-pyhvm-exit-counters` and shows the difference between two
samples as rates: exits per second by reason, by device and by port, and interrupts per
second. The counters are cumulative totals kept by the vCPU threads, so a slow or missed
poll loses no events, and the rates use the server's own timestamps.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import sys
import time
from typing import Any

from .qmp import QmpAddress, parse_address

CLEAR = "\x1b[H\x1b[2J"
IO_TIMEOUT_S = 5.0


class QmpClientError(Exception):
    """The server is gone, broke the protocol, or answered with an error."""


class SyncQmpClient:
    """Just enough QMP to poll a command: connect, negotiate, execute; events skipped."""

    def __init__(self, address: QmpAddress, timeout: float = IO_TIMEOUT_S) -> None:
        self.address = address
        self.timeout = timeout
        self._buf = b""
        self._next_id = 0
        try:
            if address.kind == "unix":
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.settimeout(timeout)
                self.sock.connect(address.path)
            else:
                self.sock = socket.create_connection((address.host, address.port), timeout)
        except OSError as err:
            raise QmpClientError(f"cannot connect to {address}: "
                                 f"{err.strerror or err}") from None
        self.greeting = self._receive()
        if "QMP" not in self.greeting:
            raise QmpClientError(f"{address} does not speak QMP: {self.greeting!r}")
        self.execute("qmp_capabilities")

    def execute(self, command: str, arguments: dict[str, Any] | None = None) -> Any:
        self._next_id += 1
        message: dict[str, Any] = {"execute": command, "id": self._next_id}
        if arguments:
            message["arguments"] = arguments
        try:
            self.sock.sendall(json.dumps(message).encode() + b"\n")
        except OSError as err:
            raise QmpClientError(f"the VM went away ({err.strerror or err})") from None
        while True:
            reply = self._receive()
            if "event" in reply or reply.get("id") != self._next_id:
                continue
            if "error" in reply:
                error = reply["error"]
                raise QmpClientError(f"{command}: {error.get('class')}: {error.get('desc')}")
            return reply.get("return")

    def _receive(self) -> dict[str, Any]:
        while b"\n" not in self._buf:
            try:
                chunk = self.sock.recv(65536)
            except OSError as err:
                raise QmpClientError(f"the VM went away ({err.strerror or err})") from None
            if not chunk:
                raise QmpClientError("the VM went away (connection closed)")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        try:
            message = json.loads(line)
        except ValueError:
            raise QmpClientError(f"not QMP: {line[:80]!r}") from None
        if not isinstance(message, dict):
            raise QmpClientError(f"not QMP: {line[:80]!r}")
        return message

    def close(self) -> None:
        self.sock.close()


# --- rendering -------------------------------------------------------------------------------

def _rate(now: int, before: int, seconds: float) -> float:
    return max(0, now - before) / seconds if seconds > 0 else 0.0


def _rows(now: dict[str, int], before: dict[str, int], seconds: float
          ) -> list[tuple[str, float, int]]:
    rows = [(key, _rate(value, before.get(key, 0), seconds), value)
            for key, value in now.items()]
    rows.sort(key=lambda row: (-row[1], -row[2], row[0]))
    return rows


def render(before: dict[str, Any], now: dict[str, Any], *, title: str = "",
           max_ports: int = 10, width: int = 100) -> str:
    """One screen from two samples of x-pyhvm-exit-counters."""
    seconds = (now["time_ns"] - before["time_ns"]) / 1e9
    vcpus = " ".join(f"{v['id']}:{v['state']}" for v in now.get("vcpus", []))
    irqs_now, irqs_before = now["interrupts"], before["interrupts"]
    irq_note = ("injected by the userspace PIC" if irqs_now.get("source") == "injected"
                else "raised by pyhvm's devices; KVM's PIT is not seen here")
    lines = [
        f"pyhvm top  {title}  {now['status']}  irqchip={now['irqchip']}  "
        f"vcpus {vcpus}  interval {seconds:.2f} s",
        "",
        f"{'exits':<12}{_rate(now['exits'], before['exits'], seconds):>12,.0f}/s"
        f"   total {now['exits']:,}",
        f"{'interrupts':<12}"
        f"{_rate(irqs_now['total'], irqs_before['total'], seconds):>12,.0f}/s"
        f"   total {irqs_now['total']:,}  ({irq_note})",
        f"{'timers':<12}"
        f"{_rate(now['timer_callbacks'], before['timer_callbacks'], seconds):>12,.0f}/s"
        f"   device timer callbacks in the event loop",
        "",
        f"{'EXIT REASON':<24}{'/s':>12}{'TOTAL':>16}",
    ]
    for key, rate, total in _rows(now["by_reason"], before["by_reason"], seconds):
        if total:
            lines.append(f"{key:<24}{rate:>12,.0f}{total:>16,}")
    lines += ["", f"{'DEVICE':<24}{'EXITS/S':>12}{'TOTAL':>16}"]
    for key, rate, total in _rows(now["by_device"], before["by_device"], seconds):
        lines.append(f"{key:<24}{rate:>12,.0f}{total:>16,}")
    ports_before = {row["port"]: row["count"] for row in before["ports"]}
    port_rows = sorted(now["ports"], key=lambda row: (
        -_rate(row["count"], ports_before.get(row["port"], 0), seconds), -row["count"]))
    lines += ["", f"{'PORT':<8}{'DEVICE':<16}{'EXITS/S':>12}{'TOTAL':>16}"]
    for row in port_rows[:max_ports]:
        rate = _rate(row["count"], ports_before.get(row["port"], 0), seconds)
        lines.append(f"{row['port']:#06x}  {row['device']:<16}{rate:>12,.0f}{row['count']:>16,}")
    by_irq = irqs_now.get("by_irq", {})
    if by_irq:
        lines += ["", f"{'IRQ':<24}{'/s':>12}{'TOTAL':>16}"]
        for key, rate, total in _rows(by_irq, irqs_before.get("by_irq", {}), seconds):
            lines.append(f"{key:<24}{rate:>12,.0f}{total:>16,}")
    return "\n".join(line[:width] for line in lines) + "\n"


# --- the command -----------------------------------------------------------------------------

def add_top_parser(sub: argparse._SubParsersAction) -> None:
    top = sub.add_parser(
        "top", help="live exit and interrupt rates of a running VM (over QMP)",
        description="Connect to a VM started with `pyhvm run --qmp unix:PATH,server,wait=off` "
                    "and show, every interval, its exits per second by reason, device and "
                    "port, and its interrupt rate.")
    top.add_argument("address", metavar="ADDRESS",
                     help="the VM's QMP socket: unix:PATH, PATH or tcp:HOST:PORT")
    top.add_argument("-d", "--delay", type=float, default=1.0, metavar="SECONDS",
                     help="seconds between samples (default 1)")
    top.add_argument("--once", action="store_true",
                     help="print one sample (after one interval) and exit")
    top.add_argument("--ports", type=int, default=10, metavar="N",
                     help="how many ports to list (default 10)")
    top.set_defaults(func=_cmd_top)


def _cmd_top(args: argparse.Namespace) -> int:
    from ..errors import HostError

    if not args.delay > 0:
        print("pyhvm top: -d must be a positive number of seconds", file=sys.stderr)
        return 2
    try:
        address = parse_address(args.address, server=False)
    except HostError as err:
        print(f"pyhvm top: {err}", file=sys.stderr)
        return 2
    try:
        client = SyncQmpClient(address)
    except QmpClientError as err:
        print(f"pyhvm top: {err}", file=sys.stderr)
        return 1
    clear = not args.once and sys.stdout.isatty()
    try:
        before = client.execute("x-pyhvm-exit-counters")
        while True:
            time.sleep(args.delay)
            now = client.execute("x-pyhvm-exit-counters")
            width = shutil.get_terminal_size((100, 40)).columns if clear else 200
            screen = render(before, now, title=str(address), max_ports=args.ports,
                            width=width)
            sys.stdout.write((CLEAR if clear else "") + screen)
            sys.stdout.flush()
            if args.once:
                return 0
            before = now
    except QmpClientError as err:
        print(f"pyhvm top: {err}", file=sys.stderr)
        return 0 if "went away" in str(err) and not args.once else 1
    except KeyboardInterrupt:
        return 0
    finally:
        client.close()
