"""`pyhvm fuzz`: run a campaign on a configuration, or replay a reproducer.

This module imports nothing heavy: coverage.py must start measuring before the device
modules are imported, so the engine is imported inside the command.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

DEFAULT_OPS = 100_000
ENGINES = ("cov", "random", "atheris")


def add_fuzz_parser(sub: argparse._SubParsersAction) -> None:
    fuzz = sub.add_parser(
        "fuzz", help="fuzz the device models as a hostile guest (no KVM needed)",
        description="Drive device models with generated port, MMIO, PCI and DMA ops, "
                    "checking after every op that no exception escapes, no DMA leaves guest "
                    "RAM, no device re-enters itself, no op takes more than 50 ms and "
                    "nothing grows without bound. Findings are minimized and written as "
                    "reproducers that --replay runs. Exit status: 0 no violation, 1 "
                    "violations, 4 bad arguments.")
    fuzz.add_argument("--config", action="append", metavar="NAME",
                      help="a device alone (pic, pit, rtc, uart, i8042, pci, ide, rtl8139, "
                           "vga, fw_cfg, and variants: see --list) or the whole PC (pc, "
                           "the default, as a direct kernel boot wires it; pc-bios as "
                           "firmware boots wire it); 'all' for every one; may repeat")
    fuzz.add_argument("--ops", type=int, default=DEFAULT_OPS, metavar="N",
                      help=f"ops to run per configuration (default {DEFAULT_OPS})")
    fuzz.add_argument("--seed", type=int, default=0, metavar="S",
                      help="campaign seed (default 0): same seed, same programs")
    fuzz.add_argument("--engine", choices=ENGINES, default="cov",
                      help="cov: coverage-guided with coverage.py (default; random when it "
                           "is not installed), random, or atheris (optional extra)")
    fuzz.add_argument("--seconds", type=float, metavar="S",
                      help="stop each configuration's campaign after S seconds")
    fuzz.add_argument("--save", default="fuzz-findings", metavar="DIR",
                      help="where reproducers of findings go (default ./fuzz-findings, "
                           "created only when something is found)")
    fuzz.add_argument("--corpus", metavar="DIR",
                      help="keep the programs that reached new branches in DIR/<config>/ and "
                           "start from them next time (cov engine)")
    fuzz.add_argument("--no-minimize", action="store_true",
                      help="save findings as found, without delta debugging")
    fuzz.add_argument("--replay", action="extend", nargs="+", metavar="FILE",
                      help="run reproducers and report their violations, if any")
    fuzz.add_argument("--list", action="store_true", help="list the configurations")
    fuzz.add_argument("--json", action="store_true", help="print one JSON object")
    fuzz.set_defaults(func=_cmd_fuzz)


def _cmd_fuzz(args: argparse.Namespace) -> int:
    from ..errors import HostError

    try:
        if args.replay:
            return _replay(args)
        return _campaigns(args)
    except HostError as error:
        print(f"pyhvm: {error}", file=sys.stderr)
        return 4


def _replay(args: argparse.Namespace) -> int:
    from .engine import replay

    config = args.config[0] if args.config else None
    results = []
    for name in args.replay:
        used, result = replay(Path(name), config)
        results.append({"file": name, "config": used, "ops": result.ops,
                        "violation": result.violation.as_dict() if result.violation else None,
                        "rejected_dma": result.rejected})
    if args.json:
        print(json.dumps(results[0] if len(results) == 1 else {"replays": results}, indent=2))
    else:
        for entry in results:
            violation: Any = entry["violation"]
            verdict = "ok" if violation is None else \
                f"VIOLATION at op {violation['op_index']}: {violation['message']}"
            print(f"{entry['file']} ({entry['config']}, {entry['ops']} ops): {verdict}")
    return 1 if any(entry["violation"] for entry in results) else 0


def _meter(engine: str) -> Any:
    try:
        from .covmeter import CoverageMeter

        meter = CoverageMeter()
    except ImportError:
        if engine == "cov":
            print("pyhvm: coverage.py is not installed; the cov engine runs as random "
                  "(pip install -e '.[test]')", file=sys.stderr)
        return None
    meter.start()
    return meter


def _campaigns(args: argparse.Namespace) -> int:
    from ..errors import HostError

    if args.ops < 0:
        raise HostError("--ops must be >= 0")
    meter = _meter(args.engine)
    if args.engine == "atheris":
        try:
            from .atheris_engine import instrumented
        except ImportError:
            raise HostError("the atheris engine needs atheris: pip install -e '.[fuzz]'") \
                from None
        try:
            with instrumented():
                from . import engine
        except ImportError:
            raise HostError("the atheris engine needs atheris: pip install -e '.[fuzz]'") \
                from None
    from .configs import CONFIGS
    from .engine import Campaign

    if args.list:
        print("\n".join(CONFIGS))
        return 0
    names: list[str] = []
    for item in args.config or ["pc"]:
        for name in item.split(","):
            names.extend(CONFIGS if name == "all" else [name])
    unknown = [name for name in names if name not in CONFIGS]
    if unknown:
        raise HostError(f"--config {unknown[0]}: choose from {', '.join(CONFIGS)} or all")
    save = Path(args.save) if args.save else None
    arcs = meter.arcs if meter is not None else None

    def make(name: str) -> Campaign:
        deadline = time.monotonic() + args.seconds if args.seconds else None
        return Campaign(name, seed=args.seed, engine=args.engine, arcs=arcs, save_dir=save,
                        minimize_findings=not args.no_minimize, deadline=deadline,
                        corpus_dir=Path(args.corpus) if args.corpus else None)

    if args.engine == "atheris":
        from . import atheris_engine

        if len(names) != 1:
            raise HostError("the atheris engine runs one --config at a time")
        started = time.monotonic()

        def finish(stats: Any) -> int:
            stats.seconds = time.monotonic() - started
            return _report(args, [stats], meter)

        atheris_engine.run(names[0], args.ops, args.seed, lambda: make(names[0]), finish)
        return 0  # not reached: atheris exits the process
    results = [make(name).run(args.ops) for name in names]
    return _report(args, results, meter)


def _report(args: argparse.Namespace, results: list[Any], meter: Any) -> int:
    coverage = None
    if meter is not None:
        meter.stop()
        coverage = meter.report()
    if args.json:
        campaigns = [stats.as_dict() for stats in results]
        body: dict[str, object] = dict(campaigns[0]) if len(campaigns) == 1 else \
            {"campaigns": campaigns}
        body["coverage"] = coverage if coverage is not None else "unavailable"
        print(json.dumps(body, indent=2))
    else:
        for stats in results:
            data = stats.as_dict()
            print(f"{data['config']:>9}: {data['ops']} ops in {data['seconds']} s "
                  f"({data['ops_per_s']} ops/s), {data['programs']} programs, "
                  f"{len(data['violations'])} violation(s), corpus {data['corpus']}, "
                  f"{data['rejected_dma']} out-of-RAM DMA refused, {data['cut_short']} "
                  f"program(s) cut short at the timer-callback budget")
            for finding in data["violations"]:
                print(f"    {finding['signature']}: {finding['message']}"
                      f"{' -> ' + finding['reproducer'] if finding['reproducer'] else ''}")
        if isinstance(coverage, dict) and "modules" in coverage:
            print(f"branch coverage of pyhvm/devices: {coverage['branch_percent']}%")
            for module, entry in coverage["modules"].items():  # type: ignore[union-attr]
                print(f"    {module:>18} {entry['branch_percent']:5}%  "
                      f"({entry['covered_branches']}/{entry['branches']} branches)")
    return 1 if any(stats.findings for stats in results) else 0
