"""Did Litestream's final sync reach object storage when a tenant was stopped?

On SIGTERM the runtime drains and exits, then Litestream uploads what is left and exits
too, even when that upload failed (it only logs it). A stop that reports success while
the backup misses the last transactions would be a silent data loss on the next restore
elsewhere, so the stop is checked: Litestream's own failure lines, and the exit status
(0 only when the runtime drained and the final sync completed).
"""

from __future__ import annotations

from fleet.core.errors import ObjectStoreError
from fleet.core.hosting import Stopped

# Litestream 0.5 log messages for a final sync that did not complete.
_FAILED = (
    "shutdown sync failed after timeout",
    "shutdown sync interrupted",
    "shutdown sync skipped",
)


class FinalSyncFailed(ObjectStoreError):
    def __init__(self, tenant: str, line: str) -> None:
        super().__init__(
            f"tenant {tenant!r} stopped, but its final sync to object storage failed "
            f"({line}): the backup may miss its last transactions; its volume has them",
            f"check the object store, then `fleet up {tenant}` and `fleet down {tenant}` "
            "again to retry the sync",
        )


def check_final_sync(tenant: str, stopped: Stopped, timeout: int) -> None:
    """Raise FinalSyncFailed unless ``stopped`` shows a completed final sync."""
    for line in stopped.logs.splitlines():
        if any(marker in line for marker in _FAILED):
            raise FinalSyncFailed(tenant, line.strip()[:200])
    if stopped.exit_code == 137:  # SIGKILL: the stop timed out
        raise FinalSyncFailed(tenant, f"killed after {timeout} s, before the sync finished")
    if stopped.exit_code != 0:  # a completed final sync exits 0; anything else did not
        logs = stopped.logs.strip()
        last = logs.splitlines()[-1][:200] if logs else "no log"
        raise FinalSyncFailed(tenant, f"exit {stopped.exit_code}: {last}")
