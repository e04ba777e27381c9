"""Network backends by name: `--netdev TYPE,id=ID,...` in QEMU's spelling, and opening them.

Forms understood (anything else is refused with a one-line reason):
  tap,id=N[,ifname=IF][,script=no][,downscript=no]
  socket,id=N,udp=HOST:PORT,localaddr=HOST:PORT
  dgram,id=N,local.type=inet,local.host=H,local.port=P,remote.type=inet,remote.host=H,remote.port=P
  dgram,id=N,local.type=unix,local.path=P,remote.type=unix,remote.path=Q
A comma inside a value is written twice (`local.path=a,,b`), as QEMU does.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from typing import NamedTuple

from .net_base import (MAX_FRAME, MIN_FRAME, NetBackend, NetCounters, NetError)
from .net_dgram import DgramBackend
from .net_tap import TapBackend, check_ifname

__all__ = ["MAX_FRAME", "MIN_FRAME", "DgramBackend", "InetAddress", "NetBackend",
           "NetCounters", "NetError", "NetdevConfig", "TapBackend", "open_backend",
           "parse_netdev", "parse_options", "split_options"]

TYPES = ("tap", "socket", "dgram")
_ID = re.compile(r"[A-Za-z][A-Za-z0-9._-]*\Z")  # QEMU's rule for object ids
_HOSTNAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?\Z")
_NOT_HERE = {
    "user": "user networking (slirp) is not implemented: use tap",
    "bridge": "the bridge helper is not implemented: use tap and add the TAP to the bridge",
    "vhost-user": "vhost-user is not implemented: use tap",
    "l2tpv3": "l2tpv3 is not implemented: use dgram",
    "vde": "vde is not implemented: use dgram",
    "stream": "stream (TCP) is not implemented: use dgram",
}


class InetAddress(NamedTuple):
    host: str  # as given: a numeric address or a host name; "" means any (local only)
    port: int


@dataclasses.dataclass(frozen=True)
class NetdevConfig:
    """A parsed --netdev. `kind` is the transport: "tap", "udp" or "unix"."""

    kind: str
    id: str
    ifname: str | None = None  # tap: None lets the kernel pick tapN
    local: InetAddress | str | None = None  # udp: InetAddress; unix: a path
    remote: InetAddress | str | None = None


def split_options(spec: str) -> list[str]:
    """Split on single commas; a doubled comma is a literal one (QEMU's escape)."""
    parts, current, i = [], [], 0
    while i < len(spec):
        if spec[i] == ",":
            if spec.startswith(",,", i):
                current.append(",")
                i += 2
                continue
            parts.append("".join(current))
            current = []
        else:
            current.append(spec[i])
        i += 1
    parts.append("".join(current))
    return parts


def parse_options(spec: str, what: str) -> tuple[str, dict[str, str]]:
    """`TYPE,key=value,...` (or `type=TYPE,...`) into the type and a dict of options."""
    parts = split_options(spec.strip())
    kind = ""
    if parts and "=" not in parts[0]:
        kind = parts.pop(0).strip()
    options: dict[str, str] = {}
    for part in parts:
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or not key:
            raise NetError(f"{what} {spec!r}: {part!r} is not key=value")
        if key in options:
            raise NetError(f"{what} {spec!r}: {key}= is given twice")
        options[key] = value
    if not kind:
        kind = options.pop("type", "")
    return kind, options


def parse_netdev(spec: str) -> NetdevConfig:
    kind, options = parse_options(spec, "--netdev")
    if not kind:
        raise NetError(f"--netdev {spec!r} has no type: write TYPE,id=NAME,... with TYPE one "
                       f"of {', '.join(TYPES)}")
    if kind in _NOT_HERE:
        raise NetError(f"--netdev {kind}: {_NOT_HERE[kind]}")
    if kind not in TYPES:
        raise NetError(f"unknown --netdev type {kind!r}: use one of {', '.join(TYPES)}")
    netdev_id = options.pop("id", None)
    if not netdev_id:
        raise NetError(f"--netdev {spec!r} has no id=: add id=NAME (the NIC names it with "
                       f"netdev=NAME)")
    if not _ID.match(netdev_id):
        raise NetError(f"--netdev id {netdev_id!r}: start with a letter and use only "
                       f"letters, digits, '-', '.' and '_'")
    parse = {"tap": _parse_tap, "socket": _parse_socket, "dgram": _parse_dgram}[kind]
    return parse(netdev_id, options)


def open_backend(config: NetdevConfig) -> NetBackend:
    """Make the backend a config names; raises NetError (a HostError) with the fix."""
    if config.kind == "tap":
        return TapBackend(config.ifname)
    if config.kind == "udp":
        assert isinstance(config.local, InetAddress) and isinstance(config.remote, InetAddress)
        return DgramBackend.udp(config.local, config.remote)
    if config.kind == "unix":
        assert isinstance(config.local, str) and isinstance(config.remote, str)
        return DgramBackend.unix(config.local, config.remote)
    raise NetError(f"netdev {config.id}: unknown backend kind {config.kind!r}")


# --- per type ------------------------------------------------------------------------------
def _refuse_unknown(kind: str, options: dict[str, str], known: tuple[str, ...]) -> None:
    for key in options:
        if key not in known:
            raise NetError(f"--netdev {kind}: unknown option {key}= (known: "
                           f"{', '.join(k + '=' for k in known)})")


def _parse_tap(netdev_id: str, options: dict[str, str]) -> NetdevConfig:
    _refuse_unknown("tap", options, ("ifname", "script", "downscript"))
    for key in ("script", "downscript"):
        if options.get(key, "no") != "no":
            raise NetError(f"--netdev tap: pyhvm never runs {key}s: give {key}=no (or leave it "
                           f"out) and configure the interface yourself")
    ifname = options.get("ifname") or None
    if ifname is not None:
        check_ifname(ifname)
    return NetdevConfig("tap", netdev_id, ifname=ifname)


def _parse_socket(netdev_id: str, options: dict[str, str]) -> NetdevConfig:
    for key in ("listen", "connect"):
        if key in options:
            raise NetError(f"--netdev socket,{key}= (TCP) is not implemented: use "
                           f"socket,udp=HOST:PORT,localaddr=HOST:PORT or dgram")
    if "mcast" in options or "fd" in options:
        raise NetError("--netdev socket: only udp= with localaddr= is implemented")
    _refuse_unknown("socket", options, ("udp", "localaddr"))
    if "udp" not in options or "localaddr" not in options:
        raise NetError("--netdev socket needs both udp=REMOTE_HOST:PORT and "
                       "localaddr=LOCAL_HOST:PORT (e.g. udp=127.0.0.1:5556,"
                       "localaddr=127.0.0.1:5555)")
    remote = _host_port(options["udp"], "udp", local=False)
    local = _host_port(options["localaddr"], "localaddr", local=True)
    return NetdevConfig("udp", netdev_id, local=local, remote=remote)


_DGRAM_KNOWN = ("local.type", "local.host", "local.port", "local.path",
                "remote.type", "remote.host", "remote.port", "remote.path")


def _parse_dgram(netdev_id: str, options: dict[str, str]) -> NetdevConfig:
    _refuse_unknown("dgram", options, _DGRAM_KNOWN)
    ends = {}
    for end in ("local", "remote"):
        end_type = options.get(f"{end}.type")
        if end_type is None:
            raise NetError(f"--netdev dgram needs {end}.type=inet or {end}.type=unix (pyhvm "
                           f"does not guess the {end} address)")
        if end_type not in ("inet", "unix"):
            raise NetError(f"--netdev dgram: {end}.type={end_type} is not implemented: use "
                           f"inet or unix")
        ends[end] = end_type
    if ends["local"] != ends["remote"]:
        raise NetError(f"--netdev dgram: local.type={ends['local']} and remote.type="
                       f"{ends['remote']} differ: both ends must be inet or both unix")
    if ends["local"] == "unix":
        return _dgram_unix(netdev_id, options)
    return _dgram_inet(netdev_id, options)


def _dgram_unix(netdev_id: str, options: dict[str, str]) -> NetdevConfig:
    for end in ("local", "remote"):
        for key in ("host", "port"):
            if f"{end}.{key}" in options:
                raise NetError(f"--netdev dgram: {end}.{key}= does not go with "
                               f"{end}.type=unix: give {end}.path=")
        if not options.get(f"{end}.path"):
            raise NetError(f"--netdev dgram with unix sockets needs {end}.path=PATH")
    return NetdevConfig("unix", netdev_id, local=options["local.path"],
                        remote=options["remote.path"])


def _dgram_inet(netdev_id: str, options: dict[str, str]) -> NetdevConfig:
    addresses = {}
    for end in ("local", "remote"):
        if f"{end}.path" in options:
            raise NetError(f"--netdev dgram: {end}.path= does not go with {end}.type=inet: "
                           f"give {end}.host= and {end}.port=")
        host, port = options.get(f"{end}.host"), options.get(f"{end}.port")
        if host is None or port is None:
            raise NetError(f"--netdev dgram with inet sockets needs {end}.host= and "
                           f"{end}.port=")
        addresses[end] = InetAddress(_check_host(host, f"{end}.host", end == "local"),
                                     _check_port(port, f"{end}.port", end == "local"))
    return NetdevConfig("udp", netdev_id, local=addresses["local"], remote=addresses["remote"])


def _host_port(text: str, key: str, local: bool) -> InetAddress:
    """HOST:PORT or [IPV6]:PORT."""
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise NetError(f"--netdev socket: {key}={text!r} is not [IPV6]:PORT")
        port = rest[1:]
    else:
        host, sep, port = text.rpartition(":")
        if not sep or ":" in host:
            raise NetError(f"--netdev socket: {key}={text!r} is not HOST:PORT (e.g. "
                           f"127.0.0.1:5555; write IPv6 as [::1]:5555)")
    return InetAddress(_check_host(host, key, local), _check_port(port, key, local))


def _check_host(host: str, key: str, local: bool) -> str:
    if not host:
        if local:
            return ""  # any local address
        raise NetError(f"--netdev: {key} needs a host (the peer's address)")
    try:
        ipaddress.ip_address(host)
        return host
    except ValueError:
        pass
    if not _HOSTNAME.match(host):
        raise NetError(f"--netdev: {key} {host!r} is neither an IP address nor a host name")
    return host


def _check_port(port: str, key: str, local: bool) -> int:
    lowest = 0 if local else 1  # local port 0: the kernel picks one
    if not port.strip().isdigit() or not lowest <= int(port) <= 65535:
        raise NetError(f"--netdev: {key} port {port!r} must be a number from {lowest} to 65535")
    return int(port)
