"""The three error families (see shared/docs/style.md).

- guest-caused: `pyhvm.devices.base.GuestError`; logged, counted, made guest-visible, the VM
  runs on.
- host-caused: `HostError`; the user gave something unusable or the host lacks something.
  The message is one line that says what to do; the CLI prints it without a traceback.
- bugs: any other exception; they crash loudly in tests.
"""

from __future__ import annotations


class HostError(Exception):
    """A host-side problem the user can fix; `str(err)` says how."""
