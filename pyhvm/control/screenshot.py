"""`pyhvm screenshot --qmp ADDRESS FILE`: save a running VM's screen (QMP `screendump`).

The VM writes the file itself, as QEMU's screendump does, so FILE is made absolute here
(the VM's working directory may differ). PNG unless FILE ends in .ppm.
"""

from __future__ import annotations

import argparse
import os
import sys

from .qmp import parse_address
from .top import QmpClientError, SyncQmpClient


def add_screenshot_parser(sub: argparse._SubParsersAction) -> None:
    shot = sub.add_parser(
        "screenshot", help="save a running VM's screen as PNG (over QMP)",
        description="Ask a VM started with `pyhvm run --qmp unix:PATH,server,wait=off` for "
                    "its screen and write it to FILE: PNG, or PPM when FILE ends in .ppm.")
    shot.add_argument("--qmp", required=True, metavar="ADDRESS",
                      help="the VM's QMP socket: unix:PATH, PATH or tcp:HOST:PORT")
    shot.add_argument("file", metavar="FILE", help="where to write the picture")
    shot.set_defaults(func=_cmd_screenshot)


def _cmd_screenshot(args: argparse.Namespace) -> int:
    from ..errors import HostError

    try:
        address = parse_address(args.qmp, server=False)
    except HostError as err:
        print(f"pyhvm screenshot: {err}", file=sys.stderr)
        return 2
    path = os.path.abspath(args.file)
    fmt = "ppm" if path.lower().endswith(".ppm") else "png"
    try:
        client = SyncQmpClient(address)
    except QmpClientError as err:
        print(f"pyhvm screenshot: {err}", file=sys.stderr)
        return 1
    try:
        client.execute("screendump", {"filename": path, "format": fmt})
    except QmpClientError as err:
        print(f"pyhvm screenshot: {err}", file=sys.stderr)
        return 1
    finally:
        client.close()
    return 0
