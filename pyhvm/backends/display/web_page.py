"""The page of the web display: a canvas drawn from PNG rectangles sent over a WebSocket,
and the keys typed on it sent back as X11 keysyms (so they take the VNC server's path to
the keyboard). Plain JavaScript, no library; modern browsers (createImageBitmap)."""

from __future__ import annotations

from html import escape

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>pyhvm: %(name)s</title>
<style>
  body { background: #202020; color: #c0c0c0; font: 13px sans-serif; margin: 8px; }
  canvas { image-rendering: pixelated; outline: 1px solid #404040; display: block; }
  canvas:focus { outline-color: #6080ff; }
</style>
</head>
<body>
<div id="status">connecting</div>
<canvas id="screen" width="640" height="480" tabindex="0"></canvas>
<script>
"use strict";
// Header of each update (big-endian): kind u8 (1), x, y, w, h, screen w, screen h (u16).
const HEADER = 13;
// KeyboardEvent.code -> X11 keysym of the key's unshifted symbol (US layout).
const KEYSYMS = {
  Backquote: 0x60, Minus: 0x2d, Equal: 0x3d, BracketLeft: 0x5b, BracketRight: 0x5d,
  Backslash: 0x5c, Semicolon: 0x3b, Quote: 0x27, Comma: 0x2c, Period: 0x2e, Slash: 0x2f,
  Space: 0x20, Enter: 0xff0d, Escape: 0xff1b, Backspace: 0xff08, Tab: 0xff09,
  ShiftLeft: 0xffe1, ShiftRight: 0xffe2, ControlLeft: 0xffe3, ControlRight: 0xffe4,
  AltLeft: 0xffe9, AltRight: 0xffea, MetaLeft: 0xffeb, MetaRight: 0xffec, CapsLock: 0xffe5,
  ContextMenu: 0xff67, ArrowUp: 0xff52, ArrowDown: 0xff54, ArrowLeft: 0xff51,
  ArrowRight: 0xff53, Home: 0xff50, End: 0xff57, PageUp: 0xff55, PageDown: 0xff56,
  Insert: 0xff63, Delete: 0xffff, NumLock: 0xff7f, ScrollLock: 0xff14,
  NumpadDecimal: 0xffae, NumpadAdd: 0xffab, NumpadSubtract: 0xffad,
  NumpadMultiply: 0xffaa, NumpadDivide: 0xffaf, NumpadEnter: 0xff8d,
};
for (let i = 0; i < 26; i++) KEYSYMS["Key" + String.fromCharCode(65 + i)] = 0x61 + i;
for (let i = 0; i < 10; i++) { KEYSYMS["Digit" + i] = 0x30 + i; KEYSYMS["Numpad" + i] = 0xffb0 + i; }
for (let i = 0; i < 12; i++) KEYSYMS["F" + (i + 1)] = 0xffbe + i;

const canvas = document.getElementById("screen");
const context = canvas.getContext("2d");
const status = document.getElementById("status");
// What a test (or a curious person) can read: frames drawn, connection state, key events
// sent, and bytes the socket still holds (a test closing the browser waits for 0).
window.pyhvm = { frames: 0, state: "connecting", keys: 0, unsent: () => socket.bufferedAmount };

function setState(state) { window.pyhvm.state = state; status.textContent = state; }

const scheme = location.protocol === "https:" ? "wss://" : "ws://";
const socket = new WebSocket(scheme + location.host + "/ws");
socket.binaryType = "arraybuffer";
socket.onopen = () => { setState("connected"); canvas.focus(); };
socket.onclose = () => setState("disconnected");
socket.onmessage = async (event) => {
  const view = new DataView(event.data);
  if (view.byteLength < HEADER || view.getUint8(0) !== 1) return;
  const x = view.getUint16(1), y = view.getUint16(3);
  const width = view.getUint16(9), height = view.getUint16(11);
  if (canvas.width !== width || canvas.height !== height) {
    canvas.width = width;
    canvas.height = height;
  }
  const png = new Blob([new Uint8Array(event.data, HEADER)], { type: "image/png" });
  const bitmap = await createImageBitmap(png, { colorSpaceConversion: "none",
                                                premultiplyAlpha: "none" });
  context.drawImage(bitmap, x, y);
  bitmap.close();
  window.pyhvm.frames++;
  socket.send('{"t":"ack"}');  // the server sends the next update after this
};

function key(event, down) {
  const keysym = KEYSYMS[event.code];
  if (keysym === undefined || socket.readyState !== WebSocket.OPEN) return;
  event.preventDefault();
  socket.send(JSON.stringify({ t: "key", k: keysym, d: down }));
  window.pyhvm.keys++;
}
canvas.addEventListener("keydown", (event) => key(event, true));
canvas.addEventListener("keyup", (event) => key(event, false));
canvas.addEventListener("mousedown", () => canvas.focus());
</script>
</body>
</html>
"""


def page(name: str) -> bytes:
    return (PAGE % {"name": escape(name)}).encode()
