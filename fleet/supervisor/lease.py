"""One writer per tenant: the lease object in object storage.

Two Litestream processes replicating one tenant to the same path can make its backup
unrestorable, and Litestream has no fence of its own. The fence is ``leases/<tenant>.json`` in
the tenant's bucket (outside ``tenants/<tenant>/``, which belongs to Litestream)::

    {"tenant", "holder": "host/container" | null, "host", "container", "generation",
     "ttl", "expires_at", "renewed_at", "revoked_by", "nonce"}

- Every write is conditional: ``If-None-Match: *`` creates it, ``If-Match: <etag>`` replaces
  the version that was read. Two writers cannot both win (S3 and moto >= 5.2 answer 412 to the
  loser). Every write carries a fresh nonce, so no two versions share an ETag.
- No decision depends on comparing two hosts' wall clocks (a contender whose clock ran 16 s
  ahead once took over a lease that had just been renewed). ``expires_at`` and ``renewed_at``
  are for people and for the fleet's advisory check (``Lease.live``), nothing else:
  - a contender takes another holder's lease only after it has seen the *same version* (ETag)
    for a full ``ttl`` on its own monotonic clock (``Contender``), and then only with
    ``If-Match`` on that version;
  - the holder counts its own validity from the moment it *sent* its last successful write
    (``Held.valid_until``): the store cannot have stored that version earlier, so no
    contender can have seen it for a full ttl before ``sent + ttl``. The holder stops its
    writers ``fence margin`` before that, on its own monotonic clock.
  The two clocks only need to tick at the same rate (a margin of 1 s in 15 s).
- A free lease (``holder`` null: released after a final sync, or revoked by a takeover whose
  author waits a ttl) and the holder's own lease (the same container restarting) are taken
  at once.
- The holder renews every RENEW_S; a 412 means it was taken over, and what the holder then
  does (stop replicating at once, without a final sync) is the keeper's job (keeper.py).

Used inside the container (the keeper) and by the fleet (fleet.storage.fence).
"""

from __future__ import annotations

import json
import os
import time

from .layout import lease_key
from .s3 import HTTP_TIMEOUT_S, S3Failure, S3Settings, request, timed_request

# Annotations only: typing and dataclasses (inspect) would add ~3 MB to the keeper's RSS.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

TTL_S = 15.0
RENEW_S = 5.0
_FENCE_MARGIN_S = 1.0  # the holder stops its writers at least this long before its ttl ends


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
        "ttl",
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
        ttl: float = TTL_S,
    ) -> None:
        self.tenant = tenant
        self.holder = holder  # "host/container", None when free
        self.host = host
        self.container = container
        self.generation = generation
        self.expires_at = expires_at  # the writer's wall clock: informative only
        self.renewed_at = renewed_at
        self.etag = etag
        self.revoked_by = revoked_by
        self.ttl = ttl  # how long a contender must see this version unchanged

    def replace(self, **changes: Any) -> Lease:
        return Lease(**{**{f: getattr(self, f) for f in self._FIELDS}, **changes})

    def __repr__(self) -> str:
        return f"Lease({self.tenant!r}, {self.describe()}, etag={self.etag})"

    def live(self, now: float | None = None) -> bool:
        """Held and not expired by this host's wall clock: advisory (the fleet refuses a
        second ``up`` early with it); the keeper never decides on it."""
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


class Held:
    """A lease this process wrote, and until when (monotonic) it may act as the holder."""

    __slots__ = ("lease", "valid_until")

    def __init__(self, lease: Lease, sent_at: float) -> None:
        self.lease = lease
        self.valid_until = sent_at + lease.ttl - fence_margin(lease.ttl)


class LeaseHeld(Exception):
    """Another holder's lease is live (it changed while we watched, or we gave up waiting)."""

    def __init__(self, lease: Lease, why: str = "") -> None:
        super().__init__(f"tenant {lease.tenant!r} is {lease.describe()}{why}")
        self.lease = lease


class LeaseLost(Exception):
    """The lease was taken over (or released by someone else) since we last wrote it."""


def fence_margin(ttl: float) -> float:
    return min(_FENCE_MARGIN_S, ttl / 10)


def renewal_budget(ttl: float) -> float:
    """How long one renewal may take, DNS lookup included; scaled down for short TTLs (tests)
    so that a renewal still fits in the lease."""
    return min(HTTP_TIMEOUT_S, ttl / 5)


def read(s3: S3Settings, tenant: str, timeout: float = HTTP_TIMEOUT_S) -> Lease | None:
    status, headers, body = request(s3, "GET", lease_key(tenant), timeout=timeout)
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
            ttl=float(d.get("ttl") or TTL_S),
        )
    except (ValueError, KeyError, TypeError):
        raise S3Failure(f"{lease_key(tenant)} is not a lease object") from None


