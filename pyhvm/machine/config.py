"""A machine's configuration, as the CLI (or a test) states it."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from typing import TYPE_CHECKING

from ..errors import HostError

if TYPE_CHECKING:
    from ..memory_backing import BackingSpec
    from .nic import NicConfig


class ConfigError(HostError):
    """Bad user configuration; the message says what to write instead."""


@dataclass(frozen=True)
class DriveConfig:
    """One `--drive file=PATH,if=ide,format=raw[,readonly=on][,index=N]`."""

    file: str
    index: int          # 0-3: primary master, primary slave, secondary master, secondary slave
    readonly: bool = False


def parse_drive(spec: str, taken: set[int]) -> DriveConfig:
    """QEMU's -drive syntax, the subset pyhvm implements; a one-line error otherwise."""
    options: dict[str, str] = {}
    for item in spec.split(","):
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--drive {spec!r}: {item!r} is not key=value")
        options[key] = value
    if "file" not in options or not options["file"]:
        raise ConfigError(f"--drive {spec!r}: file=PATH is required")
    if options.pop("if", "ide") != "ide":
        raise ConfigError(f"--drive {spec!r}: only if=ide is supported")
    if options.pop("format", "raw") != "raw":
        raise ConfigError(f"--drive {spec!r}: only format=raw is supported")
    readonly_text = options.pop("readonly", "off")
    if readonly_text not in ("on", "off"):
        raise ConfigError(f"--drive {spec!r}: readonly=on or readonly=off")
    if "index" in options:
        try:
            index = int(options.pop("index"))
        except ValueError:
            raise ConfigError(f"--drive {spec!r}: index must be 0-3") from None
        if not 0 <= index <= 3 or index in taken:
            raise ConfigError(f"--drive {spec!r}: index must be a free slot 0-3")
    else:
        free = [i for i in range(4) if i not in taken]
        if not free:
            raise ConfigError("at most four IDE drives (index 0-3)")
        index = free[0]
    path = options.pop("file")
    if options:
        raise ConfigError(f"--drive {spec!r}: unknown option(s) {', '.join(options)}")
    return DriveConfig(path, index, readonly_text == "on")


@dataclass
class MachineConfig:
    kernel: str | None  # None: the firmware boots from a disk (needs `bios`)
    append: str = ""
    initrd: str | None = None
    modules: list[str] = field(default_factory=list)
    memory: int = 128 << 20
    mem_backing: "BackingSpec | None" = None  # --mem-backing/-prealloc/-thp; None: defaults
    cpus: int = 1
    serial: str = "stdio"
    max_seconds: float | None = None
    reboot: bool = True  # i8042 reset (0xFE to port 0x64): reset the VM, or stop it
    irqchip: str = "kernel"  # "kernel" (KVM's PIC/PIT) or "user" (ours), see interrupts.py
    lost_tick_policy: str = "delay"  # the userspace PIT's late ticks: delay, discard, merge
    drives: list[DriveConfig] = field(default_factory=list)
    ide_dma: str = "concurrent"  # "sync" (in the vCPU's exit) or "concurrent" (workers)
    nic: "NicConfig | None" = None  # --netdev + --device rtl8139 (+ --net-mode, capture)
    vga: str = "std"  # --vga std[,vgamem=SIZE]|none (machine/display.py)
    vga_mem: str = "shared"  # --vga-mem: framebuffer "trap" (MMIO) or "shared" (dirty log)
    displays: list = field(default_factory=list)  # --display: DisplaySpec (displays.py)
    trace: str | None = None  # --trace FILE
    trace_events: tuple[str, ...] = ("exits", "irq", "devices", "backend")
    bios: str | None = None  # --bios ROM: boot through firmware (machine/firmware.py)
    boot: str | None = None  # --boot order=...,menu=...,reboot-timeout=... (QEMU's -boot)
    debugcon: str | None = None  # --debugcon file:PATH|stdio|none: the firmware's log port
    device_process: str | None = None  # --device-process NAME[,NAME...][,KEY=VALUE] (devproc/)
    device_process_failure: str = "fail-device"  # or "stop" (exit status 6)
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
