"""`pyhvm bench NAME`: argument parsing and output for every benchmark.

A benchmark that cannot run here (no KVM, no gcc, guest kit not built) says so in one line
on stderr and exits with status 4, like `pyhvm run` on a host error; no traceback.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from typing import Any, Callable

from .common import QEMU, BenchError

EXIT_HOST_ERROR = 4
EXIT_INTERRUPTED = 130


def _positive_int(text: str) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is less than 1")
    return value


def _hz_list(text: str) -> tuple[int, ...]:
    from .pic import parse_hz_list

    try:
        return parse_hz_list(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _kib_list(text: str) -> tuple[int, ...]:
    from .ide import parse_sizes

    try:
        return parse_sizes(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _rx_pps(text: str) -> dict[str, int]:
    from .net import parse_rx_pps

    try:
        return parse_rx_pps(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _section_list(text: str) -> tuple[str, ...]:
    from .paper_sections import SECTION_NAMES

    names = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [n for n in names if n not in SECTION_NAMES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"choose sections from {','.join(SECTION_NAMES)}")
    return names


def _common_options(parser: argparse.ArgumentParser, default_reps: int) -> None:
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object instead of a table")
    parser.add_argument("--reps", type=_positive_int, default=default_reps, metavar="R",
                        help=f"repetitions of each configuration (default {default_reps}); "
                             "medians are reported")
    parser.add_argument("--kernel", metavar="FILE",
                        help="guest kit ELF (default guest/build/guestkit.elf)")


def add_bench_parser(sub: argparse._SubParsersAction) -> None:
    from . import exits, ide, pic, startup

    bench = sub.add_parser("bench", help="measure pyhvm against a reference",
                           description="Benchmarks: configurations run interleaved, "
                                       "medians reported, ratios against a reference.")
    names = bench.add_subparsers(dest="bench", metavar="BENCH")
    bench.set_defaults(func=lambda args: _usage(bench))

    ex = names.add_parser(
        "exits", help="cost of one VM exit: pyhvm vs a C loop",
        description="Round trip of one VM exit through pyhvm's run loop (unclaimed port, "
                    "UART THR, unclaimed MMIO), beside a C loop built here with gcc that "
                    "runs the same guest code and only counts exits. Timed in the guest.")
    _common_options(ex, exits.DEFAULT_REPS)
    ex.add_argument("--n", type=_positive_int, default=exits.DEFAULT_N, metavar="N",
                    help=f"exits per guest run (default {exits.DEFAULT_N})")
    ex.set_defaults(func=_cmd_exits)

    st = names.add_parser(
        "startup", help="spawn to first serial byte and to exit: pyhvm vs QEMU",
        description="Process start to the guest's first serial byte and to exit, for the "
                    "guest kit's hello scenario, under pyhvm and QEMU.")
    _common_options(st, startup.DEFAULT_REPS)
    st.set_defaults(func=_cmd_startup)

    bt = names.add_parser(
        "boot", help="spawn to first RESULT through SeaBIOS and GRUB: pyhvm vs QEMU",
        description="Process start to each milestone of the firmware chain (SeaBIOS banner, "
                    "boot from the IDE disk, GRUB, the guest kit's first RESULT line), "
                    "under pyhvm and QEMU with the same ROM and disk, and the exit profile "
                    "of pyhvm's firmware phase.")
    _common_options(bt, 1)
    bt.add_argument("--disk", metavar="IMG",
                    help="a disk that SeaBIOS boots to the guest kit (default: build one "
                         "with tests/disk_image_builder.py)")
    bt.set_defaults(func=_cmd_boot)

    pc = names.add_parser(
        "pic", help="timer interrupts under compute: PIC/PIT in pyhvm vs in KVM, and QEMU",
        description="The paper's virtual-PIC experiment: CPL 3 compute while the PIT ticks "
                    "at each rate, for pyhvm --irqchip user and kernel and QEMU "
                    "kernel-irqchip=off and on. Work and ticks counted in the guest; "
                    "compute lost against each configuration's 0 Hz run, cost per "
                    "interrupt, and the exit profile that explains the difference.")
    _common_options(pc, pic.DEFAULT_REPS)
    pc.add_argument("--ms", type=_positive_int, default=pic.DEFAULT_MS, metavar="M",
                    help=f"milliseconds of timed compute per run (default {pic.DEFAULT_MS})")
    pc.add_argument("--hz", type=_hz_list, default=pic.DEFAULT_HZ, metavar="LIST",
                    help="timer rates, comma-separated, 0 included (default "
                         f"{','.join(map(str, pic.DEFAULT_HZ))})")
    pc.add_argument("--no-qemu", action="store_true",
                    help="measure pyhvm only")
    pc.set_defaults(func=_cmd_pic)

    dk = names.add_parser(
        "ide", help="IDE DMA in the exit vs on workers, and QEMU: MB/s and overlap",
        description="The paper's IDE experiment: sequential DMA reads and writes per "
                    "command size and compute/I/O overlap, for pyhvm --ide-dma sync and "
                    "concurrent and QEMU -drive if=ide, on one image in the page cache. "
                    "Timed in the guest; a traced run per placement breaks one command down.")
    _common_options(dk, ide.DEFAULT_REPS)
    dk.add_argument("--mb", type=_positive_int, default=ide.DEFAULT_MB, metavar="N",
                    help=f"MiB each run moves (default {ide.DEFAULT_MB}; within "
                         f"{ide.MIN_COMMANDS} to {ide.MAX_COMMANDS} commands a run)")
    dk.add_argument("--sizes", type=_kib_list, default=ide.DEFAULT_SIZES, metavar="LIST",
                    help="KiB per command, comma-separated (default "
                         f"{','.join(map(str, ide.DEFAULT_SIZES))}; at most {ide.MAX_KIB})")
    dk.add_argument("--no-qemu", action="store_true", help="measure pyhvm only")
    dk.set_defaults(func=_cmd_ide)

    from . import net

    nt = names.add_parser(
        "net", help="RTL8139 frame delivery: pyhvm event vs poll, and QEMU",
        description="The paper's network experiment: TX and RX throughput and echo RTT "
                    "for pyhvm --net-mode event and poll and QEMU -device rtl8139, on one "
                    "-netdev dgram backend with a host peer in this process. Timed in the "
                    "guest.")
    _common_options(nt, net.DEFAULT_REPS)
    nt.add_argument("--no-qemu", action="store_true", help="measure pyhvm only")
    nt.add_argument("--rx-pps", type=_rx_pps, default=None, metavar="SIZE=N,...",
                    help="frames/s the peer offers in the RX tests (default "
                         + ",".join(f"{net.RX_SIZES[t]}={p}" for t, p in
                                    net.DEFAULT_RX_PPS.items()) + ")")
    nt.add_argument("--breakdown", action="store_true",
                    help="add one traced run per placement of echo, RX 64 B and TX 64 B and "
                         "break a frame's cost down (exits, interrupts, where the time went)")
    nt.set_defaults(func=_cmd_net)

    from . import trace as trace_bench

    tr = names.add_parser(
        "trace", help="what tracing costs one VM exit: off, on (exits), on (all)",
        description="Exit cost (port 0x404 and the UART THR) with tracing off, with exit "
                    "tracing and with every event group, beside the same loop with its "
                    "trace sites removed and the C loop of `bench exits`; trace file size "
                    "per exit and the cost of one trace check (timeit). Timed in the guest.")
    _common_options(tr, trace_bench.DEFAULT_REPS)
    tr.add_argument("--n", type=_positive_int, default=trace_bench.DEFAULT_N, metavar="N",
                    help=f"exits per guest run (default {trace_bench.DEFAULT_N})")
    tr.set_defaults(func=_cmd_trace)

    from . import vga as vga_bench

    vg = names.add_parser(
        "vga", help="video memory trapped vs shared (dirty log), and QEMU: fill, blit, scroll",
        description="The paper's video-memory experiment: framebuffer fill and blit "
                    "throughput and text scroll (guest CPL 3 loops, timed in the guest) for "
                    "pyhvm --vga-mem shared and trap and QEMU -vga std, interleaved; and the "
                    "cost of one display refresh at 1024x768x32 with 0, 10 and 100 %% of "
                    "the screen dirty (in this process).")
    _common_options(vg, vga_bench.DEFAULT_REPS)
    vg.add_argument("--ms", type=_positive_int, default=vga_bench.DEFAULT_MS, metavar="M",
                    help=f"guest milliseconds per run (default {vga_bench.DEFAULT_MS}; the "
                         "trapped placement always finishes at least one frame)")
    vg.add_argument("--no-qemu", action="store_true", help="measure pyhvm only")
    vg.set_defaults(func=_cmd_vga)

    from . import mem as mem_bench

    me = names.add_parser(
        "mem", help="guest RAM backings and guest page sizes, pyhvm and QEMU: ns per op",
        description="Memory virtualization: first touch, random reads with 4 KiB and 2 MiB "
                    "guest pages, and page-table churn (guest kit CPL 3 scenarios, timed in "
                    "the guest) for each RAM backing (anon, anon+thp, memfd, memfd-huge, "
                    "hugetlbfs; with and without prealloc) on pyhvm and QEMU, interleaved; "
                    "ratios to the best configuration, the kvmmmu event counts that explain "
                    "them (root), and the dirty-log fetch cost per slot size.")
    _common_options(me, mem_bench.DEFAULT_REPS)
    me.add_argument("--quick", action="store_true",
                    help="a smoke run: small working sets, 1 repetition (not fit for figures)")
    me.add_argument("--workloads", type=_mem_workloads, default=mem_bench.WORKLOAD_NAMES,
                    metavar="LIST", help="comma-separated, from "
                    f"{','.join(mem_bench.WORKLOAD_NAMES)} (default all)")
    me.add_argument("--backings", type=_mem_backings, default=mem_bench.BACKING_NAMES,
                    metavar="LIST", help="comma-separated, from "
                    f"{','.join(mem_bench.BACKING_NAMES)} (default all)")
    me.add_argument("--touch-mb", type=_positive_int, metavar="N",
                    help=f"MiB first-touched per run (default {mem_bench.Params().touch_mb})")
    me.add_argument("--random-mb", type=_positive_int, metavar="N",
                    help=f"MiB read at random (default {mem_bench.Params().random_mb})")
    me.add_argument("--reads", type=_positive_int, metavar="N",
                    help=f"random reads per run (default {mem_bench.Params().reads})")
    me.add_argument("--churn-n", type=_positive_int, metavar="N",
                    help=f"operations of each kind in ptchurn (default "
                         f"{mem_bench.Params().churn_n})")
    me.add_argument("--hugetlbfs", metavar="DIR",
                    help="hugetlbfs mount for the hugetlbfs backing (default: the first "
                         "one mounted)")
    me.add_argument("--no-qemu", action="store_true", help="measure pyhvm only")
    me.add_argument("--no-kvmmmu", action="store_true",
                    help="do not count kvmmmu events (they need root and tracefs)")
    me.add_argument("--no-dirty-log", action="store_true",
                    help="skip the dirty-log fetch timing")
    me.set_defaults(func=_cmd_mem)

    from . import placement as placement_bench

    pl = names.add_parser(
        "placement", help="device models in a device process vs the VMM vs the kernel",
        description="What --device-process costs: one exit to the UART (in the VMM, in a "
                    "device process with posted writes, and with every write a round trip), "
                    "the interrupt experiment (compute at --hz with the PIC and PIT in a "
                    "device process, in the VMM, in the kernel) and IDE DMA throughput with "
                    "the disk in and out of process. Timed in the guest; the boundary's cost "
                    "in microseconds per access, and whether a round trip stays within "
                    f"{placement_bench.GOAL_RATIO:g}x the in-process exit.")
    _common_options(pl, placement_bench.DEFAULT_REPS)
    pl.add_argument("--quick", action="store_true",
                    help="a smoke run (small sizes, 1 repetition): not fit for figures")
    pl.add_argument("--n", type=_positive_int, metavar="N",
                    help=f"UART writes per exit run (default {placement_bench.DEFAULT_N})")
    pl.add_argument("--ms", type=_positive_int, metavar="M",
                    help="milliseconds of compute per run (default "
                         f"{placement_bench.DEFAULT_MS})")
    pl.add_argument("--hz", type=_positive_int, default=placement_bench.DEFAULT_HZ,
                    metavar="HZ", help=f"timer rate (default {placement_bench.DEFAULT_HZ})")
    pl.add_argument("--mb", type=_positive_int, metavar="N",
                    help=f"MiB each IDE run reads (default {placement_bench.DEFAULT_MB})")
    pl.add_argument("--kib", type=_positive_int, default=placement_bench.DEFAULT_KIB,
                    metavar="K", help=f"KiB per IDE command (default {placement_bench.DEFAULT_KIB})")
    pl.add_argument("--spin", type=int, default=placement_bench.DEFAULT_SPIN_US, metavar="US",
                    help="also measure the round trip with the VMM spinning this long on the "
                         f"ring before it sleeps (default {placement_bench.DEFAULT_SPIN_US}; 0: "
                         "skip)")
    pl.add_argument("--only", type=_placement_sections, metavar="LIST",
                    help=f"run only these experiments ({','.join(placement_bench.SECTIONS)})")
    pl.set_defaults(func=_cmd_placement)

    pp = names.add_parser(
        "paper", help="every placement benchmark, traced, into one HTML/Markdown report",
        description="The paper's claims checked in one run: every placement benchmark in "
                    "its before and after placements and on QEMU, a traced run of each "
                    "placement to show why, and a report (report.html, summary.md, plots, "
                    "the raw JSON of every run) written into --out.")
    pp.add_argument("--quick", action="store_true",
                    help="a smoke run of a few seconds per section (CI); not fit for figures")
    pp.add_argument("--out", default="paper-report", metavar="DIR",
                    help="where the report goes (default ./paper-report)")
    pp.add_argument("--only", type=_section_list, metavar="LIST",
                    help="run only these sections, comma-separated")
    pp.add_argument("--kernel", metavar="FILE",
                    help="guest kit ELF (default guest/build/guestkit.elf)")
    pp.set_defaults(func=_cmd_paper)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _cmd_exits(args: argparse.Namespace) -> int:
    from . import exits

    return _report(args, lambda: exits.measure(n=args.n, reps=args.reps, kernel=args.kernel,
                                               show_progress=not args.json), exits.render)


def _cmd_boot(args: argparse.Namespace) -> int:
    from . import boot

    return _report(args, lambda: boot.measure(reps=args.reps, disk=args.disk,
                                              kernel=args.kernel,
                                              show_progress=not args.json), boot.render)


def _cmd_startup(args: argparse.Namespace) -> int:
    from . import startup

    if shutil.which(QEMU) is None:
        print(f"pyhvm bench startup: {startup.qemu_missing_note()}", file=sys.stderr)
    return _report(args, lambda: startup.measure(reps=args.reps, kernel=args.kernel,
                                                 show_progress=not args.json), startup.render)


def _cmd_pic(args: argparse.Namespace) -> int:
    from . import pic

    # Progress goes to stderr (a terminal only) even with --json: a default run takes minutes.
    return _report(args, lambda: pic.measure(reps=args.reps, ms=args.ms, hzs=args.hz,
                                             kernel=args.kernel, qemu=not args.no_qemu,
                                             show_progress=True), pic.render)


def _cmd_trace(args: argparse.Namespace) -> int:
    from . import trace as trace_bench

    return _report(args, lambda: trace_bench.measure(n=args.n, reps=args.reps,
                                                     kernel=args.kernel,
                                                     show_progress=not args.json),
                   trace_bench.render)


def _cmd_vga(args: argparse.Namespace) -> int:
    from . import vga as vga_bench

    return _report(args, lambda: vga_bench.measure(reps=args.reps, kernel=args.kernel,
                                                   qemu=not args.no_qemu, ms=args.ms,
                                                   show_progress=True), vga_bench.render)


def _cmd_ide(args: argparse.Namespace) -> int:
    from . import ide

    # Progress goes to stderr even with --json: a default run takes minutes.
    return _report(args, lambda: ide.measure(reps=args.reps, mb=args.mb, sizes=args.sizes,
                                             kernel=args.kernel, qemu=not args.no_qemu,
                                             show_progress=True), ide.render)


def _cmd_net(args: argparse.Namespace) -> int:
    from . import net

    return _report(args, lambda: net.measure(reps=args.reps, kernel=args.kernel,
                                             qemu=not args.no_qemu, show_progress=True,
                                             rx_pps=args.rx_pps, breakdown=args.breakdown),
                   net.render)


def _mem_workloads(text: str) -> tuple[str, ...]:
    from .mem import WORKLOAD_NAMES, parse_list

    try:
        return parse_list(text, WORKLOAD_NAMES, "workload")
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _mem_backings(text: str) -> tuple[str, ...]:
    from .mem import BACKING_NAMES, parse_list

    try:
        return parse_list(text, BACKING_NAMES, "backing")
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _cmd_mem(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from . import mem as mem_bench

    params = mem_bench.QUICK if args.quick else mem_bench.Params()
    sizes = {"touch_mb": args.touch_mb, "random_mb": args.random_mb, "reads": args.reads,
             "churn_n": args.churn_n}
    params = replace(params, **{k: v for k, v in sizes.items() if v is not None})
    reps = mem_bench.QUICK_REPS if args.quick and args.reps == mem_bench.DEFAULT_REPS \
        else args.reps
    return _report(args, lambda: mem_bench.measure(
        reps=reps, params=params, workloads=args.workloads, backings=args.backings,
        kernel=args.kernel, qemu=not args.no_qemu, hugetlbfs=args.hugetlbfs,
        kvmmmu=not args.no_kvmmmu, dirty_log=not args.no_dirty_log, show_progress=True),
        mem_bench.render)


def _placement_sections(text: str) -> tuple[str, ...]:
    from .placement import parse_sections

    try:
        return parse_sections(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _cmd_placement(args: argparse.Namespace) -> int:
    from . import placement as placement_bench

    quick = placement_bench.QUICK if args.quick else {}
    params = placement_bench.Params(
        n=args.n or quick.get("n", placement_bench.DEFAULT_N),
        ms=args.ms or quick.get("ms", placement_bench.DEFAULT_MS), hz=args.hz,
        mb=args.mb or quick.get("mb", placement_bench.DEFAULT_MB), kib=args.kib,
        spin_us=max(0, args.spin))
    reps = quick["reps"] if args.quick and args.reps == placement_bench.DEFAULT_REPS \
        else args.reps
    return _report(args, lambda: placement_bench.measure(
        params, reps=reps, kernel=args.kernel,
        sections=args.only or placement_bench.SECTIONS, show_progress=True),
        placement_bench.render)


def _cmd_paper(args: argparse.Namespace) -> int:
    from pathlib import Path

    from . import paper
    from .report.model import text_lines

    command = "pyhvm bench paper" + (" --quick" if args.quick else "") + f" --out {args.out}"
    if args.only:
        command += f" --only {','.join(args.only)}"
    out = Path(args.out)
    try:
        bundle = paper.run(args.quick, out, kernel=args.kernel, only=args.only,
                           command=command)
        written = paper.write_outputs(bundle, out)
    except (BenchError, OSError) as err:
        print(f"pyhvm bench paper: {err}", file=sys.stderr)
        return EXIT_HOST_ERROR
    except KeyboardInterrupt:
        print("pyhvm bench paper: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    print("\n".join(text_lines(bundle)))
    print(f"report: {written['html']}\nsummary: {written['markdown']}\n"
          f"raw JSON: {written['json']} and {out / 'runs'}/")
    return EXIT_INTERRUPTED if bundle.get("interrupted") else 0


def _report(args: argparse.Namespace, measure: Callable[[], dict[str, Any]],
            render: Callable[[dict[str, Any]], str]) -> int:
    try:
        result = measure()
    except BenchError as err:
        print(f"pyhvm bench {args.bench}: {err}", file=sys.stderr)
        return EXIT_HOST_ERROR
    except OSError as err:  # a spawn or a temporary file failed: still one line
        print(f"pyhvm bench {args.bench}: {err}", file=sys.stderr)
        return EXIT_HOST_ERROR
    except KeyboardInterrupt:
        print(f"pyhvm bench {args.bench}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(render(result))
    return 0
