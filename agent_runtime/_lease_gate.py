"""The lease gate: the runtime executes and records steps only while the tenant's lease is
confirmed, so that it never becomes a second writer. ``agent-runtime serve --lease-file
PATH`` (or ``AGENT_RUNTIME_LEASE_FILE``); without it nothing here is used.

The contract with the supervisor (it writes the file, the runtime only reads it)
-------------------------------------------------------------------------------------
The file is a small JSON object, replaced atomically (write a temporary file in the same
directory, then ``rename`` it over PATH); the runtime needs read access only::

    {"valid_until": 12345.678,  # CLOCK_MONOTONIC seconds (Python: time.monotonic() of the
                                # writer; comparable between processes on one kernel)
     "state": "held",           # "held" or "unconfirmed"
     "since": 1764374400.0,     # unix time of the last change of "state"
     "reason": "renewed"}       # free text, shown by /healthz (e.g. "store unreachable")

- The supervisor writes ``state: "held"`` with ``valid_until`` = the last moment it is sure
  no contender can hold the lease (its own renewal deadline, its safety margin already
  taken off), and writes it again on each renewal. It writes ``state: "unconfirmed"`` (any
  ``valid_until``) as soon as it cannot vouch for the lease any more.
- The runtime treats the lease as valid while ``state`` is ``"held"`` and
  ``time.monotonic() < valid_until - MARGIN``. Otherwise (also: file missing, unreadable,
  not this shape) it is *closed*: it starts no step, commits nothing (a transaction that
  would commit after the deadline is rolled back; a step that finishes late is discarded
  and its run interrupted, to be re-executed later: never failed, never recorded twice),
  answers writes (``POST`` runs, signals, cancel) with 503 and ``Retry-After``, keeps
  answering reads, and ``/healthz`` answers 200 with ``{"status": "degraded", "lease":
  {"state", "reason", "since"}}``. ``/metrics`` has ``agent_runtime_lease_held`` (1/0) and
  ``agent_runtime_lease_valid_seconds``.
- When the file says ``held`` again with a future ``valid_until``, execution resumes by
  itself (within ``POLL`` seconds); interrupted runs continue from their history.
- Cost: a step compares ``time.monotonic()`` with a cached deadline. The file is re-read
  only within ``NEAR`` seconds of the deadline (or while closed), at most once every
  ``POLL`` seconds, and parsed only when it changed (inode, size or mtime).
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ._errors import AgentRuntimeError

MARGIN = 0.5  # s before valid_until at which the runtime stops committing
NEAR = 3.0  # s before the deadline from which the file is re-read
POLL = 0.1  # s between two reads of the file, at least
STATES = ("held", "unconfirmed")


class LeaseUnconfirmed(AgentRuntimeError):
    """The tenant's lease is not confirmed: no step runs and nothing is recorded."""

    retry_after = 5


@dataclass(frozen=True, slots=True)
class LeaseState:
    held: bool  # valid now (state held and deadline not passed)
    state: str  # held | unconfirmed | expired | missing | unreadable
    since: float | None  # unix time
    reason: str
    valid_until: float | None  # monotonic, as written

    def as_json(self) -> dict[str, Any]:
        return {"state": self.state, "since": self.since, "reason": self.reason}


def parse(text: str) -> dict[str, Any]:
    """The file's content, checked; ValueError says what is wrong."""
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    valid_until, state, since = data.get("valid_until"), data.get("state"), data.get("since")
    if not isinstance(valid_until, int | float) or isinstance(valid_until, bool):
        raise ValueError("valid_until is not a number")
    if not math.isfinite(valid_until):
        raise ValueError("valid_until is not finite")
    if state not in STATES:
        raise ValueError(f"state is not one of {', '.join(STATES)}")
    if since is not None and (not isinstance(since, int | float) or isinstance(since, bool)):
        raise ValueError("since is not a number")
    reason = data.get("reason", "")
    return {
        "valid_until": float(valid_until),
        "state": state,
        "since": None if since is None else float(since),
        "reason": reason if isinstance(reason, str) else str(reason),
    }


class LeaseGate:
    """Reads the lease file and says whether steps may run and commits may happen now.

    Safe to call from any thread (the SQLite writer checks it right before COMMIT)."""

    def __init__(self, path: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.path = path
        self._clock = clock
        self._lock = threading.Lock()
        self._deadline = -math.inf  # monotonic; commits allowed strictly before it
        self._recheck_at = -math.inf
        self._seen: tuple[int, int, int] | None = None  # inode, size, mtime of the parse
        self._state = LeaseState(False, "missing", None, "lease file not read yet", None)
        self._closed_since = time.time()

    def allows(self) -> bool:
        """Whether a step may start / a commit may happen now (cheap)."""
        now = self._clock()
        if now >= self._recheck_at:
            self._refresh(now)
        return now < self._deadline

    def check(self) -> None:
        """Raise ``LeaseUnconfirmed`` unless ``allows()``: the stores' commit guard."""
        if not self.allows():
            raise LeaseUnconfirmed(f"the tenant's lease is not confirmed: {self.state().reason}")

    def state(self) -> LeaseState:
        self.allows()
        now = self._clock()
        s = self._state
        if s.state == "held" and now >= self._deadline:
            # Written as held, but the deadline passed: the supervisor stopped renewing.
            passed = time.time() - (now - self._deadline)
            reason = "the lease file's deadline passed (the supervisor did not renew it)"
            return LeaseState(False, "expired", passed, reason, s.valid_until)
        return s

    def valid_seconds(self) -> float:
        return max(0.0, self._deadline - self._clock()) if self._deadline > -math.inf else 0.0

    def _refresh(self, now: float) -> None:
        with self._lock:
            if now < self._recheck_at:
                return  # another thread just did it
            self._read()
            near = self._deadline - NEAR
            self._recheck_at = max(now + POLL, near) if now < near else now + POLL

    def _read(self) -> None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self._close("missing", "no lease file")
            return
        except OSError as exc:
            self._close("unreadable", f"cannot stat the lease file: {exc.strerror}")
            return
        seen = (st.st_ino, st.st_size, st.st_mtime_ns)
        if seen == self._seen:
            return
        try:
            with open(self.path, encoding="utf-8") as f:
                data = parse(f.read(4096))
        except (OSError, ValueError) as exc:
            self._seen = None
            self._close("unreadable", f"bad lease file: {exc}")
            return
        self._seen = seen
        held = data["state"] == "held"
        self._deadline = data["valid_until"] - MARGIN if held else -math.inf
        self._state = LeaseState(
            held, data["state"], data["since"], data["reason"], data["valid_until"]
        )

    def _close(self, state: str, reason: str) -> None:
        if self._state.state != state:
            self._closed_since = time.time()
        self._deadline = -math.inf
        self._state = LeaseState(False, state, self._closed_since, reason, None)
