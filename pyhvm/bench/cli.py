"""`pyhvm bench NAME`: argument parsing and output for every benchmark.

A benchmark that cannot run here (no KVM, no gcc, guest kit not built) says so in one line
on stderr and exits with status 3, like `pyhvm run` on a host error; no traceback.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from typing import Any, Callable

from .common import QEMU, BenchError

EXIT_HOST_ERROR = 3
EXIT_INTERRUPTED = 130


def _positive_int(text: str) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is less than 1")
    return value


def _common_options(parser: argparse.ArgumentParser, default_reps: int) -> None:
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object instead of a table")
    parser.add_argument("--reps", type=_positive_int, default=default_reps, metavar="R",
                        help=f"repetitions of each configuration (default {default_reps}); "
                             "medians are reported")
    parser.add_argument("--kernel", metavar="FILE",
                        help="guest kit ELF (default guest/build/guestkit.elf)")


def add_bench_parser(sub: argparse._SubParsersAction) -> None:
    from . import exits, startup

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


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _cmd_exits(args: argparse.Namespace) -> int:
    from . import exits

    return _report(args, lambda: exits.measure(n=args.n, reps=args.reps, kernel=args.kernel,
                                               show_progress=not args.json), exits.render)


def _cmd_startup(args: argparse.Namespace) -> int:
    from . import startup

    if shutil.which(QEMU) is None:
        print(f"pyhvm bench startup: {startup.qemu_missing_note()}", file=sys.stderr)
    return _report(args, lambda: startup.measure(reps=args.reps, kernel=args.kernel,
                                                 show_progress=not args.json), startup.render)


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
