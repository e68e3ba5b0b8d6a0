"""Removing tenants: `fleet rm`, and in parallel `fleet teardown` and `fleet gc`."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

from fleet.core import names
from fleet.core.context import Fleet
from fleet.core.errors import ConfigError, FleetError, InvalidArgument, TenantNotFound, translate
from fleet.core.hosting import Tenant
from fleet.storage import databases, fence, manifests
from fleet.storage.backups import purge as purge_backup

from .park import clear, parked, parked_record
from .tenants import expired, find_or_none, list_tenants, stop
from .verify import forget as forget_drills


@dataclass(frozen=True)
class RmResult:
    tenant: str
    container: bool
    volume: bool
    purged: int | None  # backup objects deleted (None: not asked)
    key: bool = False  # its own object-store key was deleted
    database: bool = False  # its own PostgreSQL role and database were dropped


class Reporter(Protocol):
    """How bulk removal talks to its caller (the CLI: a prompt and a progress bar)."""

    def confirm(self, tenants: list[str]) -> None:
        """Raise to stop before anything is removed."""

    def start(self, total: int) -> None: ...

    def done(self, result: RmResult | FleetError) -> None: ...


@dataclass
class Removal:
    done: list[RmResult] = field(default_factory=list)
    failed: list[FleetError] = field(default_factory=list)


def rm(fleet: Fleet, tenant: str, *, purge: bool = False) -> RmResult:
    """Remove the container and the volume; with ``purge`` also the backup, the lease, the
    tenant's own object-store key and its own PostgreSQL role and database."""
    names.check_tenant(tenant)
    s3 = fleet.storage.for_fleet() if purge else None  # fail before deleting anything
    t = find_or_none(fleet, tenant)
    pg_admin = _pg_admin(fleet, t) if purge else None
    hosts = [t.host] if t else fleet.hosting.host_names()
    if t is not None:
        if t.running and not purge:
            # Keep the backup complete: the final sync happens on a graceful stop, and
            # nothing is removed if it failed.
            stop(fleet, t)
        fleet.hosting.remove(t)
    removed_volume = [fleet.hosting.remove_volume(tenant, h) for h in hosts]
    was_parked = t is None and _forget_parked(fleet, tenant)
    purged, key, database = None, False, False
    if s3 is not None:
        purged = purge_backup(s3, tenant)
        fence.forget(s3, tenant)  # the lease object goes with the backup
        forget_drills(s3, tenant)  # and what restore drills said of it
        key = fleet.storage.forget_tenant(tenant)
    if pg_admin is not None:
        database = databases.drop(pg_admin, tenant)
    if not (t or any(removed_volume) or purged or key or database or was_parked):
        raise TenantNotFound(tenant)
    return RmResult(tenant, t is not None, any(removed_volume), purged, key, database)


def _pg_admin(fleet: Fleet, t: Tenant | None) -> str | None:
    """FLEET_PG_ADMIN_URL, to drop the tenant's own role and database (if it has them);
    ConfigError, before anything is deleted, for a tenant that has them when it is unset."""
    admin = fleet.settings.pg_admin_url
    if admin is None:
        if t is not None and t.database:
            raise ConfigError(
                f"tenant {t.name!r} has a PostgreSQL database of its own ({t.database}): "
                "dropping it needs FLEET_PG_ADMIN_URL",
                "set it, or `fleet rm` without --purge to keep the database",
            )
        return None
    return admin.get_secret_value()


def _forget_parked(fleet: Fleet, tenant: str) -> bool:
    """Drop a parked tenant's record (its backup stays unless purged); whether it had one."""
    s3 = fleet.storage.for_fleet(start=True)
    if parked_record(manifests.read(s3, tenant)) is None:
        return False
    clear(fleet, tenant)
    return True


def _with_parked(fleet: Fleet, found: list[str], labels: dict[str, str] | None) -> list[str]:
    return found + [t.name for t in parked(fleet, labels) if t.name not in found]


def teardown(
    fleet: Fleet,
    *,
    labels: dict[str, str] | None = None,
    all: bool = False,
    purge: bool = False,
    reporter: Reporter | None = None,
) -> Removal:
    """Remove every tenant carrying all ``labels`` (or every tenant with ``all``), in parallel."""
    if not labels and not all:
        raise InvalidArgument("teardown needs --label k=v or --all")
    if labels and all:
        raise InvalidArgument("give --label or --all, not both")
    found = [t.name for t in list_tenants(fleet, labels)]
    return remove_many(fleet, _with_parked(fleet, found, labels), purge, reporter)


def gc(
    fleet: Fleet,
    *,
    labels: dict[str, str] | None = None,
    purge: bool = False,
    reporter: Reporter | None = None,
) -> Removal:
    """Remove the tenants whose TTL has passed (parked ones too; only those carrying all
    ``labels``), in parallel."""
    now = time.time()
    gone = expired(fleet, now, labels) + [t.name for t in parked(fleet, labels) if t.expired(now)]
    return remove_many(fleet, sorted(set(gone)), purge, reporter)


def remove_many(
    fleet: Fleet, tenants: list[str], purge: bool, reporter: Reporter | None, parallel: int = 8
) -> Removal:
    def one(name: str) -> RmResult | FleetError:
        try:
            result: RmResult | FleetError = rm(fleet, name, purge=purge)
        except Exception as exc:  # reported per tenant; the others go on
            err = translate(exc)
            if err is None:
                raise
            result = FleetError(f"{name}: {err.message}")
        if reporter:
            reporter.done(result)
        return result

    removal = Removal()
    if not tenants:
        return removal
    if reporter:
        reporter.confirm(tenants)
        reporter.start(len(tenants))
    if purge:
        fleet.storage.for_fleet()  # resolve once, before the threads race for it
    with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(tenants)))) as pool:
        for r in pool.map(one, tenants):
            if isinstance(r, RmResult):
                removal.done.append(r)
            else:
                removal.failed.append(r)
    return removal
