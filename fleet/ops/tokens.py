"""`fleet token T`: a tenant's API token, from its container or, parked, its manifest. The
only command that prints one (for handing it to that tenant's client)."""

from __future__ import annotations

from fleet.core.context import Fleet
from fleet.core.errors import FleetError, TenantNotFound
from fleet.storage import manifests

from .park import parked_record
from .tenants import find_or_none


def token(fleet: Fleet, tenant: str) -> str:
    t = find_or_none(fleet, tenant)
    if t is not None:
        if not t.token:
            raise FleetError(f"tenant {tenant!r} has no API token")
        return t.token
    rec = parked_record(manifests.read(fleet.storage.for_fleet(start=True), tenant))
    if rec is None:
        raise TenantNotFound(tenant)
    value = (rec.get("secrets") or {}).get("token")
    if not isinstance(value, str) or not value:
        raise FleetError(f"the manifest of parked tenant {tenant!r} has no API token")
    return value
