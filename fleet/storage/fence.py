"""The fleet's side of "one writer per tenant": refuse a tenant whose lease is live elsewhere,
take it over on request, forget it with the backup.

The lease itself (format, conditional writes) is fleet/supervisor/lease.py and the keeper
inside each container fleet/supervisor/keeper.py. ``--force-takeover`` revokes a live lease:
the generation is bumped, so the old holder's next renewal (within RENEW_S) fails and its
keeper kills Litestream without a final sync.
"""

from __future__ import annotations

import time

from fleet.core.errors import ObjectStoreError, TenantLeased
from fleet.core.log import log
from fleet.supervisor import lease
from fleet.supervisor.s3 import S3Failure, S3Settings


def live_elsewhere(s3: S3Settings, tenant: str, container_id: str = "") -> lease.Lease | None:
    """The tenant's lease when another holder's is live; None when it is free, expired, or
    held by ``container_id`` (the same container restarting).

    Advisory: "expired" is read on this host's wall clock, to refuse a second ``up`` early and
    with a clear message. What keeps two writers apart is the keeper of the new container,
    which takes another holder's lease only after seeing it unchanged for a full ttl."""
    try:
        current = lease.read(s3, tenant)
    except S3Failure as exc:
        raise ObjectStoreError(f"cannot check the lease of {tenant!r}: {exc}") from None
    if current is None or not current.live():
        return None
    if container_id and current.container == container_id:
        return None
    return current


def refuse_if_leased(s3: S3Settings, tenant: str, container_id: str = "") -> None:
    """TenantLeased when the tenant is live elsewhere."""
    current = live_elsewhere(s3, tenant, container_id)
    if current is not None:
        raise TenantLeased(
            f"tenant {tenant!r} is live elsewhere: lease {current.describe()}",
            "stop it there (`fleet down`), wait for the lease to expire, or pass --force-takeover",
        )


def take_over(s3: S3Settings, tenant: str, container_id: str = "") -> None:
    """Revoke a live lease of another holder, then wait one ttl on this host's monotonic
    clock: a holder that reaches S3 stops at its next renewal (412), one that cannot stops
    itself within a ttl of its last renewal, which happened before the revoke. Only then is it
    certain that nobody else replicates. Nothing to do when the lease is not live elsewhere."""
    current = live_elsewhere(s3, tenant, container_id)
    if current is None:
        return
    log.warning("taking over lease", tenant=tenant, lease=current.describe())
    try:
        lease.revoke(s3, tenant, by="fleet --force-takeover")
    except S3Failure as exc:
        raise ObjectStoreError(f"cannot check the lease of {tenant!r}: {exc}") from None
    time.sleep(current.ttl)


def forget(s3: S3Settings, tenant: str) -> None:
    """Delete a tenant's lease object (with its backup, on `rm --purge`)."""
    try:
        lease.delete(s3, tenant)
    except S3Failure as exc:
        raise ObjectStoreError(f"cannot delete the lease of {tenant!r}: {exc}") from None
