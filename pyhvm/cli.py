"""`pyhvm` command line: run a guest, benchmark, and (later) trace and report."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import IO

from . import __version__

DESCRIPTION = """\
pyhvm: a virtual machine monitor in Python on Linux KVM.

Boot a kernel (Multiboot ELF32, or a Linux bzImage) on a PC of faithful device models:
  pyhvm run --kernel guest/build/guestkit.elf --append 'scenario=hello'
  pyhvm run ... --irqchip user|kernel --drive file=disk.img --ide-dma sync|concurrent
See where the guest's time went:
  pyhvm run ... --trace run.trc && pyhvm report run.trc [--format perfetto]
  pyhvm stat -- --kernel ... ;  pyhvm run ... --qmp unix:/tmp/q.sock,server,wait=off && pyhvm top /tmp/q.sock
Watch the screen:
  pyhvm run ... --display vnc::0 (then vncviewer 127.0.0.1::5900) ;  pyhvm screenshot --qmp /tmp/q.sock shot.png
Boot through firmware (SeaBIOS, then the disk's boot loader):
  pyhvm run --drive file=disk.img,if=ide,format=raw [--bios FILE]
Measure the paper's optimizations, side by side in one run (all of them, with a report):
  pyhvm bench paper [--quick] [--out DIR]
  pyhvm bench exits | startup | boot | pic | ide | net | vga | mem | trace | placement
Fuzz the device models as a hostile guest (no KVM needed):
  pyhvm fuzz --config pc --ops 100000 [--json] ;  pyhvm fuzz --replay FILE
"""


def _run_parser(sub: argparse._SubParsersAction) -> None:
    run = sub.add_parser(
        "run", help="boot a guest",
        description="Boot a guest kernel. The exit status is the guest's debug-exit status "
                    "((V << 1) | 1 for a write of V to port 0xF4), 0 if the guest reset the "
                    "machine under --no-reboot, 2 if the guest died, 4 if pyhvm could not run "
                    "it, 6 if a device process failed under --device-process-failure=stop, "
                    "124 on --max-seconds, 130 on Ctrl-C.")
    run.add_argument("--kernel", "-kernel", metavar="FILE",
                     help="Multiboot ELF32 or Linux bzImage to boot directly (no firmware); "
                          "without it, the firmware boots from the disks")
    run.add_argument("--append", "-append", default="", metavar="STR",
                     help="kernel command line")
    run.add_argument("--initrd", "-initrd", metavar="FILE",
                     help="initial ramdisk (Linux) or first module (Multiboot)")
    run.add_argument("--module", action="append", default=[], metavar="'FILE ARGS'",
                     help="Multiboot module; may repeat")
    run.add_argument("-m", "--memory", default="128M", metavar="SIZE",
                     help="guest RAM, e.g. 128M or 2G (default 128M)")
    run.add_argument("--mem-backing", default="anon",
                     metavar="anon|memfd[,hugepages=on]|hugetlbfs:PATH|file:PATH",
                     help="host memory behind guest RAM (default anon; the others are "
                          "MAP_SHARED, so other processes can map guest RAM)")
    run.add_argument("--mem-prealloc", "-mem-prealloc", action="store_true",
                     help="populate all guest RAM at start instead of at first touch")
    run.add_argument("--mem-thp", default=None, metavar="on|off",
                     help="advise transparent huge pages on anon and memfd RAM (default on)")
    run.add_argument("--cpus", "-smp", type=int, default=1, metavar="N",
                     help="number of vCPUs (default 1)")
    run.add_argument("--serial", "-serial", default="stdio", metavar="stdio|file:PATH|none",
                     help="where COM1 goes (default stdio)")
    run.add_argument("--max-seconds", type=float, metavar="S",
                     help="stop a guest still running after S seconds (exit status 124)")
    run.add_argument("--irqchip", choices=("kernel", "user"), default="kernel",
                     help="where the PIC and PIT live: in KVM (kernel, default) or in pyhvm "
                          "(user, the paper's 'before')")
    run.add_argument("--lost-tick-policy", choices=("delay", "discard", "merge"),
                     default="delay",
                     help="--irqchip user: what the PIT does with ticks it could not deliver "
                          "on time (default delay: deliver them late)")
    run.add_argument("--drive", "-drive", action="append", default=[],
                     metavar="file=PATH[,if=ide][,format=raw][,readonly=on][,index=N]",
                     help="attach a raw disk image to the PIIX IDE controller (QEMU's "
                          "syntax); may repeat, up to four")
    run.add_argument("--ide-dma", choices=("sync", "concurrent"), default="concurrent",
                     help="where IDE bus-master transfers run: in the vCPU's exit (sync, "
                          "the paper's 'before') or on worker threads (concurrent, default)")
    run.add_argument("--netdev", "-netdev", metavar="TYPE,id=ID,...",
                     help="a network backend (QEMU's syntax): tap[,ifname=NAME], "
                          "socket,udp=HOST:PORT,localaddr=HOST:PORT, or dgram,local.type=unix,"
                          "local.path=P,remote.type=unix,remote.path=Q")
    run.add_argument("--device", "-device", metavar="rtl8139,netdev=ID[,mac=MAC]",
                     help="the NIC, attached to the --netdev of that id")
    run.add_argument("--net-mode", default="event", metavar="event|poll[,poll-interval=MS]",
                     help="when the NIC moves frames: as soon as the backend or the guest "
                          "has one (event, default) or on a periodic timer (poll, the "
                          "paper's 'before'; default interval 10 ms)")
    run.add_argument("--object", "-object", metavar="filter-dump,id=ID,netdev=ID,file=PCAP",
                     help="capture the NIC's frames to a pcap file (tcpdump, Wireshark)")
    run.add_argument("--vga", "-vga", default="std", metavar="std[,vgamem=SIZE]|none",
                     help="the display adapter: QEMU's std VGA (Bochs VBE, 16M video memory "
                          "by default) at PCI 00:02.0, or none")
    run.add_argument("--vga-mem", choices=("trap", "shared"), default="shared",
                     help="where the guest's framebuffer writes go: MMIO exits to the model "
                          "(trap, the paper's 'before') or shared memory with KVM's dirty "
                          "log (shared, default)")
    run.add_argument("--display", "-display", action="append", default=[],
                     metavar="none|png:PATH|vnc:[HOST]:N|web:[HOST:]PORT",
                     help="show the screen: a VNC server on port 5900+N, a web page on "
                          "PORT (both on 127.0.0.1 unless HOST is given; no password), or "
                          "a PNG file rewritten while the screen changes and at exit; "
                          "may repeat")
    run.add_argument("--no-reboot", "-no-reboot", action="store_true",
                     help="exit instead of resetting when the guest resets the machine")
    run.add_argument("--stats", metavar="FILE",
                     help="write the run's exit profile (exits by port and reason, "
                          "interrupts) as JSON to FILE when the guest stops")
    run.add_argument("--trace", metavar="FILE",
                     help="record exits, interrupts and device events to FILE "
                          "(read it with `pyhvm report FILE`)")
    run.add_argument("--trace-events", default="exits,irq,devices,backend",
                     metavar="GROUPS",
                     help="comma-separated event groups to record: exits, irq, devices, "
                          "backend, rip, mmu (the kernel's kvmmmu events, counted and "
                          "timed into FILE.mmu.json; root) (default: all but rip and mmu)")
    run.add_argument("--qmp", "-qmp", metavar="unix:PATH,server[,wait=off]",
                     help="serve QMP on a control socket (QEMU's syntax; tcp:127.0.0.1:PORT,"
                          "server also works): query-status, stop, cont, system_reset, quit, "
                          "x-pyhvm-stats ... (see `pyhvm top`)")
    run.add_argument("--bios", "-bios", metavar="FILE",
                     help="boot through this system ROM, mapped below 4 GiB (default when "
                          "there is no --kernel: SeaBIOS, /usr/share/seabios/bios.bin); with "
                          "--kernel, the firmware boots the kernel itself (through QEMU's "
                          "linuxboot/multiboot option ROMs)")
    run.add_argument("--boot", "-boot", metavar="order=cdn[,menu=on][,reboot-timeout=MS]",
                     help="firmware boot order and menu (QEMU's -boot; default order=c)")
    run.add_argument("--debugcon", "-debugcon", metavar="file:PATH|stdio|none",
                     help="the firmware's debug log (SeaBIOS writes it to port 0x402): to a "
                          "file or stderr; with -v and no --debugcon it goes to the log")
    run.add_argument("--sandbox", choices=("on", "strict", "off"), default=None,
                     help="once the machine is built, confine the process: seccomp allow-list "
                          "of system calls (strict: kill on any other), no new privileges, "
                          "private mount and network namespaces and an unprivileged user "
                          "when root, resource limits (default on; -v shows what applied)")
    run.add_argument("--sandbox-user", metavar="USER|UID[:GID]",
                     help="the user a root run continues as (default nobody)")
    run.add_argument("--sandbox-limits", metavar="files=N,threads=N,memory=SIZE",
                     help="open files, threads started after setup, and address space beyond "
                          "what setup mapped (default files=256,threads=16,memory=1G)")
    run.add_argument("--device-process", metavar="NAME[,NAME...][,KEY=VALUE...]",
                     help="run these device models in a separate, sandboxed process, reached "
                          "through a shared-memory request ring (Xen's qemu-dm placement): "
                          "uart, pic (8259 pair and PIT; needs --irqchip user), ide; knobs "
                          "deadline=S (default 1), spin=US (default 0), post=on|off, "
                          "seccomp=kill|errno|off")
    run.add_argument("--device-process-failure", choices=("fail-device", "stop"),
                     default="fail-device",
                     help="when the device process dies or misses the deadline: its devices "
                          "fail as absent hardware (reads all ones, no interrupts) and the VM "
                          "runs on (default), or the VM stops with exit status 6")
    run.add_argument("-v", "--verbose", action="store_true", help="log device activity")
    run.set_defaults(func=_cmd_run)


def _cmd_run(args: argparse.Namespace) -> int:
    from .errors import HostError
    from .kvm import KvmError
    from .machine.config import ConfigError, MachineConfig, parse_drive, parse_size
    from .machine.nic import NicConfig, parse_net_mode
    from .machine.pc import EXIT_HOST_ERROR, Machine

    try:
        from .runtime.sandbox import parse_options as parse_sandbox

        sandbox = parse_sandbox(args.sandbox or "on", args.sandbox_user, args.sandbox_limits)
        drives = []
        for spec in args.drive:
            drives.append(parse_drive(spec, {d.index for d in drives}))
        nic = None
        if args.netdev or args.device:
            if not (args.netdev and args.device):
                raise ConfigError("a NIC needs both --netdev TYPE,id=ID,... and "
                                  "--device rtl8139,netdev=ID")
            mode, interval = parse_net_mode(args.net_mode)
            nic = NicConfig(args.netdev, args.device, mode, interval, args.object)
        elif args.object:
            raise ConfigError("--object filter-dump needs a --netdev to capture")
        from .memory_backing import DEFAULT_THP, parse_backing, parse_switch

        thp = DEFAULT_THP if args.mem_thp is None else parse_switch(args.mem_thp, "--mem-thp")
        backing = parse_backing(args.mem_backing, prealloc=args.mem_prealloc, thp=thp)
        from .machine.displays import parse_display

        displays = [d for d in map(parse_display, args.display) if d is not None]
        bios = args.bios
        if bios is None and args.kernel is None:
            from .boot.firmware import DEFAULT_BIOS

            bios = DEFAULT_BIOS
        config = MachineConfig(kernel=args.kernel, append=args.append, initrd=args.initrd,
                               modules=args.module, memory=parse_size(args.memory),
                               mem_backing=backing,
                               cpus=args.cpus, serial=args.serial,
                               max_seconds=args.max_seconds, reboot=not args.no_reboot,
                               irqchip=args.irqchip, lost_tick_policy=args.lost_tick_policy,
                               drives=drives, ide_dma=args.ide_dma, nic=nic,
                               vga=args.vga, vga_mem=args.vga_mem, displays=displays,
                               trace=args.trace,
                               trace_events=tuple(e for e in args.trace_events.split(",") if e),
                               bios=bios, boot=args.boot, debugcon=args.debugcon,
                               device_process=args.device_process,
                               device_process_failure=args.device_process_failure)
        machine = Machine(config)
    except HostError as err:
        print(f"pyhvm: {err}", file=sys.stderr)
        return EXIT_HOST_ERROR
    except OSError as err:  # the console file, an out-of-memory mmap ...
        print(f"pyhvm: {err.strerror or err}", file=sys.stderr)
        return EXIT_HOST_ERROR
    qmp = None
    if args.qmp:
        from .control.qmp import serve_qmp

        try:
            qmp = serve_qmp(machine, args.qmp)
        except HostError as err:
            print(f"pyhvm: {err}", file=sys.stderr)
            machine.close()
            return 1
    stats_file = None
    if sandbox.mode != "off":
        from .runtime.sandbox import apply as apply_sandbox

        if args.stats:  # the sandbox user may not create it later
            stats_file = _open_stats(args.stats)
        report = apply_sandbox(machine, sandbox, qmp)
        machine.sandbox = report  # type: ignore[attr-defined]  # for QMP x-pyhvm-sandbox
        if args.verbose or report.mode == "off":
            print(f"pyhvm: sandbox: {report.summary()}", file=sys.stderr)
    try:
        status = machine.run()
        if args.stats:
            _write_stats(args.stats, machine.stats(), stats_file)
    finally:
        if qmp is not None:
            qmp.close()  # delivers SHUTDOWN, removes the socket file
        machine.close()
    if machine.stop_reason and args.verbose:
        print(f"pyhvm: {machine.stop_reason}", file=sys.stderr)
    return status


def _open_stats(path: str) -> "IO[str] | None":
    """--stats opened before the sandbox; None: opened (and reported) at the end instead."""
    try:
        return open(path, "w")
    except OSError:
        return None


def _write_stats(path: str, stats: dict[str, object], out: "IO[str] | None" = None) -> None:
    import json

    try:
        with out or open(path, "w") as f:
            json.dump(stats, f, indent=2)
            f.write("\n")
    except OSError as err:
        print(f"pyhvm: cannot write --stats {path!r}: {err.strerror}", file=sys.stderr)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """Every subcommand, or just `only`: `pyhvm run` then skips importing the benchmarks,
    the trace tools and the QMP client (it starts a VM ~100 ms sooner), and `pyhvm fuzz`
    imports no device model before its coverage meter starts (they would count as missed)."""
    parser = argparse.ArgumentParser(prog="pyhvm", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"pyhvm {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _run_parser(sub)
    if only == "run":
        return parser
    if only != "fuzz":
        from .bench.cli import add_bench_parser

        add_bench_parser(sub)
        from .trace.cli import add_trace_parsers

        add_trace_parsers(sub)
        from .control.top import add_top_parser

        add_top_parser(sub)
        from .control.screenshot import add_screenshot_parser

        add_screenshot_parser(sub)
    from .fuzz.cli import add_fuzz_parser

    add_fuzz_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else argv
    parser = build_parser(only=arguments[0] if arguments[:1] in (["run"], ["fuzz"]) else None)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    logging.basicConfig(level=logging.DEBUG if getattr(args, "verbose", False)
                        else logging.WARNING, format="pyhvm: %(message)s")
    try:
        return args.func(args)
    except Exception:
        # A bug in pyhvm: show it, and exit with an even status that no guest can produce
        # (Python's own status 1 would read as the guest's success).
        import traceback

        traceback.print_exc()
        return 4


if __name__ == "__main__":
    sys.exit(main())
