"""The restart bound: a tenant that keeps crashing stops retrying, and says why.

The engine restarts a crashed container with backoff but without a bound that means "keeps
failing" (Docker's ``on-failure:N`` counts every restart since the container was last started
by hand, however far apart). So the supervisor keeps its own record on the tenant's volume
(layout.RECORD_DIR, a directory agent code cannot enter)::

    {"running": true, "why": "the runtime ... killed by SIGKILL (out of memory)",
     "crashes": [[unix time, why], ...], "stayed_down": false}

- ``begin`` (at each start): a previous incarnation that is still marked running ended
  without the supervisor's clean exit: a crash (its recorded ``why``, or "killed" when the
  supervisor itself was: docker kill, the OOM killer, a host crash). After a stop for good
  (``stayed_down``) the start was asked for by a person: the record starts afresh.
- ``crashed``: a crash inside a running container (Litestream, restarted in place).
- LIMIT crashes within WINDOW_S: the tenant gives up (stays down; `fleet up` tries again).
"""

from __future__ import annotations

import json
import os
import time

from .lease_gate import write_atomically

LIMIT = 5
WINDOW_S = 600.0
UNSEEN = "the container stopped without its supervisor (killed, out of memory, or the host)"

# Annotations only (typing costs the keeper RSS).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


class RestartRecord:
    def __init__(self, directory: str, clock: Any = time.time) -> None:
        self.path = os.path.join(directory, "restarts.json")
        self.clock = clock
        self.data: dict[str, Any] = self._load()

    def _load(self) -> dict[str, Any]:
        try:
            with open(self.path) as f:
                data = json.load(f)
            if isinstance(data, dict) and isinstance(data.get("crashes"), list):
                return data
        except (OSError, ValueError):
            pass
        return {"running": False, "why": None, "crashes": [], "stayed_down": False}

    def _save(self) -> None:
        write_atomically(self.path, json.dumps(self.data).encode(), 0o600)

    @property
    def crashes(self) -> list[list[Any]]:
        crashes: list[list[Any]] = self.data["crashes"]
        return crashes

    def begin(self) -> str | None:
        """Mark this incarnation running; why it must not start (the bound), or None."""
        d = self.data
        if d.get("stayed_down"):
            d["crashes"] = []
        elif d.get("running"):
            self.crashes.append([self.clock(), d.get("why") or UNSEEN])
        d.update(running=True, why=None, stayed_down=False)
        return self._check()

    def crashed(self, why: str) -> str | None:
        """A crash this incarnation recovers from itself; why to give up, or None."""
        self.crashes.append([self.clock(), why])
        return self._check()

    def exiting(self, why: str) -> None:
        """This incarnation ends with a crash (the engine restarts it): ``why`` for the next."""
        self.data.update(running=True, why=why)
        self._save()

    def ended(self, stayed_down: bool) -> None:
        self.data.update(running=False, why=None, stayed_down=stayed_down)
        self._save()

    def last(self) -> str | None:
        return str(self.crashes[-1][1]) if self.crashes else None

    def _check(self) -> str | None:
        now = self.clock()
        self.data["crashes"] = [c for c in self.crashes if now - float(c[0]) < WINDOW_S][-LIMIT:]
        self._save()
        if len(self.crashes) < LIMIT:
            return None
        span = now - float(self.crashes[0][0])
        return f"gave up after {len(self.crashes)} crashes in {span:.0f}s (last: {self.last()})"
