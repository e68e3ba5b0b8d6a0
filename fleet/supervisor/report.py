"""What the supervisor tells the fleet about a running tenant: layout.STATE_FILE (world
readable, no secrets), read by `fleet ls` through the engine (fleet/ops/status.py)::

    {"lease": "acquiring" | "held" | "unconfirmed" | "lost" | "released",
     "lease_since": unix time, "lease_reason": str,
     "store": "reachable" | "unreachable", "store_unreachable_since": unix time | null,
     "store_error": str | null,
     "replication": "starting" | "running" | "paused" | "restarting" | "stopped",
     "restarts": [[unix time, why], ...]   # crashes in the restart bound's window
     "updated_at": unix time}

Written only when something changes (a renewal that changes nothing writes nothing).
"""

from __future__ import annotations

import contextlib
import json
import time

from .lease_gate import write_atomically

# Annotations only (typing costs the keeper RSS).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


class StateFile:
    """``path`` None: keep the state in memory only."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        now = time.time()
        self.data: dict[str, Any] = {
            "lease": "acquiring",
            "lease_since": now,
            "lease_reason": "starting",
            "store": "reachable",
            "store_unreachable_since": None,
            "store_error": None,
            "replication": "starting",
            "restarts": [],
        }

    def lease(self, state: str, reason: str) -> None:
        if state != self.data["lease"]:
            self.data["lease_since"] = time.time()
        self.update(lease=state, lease_reason=reason)

    def store_failed(self, error: str) -> None:
        since = self.data["store_unreachable_since"] or time.time()
        self.update(store="unreachable", store_unreachable_since=since, store_error=error)

    def store_answered(self) -> None:
        self.update(store="reachable", store_unreachable_since=None, store_error=None)

    def update(self, **changes: Any) -> None:
        if all(self.data.get(k) == v for k, v in changes.items()):
            return
        self.data.update(changes)
        self.data["updated_at"] = time.time()
        if self.path is None:
            return
        with contextlib.suppress(OSError):  # a report must never stop the keeper
            write_atomically(self.path, json.dumps(self.data).encode(), 0o644)
