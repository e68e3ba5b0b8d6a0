"""Did Litestream's final sync reach object storage when a tenant was stopped?

On SIGTERM the runtime drains and exits, then Litestream uploads what is left and exits
too, even when that upload failed (it only logs it). A stop that reports success while
the backup misses the last transactions would be a silent data loss on the next restore
elsewhere, so the stop is checked: Litestream's own failure lines, and the exit status
(0 only when the runtime drained and the final sync completed).
"""

from __future__ import annotations

from typing import Any

from fleet.core.errors import ObjectStoreError

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


def stop_with_final_sync(container: Any, tenant: str, timeout: int) -> None:
    """Stop ``container`` gracefully; raise FinalSyncFailed if Litestream said so."""
    import time

    since = int(time.time()) - 1
    container.stop(timeout=timeout)
    logs = container.logs(since=since, stdout=True, stderr=True).decode(errors="replace")
    for line in logs.splitlines():
        if any(marker in line for marker in _FAILED):
            raise FinalSyncFailed(tenant, line.strip()[:200])
    container.reload()
    code = container.attrs.get("State", {}).get("ExitCode")
    if code == 137:  # SIGKILL: the stop timed out
        raise FinalSyncFailed(tenant, f"killed after {timeout} s, before the sync finished")
    if code != 0:  # a completed final sync exits 0; anything else did not confirm it
        last = logs.strip().splitlines()[-1][:200] if logs.strip() else "no log"
        raise FinalSyncFailed(tenant, f"exit {code}: {last}")
