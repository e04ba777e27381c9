"""The report of `pyhvm bench paper` in a real browser: headless Chromium, driven through
chromedriver's WebDriver HTTP interface with the standard library, opens report.html
(written from the recorded fixtures) and must log no console error and show every plot
(each <img> loaded, naturalWidth > 0). No network: the page is a local file and the browser
runs with background networking off.

Skips, saying why, where chromium or chromedriver is missing; `.ci/run` installs both and
sets PYHVM_REQUIRE_BROWSER=1, so in CI it must run."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest

from pyhvm.bench import paper
from tests.unit.test_bench_paper_report import full_bundle, quick_bundle

CHROMIUM = "chromium"
DRIVER = "chromedriver"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run",
         "--window-size=1200,900"]
START_TIMEOUT = 30.0
CALL_TIMEOUT = 60.0


def browser_skip_reason() -> str | None:
    missing = [name for name in (CHROMIUM, DRIVER) if shutil.which(name) is None]
    if not missing:
        return None
    reason = f"{' and '.join(missing)} not installed (apt-get install chromium chromium-driver)"
    if os.environ.get("PYHVM_REQUIRE_BROWSER") == "1":
        pytest.fail(f"PYHVM_REQUIRE_BROWSER=1 but {reason}")
    return reason


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class WebDriver:
    """The few W3C WebDriver calls this test needs, over HTTP on loopback."""

    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.session = ""

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=CALL_TIMEOUT) as response:
            return json.loads(response.read())["value"]

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                if self.call("GET", "/status").get("ready"):
                    return
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("chromedriver did not become ready")
            time.sleep(0.2)

    def start(self, profile: Path) -> None:
        options = {"binary": shutil.which(CHROMIUM),
                   "args": [*FLAGS, f"--user-data-dir={profile}"]}
        capabilities = {"browserName": "chrome", "goog:chromeOptions": options,
                        "goog:loggingPrefs": {"browser": "ALL"}}
        value = self.call("POST", "/session", {"capabilities": {"alwaysMatch": capabilities}})
        self.session = value["sessionId"]

    def run(self, script: str) -> Any:
        return self.call("POST", f"/session/{self.session}/execute/sync",
                         {"script": script, "args": []})

    def open(self, url: str) -> None:
        self.call("POST", f"/session/{self.session}/url", {"url": url})

    def console(self) -> list[dict[str, Any]]:
        return self.call("POST", f"/session/{self.session}/se/log", {"type": "browser"})

    def quit(self) -> None:
        if self.session:
            try:
                self.call("DELETE", f"/session/{self.session}")
            except (urllib.error.URLError, OSError):
                pass


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    reason = browser_skip_reason()
    if reason:
        pytest.skip(reason)
    port = _free_port()
    logs = tmp_path_factory.mktemp("chromedriver")
    with open(logs / "driver.log", "wb") as log:
        proc = subprocess.Popen([shutil.which(DRIVER) or DRIVER, f"--port={port}"],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    driver = WebDriver(port)
    try:
        driver.wait_ready()
        driver.start(logs / "profile")
        yield driver
    finally:
        driver.quit()
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


IMAGES = """return Array.from(document.images).map(function (img) {
    return {alt: img.alt, complete: img.complete, width: img.naturalWidth,
            height: img.naturalHeight, shown: img.getBoundingClientRect().width};
});"""


@pytest.mark.parametrize("which", ["quick", "full"])
def test_report_opens_without_errors_and_shows_every_plot(browser: WebDriver, tmp_path: Path,
                                                          which: str) -> None:
    bundle = quick_bundle() if which == "quick" else full_bundle()
    written = paper.write_outputs(bundle, tmp_path)
    browser.console()                                   # drop what earlier pages logged
    browser.open(written["html"].resolve().as_uri())
    assert browser.run("return document.readyState") == "complete"
    images = browser.run(IMAGES)
    plots = [k for k in written if k.startswith("plot ")]
    assert len(images) == len(plots) > 0
    for image in images:
        assert image["complete"] and image["width"] > 0 and image["height"] > 0, image
        assert image["shown"] > 0, image                # laid out, not hidden
    headings = browser.run("return Array.from(document.querySelectorAll('h2'))"
                           ".map(function (h) { return h.id; })")
    assert [h for h in headings if h not in ("claims", "host")] == \
        [e["name"] for e in bundle["sections"]]
    errors = [entry for entry in browser.console() if entry.get("level") == "SEVERE"]
    assert errors == []
