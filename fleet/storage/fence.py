"""The fleet's side of "one writer per tenant": read, check and take over tenant leases.

The lease itself (format, conditional writes, the keeper inside each container) is
fleet/supervisor/lease.py. Here the fleet refuses to start a tenant whose lease is live
elsewhere, and
``--force-takeover`` revokes it: the generation is bumped, so the old holder's next renewal
(within RENEW_S) fails and its keeper kills Litestream without a final sync.
"""

from __future__ import annotations

import time
from typing import Any

from fleet.core.context import Fleet
from fleet.core.errors import ObjectStoreError, TenantLeased
from fleet.core.log import log
from fleet.engine.container_spec import S3Target
from fleet.supervisor import lease


def conf(s3: S3Target) -> lease.S3Conf:
    return lease.S3Conf(s3.endpoint, s3.bucket, s3.region, s3.access_key_id, s3.secret_access_key)


def read(fleet: Fleet, tenant: str) -> lease.Lease | None:
    try:
        return lease.read(conf(fleet.s3(start=True)), tenant)
    except lease.S3Failure as exc:
        raise ObjectStoreError(f"cannot read the lease of {tenant!r}: {exc}") from None


def ensure_free(
    fleet: Fleet,
    tenant: str,
    *,
    container: Any = None,
    force_takeover: bool = False,
    check_only: bool = False,
) -> lease.Lease | None:
    """Raise TenantLeased unless ``tenant``'s lease is free, expired, or held by ``container``
    (the same container restarting). With ``force_takeover`` revoke a live lease instead and
    wait until the old lease's expiry before returning: a holder that reaches S3 stops at its
    next renewal (412), one that cannot stops itself at least 1 s before that expiry, so only
    then is it certain that nobody else replicates (at most one TTL).
    ``check_only``: neither raise nor revoke (the caller takes over later, once ready).

    Returns the lease as it was found (None: never leased).
    """
    c = conf(fleet.s3(start=True))
    try:
        current = lease.read(c, tenant)
        if current is None or not current.live():
            return current
        if container is not None and current.container == container.id:
            return current
        if check_only:
            return current
        if not force_takeover:
            raise TenantLeased(
                f"tenant {tenant!r} is live elsewhere: lease {current.describe()}",
                "stop it there (`fleet down`), wait for the lease to expire, or pass "
                "--force-takeover",
            )
        log.warning("taking over lease", tenant=tenant, lease=current.describe())
        _, now = lease.revoke(c, tenant, by="fleet --force-takeover")
    except lease.S3Failure as exc:
        raise ObjectStoreError(f"cannot check the lease of {tenant!r}: {exc}") from None
    time.sleep(max(0.0, current.expires_at - time.time()))
    return now


def forget(fleet: Fleet, tenant: str) -> None:
    """Delete a tenant's lease object (with its backup, on `rm --purge`)."""
    try:
        lease.delete(conf(fleet.s3(start=False)), tenant)
    except lease.S3Failure as exc:
        raise ObjectStoreError(f"cannot delete the lease of {tenant!r}: {exc}") from None
