"""`fleet migrate T --to NAME` where the hosting moves tenants by placement (Swarm).

The same service, its constraint changed: stop (the runtime drains, Litestream's final sync
is checked, the lease is released), constrain the service to the target node, start; the new
task's volume there is empty (or behind the replica, and set aside), so it restores from
object storage. Every run the tenant listed before the move must be there after it, with the
same status if it had finished; then the source node's volume is removed (through its
engine, when FLEET_HOSTS lists it). On a failed start the tenant goes back to the source.
"""

from __future__ import annotations

import time

from fleet.core import names
from fleet.core.context import Fleet
from fleet.core.errors import FleetError, InvalidArgument
from fleet.core.hosting import Placing, Tenant, TransferProgress
from fleet.core.log import log
from fleet.storage.backups import backup_state
from fleet.storage.final_sync import FinalSyncFailed

from .api import api, terminal
from .migrate import MigrateResult
from .tenants import stop, wait_healthy


def move(
    fleet: Fleet,
    placing: Placing,
    src: Tenant,
    *,
    to: str,
    progress: TransferProgress | None = None,
) -> MigrateResult:
    target = fleet.hosting.place(to)
    if src.host == target:
        raise InvalidArgument(f"tenant {src.name!r} is already on host {to!r}")
    if src.backend != names.BACKEND_SQLITE:
        raise InvalidArgument(f"tenant {src.name!r} uses {src.backend}: there is nothing to move")
    if not src.running:
        raise InvalidArgument(f"tenant {src.name!r} is not running", f"`fleet up {src.name}` first")
    fleet.hosting.ensure_image(target, src.image, progress)
    before = _statuses(src)

    t0 = time.monotonic()
    _stop_checked(fleet, src)
    stop_s = time.monotonic() - t0
    replicated = backup_state(fleet.storage.for_fleet(), src.name).txid
    placing.constrain(src, target)
    fleet.hosting.start(src)
    try:
        new = wait_healthy(fleet, fleet.hosting.refresh(src))
    except Exception:
        log.warning("start on target failed; moving back", tenant=src.name, host=src.host)
        placing.constrain(src, src.host)
        raise
    downtime_s = time.monotonic() - t0
    _compare(src.name, before, _statuses(new), src.host)
    fleet.hosting.remove_volume(src.name, src.host)
    return MigrateResult(new, src.host, None, replicated, len(before), stop_s, downtime_s)


def _statuses(t: Tenant) -> dict[str, str]:
    with api(t, timeout=30.0) as client:
        return {r["id"]: r["status"] for r in client.list_runs(limit=10**9)}


def _stop_checked(fleet: Fleet, src: Tenant) -> None:
    try:
        stop(fleet, src)
    except FinalSyncFailed as exc:
        fleet.hosting.start(src)
        raise FleetError(
            f"tenant {src.name!r} did not stop cleanly on {src.host!r} ({exc.message}); "
            "it was started again there",
            f"`fleet logs {src.name}` shows why",
        ) from None


def _compare(tenant: str, before: dict[str, str], after: dict[str, str], source: str) -> None:
    missing = [i for i in before if i not in after]
    changed = [i for i, st in before.items() if terminal(st) and after.get(i, st) != st]
    if missing or changed:
        raise FleetError(
            f"runs differ after moving {tenant!r}: {len(missing)} missing, {len(changed)} "
            f"changed (e.g. {(missing or changed)[0]}); its volume on {source!r} is kept",
            "do not remove it; report this",
        )
