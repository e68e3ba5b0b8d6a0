"""`fleet migrate TENANT --to B`: move a tenant to another host through object storage.

1. Copy the image to B first (outside the downtime).
2. Stop the runtime on the source (SIGTERM: the runtime drains, Litestream does its final
   sync, checked, and the lease keeper releases the lease).
3. Read Litestream's local txid from the stopped source volume with a one-off container, and
   wait until the bucket's replicated txid reaches it: nothing committed is left behind.
4. Remove the source container (its volume stays as the way back) and start the tenant on B
   from object storage, with the same token, app, labels, limits and environment.
5. Compare runs: every run in the source volume must exist on B, with the same status if it
   had finished. Only then is the source volume removed. On failure before B is healthy, the
   tenant is started again on the source from its volume.

Same shape as restore.py: check, get the image to the target, put the data there, create
the tenant there with ``tenants.create``, clean up.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from fleet.core import names
from fleet.core.context import Fleet
from fleet.core.errors import FleetError, FleetTimeout, InvalidArgument
from fleet.core.hosting import OneOff, Placing, Tenant, TransferProgress
from fleet.core.log import log
from fleet.storage.backups import backup_state
from fleet.storage.final_sync import FinalSyncFailed
from fleet.supervisor.litestream import max_txid, status_command
from fleet.supervisor.s3 import S3Settings

from .api import api, terminal
from .holds import holding
from .tenants import TenantOptions, create, find, stop

_SYNC_WAIT_S = 30.0
DB_FILES = [Path(names.DB_PATH).name, Path(names.DB_PATH).name + "-wal"]


@dataclass(frozen=True)
class MigrateResult:
    tenant: Tenant
    source: str
    local_txid: int | None  # None on Swarm: the fleet cannot read a node's volume
    replicated_txid: int
    runs: int  # runs compared
    stop_s: float  # SIGTERM until the source container exited (drain + final sync)
    downtime_s: float  # SIGTERM on the source until /healthz answered on the target


def migrate(
    fleet: Fleet, tenant: str, *, to: str, progress: TransferProgress | None = None
) -> MigrateResult:
    """Move the tenant; a gateway holds its requests meanwhile (holds.py)."""
    src = find(fleet, tenant)
    with holding(fleet, tenant, "migrate"):
        if isinstance(fleet.hosting, Placing):
            from .move import move

            return move(fleet, fleet.hosting, src, to=to, progress=progress)
        return _migrate(fleet, src, to, progress)


def _migrate(
    fleet: Fleet, src: Tenant, to: str, progress: TransferProgress | None
) -> MigrateResult:
    tenant = src.name
    target = fleet.hosting.place(to)
    if src.host == target:
        raise InvalidArgument(f"tenant {tenant!r} is already on host {to!r}")
    if src.backend != names.BACKEND_SQLITE:
        raise InvalidArgument(f"tenant {tenant!r} uses {src.backend}: there is nothing to move")
    fleet.hosting.ensure_image(target, src.image, progress)
    if fleet.hosting.has_volume(tenant, target):
        volume = names.volume_name(tenant)
        raise InvalidArgument(
            f"host {to!r} already has a volume for {tenant!r} ({volume})",
            f"remove it there (`docker volume rm {volume}`) first",
        )
    spec = fleet.hosting.spec_of(src)
    options = TenantOptions.of(spec)

    t0 = time.monotonic()
    local, stop_s = _stop_synced(fleet, src, spec.s3)
    replicated = _wait_replicated(fleet, src, local)
    fleet.hosting.remove(src)  # the volume stays: it is the way back
    try:
        new = create(fleet, tenant, options, host=target).tenant
    except Exception:
        log.warning("start on target failed; rolling back", tenant=tenant, host=target)
        _rollback(fleet, tenant, target, src.host, options)
        raise
    downtime_s = time.monotonic() - t0
    compared = _compare_runs(fleet, src, new)
    fleet.hosting.remove_volume(tenant, src.host)
    return MigrateResult(new, src.host, local, replicated, compared, stop_s, downtime_s)


def _stop_synced(fleet: Fleet, src: Tenant, s3: S3Settings | None) -> tuple[int, float]:
    """Stop the source (final sync checked) and read its local txid; (txid, seconds the stop
    took). On failure it is started again there. ``s3``: what the source was created with
    (its own key: a new one would revoke it, and the source may have to start again)."""
    log.info("stopping source", tenant=src.name, host=src.host)
    t0 = time.monotonic()
    try:
        stop(fleet, src)
    except FinalSyncFailed as exc:
        fleet.hosting.start(src)
        raise FleetError(
            f"tenant {src.name!r} did not stop cleanly on {src.host!r} ({exc.message}); "
            "it was started again there",
            f"`fleet logs {src.name}` shows why",
        ) from None
    stop_s = time.monotonic() - t0
    job = OneOff(src.name, src.image, s3 or fleet.storage.for_tenant(src.name), status_command())
    local = max_txid(fleet.hosting.run_oneoff(src.host, job), "local_txid")
    if local is None:
        fleet.hosting.start(src)
        raise FleetError(f"cannot read the local txid of {src.name!r}; it was started again")
    return local, stop_s


def _wait_replicated(fleet: Fleet, src: Tenant, local: int) -> int:
    s3 = fleet.storage.for_fleet()
    deadline = time.monotonic() + _SYNC_WAIT_S
    while (replicated := backup_state(s3, src.name).txid) < local:
        if time.monotonic() >= deadline:
            fleet.hosting.start(src)
            raise FleetTimeout(
                f"the final sync of {src.name!r} did not reach object storage "
                f"(replicated txid {replicated:#x} < local {local:#x}); it was started again "
                f"on {src.host!r}",
                "check object storage and `fleet logs`, then retry",
            )
        time.sleep(0.2)
    return replicated


def _compare_runs(fleet: Fleet, src: Tenant, new: Tenant) -> int:
    """Every run of the source volume must be on the target, with the same status if it
    had finished; returns how many were compared."""
    from agent_runtime import open_copy

    with tempfile.TemporaryDirectory(prefix="fleet-migrate-") as tmp:
        found = fleet.hosting.read_volume(src.name, src.host, src.image, DB_FILES, Path(tmp))
        source_runs: dict[str, str] = {}
        if found:
            with open_copy(found[0]) as db:
                source_runs = db.statuses()
    with api(new, timeout=30.0) as client:
        moved = {r["id"]: r["status"] for r in client.list_runs(limit=10**9)}
    missing = [i for i in source_runs if i not in moved]
    changed = [i for i, st in source_runs.items() if terminal(st) and moved.get(i, st) != st]
    if missing or changed:
        raise FleetError(
            f"runs differ after moving {src.name!r}: {len(missing)} missing, {len(changed)} "
            f"changed (e.g. {(missing or changed)[0]}); the source volume "
            f"{names.volume_name(src.name)} is kept on {src.host!r}",
            "do not remove it; report this",
        )
    return len(source_runs)


def _rollback(fleet: Fleet, tenant: str, target: str, source: str, options: TenantOptions) -> None:
    for t in fleet.hosting.tenants(name=tenant):
        if t.host == target:
            fleet.hosting.remove(t)
    fleet.hosting.remove_volume(tenant, target)
    create(fleet, tenant, options, host=source, force_takeover=True)
