"""The lease-gate file: how the keeper tells the runtime whether it may execute steps.

The runtime reads it (``agent-runtime serve --lease-file``); its format and what the runtime
does with it are written down in agent_runtime/_lease_gate.py. In short: ``{"valid_until":
CLOCK_MONOTONIC seconds, "state": "held" | "unconfirmed", "since": unix time, "reason"}``,
replaced atomically. The runtime caches ``valid_until`` and re-reads the file only in its
last seconds, so a ``valid_until`` once written is a promise that cannot be taken back: the
keeper writes the deadline its own lease gives it (``Held.valid_until``), never more.

The file lives in the keeper's tmpfs (layout.RUN_DIR): the runtime's uid can read it, not
write it, and (on Docker) cannot fill the filesystem under it.
"""

from __future__ import annotations

import json
import os
import time

HELD = "held"
UNCONFIRMED = "unconfirmed"


class GateFile:
    """``path`` None: remember the state, write nothing (the keeper without a runtime)."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self.state: str | None = None
        self.since = time.time()
        self.reason = ""
        self.valid_until = 0.0  # the latest promise made: the runtime may commit until then

    def held(self, valid_until: float, reason: str = "renewed") -> None:
        self._write(HELD, valid_until, reason)

    def unconfirmed(self, reason: str) -> None:
        if self.state != UNCONFIRMED or reason != self.reason:
            self._write(UNCONFIRMED, 0.0, reason)

    def _write(self, state: str, valid_until: float, reason: str) -> None:
        if state != self.state:
            self.since = time.time()
        self.state, self.reason = state, reason
        self.valid_until = max(self.valid_until, valid_until)
        body = {"valid_until": valid_until, "state": state, "since": self.since, "reason": reason}
        if self.path is not None:
            write_atomically(self.path, json.dumps(body).encode(), 0o644)


def write_atomically(path: str, data: bytes, mode: int) -> None:
    """Replace ``path`` with ``data``: a reader sees the old file or the new one, never half."""
    # A fresh name (O_EXCL): in a directory others may write (Swarm's RUN_DIR) a predictable
    # one could be taken first.
    tmp = f"{path}.{os.urandom(8).hex()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        os.write(fd, data)
        os.fchmod(fd, mode)
    finally:
        os.close(fd)
    os.replace(tmp, path)
