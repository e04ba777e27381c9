"""A machine's configuration, as the CLI (or a test) states it."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..errors import HostError


class ConfigError(HostError):
    """Bad user configuration; the message says what to write instead."""


@dataclass
class MachineConfig:
    kernel: str
    append: str = ""
    initrd: str | None = None
    modules: list[str] = field(default_factory=list)
    memory: int = 128 << 20
    cpus: int = 1
    serial: str = "stdio"
    max_seconds: float | None = None
    reboot: bool = True  # i8042 reset (0xFE to port 0x64): reset the VM, or stop it
    irqchip: str = "kernel"  # "kernel" (KVM's PIC/PIT) or "user" (ours), see interrupts.py
    lost_tick_policy: str = "delay"  # the userspace PIT's late ticks: delay, discard, merge
    trace: str | None = None  # --trace FILE
    trace_events: tuple[str, ...] = ("exits", "irq", "devices", "backend")
    debug_exit_port: int = 0xF4
    debug_exit_size: int = 4


_SIZE = re.compile(r"^(\d+)([KMGT]?)(i?B)?$", re.IGNORECASE)
_UNITS = {"": 1 << 20, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(text: str) -> int:
    """QEMU's -m syntax: a number of MiB, or a number with a K/M/G/T suffix."""
    match = _SIZE.match(text.strip())
    if not match:
        raise ConfigError(f"cannot read memory size {text!r}: write e.g. 256M or 2G")
    return int(match.group(1)) * _UNITS[match.group(2).upper()]
