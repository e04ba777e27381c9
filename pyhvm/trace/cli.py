"""`pyhvm report` and `pyhvm stat`: argument parsing and output files.

Kept out of pyhvm/cli.py so that file only needs one hook (`add_trace_parsers`); the
commands themselves live in report.py, perfetto.py and stat.py.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TextIO

EXIT_ERROR = 1

FORMATS = ("text", "json", "perfetto", "chrome")


def _non_negative_int(text: str) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is negative")
    return value


def add_trace_parsers(sub: argparse._SubParsersAction) -> None:
    report = sub.add_parser(
        "report", help="where the guest's time went, from a --trace file",
        description="Read a trace written by `pyhvm run --trace FILE`: run summary, exits "
                    "by reason, port, MMIO range and device, latency histograms, "
                    "interrupts, guest RIP samples and a per-second timeline. "
                    "--format perfetto (or chrome) writes Chrome trace-event JSON for "
                    "ui.perfetto.dev or chrome://tracing.")
    report.add_argument("file", metavar="FILE", help="trace file")
    report.add_argument("--format", choices=FORMATS, default="text",
                        help="text (default), json (every number, no top-N cut), or "
                             "perfetto / chrome (trace-event JSON, written to -o)")
    report.add_argument("--json", action="store_true", help="same as --format json")
    report.add_argument("-o", "--output", metavar="OUT",
                        help="write here instead of stdout (perfetto/chrome: default "
                             "FILE.json)")
    report.add_argument("--top", type=_non_negative_int, default=10, metavar="N",
                        help="rows per ranked table in the text report (default 10, 0: all)")
    report.add_argument("--plain", action="store_true",
                        help="plain text even when `rich` is installed")
    report.set_defaults(func=_cmd_report)

    stat = sub.add_parser(
        "stat", help="run a guest and summarize its exits, like `perf kvm stat`",
        usage="pyhvm stat [--top N] -- RUN-ARGS...",
        description="Run a guest exactly as `pyhvm run RUN-ARGS` would, traced into a "
                    "temporary file (removed afterwards), and print exits by reason and "
                    "the busiest ports on stderr when it stops. The exit status is the "
                    "run's.")
    stat.add_argument("--top", type=_non_negative_int, default=10, metavar="N",
                      help="ports to list (default 10, 0: all)")
    stat.add_argument("run_args", nargs=argparse.REMAINDER, metavar="RUN-ARGS",
                      help="arguments of `pyhvm run`, after --")
    stat.set_defaults(func=_cmd_stat)


def _open_output(path: str | None) -> TextIO:
    return open(path, "w") if path else sys.stdout


def _cmd_report(args: argparse.Namespace) -> int:
    from .records import TraceFormatError, read_trace

    fmt = "json" if args.json else args.format
    try:
        header, records = read_trace(args.file)
    except OSError as err:
        print(f"pyhvm: cannot read trace {args.file!r}: {err.strerror or err}", file=sys.stderr)
        return EXIT_ERROR
    except TraceFormatError as err:
        print(f"pyhvm: {args.file}: {err}", file=sys.stderr)
        return EXIT_ERROR
    try:
        if fmt in ("perfetto", "chrome"):
            from .perfetto import write_chrome_trace

            out = args.output or args.file + ".json"
            with open(out, "w") as trace_file:
                count = write_chrome_trace(trace_file, header, records)
            print(f"pyhvm: wrote {count} trace events to {out} (open it in "
                  "ui.perfetto.dev or chrome://tracing)", file=sys.stderr)
            return 0
        from .kvmmmu import load_sidecar
        from .report import analyze, write_text

        report = analyze(header, records, memory=load_sidecar(args.file))
        f = _open_output(args.output)
        try:
            if fmt == "json":
                json.dump(report, f, indent=2)
                f.write("\n")
            else:
                write_text(report, f, top=args.top, plain=args.plain)
        finally:
            if f is not sys.stdout:
                f.close()
    except OSError as err:
        print(f"pyhvm: cannot write {err.filename or 'output'}: {err.strerror or err}",
              file=sys.stderr)
        return EXIT_ERROR
    return 0


def _cmd_stat(args: argparse.Namespace) -> int:
    from .stat import run_stat

    run_args = list(args.run_args)
    if run_args and run_args[0] == "--":
        run_args = run_args[1:]
    if not run_args:
        print("pyhvm stat: give the `pyhvm run` arguments after --, e.g. "
              "pyhvm stat -- --kernel guest/build/guestkit.elf --append scenario=hello",
              file=sys.stderr)
        return 2
    return run_stat(run_args, top=args.top)
