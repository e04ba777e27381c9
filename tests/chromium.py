"""Headless Chromium for tests, driven over its DevTools protocol with the test WebSocket
client: open a page, evaluate JavaScript, type keys, read a canvas's pixels."""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from typing import Any

import numpy as np

from tests.ws_client import WsClient

STARTUP_S = 30.0
CALL_TIMEOUT_S = 20.0
CANDIDATES = ("chromium", "chromium-browser", "google-chrome")

# The canvas's RGBA as one base64 string (in slices: String.fromCharCode takes few arguments).
READ_CANVAS = """(() => {
  const canvas = document.getElementById("screen");
  const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  let text = "";
  for (let i = 0; i < data.length; i += 0x8000)
    text += String.fromCharCode.apply(null, data.subarray(i, i + 0x8000));
  return [canvas.width, canvas.height, btoa(text)];
})()"""


def chromium_path() -> str | None:
    for name in CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


def missing_reason() -> str | None:
    if chromium_path() is None:
        return "Chromium not found (apt-get install chromium)"
    return None


class Chromium:
    """One headless browser with one page at `url`; `close()` ends it and its children."""

    def __init__(self, url: str) -> None:
        path = chromium_path()
        assert path is not None
        self.profile = tempfile.mkdtemp(prefix="pyhvm-chromium-")
        args = [path, "--headless=new", "--disable-gpu", "--no-first-run",
                "--no-default-browser-check", "--disable-extensions",
                "--remote-debugging-port=0", f"--user-data-dir={self.profile}", url]
        if os.geteuid() == 0:
            args.insert(1, "--no-sandbox")  # Chromium refuses to run as root otherwise
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        self._id = 0
        try:
            port = self._devtools_port()
            self.page = self._connect_page(port, url)
            self.call("Emulation.setFocusEmulationEnabled", {"enabled": True})
            self.call("Page.bringToFront")
        except BaseException:
            self.close()
            raise

    def _devtools_port(self) -> int:
        marker = os.path.join(self.profile, "DevToolsActivePort")
        deadline = time.monotonic() + STARTUP_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Chromium exited with status {self.proc.returncode}")
            try:
                with open(marker) as f:
                    first = f.readline().strip()
                if first:
                    return int(first)
            except (FileNotFoundError, ValueError):
                pass
            time.sleep(0.05)
        raise TimeoutError("Chromium did not open its DevTools port")

    def _connect_page(self, port: int, url: str) -> WsClient:
        deadline = time.monotonic() + STARTUP_S
        while time.monotonic() < deadline:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as r:
                targets = json.load(r)
            for target in targets:
                if target.get("type") == "page" and target.get("url", "").startswith(url):
                    ws_url = target["webSocketDebuggerUrl"]
                    path = ws_url.split(str(port), 1)[1]
                    return WsClient("127.0.0.1", port, path, timeout=CALL_TIMEOUT_S)
            time.sleep(0.05)
        raise TimeoutError(f"no page for {url}")

    def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        self._id += 1
        self.page.send_json({"id": self._id, "method": method, "params": params or {}})
        while True:
            _, payload = self.page.recv()
            message = json.loads(payload)
            if message.get("id") == self._id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", {"expression": expression,
                                                "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = CALL_TIMEOUT_S) -> Any:
        """Poll a JavaScript expression until it is truthy; its value."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"{expression} stayed {value!r}")
            time.sleep(0.05)

    def canvas(self) -> np.ndarray:
        """The page's canvas as (height, width, 3) RGB."""
        width, height, data = self.evaluate(READ_CANVAS)
        rgba = np.frombuffer(base64.b64decode(data), np.uint8).reshape(height, width, 4)
        return rgba[:, :, :3].copy()

    def key(self, code: str, key: str, keycode: int, down: bool) -> None:
        self.call("Input.dispatchKeyEvent", {"type": "rawKeyDown" if down else "keyUp",
                                             "code": code, "key": key,
                                             "windowsVirtualKeyCode": keycode})

    def close(self) -> None:
        try:
            if getattr(self, "page", None) is not None:
                self.page.close()
        finally:
            try:  # the whole session: the browser and its zygote, renderer, GPU children
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=10)
            shutil.rmtree(self.profile, ignore_errors=True)
