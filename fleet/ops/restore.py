"""`fleet restore TENANT --host B [--at T]`: bring a tenant back from object storage on a host
that never saw it (a new host, or after losing the old one).

Steps: the lease must be free (expired after a host loss, or revoked with --force-takeover);
the image is copied to B if missing; a one-off container restores the backup (optionally to a
point in time) into a new volume on B and reports the txid; only then is the tenant created
from that volume, and stale copies of it on other reachable hosts are removed (their volumes
are kept: they may hold transactions the backup lacks).

Point in time: the restored copy becomes the tenant. It replicates onward into the same
backup: Litestream sees the database behind the replica and writes a full snapshot as the next
transaction, so "latest" now means the rewound state plus what follows. The discarded
history stays in the backup (restorable with an earlier --at) only until Litestream's
retention drops it, so it is first copied to ``archive/<tenant>/<UTC time>/`` in the bucket.

Same shape as migrate.py: check, get the image to the target, put the data there, create
the tenant there with ``tenants.create``, clean up.

On Swarm (a ``Placing`` hosting) the fleet cannot run a one-off container on the node Swarm
will choose, and needs none: a task whose volume is empty restores the backup as it starts,
on any node. So restore there checks the same things and creates the service; the txid is
the backup's newest when it was created. A point in time (--at) would need the backup
itself rewound, which is not offered there (`fleet fork --at` makes a new tenant instead).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from datetime import datetime

from fleet.core import names
from fleet.core.context import Fleet
from fleet.core.errors import BackupNotFound, FleetError, InvalidArgument
from fleet.core.hosting import OneOff, Placing, Tenant, Transfer, TransferProgress
from fleet.core.log import log
from fleet.storage.backups import archive, backup_state, txid_time
from fleet.storage.litestream import (
    no_backup_as_of,
    nothing_by_then,
    parse_timestamp,
    restored_txid,
)

from .tenants import TenantOptions, claim_and_copy, create, with_template


@dataclass(frozen=True)
class RestoreResult:
    tenant: Tenant
    txid: int
    newest_at: datetime | None  # upload time of the newest restored transaction
    at: str | None  # the point in time asked for
    restore_s: float | None  # the one-off restore (None: the task restored as it started)
    total_s: float  # until the tenant answered /healthz
    transfer: Transfer
    archived: str | None  # where the rewound history was copied (--at only)
    removed_stale: list[str]  # hosts a stopped copy of the tenant was removed from

    def age_s(self, now: float | None = None) -> float | None:
        if self.newest_at is None:
            return None
        return (time.time() if now is None else now) - self.newest_at.timestamp()


def restore(
    fleet: Fleet,
    tenant: str,
    *,
    host: str | None = None,
    at: str | None = None,
    force_takeover: bool = False,
    app: str | None = None,
    template: str | None = None,
    memory: str = names.DEFAULT_MEMORY,
    cpus: float = names.DEFAULT_CPUS,
    progress: TransferProgress | None = None,
) -> RestoreResult:
    """``template``: the code it runs (default: what the stale copy ran, else FLEET_IMAGE)."""
    names.check_tenant(tenant)
    stamp = _point_in_time(fleet, tenant, at)
    t0 = time.monotonic()
    target = fleet.hosting.place(host)
    stale = fleet.hosting.tenants(name=tenant)
    _refuse_live_copies(stale, tenant, target, force_takeover)
    s3 = fleet.storage.checked()
    if backup_state(s3, tenant).txid == 0:
        raise BackupNotFound(tenant, s3.bucket)
    image = fleet.settings.image
    transfer = claim_and_copy(fleet, tenant, target, image, force_takeover, progress)
    if fleet.hosting.has_volume(tenant, target):
        volume = names.volume_name(tenant)
        raise InvalidArgument(
            f"host {target!r} already has a volume for {tenant!r} ({volume})",
            f"remove it (`docker volume rm {volume}` there) to restore from object storage",
        )
    fleet.hosting.create_volume(tenant, target)
    try:
        txid, restore_s = _fill_volume(fleet, tenant, target, image, stamp)
        archived = archive(s3, tenant) if stamp else None
        removed = _remove_stale(fleet, stale)
        given = TenantOptions(app=app, memory=memory, cpus=cpus, template=template)
        options = _options(fleet, given, stale[0] if stale else None)
        result = create(fleet, tenant, options, host=target)
    except BaseException:
        if not any(t.host == target for t in fleet.hosting.tenants(name=tenant)):
            fleet.hosting.remove_volume(tenant, target)  # leave nothing half-made behind
        raise
    return RestoreResult(
        tenant=result.tenant,
        txid=txid,
        newest_at=txid_time(s3, tenant, txid),
        at=stamp,
        restore_s=restore_s,
        total_s=time.monotonic() - t0,
        transfer=transfer,
        archived=archived,
        removed_stale=removed,
    )


def _options(fleet: Fleet, given: TenantOptions, source: Tenant | None) -> TenantOptions:
    """What the restored tenant runs: as given, else what its stale copy ran (its app,
    labels, template), else the fleet's tenant image and the examples."""
    if source is not None:
        given = replace(
            given,
            app=given.app or (None if given.template else source.app),
            labels=source.labels,
            template=given.template or source.template_spec,
            egress=given.egress or source.egress,
        )
    return with_template(fleet, given)


