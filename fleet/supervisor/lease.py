"""One writer per tenant: the lease object in object storage.

Two Litestream processes replicating one tenant to the same path can make its backup
unrestorable, and Litestream has no fence of its own. The fence is ``leases/<tenant>.json`` in
the tenant's bucket (outside ``tenants/<tenant>/``, which belongs to Litestream)::

    {"tenant", "holder": "host/container" | null, "host", "container", "generation",
     "expires_at", "renewed_at", "nonce"}

- Taking it is a conditional write: ``If-None-Match: *`` creates it, ``If-Match: <etag>``
  replaces the version that was read. Two contenders cannot both win (S3 and moto >= 5.2
  answer 412 to the loser). Every write carries a fresh nonce so no two bodies share an ETag.
- A lease is live while ``holder`` is set and ``expires_at`` (wall clock, so hosts need NTP)
  lies ahead. A live lease of another holder is only replaced by a takeover (``revoke``), which
  bumps ``generation`` and clears ``holder``.
- The holder renews every RENEW_S with ``If-Match``; a 412 means it was taken over. What the
  holder then does (stop replicating at once, without a final sync) is the keeper's job
  (keeper.py). On a clean stop the keeper releases the lease after Litestream's final sync.

Used inside the container (the keeper) and by the fleet (fleet.storage.fence).
"""

from __future__ import annotations

import json
import os
import time

from .layout import lease_key
from .s3 import HTTP_TIMEOUT_S, S3Failure, S3Settings, request

# Annotations only: typing and dataclasses (inspect) would add ~3 MB to the keeper's RSS.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

TTL_S = 15.0
RENEW_S = 5.0
EXIT_LEASE = 75  # EX_TEMPFAIL: the keeper did not get, or lost, the lease
_FENCE_MARGIN_S = 1.0  # stop replicating at least this long before the lease expires


class PreconditionFailed(Exception):
    """A conditional write lost: someone else wrote the object since we read it."""


class Holder:
    __slots__ = ("container", "host")

    def __init__(self, host: str, container: str) -> None:
        self.host = host
        self.container = container

    @property
    def id(self) -> str:
        return f"{self.host}/{self.container}"


class Lease:
    """One version of the lease object (``etag`` identifies it for conditional writes)."""

    _FIELDS = (
        "tenant",
        "holder",
        "host",
        "container",
        "generation",
        "expires_at",
        "renewed_at",
        "etag",
        "revoked_by",
    )

    def __init__(
        self,
        tenant: str,
        holder: str | None,
        host: str | None,
        container: str | None,
        generation: int,
        expires_at: float,
        renewed_at: float,
        etag: str = "",
        revoked_by: str | None = None,
    ) -> None:
        self.tenant = tenant
        self.holder = holder  # "host/container", None when free
        self.host = host
        self.container = container
        self.generation = generation
        self.expires_at = expires_at
        self.renewed_at = renewed_at
        self.etag = etag
        self.revoked_by = revoked_by

    def replace(self, **changes: Any) -> Lease:
        return Lease(**{**{f: getattr(self, f) for f in self._FIELDS}, **changes})

    def __repr__(self) -> str:
        return f"Lease({self.tenant!r}, {self.describe()}, etag={self.etag})"

    def live(self, now: float | None = None) -> bool:
        return self.holder is not None and self.expires_at > (time.time() if now is None else now)

    def describe(self, now: float | None = None) -> str:
        now = time.time() if now is None else now
        if self.holder is None:
            return f"free (generation {self.generation})"
        left = self.expires_at - now
        when = f"expires in {left:.0f}s" if left > 0 else f"expired {-left:.0f}s ago"
        return (
            f"held by host {self.host} container {(self.container or '?')[:12]} "
            f"(generation {self.generation}, {when})"
        )


class LeaseHeld(Exception):
    """Another holder's lease is live."""

    def __init__(self, lease: Lease) -> None:
        super().__init__(f"tenant {lease.tenant!r} is {lease.describe()}")
        self.lease = lease


class LeaseLost(Exception):
    """The lease was taken over (or released by someone else) since we last wrote it."""


