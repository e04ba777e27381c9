"""The report of `pyhvm bench paper` from recorded JSON (tests/fixtures/paper): every section
is there, the missing ones stated with their reason, the claim beside the measured ratio,
plots embedded as PNG data (nothing fetched to view the page), the Markdown summary and the
files written. No KVM: the bundle was recorded by `pyhvm bench paper --quick` before bench vga
and bench mem existed (so it has missing sections); their results were recorded later."""

from __future__ import annotations

import base64
import copy
import json
import re
import struct
from html import unescape
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from pyhvm.bench import paper
from pyhvm.bench.paper_sections import SECTION_NAMES, by_name
from pyhvm.bench.report import build, model, write_report
from pyhvm.bench.report import html as report_html
from pyhvm.bench.report import markdown as report_md
from pyhvm.bench.report.plots import QUICK_MARK, section_plots

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "paper"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def load(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text())


def quick_bundle() -> dict[str, Any]:
    return load("quick-bundle.json")


def full_bundle() -> dict[str, Any]:
    """The recorded run with bench vga and bench mem results (recorded after it, when
    those benchmarks existed) added, marked as a full run."""
    bundle = quick_bundle()
    for name, fixture in (("vga", "vga-quick.json"), ("mem", "mem-quick.json")):
        index = next(i for i, e in enumerate(bundle["sections"]) if e["name"] == name)
        bundle["sections"][index] = paper.section_entry(by_name(name), False, "ok", None,
                                                        load(fixture))
    bundle.update(quick=False, fit_for_figures=True, warning=None)
    return bundle


