"""`--device-process NAME[,NAME...][,KEY=VALUE...]` and `--device-process-failure`.

Names are device groups (protocol.GROUPS). Knobs, for measuring the placement:
- `deadline=S`: seconds a request may wait for the device process (default 1);
- `spin=US`: microseconds the VMM (and the device process, for its next request) spins on
  the ring before sleeping on an eventfd (default 0: sleep at once);
- `post=on|off`: post writes (default) or wait for each, as a read does;
- `seccomp=kill|errno|off`: the device process's filter's default action (default kill).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import HostError
from .protocol import GROUPS

FAILURE_POLICIES = ("fail-device", "stop")
SECCOMP_ACTIONS = ("kill", "errno", "off")
MAX_DEADLINE_S = 600.0
MAX_SPIN_US = 100_000


class DevprocOptionError(HostError):
    """A --device-process option that cannot be used; the message says what to write."""


@dataclass(frozen=True)
class DevprocOptions:
    groups: tuple[str, ...]
    deadline_s: float = 1.0
    spin_us: int = 0
    posted: bool = True
    seccomp: str = "kill"
    failure: str = "fail-device"


def _switch(text: str, key: str) -> bool:
    if text in ("on", "yes", "true", "1"):
        return True
    if text in ("off", "no", "false", "0"):
        return False
    raise DevprocOptionError(f"--device-process {key}={text}: write on or off")


def parse_device_process(text: str, failure: str = "fail-device") -> DevprocOptions:
    groups: list[str] = []
    knobs: dict[str, object] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not sep:
            if key not in GROUPS:
                raise DevprocOptionError(f"--device-process {key!r}: name device groups "
                                         f"from {', '.join(GROUPS)}")
            if key not in groups:
                groups.append(key)
        elif key == "deadline":
            try:
                seconds = float(value)
            except ValueError:
                seconds = -1.0
            if not 0 < seconds <= MAX_DEADLINE_S:
                raise DevprocOptionError(f"--device-process deadline={value}: seconds, "
                                         f"above 0 and at most {MAX_DEADLINE_S:g}")
            knobs["deadline_s"] = seconds
        elif key == "spin":
            if not value.isdigit() or int(value) > MAX_SPIN_US:
                raise DevprocOptionError(f"--device-process spin={value}: microseconds, "
                                         f"0 to {MAX_SPIN_US}")
            knobs["spin_us"] = int(value)
        elif key == "post":
            knobs["posted"] = _switch(value, key)
        elif key == "seccomp":
            if value not in SECCOMP_ACTIONS:
                raise DevprocOptionError(f"--device-process seccomp={value}: use "
                                         f"{'|'.join(SECCOMP_ACTIONS)}")
            knobs["seccomp"] = value
        else:
            raise DevprocOptionError(f"--device-process {item!r}: unknown option (deadline, "
                                     "spin, post, seccomp)")
    if not groups:
        raise DevprocOptionError(f"--device-process {text!r}: name at least one device "
                                 f"group ({', '.join(GROUPS)})")
    if failure not in FAILURE_POLICIES:
        raise DevprocOptionError(f"--device-process-failure {failure!r}: use "
                                 f"{' or '.join(FAILURE_POLICIES)}")
    return DevprocOptions(tuple(groups), failure=failure, **knobs)  # type: ignore[arg-type]