def read(s3: S3Settings, tenant: str) -> Lease | None:
    status, headers, body = request(s3, "GET", lease_key(tenant))
    if status == 404:
        return None
    if status != 200:
        raise S3Failure(f"GET {lease_key(tenant)}: HTTP {status}")
    try:
        d = json.loads(body)
        return Lease(
            tenant=str(d["tenant"]),
            holder=d.get("holder"),
            host=d.get("host"),
            container=d.get("container"),
            generation=int(d["generation"]),
            expires_at=float(d["expires_at"]),
            renewed_at=float(d.get("renewed_at", 0.0)),
            etag=headers.get("etag", ""),
            revoked_by=d.get("revoked_by"),
        )
    except (ValueError, KeyError, TypeError):
        raise S3Failure(f"{lease_key(tenant)} is not a lease object") from None


def _write(
    s3: S3Settings, lease: Lease, *, if_match: str | None, timeout: float = HTTP_TIMEOUT_S
) -> Lease:
    body = json.dumps(
        {
            "tenant": lease.tenant,
            "holder": lease.holder,
            "host": lease.host,
            "container": lease.container,
            "generation": lease.generation,
            "expires_at": lease.expires_at,
            "renewed_at": lease.renewed_at,
            "revoked_by": lease.revoked_by,
            "nonce": os.urandom(8).hex(),  # distinct ETags for otherwise equal bodies
        }
    ).encode()
    cond = {"if-match": if_match} if if_match else {"if-none-match": "*"}
    status, headers, _ = request(
        s3,
        "PUT",
        lease_key(lease.tenant),
        body,
        {"content-type": "application/json", **cond},
        timeout,
    )
    if status in (409, 412):
        raise PreconditionFailed(lease.tenant)
    if status != 200:
        raise S3Failure(f"PUT {lease_key(lease.tenant)}: HTTP {status}")
    return lease.replace(etag=headers.get("etag", ""))


def acquire(s3: S3Settings, tenant: str, holder: Holder, ttl: float = TTL_S) -> Lease:
    """Take the lease: free, expired or already ours. LeaseHeld when another holder's is live."""
    current = read(s3, tenant)
    now = time.time()
    if current is not None and current.live(now) and current.holder != holder.id:
        raise LeaseHeld(current)
    new = Lease(
        tenant=tenant,
        holder=holder.id,
        host=holder.host,
        container=holder.container,
        generation=(current.generation + 1) if current else 1,
        expires_at=now + ttl,
        renewed_at=now,
    )
    try:
        return _write(s3, new, if_match=current.etag if current else None)
    except PreconditionFailed:
        latest = read(s3, tenant)  # someone else won the race
        raise LeaseHeld(latest or new) from None


def renewal_budget(ttl: float) -> tuple[float, float]:
    """(longest a renewal may take, margin before expiry by which the holder has stopped),
    scaled down for short TTLs (tests) so that a renewal still fits in the lease."""
    return min(HTTP_TIMEOUT_S, ttl / 5), min(_FENCE_MARGIN_S, ttl / 10)


def renew(s3: S3Settings, lease: Lease, ttl: float = TTL_S) -> Lease:
    """Extend our lease; LeaseLost when it was written by anyone else since."""
    now = time.time()
    new = lease.replace(expires_at=now + ttl, renewed_at=now)
    try:
        return _write(s3, new, if_match=lease.etag, timeout=renewal_budget(ttl)[0])
    except PreconditionFailed:
        raise LeaseLost(lease.tenant) from None


def release(s3: S3Settings, lease: Lease) -> bool:
    """Give the lease up (keeping its generation); False when it was no longer ours."""
    free = lease.replace(holder=None, expires_at=0.0, renewed_at=time.time())
    try:
        _write(s3, free, if_match=lease.etag)
    except PreconditionFailed:
        return False
    return True


def revoke(s3: S3Settings, tenant: str, by: str) -> tuple[Lease | None, Lease]:
    """Take the lease away from whoever holds it: bump the generation, clear the holder.

    The old holder's next renewal fails and its keeper kills Litestream without a final
    sync. Returns (the lease before, the lease now).
    """
    for _ in range(5):
        current = read(s3, tenant)
        new = Lease(
            tenant=tenant,
            holder=None,
            host=None,
            container=None,
            generation=(current.generation + 1) if current else 1,
            expires_at=0.0,
            renewed_at=time.time(),
            revoked_by=by,
        )
        try:
            return current, _write(s3, new, if_match=current.etag if current else None)
        except PreconditionFailed:
            continue  # the holder renewed in between: read again
    raise S3Failure(f"could not revoke the lease of {tenant!r}: it keeps changing")


def delete(s3: S3Settings, tenant: str) -> None:
    status, _, _ = request(s3, "DELETE", lease_key(tenant))
    if status not in (200, 204, 404):
        raise S3Failure(f"DELETE {lease_key(tenant)}: HTTP {status}")