class Page(HTMLParser):
    """What the browser would fetch or run: every src/href, scripts, images, ids."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.images: list[dict[str, str]] = []
        self.scripts = 0
        self.ids: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {k: v or "" for k, v in attrs}
        self.links += [attributes[k] for k in ("src", "href") if k in attributes]
        if tag == "img":
            self.images.append(attributes)
        if tag == "script":
            self.scripts += 1
        if "id" in attributes:
            self.ids.append(attributes["id"])


def parse(text: str) -> Page:
    page = Page()
    page.feed(text)
    return page


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_MAGIC
    return struct.unpack(">II", data[16:24])


Built = tuple[dict[str, Any], Any, dict[str, Any]]


@pytest.fixture(scope="module")
def quick_built() -> Built:
    """The recorded quick bundle and its plots (drawn once: matplotlib takes a while)."""
    bundle = quick_bundle()
    return (bundle, *build(bundle))


@pytest.fixture(scope="module")
def full_built() -> Built:
    bundle = full_bundle()
    return (bundle, *build(bundle))


@pytest.fixture(scope="module")
def quick_html(quick_built: Built) -> str:
    return report_html.render(*quick_built)


# --- every section, missing ones stated -------------------------------------------------------
def test_fixture_has_every_section_and_the_missing_ones_with_reasons() -> None:
    bundle = quick_bundle()
    assert [e["name"] for e in bundle["sections"]] == list(SECTION_NAMES)
    missing = {e["name"]: e["reason"] for e in bundle["sections"] if e["status"] != "ok"}
    assert set(missing) == {"vga", "mem"}


def test_html_has_a_section_per_benchmark_and_states_missing_ones(quick_html: str) -> None:
    page = parse(quick_html)
    assert [i for i in page.ids if i in SECTION_NAMES] == list(SECTION_NAMES)
    for name in ("vga", "mem"):
        reason = f"pyhvm/bench/{name}.py does not exist in this checkout"
        assert f"not run: {reason}" in quick_html
    assert quick_html.count("Not run in this report:") == 1


def test_claims_table_puts_the_paper_beside_the_measurement() -> None:
    bundle = quick_bundle()
    rows = {r["name"]: r for r in model.claim_rows(bundle)}
    net = next(e for e in bundle["sections"] if e["name"] == "net")
    assert rows["net"]["claim"] == "> 10x"
    assert rows["net"]["measured"] == f"{net['headline']['value']:.2f}x"
    assert rows["pic"]["claim"] == "+10 %"
    assert rows["pic"]["measured"].endswith(" %") and rows["pic"]["measured"][0] in "+-"
    assert rows["ide"]["claim"] == "no figure"
    assert rows["vga"]["measured"] == "not run" and rows["vga"]["verdict"].startswith("not run:")
    assert rows["pic"]["spread"] == "1 repetition (no spread)"
    assert "QEMU" in rows["net"]["qemu"]


def test_a_section_run_without_qemu_says_so() -> None:
    bundle = quick_bundle()
    ide = next(e for e in bundle["sections"] if e["name"] == "ide")
    ide["params"]["qemu"], ide["headline"]["qemu"] = False, None
    rows = {r["name"]: r for r in model.claim_rows(bundle)}
    assert rows["ide"]["qemu"] == "not measured in this run (qemu=False)"
    assert model.qemu_line(ide) == "QEMU beside: not measured in this run (qemu=False)"
    exits = next(e for e in bundle["sections"] if e["name"] == "exits")
    assert rows["exits"]["qemu"] == "-" and model.qemu_line(exits) is None


def test_spread_is_min_to_max_of_the_repetitions() -> None:
    assert model.fmt_spread([1.2, 1.05, 1.1], "gain") == "+5.0 % to +20.0 % (3 repetitions)"
    assert model.fmt_spread([12.0, 9.5], "x") == "9.50x to 12.00x (2 repetitions)"
    assert model.fmt_spread([], "x") == "n/a"


# --- self-contained, with plots ---------------------------------------------------------------
def test_html_needs_nothing_from_the_network(quick_html: str) -> None:
    page = parse(quick_html)
    assert page.scripts == 0
    assert not re.search(r"url\(|@import", quick_html)
    for link in page.links:
        assert link.startswith("data:image/png;base64,"), link[:60]


def test_every_plot_is_an_embedded_png_with_alt_text(quick_html: str) -> None:
    page = parse(quick_html)
    names = [i[len("plot-"):] for i in page.ids if i.startswith("plot-")]
    assert names == ["overview", "pic-loss", "ide-throughput", "ide-timeline",
                     "net-throughput", "net-rtt", "exits", "startup"]
    assert len(page.images) == len(names)
    for image in page.images:
        data = base64.b64decode(image["src"].split(",", 1)[1])
        width, height = png_size(data)
        assert width > 100 and height > 100 and image["alt"]


def test_quick_runs_are_marked_everywhere_and_full_runs_are_not(quick_built: Built,
                                                                full_built: Built) -> None:
    assert "not fit for figures" in report_html.render(*quick_built)
    assert "not fit for figures" in report_md.render(*quick_built)
    text = report_html.render(*full_built) + report_md.render(*full_built)
    assert "not fit for figures" not in text and QUICK_MARK not in text


def test_why_tables_show_the_exit_profile_before_and_after(quick_html: str) -> None:
    bundle = quick_bundle()
    pic = next(e for e in bundle["sections"] if e["name"] == "pic")
    diff = pic["trace"]["diff"]
    assert diff["gone"], "the in-kernel PIC removes the 8259 port exits"
    assert model.profile_summary(diff) in unescape(quick_html)
    assert quick_html.count("Why: the exit profile before and after") == \
        sum(1 for e in bundle["sections"] if e["status"] == "ok")
    assert "no traced runs for this section" in quick_html      # exits, startup


# --- sections whose benchmark exists later ----------------------------------------------------
def test_vga_and_mem_render_when_their_benchmarks_report(full_built: Built) -> None:
    bundle, top, sections = full_built
    vga = next(e for e in bundle["sections"] if e["name"] == "vga")
    assert vga["headline"]["key"] == "fill_shared_over_trap"
    assert vga["headline"]["value"] == vga["result"]["ratios"]["fill_shared_over_trap"]
    assert vga["verdict"] == "reproduced: at least the paper's several x (>= 2x)"
    assert vga["headline"]["qemu"]["unit"] == "MB/s"
    assert [p.name for p in sections["vga"][0]] == ["vga-throughput", "vga-refresh"]
    assert vga["trace"] is None    # run_section traces; section_entry keeps what it is given
    mem = next(e for e in bundle["sections"] if e["name"] == "mem")
    assert mem["headline"]["key"] == "touch-4k:pyhvm:anon+thp_over_best"
    assert mem["headline"]["value"] == mem["result"]["ratios"][mem["headline"]["key"]]
    text = unescape(re.sub(r"<[^>]+>", "", report_html.render(bundle, top, sections)))
    assert "Not run in this report" not in text
    assert f"Measured: {model.fmt_value(vga['headline']['value'], 'x')} framebuffer fill" in text
    assert "slowest RAM backing against the best configuration of its workload " \
        "(touch-4k:pyhvm:anon+thp_over_best)" in text


def test_a_benchmark_json_a_plot_cannot_read_is_reported_not_fatal(full_built: Built) -> None:
    bundle, top, sections = copy.deepcopy(full_built[0]), full_built[1], full_built[2]
    vga = next(e for e in bundle["sections"] if e["name"] == "vga")
    vga["result"]["runs"].append({"metrics": {"mbps": 1.0}})     # no config at all
    plots, problems = section_plots(vga, False)
    assert plots == [] and problems == [
        f"plot {name} could not be drawn: KeyError: 'config'"
        for name in ("vga_throughput", "vga_refresh")]
    text = report_html.render(bundle, top, {**sections, "vga": (plots, problems)})
    assert problems[0] in unescape(text)


def test_a_failed_traced_run_is_stated(quick_built: Built) -> None:
    bundle = copy.deepcopy(quick_built[0])
    net = next(e for e in bundle["sections"] if e["name"] == "net")
    net["trace"]["after"] = {"label": "--net-mode event", "args": [], "error": "boom"}
    del net["trace"]["diff"]
    text = report_html.render(bundle, quick_built[1], quick_built[2])
    assert "the traced after run (--net-mode event) failed: boom" in unescape(text)


# --- the files --------------------------------------------------------------------------------
def test_write_outputs_writes_report_summary_plots_and_raw_json(tmp_path: Path) -> None:
    bundle = quick_bundle()
    written = paper.write_outputs(bundle, tmp_path)
    assert json.loads((tmp_path / "paper.json").read_text()) == bundle
    for name in ("pic", "ide", "net", "exits", "startup"):
        raw = json.loads((tmp_path / "runs" / f"{name}.json").read_text())
        assert raw["bench"] == name and {"host", "runs", "ratios"} <= set(raw)
    assert not (tmp_path / "runs" / "vga.json").exists()
    summary = written["markdown"].read_text()
    for image in re.findall(r"\]\((plots/[^)]+)\)", summary):
        assert png_size((tmp_path / image).read_bytes())[0] > 0
    lines = summary.splitlines()
    start = lines.index("| section | before -> after | the paper | measured | spread | "
                        "QEMU beside | verdict |")
    claims = lines[start:lines.index("", start)]
    assert len(claims) == 2 + len(SECTION_NAMES)    # header, rule, a row per section
    assert "| Video memory | --vga-mem trap -> --vga-mem shared | several x (>= 2x) | not run |" \
        in summary
    assert written["html"].read_text().startswith("<!DOCTYPE html>")


def test_host_description_names_cpu_kernel_kvm_python_and_qemu() -> None:
    rows = dict(model.host_rows(quick_bundle()))
    assert {"CPU", "Linux kernel", "KVM module", "Python", "QEMU"} <= set(rows)
    host = quick_bundle()["host"]
    assert rows["KVM module"].startswith(host["kvm_module"])
    assert host["qemu"] in rows["QEMU"] and host["kernel"] == rows["Linux kernel"]


def test_write_report_alone_needs_only_the_bundle(tmp_path: Path) -> None:
    written = write_report(full_bundle(), tmp_path)
    assert {"html", "markdown", "plot overview", "plot vga-refresh"} <= set(written)


def test_an_overview_that_cannot_be_drawn_is_stated(monkeypatch: pytest.MonkeyPatch,
                                                    quick_built: Built) -> None:
    import pyhvm.bench.report as report

    def broken(bundle: dict[str, Any]) -> None:
        raise ValueError("no axes")

    monkeypatch.setattr(report, "overview", broken)
    monkeypatch.setattr(report, "section_plots", lambda entry, quick: ([], []))
    bundle = quick_built[0]
    top, sections = report.build(bundle)
    assert top is None
    line = "the overview plot could not be drawn: ValueError: no axes"
    assert line in report_html.render(bundle, top, sections)
    assert line in report_md.render(bundle, top, sections)
