"""The report's pictures, drawn with matplotlib's object API (a `Figure` saved by the Agg
canvas: no pyplot, no global backend state, no display needed) into PNG bytes that the
HTML embeds as data: URIs and the Markdown links as files.

Each function takes the bundle or one section's entry and returns a Plot, or None where
the run holds no data for it (a section not run, a benchmark without that figure).
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from typing import Any, Callable, Sequence

BEFORE, AFTER, QEMU, OTHER = "#c8553d", "#2f6690", "#6a994e", "#8d99ae"
QUICK_MARK = "quick run: not for figures"


@dataclass(frozen=True)
class Plot:
    name: str        # file stem under plots/
    title: str
    caption: str
    png: bytes

    def data_uri(self) -> str:
        return "data:image/png;base64," + base64.b64encode(self.png).decode("ascii")


def _figure(width: float = 7.5, height: float = 3.6, rows: int = 1) -> tuple[Any, Any]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    axes = fig.subplots(rows, 1, squeeze=False)[:, 0]
    for ax in axes:
        ax.grid(True, axis="y", alpha=0.3)
        ax.set_axisbelow(True)
    return fig, axes


def _png(fig: Any, quick: bool) -> bytes:
    if quick:
        fig.text(0.995, 0.995, QUICK_MARK, ha="right", va="top", fontsize=8,
                 color="#b00020")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def spread(median: float, reps: Sequence[float] | None) -> tuple[float, float]:
    """(below, above) the median to the smallest and largest repetition: error bars."""
    clean = [r for r in (reps or []) if r is not None]
    if not clean:
        return 0.0, 0.0
    return max(median - min(clean), 0.0), max(max(clean) - median, 0.0)


def _log_if_wide(ax: Any, values: Sequence[float], axis: str = "y") -> None:
    positive = [v for v in values if v and v > 0]
    if positive and max(positive) / min(positive) > 30:
        (ax.set_yscale if axis == "y" else ax.set_xscale)("log")


def _grouped_bars(ax: Any, groups: Sequence[str], series: Sequence[tuple[str, str]],
                  value: Callable[[str, str], tuple[float | None, Sequence[float]]]) -> list[float]:
    """Bars per group, one per series (label, colour), whiskers from min to max."""
    width = 0.8 / max(len(series), 1)
    seen: list[float] = []
    for i, (label, colour) in enumerate(series):
        xs, ys, lo, hi = [], [], [], []
        for g, group in enumerate(groups):
            median, reps = value(label, group)
            if median is None:
                continue
            below, above = spread(median, reps)
            xs.append(g + (i - (len(series) - 1) / 2) * width)
            ys.append(median)
            lo.append(below)
            hi.append(above)
        if xs:
            ax.bar(xs, ys, width, yerr=[lo, hi], capsize=3, color=colour, label=label)
            seen += ys
    ax.set_xticks(range(len(groups)), groups)
    return seen


Variant = tuple[str, str, str]  # its name in the runs' config, the legend's label, the colour


def _variant_bars(groups: Sequence[str], variants: Sequence[Variant], present: set[str],
                  value: Callable[[str, str], tuple[float | None, Sequence[float]]]
                  ) -> tuple[Any, Any]:
    """A section's before/after (and QEMU) bars: a group per `groups`, a bar per variant in
    `present`, `value(variant, group)` its median and repetitions; a log scale where the
    bars span a wide range."""
    fig, (ax,) = _figure()
    name_of = {label: name for name, label, _ in variants}
    series = [(label, colour) for name, label, colour in variants if name in present]
    seen = _grouped_bars(ax, groups, series, lambda label, group: value(name_of[label], group))
    _log_if_wide(ax, seen)
    ax.legend(fontsize=8)
    return fig, ax


# --- the overview -----------------------------------------------------------------------------
def overview(bundle: dict[str, Any]) -> Plot | None:
    rows = [e for e in bundle["sections"] if e["kind"] == "optimization" and e["status"] == "ok"
            and (e.get("headline") or {}).get("value") is not None]
    if not rows:
        return None
    fig, (ax,) = _figure(7.5, 1.2 + 0.6 * len(rows))
    names = [f"{e['title']}\n{e['before']} -> {e['after']}" for e in rows]
    values = [e["headline"]["value"] for e in rows]
    errs = [spread(v, e["headline"]["reps"]) for v, e in zip(values, rows)]
    ys = list(range(len(rows)))[::-1]
    ax.errorbar(values, ys, xerr=[[e[0] for e in errs], [e[1] for e in errs]], fmt="o",
                markersize=8, capsize=4, color=AFTER, label="measured (median; whiskers: min-max)")
    claims = [(y, e["claim"]["threshold"]) for y, e in zip(ys, rows)
              if e["claim"].get("threshold")]
    if claims:
        ax.scatter([c[1] for c in claims], [c[0] for c in claims], marker="D", color=BEFORE,
                   zorder=3, label="the paper's figure")
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_yticks(ys, names)
    ax.set_ylim(-0.6, len(rows) - 0.4)
    ax.grid(True, axis="x", which="both", alpha=0.3)
    ax.set_xscale("log")
    span = [v for v in values if v > 0] + [c[1] for c in claims] + [1.0]
    span += [v - e[0] for v, e in zip(values, errs) if v - e[0] > 0]
    span += [v + e[1] for v, e in zip(values, errs)]
    ax.set_xlim(min(span) / 1.6, max(span) * 1.6)
    from matplotlib.ticker import FuncFormatter
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}x"))
    ax.set_xlabel("after over before, log scale (> 1: the paper's change helps)")
    fig.legend(loc="outside lower center", ncol=2, fontsize=8, frameon=False)
    return Plot("overview", "Each optimization: measured ratio beside the paper's figure",
                "The headline ratio of every optimization that ran (median of the "
                "repetitions, whiskers from the smallest to the largest), with the paper's "
                "own figure where it gives one. Left of the line at 1.0 the 'after' "
                "placement lost.", _png(fig, bundle.get("quick", False)))


# --- per section ------------------------------------------------------------------------------
def _runs(entry: dict[str, Any]) -> list[dict[str, Any]]:
    return (entry.get("result") or {}).get("runs", [])


def pic_loss(entry: dict[str, Any], quick: bool) -> Plot | None:
    series: dict[tuple[str, str], list[tuple[int, float, list[float]]]] = {}
    for run in _runs(entry):
        c, m = run["config"], run["metrics"]
        if c.get("hz") and m.get("overhead_pct") is not None:
            series.setdefault((c["vmm"], c["irqchip"]), []).append(
                (c["hz"], m["overhead_pct"], m.get("overhead_pct_reps") or []))
    if not series:
        return None
    fig, (ax,) = _figure()
    styles = {("pyhvm", "user"): ("pyhvm --irqchip user (before)", BEFORE, "o-"),
              ("pyhvm", "kernel"): ("pyhvm --irqchip kernel (after)", AFTER, "o-"),
              ("qemu", "user"): ("QEMU kernel-irqchip=off", QEMU, "s--"),
              ("qemu", "kernel"): ("QEMU kernel-irqchip=on", OTHER, "s--")}
    for key, points in sorted(series.items()):
        label, colour, fmt = styles.get(key, (" ".join(key), OTHER, "x:"))
        points.sort()
        errs = [spread(v, reps) for _, v, reps in points]
        ax.errorbar([p[0] for p in points], [p[1] for p in points],
                    yerr=[[e[0] for e in errs], [e[1] for e in errs]], fmt=fmt, color=colour,
                    capsize=3, label=label)
    rates = sorted({p[0] for pts in series.values() for p in pts})
    ax.set_xticks(rates)
    ax.axhline(0, color="black", linewidth=0.6)
    ax.set_xlabel("timer rate (Hz)")
    ax.set_ylabel("compute lost (%)")
    ax.legend(fontsize=8)
    one = " (one rate only in this run)" if len(rates) == 1 else ""
    return Plot("pic-loss", "Compute lost to the timer, per rate and placement",
                "Share of CPL 3 work lost against the same configuration at 0 Hz, as the "
                f"PIT ticks faster{one}; whiskers: each repetition against its own 0 Hz run.",
                _png(fig, quick))


def ide_throughput(entry: dict[str, Any], quick: bool) -> Plot | None:
    seq = [r for r in _runs(entry) if r["config"].get("scenario") == "disk-seq"
           and r["metrics"].get("mbps") is not None]
    if not seq:
        return None
    keys = sorted({(r["config"]["op"], r["config"]["kib"]) for r in seq},
                  key=lambda k: (k[0] != "read", k[1]))
    by = {(r["config"]["variant"], r["config"]["op"], r["config"]["kib"]): r["metrics"]
          for r in seq}
    variants = [("sync", "--ide-dma sync (before)", BEFORE),
                ("concurrent", "--ide-dma concurrent (after)", AFTER), ("qemu", "QEMU", QEMU)]

    def value(variant: str, group: str) -> tuple[float | None, Sequence[float]]:
        op, kib = group.split()[0], int(group.split()[1])
        m = by.get((variant, op, kib))
        return (None, []) if m is None else (m["mbps"], m.get("mbps_reps") or [])

    fig, ax = _variant_bars([f"{op} {kib} KiB" for op, kib in keys], variants,
                            {k[0] for k in by}, value)
    ax.set_ylabel("MB/s (10^6 bytes/s)")
    return Plot("ide-throughput", "Sequential DMA throughput per command size",
                "Back-to-back DMA reads and writes of one command size, timed in the guest "
                "(median; whiskers: min-max of the repetitions).", _png(fig, quick))


def ide_timeline(entry: dict[str, Any], quick: bool) -> Plot | None:
    trace = entry.get("trace") or {}
    panels = [(mode, trace[mode]) for mode in ("before", "after")
              if "timeline" in (trace.get(mode) or {})]
    if not panels:
        return None
    fig, axes = _figure(7.5, 1.9 * len(panels) + 0.6, rows=len(panels))
    for ax, (mode, run) in zip(axes, panels):
        line = run["timeline"]
        ax.grid(False)
        ax.broken_barh([(s / 1000, max(d, 1) / 1000) for s, d in line["dma"]], (2.6, 0.8),
                       color=AFTER if mode == "after" else BEFORE)
        ax.broken_barh([(s / 1000, d / 1000) for s, d in line["exits"]], (1.6, 0.8),
                       color=OTHER)
        for cpl, colour, label in ((3, QEMU, "CPL 3 (compute)"), (0, "#333333", "CPL 0")):
            xs = [t / 1000 for t, c in line["rip"] if c == cpl]
            if xs:
                ax.scatter(xs, [1.0] * len(xs), s=6, color=colour, label=label)
        ax.set_yticks([3.0, 2.0, 1.0], ["DMA in flight", "vCPU in an exit", "guest RIP"])
        ax.set_ylim(0.5, 3.6)
        ax.set_title(f"{run['label']} ({mode})", fontsize=9, loc="left")
        ax.legend(loc="upper right", fontsize=7, ncol=2)
    axes[-1].set_xlabel("ms from the first trace record")
    return Plot("ide-timeline", "DMA transfers against guest compute, from a trace",
                "One traced disk-overlap run per placement (DMA reads alone, compute alone, "
                "then both together). Top lane: each transfer from the bus-master start to "
                "its completion; middle: the vCPU handling exits; bottom: the guest's RIP "
                "sampled 500 times a second (CPL 3 is the compute loop). Concurrent: the "
                "transfers run on workers while the guest computes.", _png(fig, quick))


def net_throughput(entry: dict[str, Any], quick: bool) -> Plot | None:
    by = {(r["config"]["variant"], r["config"]["test"]): r["metrics"] for r in _runs(entry)}
    groups = [("tx64", "TX 64 B"), ("tx1514", "TX 1514 B"), ("rx64", "RX 64 B"),
              ("rx", "RX 1514 B")]
    groups = [(t, label) for t, label in groups
              if any(by.get((v, t), {}).get("pps") is not None for v in ("event", "poll"))]
    if not groups:
        return None
    variants = [("poll", "--net-mode poll (before)", BEFORE),
                ("event", "--net-mode event (after)", AFTER), ("qemu", "QEMU", QEMU)]
    test_of = {label: t for t, label in groups}

    def value(variant: str, group: str) -> tuple[float | None, Sequence[float]]:
        m = by.get((variant, test_of[group]), {})
        return m.get("pps"), m.get("pps_reps") or []

    fig, ax = _variant_bars([g[1] for g in groups], variants, {k[0] for k in by}, value)
    ax.set_ylabel("frames/s")
    return Plot("net-throughput", "Frames per second, TX and RX",
                "Frames the guest sent or received per second, timed in the guest "
                "(median; whiskers: min-max of the repetitions).", _png(fig, quick))


def net_rtt(entry: dict[str, Any], quick: bool) -> Plot | None:
    trace = entry.get("trace") or {}
    samples = [(trace[m]["label"], trace[m]["rtt_us"], c)
               for m, c in (("before", BEFORE), ("after", AFTER))
               if (trace.get(m) or {}).get("rtt_us")]
    by = {r["config"]["variant"]: r["metrics"] for r in _runs(entry)
          if r["config"].get("test") == "echo" and r["metrics"].get("rtt_p50_us") is not None}
    if not samples and not by:
        return None
    fig, (ax,) = _figure()
    every = []
    for label, rtts, colour in samples:
        ordered = sorted(rtts)
        every += ordered
        ax.step(ordered, [(i + 1) / len(ordered) for i in range(len(ordered))], where="post",
                color=colour, label=f"{label}: {len(ordered)} round trips (traced run)")
    marks = {"poll": ("poll", BEFORE), "event": ("event", AFTER), "qemu": ("QEMU", QEMU)}
    for variant, m in by.items():
        name, colour = marks.get(variant, (variant, OTHER))
        points = [(m["rtt_p50_us"], 0.5), (m.get("rtt_p99_us"), 0.99)]
        points = [p for p in points if p[0] is not None]
        every += [p[0] for p in points]
        ax.scatter([p[0] for p in points], [p[1] for p in points], marker="D", s=30,
                   color=colour, edgecolors="black", zorder=3,
                   label=f"bench net, {name}: p50 and p99 (guest-timed)")
    positive = [v for v in every if v > 0]
    if positive and max(positive) / min(positive) > 10:
        ax.set_xscale("log")
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("round trip (us)")
    ax.set_ylabel("share of round trips")
    ax.legend(fontsize=7, loc="lower right")
    return Plot("net-rtt", "Echo round trips: distribution",
                "Cumulative distribution of the echo round trips of one traced net-echo run "
                "per placement, measured from the guest's transmit doorbell exit to the exit "
                "in which its handler returns the received frame (host clock); diamonds: the "
                "guest-timed median and 99th percentile of `bench net`, QEMU included. "
                "bench net reports percentiles only, so QEMU has no curve.", _png(fig, quick))


def vga_refresh(entry: dict[str, Any], quick: bool) -> Plot | None:
    points = sorted((r["config"]["dirty_percent"], r["metrics"]["ms"],
                     r["metrics"].get("ms_reps") or []) for r in _runs(entry)
                    if r["config"].get("test") == "refresh"
                    and r["config"].get("dirty_percent") is not None
                    and r["metrics"].get("ms") is not None)
    if not points:
        return None
    mode = next((r["config"].get("mode") for r in _runs(entry)
                 if r["config"].get("test") == "refresh"), None) or "?"
    fig, (ax,) = _figure()
    errs = [spread(v, reps) for _, v, reps in points]
    ax.errorbar([p[0] for p in points], [p[1] for p in points],
                yerr=[[e[0] for e in errs], [e[1] for e in errs]], fmt="o-", capsize=3,
                color=AFTER, label=f"pyhvm renderer, {mode}")
    ax.set_xticks([p[0] for p in points])
    ax.set_xlabel("screen dirty (% of the frame's pages)")
    ax.set_ylabel("ms per refresh")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)
    return Plot("vga-refresh", "Display refresh cost against the dirty share of the screen",
                "What one display refresh costs when the dirty log says this much of the "
                "frame changed: the shared placement converts only the dirty scanlines "
                "(median; whiskers: min-max).", _png(fig, quick))


def vga_throughput(entry: dict[str, Any], quick: bool) -> Plot | None:
    by = {(r["config"].get("placement"), r["config"].get("test")): r["metrics"]
          for r in _runs(entry) if r["metrics"].get("mbps") is not None}
    tests = [t for t in ("fill", "blit") if any(k[1] == t for k in by)]
    if not tests:
        return None
    variants = [("trap", "--vga-mem trap (before)", BEFORE),
                ("shared", "--vga-mem shared (after)", AFTER), ("std", "QEMU -vga std", QEMU)]

    def value(placement: str, group: str) -> tuple[float | None, Sequence[float]]:
        m = by.get((placement, group.split()[1]), {})
        return m.get("mbps"), m.get("mbps_reps") or []

    fig, ax = _variant_bars([f"framebuffer {t}" for t in tests], variants,
                            {k[0] for k in by}, value)
    ax.set_ylabel("MB/s (10^6 bytes/s), log scale" if ax.get_yscale() == "log" else "MB/s")
    return Plot("vga-throughput", "Framebuffer throughput per video-memory placement",
                "CPL 3 stores to the linear framebuffer, timed in the guest (median; "
                "whiskers: min-max of the repetitions).", _png(fig, quick))


def exits_bars(entry: dict[str, Any], quick: bool) -> Plot | None:
    by = {(r["config"]["exit"], r["config"]["vmm"]): r["metrics"] for r in _runs(entry)}
    kinds = sorted({k for k, _ in by})
    if not kinds:
        return None
    labels = {"c-reference": "C reference loop", "pyhvm": "pyhvm"}
    inverse = {v: k for k, v in labels.items()}

    def value(label: str, group: str) -> tuple[float | None, Sequence[float]]:
        m = by.get((group, inverse[label]), {})
        return m.get("us_per_exit"), m.get("us_per_exit_reps") or []

    fig, (ax,) = _figure(7.5, 3.2)
    _grouped_bars(ax, kinds, [(labels["c-reference"], OTHER), (labels["pyhvm"], AFTER)], value)
    ax.set_ylabel("us per exit")
    ax.legend(fontsize=8)
    return Plot("exits", "Cost of one VM exit", "Round trip of one exit, timed in the guest "
                "(median; whiskers: min-max).", _png(fig, quick))


def startup_bars(entry: dict[str, Any], quick: bool) -> Plot | None:
    by = {r["config"]["vmm"]: r["metrics"] for r in _runs(entry)}
    if not by:
        return None

    def value(label: str, group: str) -> tuple[float | None, Sequence[float]]:
        key = {"first serial byte": "first_byte_ms", "exit": "exit_ms"}[group]
        m = by.get(label.split()[0].lower(), {})
        return m.get(key), m.get(f"{key}_reps") or []

    fig, (ax,) = _figure(7.5, 3.2)
    series = [(n, c) for n, c in (("pyhvm", AFTER), ("QEMU", QEMU)) if n.lower() in by]
    _grouped_bars(ax, ["first serial byte", "exit"], series, value)
    ax.set_ylabel("ms from spawn")
    ax.legend(fontsize=8)
    return Plot("startup", "Start-up", "Spawn to the guest's first serial byte and to the "
                "process's exit (median; whiskers: min-max).", _png(fig, quick))


PER_SECTION: dict[str, tuple[Callable[[dict[str, Any], bool], Plot | None], ...]] = {
    "pic": (pic_loss,),
    "ide": (ide_throughput, ide_timeline),
    "net": (net_throughput, net_rtt),
    "vga": (vga_throughput, vga_refresh),
    "exits": (exits_bars,),
    "startup": (startup_bars,),
}


def section_plots(entry: dict[str, Any], quick: bool) -> tuple[list[Plot], list[str]]:
    """The section's plots, and a line for each that could not be drawn (the report
    says so rather than failing: a benchmark's JSON may not be what a plot expects)."""
    plots, problems = [], []
    for draw in PER_SECTION.get(entry["name"], ()):
        try:
            plot = draw(entry, quick)
        except Exception as err:  # noqa: BLE001  (one bad plot must not sink the report)
            problems.append(f"plot {draw.__name__} could not be drawn: "
                            f"{type(err).__name__}: {err}")
            continue
        if plot is not None:
            plots.append(plot)
    return plots, problems
