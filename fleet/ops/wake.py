"""`fleet wake`: bring a parked tenant back, on the host with the most free memory (or one
named), from its manifest and its backup.

The manifest's state goes ``parked`` -> ``waking`` with a conditional write first: of two
wakers (the gateway, a `fleet run`) one creates the tenant, the other waits for it to
answer. The tenant is created from the recorded spec as it was (labels, limits, app,
token, environment, whatever fields the spec has), with object storage as this fleet
reaches it now and a new key of the tenant's own (FLEET_S3_CREDENTIALS=iam: the one the
manifest recorded stops working); its supervisor restores the database from the backup.
On failure the half-made container is removed and the manifest says ``parked`` again.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any

from fleet.core import names
from fleet.core.context import Fleet
from fleet.core.errors import FleetError, FleetTimeout, TenantNotFound
from fleet.core.hosting import Tenant, TransferProgress
from fleet.core.log import log
from fleet.core.spec_json import spec_from_json
from fleet.storage import manifests

from .park import PARK_KEY, clear, parked_record
from .tenants import claim_and_copy, find_or_none, start, wait_healthy

_STALE_WAKE_S = 180.0  # a `waking` record older than this is a waker that died


@dataclass(frozen=True)
class WakeResult:
    tenant: Tenant
    seconds: float
    action: str  # woken | waited (another process woke it) | running | started


class WakeInProgress(FleetError):
    """Another process is waking the tenant."""


def wake(
    fleet: Fleet,
    tenant: str,
    *,
    host: str | None = None,
    progress: TransferProgress | None = None,
    timeout: float = names.GATEWAY_HOLD_S * 4,
) -> WakeResult:
    names.check_tenant(tenant)
    t0 = time.monotonic()
    existing = find_or_none(fleet, tenant)
    if existing is not None:
        action = "running" if existing.running else "started"
        return WakeResult(start(fleet, existing, host=host).tenant, time.monotonic() - t0, action)
    try:
        record = _claim(fleet, tenant)
    except WakeInProgress:
        return WakeResult(_await_running(fleet, tenant, timeout), time.monotonic() - t0, "waited")
    try:
        t = _create(fleet, tenant, record, host, progress)
    except BaseException:
        _release(fleet, tenant)
        raise
    clear(fleet, tenant)
    log.info("woken", tenant=tenant, host=t.host, seconds=round(time.monotonic() - t0, 3))
    return WakeResult(t, time.monotonic() - t0, "woken")


def is_parked(fleet: Fleet, tenant: str) -> bool:
    """Whether ``tenant`` has no container and a parked record (one GET)."""
    m = manifests.read(fleet.storage.for_fleet(start=True), tenant)
    return parked_record(m) is not None and find_or_none(fleet, tenant) is None


def _claim(fleet: Fleet, tenant: str) -> dict[str, Any]:
    """Mark the manifest ``waking`` (conditional write); the parked record."""
    claimed: dict[str, Any] = {}

    def change(doc: dict[str, Any]) -> dict[str, Any]:
        rec = parked_record(manifests.Manifest(tenant, doc))
        if rec is None:
            raise TenantNotFound(tenant)
        since = float(rec.get("waking_since") or 0)
        if doc.get("state") == names.STATE_WAKING and time.time() - since < _STALE_WAKE_S:
            raise WakeInProgress(f"tenant {tenant!r} is being woken")
        claimed.clear()
        claimed.update(rec)
        return {**doc, "state": names.STATE_WAKING, PARK_KEY: {**rec, "waking_since": time.time()}}

    manifests.update(fleet.storage.for_fleet(start=True), tenant, change)
    return claimed


def _release(fleet: Fleet, tenant: str) -> None:
    """Back to ``parked`` after a failed wake, without what it left on a host."""
    for t in fleet.hosting.tenants(name=tenant):
        fleet.hosting.remove(t)
        fleet.hosting.remove_volume(tenant, t.host)

    def change(doc: dict[str, Any]) -> dict[str, Any] | None:
        rec = doc.get(PARK_KEY)
        if not isinstance(rec, dict):
            return None
        return {**doc, "state": names.STATE_PARKED, PARK_KEY: {**rec, "waking_since": None}}

    manifests.update(fleet.storage.for_fleet(), tenant, change)


def _create(
    fleet: Fleet,
    tenant: str,
    record: dict[str, Any],
    host: str | None,
    progress: TransferProgress | None,
) -> Tenant:
    recorded = spec_from_json(record["spec"], record.get("secrets") or {})
    target = fleet.hosting.place(host)
    if recorded.db_url is None:
        claim_and_copy(fleet, tenant, target, recorded.image, False, progress)
        # A new container gets a new key of its own (the recorded one stops working).
        spec = dataclasses.replace(recorded, host=target, s3=fleet.storage.for_tenant(tenant))
    else:
        fleet.hosting.ensure_image(target, recorded.image, progress)
        spec = dataclasses.replace(recorded, host=target)
    return wait_healthy(fleet, fleet.hosting.create(spec, target))


def _await_running(fleet: Fleet, tenant: str, timeout: float) -> Tenant:
    """Wait for another process's wake to finish: the tenant answers, or it is parked again."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        t = find_or_none(fleet, tenant)
        if t is not None and t.running:
            return wait_healthy(fleet, t)
        m = manifests.read(fleet.storage.for_fleet(), tenant)
        if t is None and m.state == names.STATE_PARKED:
            return wake(fleet, tenant, timeout=deadline - time.monotonic()).tenant
        time.sleep(0.2)
    raise FleetTimeout(f"tenant {tenant!r} is being woken elsewhere and did not answer in time")