def _write(
    s3: S3Settings, lease: Lease, *, if_match: str | None, timeout: float = HTTP_TIMEOUT_S
) -> Held:
    body = json.dumps(
        {
            "tenant": lease.tenant,
            "holder": lease.holder,
            "host": lease.host,
            "container": lease.container,
            "generation": lease.generation,
            "ttl": lease.ttl,
            "expires_at": lease.expires_at,
            "renewed_at": lease.renewed_at,
            "revoked_by": lease.revoked_by,
            "nonce": os.urandom(8).hex(),  # distinct ETags for otherwise equal bodies
        }
    ).encode()
    cond = {"if-match": if_match} if if_match else {"if-none-match": "*"}
    status, headers, _, sent_at = timed_request(
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
    return Held(lease.replace(etag=headers.get("etag", "")), sent_at)


def _ours(tenant: str, holder: Holder, ttl: float, current: Lease | None) -> Lease:
    now = time.time()
    return Lease(
        tenant=tenant,
        holder=holder.id,
        host=holder.host,
        container=holder.container,
        generation=(current.generation + 1) if current else 1,
        expires_at=now + ttl,
        renewed_at=now,
        ttl=ttl,
    )


class Contender:
    """Takes a tenant's lease for ``holder``: at once when it is free or already ours,
    otherwise only once this process has seen the same version for a full ttl (the longer
    of the holder's and its own) on its monotonic clock. Call ``try_take`` repeatedly."""

    def __init__(
        self,
        s3: S3Settings,
        tenant: str,
        holder: Holder,
        ttl: float = TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.s3, self.tenant, self.holder, self.ttl, self.clock = s3, tenant, holder, ttl, clock
        self.seen_etag: str | None = None
        self.seen_at = 0.0

    def wait_left(self, current: Lease) -> float:
        """Seconds until ``current`` (another holder's) may be taken, from what we saw."""
        now = self.clock()
        if current.etag != self.seen_etag:
            self.seen_etag, self.seen_at = current.etag, now
        return max(self.ttl, current.ttl) - (now - self.seen_at)

    def try_take(self) -> Held:
        """The lease, or LeaseHeld (with how long this version has still to stay unchanged);
        S3Failure when the store does not answer."""
        current = read(self.s3, self.tenant)
        if current is not None and current.holder not in (None, self.holder.id):
            left = self.wait_left(current)
            if left > 0:
                raise LeaseHeld(current, f"; unchanged for a ttl in {left:.0f}s it may be taken")
        new = _ours(self.tenant, self.holder, self.ttl, current)
        try:
            return _write(self.s3, new, if_match=current.etag if current else None)
        except PreconditionFailed:
            latest = read(self.s3, self.tenant)  # someone else wrote it meanwhile
            if latest is not None and latest.holder is not None:
                self.wait_left(latest)
            raise LeaseHeld(latest or new) from None


def acquire(s3: S3Settings, tenant: str, holder: Holder, ttl: float = TTL_S) -> Lease:
    """One attempt to take a lease that is free or ours (LeaseHeld otherwise): the fleet's and
    the tests' shortcut; a keeper waits with a ``Contender``."""
    return Contender(s3, tenant, holder, ttl).try_take().lease


def renew(s3: S3Settings, held: Held) -> Held:
    """Extend our lease (one attempt, within ``renewal_budget``); LeaseLost when it was
    written by anyone else since, S3Failure when the store did not answer."""
    now = time.time()
    new = held.lease.replace(expires_at=now + held.lease.ttl, renewed_at=now)
    try:
        return _write(s3, new, if_match=held.lease.etag, timeout=renewal_budget(held.lease.ttl))
    except PreconditionFailed:
        raise LeaseLost(held.lease.tenant) from None


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

    The old holder's next renewal fails (412) and its keeper kills Litestream without a final
    sync; one that cannot reach the store stops by itself within a ttl of its last renewal,
    so the caller waits a ttl (``Lease.ttl`` of the lease before) before anyone else writes.
    Returns (the lease before, the lease now)."""
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
            ttl=current.ttl if current else TTL_S,
        )
        try:
            return current, _write(s3, new, if_match=current.etag if current else None).lease
        except PreconditionFailed:
            continue  # the holder renewed in between: read again
    raise S3Failure(f"could not revoke the lease of {tenant!r}: it keeps changing")


def delete(s3: S3Settings, tenant: str) -> None:
    status, _, _ = request(s3, "DELETE", lease_key(tenant))
    if status not in (200, 204, 404):
        raise S3Failure(f"DELETE {lease_key(tenant)}: HTTP {status}")