def _point_in_time(fleet: Fleet, tenant: str, at: str | None) -> str | None:
    """--at for Litestream; refused on Swarm (the module's docstring says why)."""
    if at and isinstance(fleet.hosting, Placing):
        raise InvalidArgument(
            "fleet restore --at is not available on Swarm",
            f"`fleet fork {tenant} NEW --at {at}` starts a new tenant from that point; "
            f"`fleet pull {tenant} --at {at}` copies the database",
        )
    return parse_timestamp(at) if at else None


def _refuse_live_copies(
    copies: list[Tenant], tenant: str, target: str, force_takeover: bool
) -> None:
    for t in copies:
        if t.host == target:
            raise InvalidArgument(
                f"tenant {tenant!r} already exists on host {target!r}",
                f"`fleet up {tenant}` starts it; `fleet rm {tenant}` first to restore anew",
            )
        if t.running and not force_takeover:
            raise InvalidArgument(
                f"tenant {tenant!r} runs on host {t.host!r}",
                f"`fleet migrate {tenant} --to {target}` moves it without losing data",
            )


def _fill_volume(
    fleet: Fleet, tenant: str, host: str, image: str, stamp: str | None
) -> tuple[int, float | None]:
    """The txid the tenant starts from, and how long the one-off restore took (None on
    Swarm, where the task restores its empty volume as it starts)."""
    if isinstance(fleet.hosting, Placing):
        return backup_state(fleet.storage.for_fleet(), tenant).txid, None
    r0 = time.monotonic()
    return restore_volume(fleet, tenant, host, image, stamp), time.monotonic() - r0


def restore_volume(
    fleet: Fleet,
    tenant: str,
    host: str,
    image: str,
    stamp: str | None,
    *,
    backup_of: str | None = None,
) -> int:
    """Restore a backup (the tenant's own, or ``backup_of``'s: `fleet fork`) as of ``stamp``
    (from parse_timestamp; None: the newest) into the tenant's new volume on ``host``, with
    a one-off container of ``image``; the txid restored."""
    argv = ["litestream", "restore", "-config", names.LITESTREAM_CONFIG, "-json"]
    if stamp:
        argv += ["-timestamp", stamp]
    argv.append(names.DB_PATH)
    try:
        if backup_of is None:
            # The tenant's own key (read is all it needs); the container made next gets it too.
            job = OneOff(tenant, image, fleet.storage.for_tenant(tenant), argv)
            return restored_txid(fleet.hosting.run_oneoff(host, job))
        # Another tenant's backup: a key that only reads it, deleted once the job is done.
        with fleet.storage.reader_of(backup_of) as reader:
            job = OneOff(tenant, image, reader, argv, replica=backup_of)
            return restored_txid(fleet.hosting.run_oneoff(host, job))
    except FleetError as exc:
        if stamp and nothing_by_then(exc.message):
            raise no_backup_as_of(backup_of or tenant, stamp) from None
        raise


def _remove_stale(fleet: Fleet, stale: list[Tenant]) -> list[str]:
    """Stopped copies elsewhere would shadow the restored tenant. Remove their containers but
    keep their volumes: after a failed final sync one is the only place holding the newest
    transactions. It cannot rewind the backup: a tenant started on a volume behind the
    replica keeps that database aside and restores (fleet/supervisor/volume.py)."""
    removed = []
    for t in stale:
        log.info("removing stale copy, keeping its volume", tenant=t.name, host=t.host)
        fleet.hosting.remove(t)
        removed.append(t.host)
    return removed
