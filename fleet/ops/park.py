"""`fleet park`: a tenant that lives only in object storage, with no container and no volume.

1. Record the tenant's whole spec (``Hosting.spec_of``, secrets included: see
   fleet/storage/manifests.py) in ``manifests/<t>.json`` with state ``parking``, so that a
   gateway holds requests for it instead of failing them.
2. Ask the runtime for its earliest durable deadline (``GET /v1/activity``), stop it with the
   final sync checked (``tenants.stop``), then remove the container and the volume.
3. State ``parked``, with the deadline the gateway wakes it for.

A stop whose final sync failed starts the tenant again where it was and clears the record:
the tenant keeps running and the error says why. A stopped tenant is parked only when its
volume holds nothing the backup lacks (the same check as `fleet migrate`).
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fleet.core import names
from fleet.core.context import Fleet
from fleet.core.errors import FleetError, InvalidArgument, ObjectStoreError, TenantNotFound
from fleet.core.hosting import OneOff, Placing, Tenant, TenantSpec
from fleet.core.log import log
from fleet.core.spec_json import spec_from_json, spec_to_json
from fleet.storage import manifests
from fleet.storage.backups import backup_state
from fleet.storage.final_sync import FinalSyncFailed
from fleet.supervisor.litestream import max_txid, status_command
from fleet.supervisor.s3 import S3Settings

from .api import api
from .tenants import find_or_none, stop

PARK_KEY = "park"  # the fields of this module in a manifest (others keep theirs beside it)
DB_FILES = [Path(names.DB_PATH).name, Path(names.DB_PATH).name + "-wal"]


@dataclass(frozen=True)
class ParkResult:
    tenant: str
    host: str  # where it ran
    next_wake_at: float | None  # the earliest durable deadline: the gateway wakes it then
    seconds: float
    interrupted: int = 0  # runs that were executing: they resume when it wakes
    already: bool = False


def parked_record(m: manifests.Manifest) -> dict[str, Any] | None:
    """This module's fields of a manifest, when it records a parked (or parking) tenant."""
    rec = m.doc.get(PARK_KEY)
    return rec if isinstance(rec, dict) and "spec" in rec else None


def parked_spec(fleet: Fleet, tenant: str) -> TenantSpec | None:
    """The settings a parked tenant wakes with (None: not parked)."""
    rec = parked_record(manifests.read(fleet.storage.for_fleet(), tenant))
    return spec_from_json(rec["spec"], rec.get("secrets") or {}) if rec else None


class NotIdle(FleetError):
    """``park(idle_for=...)`` found the tenant busy: nothing was changed."""


def park(fleet: Fleet, tenant: str, *, idle_for: float | None = None) -> ParkResult:
    """Park the tenant; with ``idle_for``, only if, right before it is stopped, it has had no
    API request for that many seconds and no run executes or waits for a slot (NotIdle
    otherwise): what `fleet gateway` uses for --idle-park."""
    names.check_tenant(tenant)
    t0 = time.monotonic()
    s3 = fleet.storage.for_fleet(start=True)
    t = find_or_none(fleet, tenant)
    if t is None:
        m = manifests.read(s3, tenant)
        rec = parked_record(m)
        if rec is None:
            raise TenantNotFound(tenant)
        return ParkResult(tenant, str(rec.get("host")), rec.get("next_wake_at"), 0.0, 0, True)
    _refuse_unchecked_volume(fleet, t)
    _settle(t)
    activity = _activity(t)
    # Without its S3 key: a woken tenant gets a new one, and this one is revoked once parked.
    spec = fleet.hosting.spec_of(t)
    settings, secrets = spec_to_json(dataclasses.replace(spec, s3=None))
    record = {"spec": settings, "secrets": secrets, "host": t.host, "since": time.time()}
    _set(fleet, tenant, names.STATE_PARKING, record)
    if idle_for is not None:
        activity = _activity(t)  # again, now that the gateway holds new requests
        if not _idle(activity, idle_for):
            clear(fleet, tenant)
            raise NotIdle(f"tenant {tenant!r} is busy: not parked")
    deadline = activity.get("next_wake_at") if activity else None
    try:
        if t.running:
            stop(fleet, t)
        else:
            deadline = _check_stopped_volume(fleet, t, spec.s3)
    except FinalSyncFailed as exc:
        if t.running:  # as it was: running, its volume intact
            _resume(fleet, t)
        else:
            clear(fleet, tenant)
        again = "; it is running again" if t.running else ""
        msg = f"tenant {tenant!r} was not parked: {exc.message}{again}"
        raise ObjectStoreError(msg, exc.hint) from None
    fleet.hosting.remove(t)
    fleet.hosting.remove_volume(tenant, t.host)
    interrupted = int(activity.get("executing", 0)) + int(activity.get("pending", 0))
    record.update(parked_at=time.time(), next_wake_at=deadline, interrupted_runs=interrupted)
    _revoke_key(fleet, tenant)  # while still "parking": no wake issues a new key meanwhile
    _set(fleet, tenant, names.STATE_PARKED, record)
    log.info("parked", tenant=tenant, host=t.host, next_wake_at=deadline)
    return ParkResult(tenant, t.host, deadline, time.monotonic() - t0, interrupted)


def _revoke_key(fleet: Fleet, tenant: str) -> None:
    """No container holds the tenant's own S3 key any more: delete it rather than leave a
    working credential behind for the whole time it is parked (a wake issues a new one). A
    failure leaves the tenant parked: the key goes at its next wake or `fleet rm --purge`."""
    try:
        fleet.storage.forget_tenant(tenant)
    except FleetError as exc:
        log.warning("parked; its old key is not deleted yet", tenant=tenant, error=exc)


def _refuse_unchecked_volume(fleet: Fleet, t: Tenant) -> None:
    """A stopped SQLite tenant's volume is checked against the backup by a one-off container
    on its host; on Swarm (a ``Placing`` hosting) the fleet runs none on a node."""
    if not t.running and t.backend == names.BACKEND_SQLITE and isinstance(fleet.hosting, Placing):
        raise InvalidArgument(
            f"tenant {t.name!r} is stopped: on Swarm the fleet cannot check its volume against "
            "the backup",
            f"`fleet up {t.name}` then `fleet park {t.name}` (the final sync is checked as it "
            "stops)",
        )


def _idle(activity: dict[str, Any], idle_for: float) -> bool:
    busy = activity.get("executing") or activity.get("pending")
    return bool(activity) and not busy and float(activity.get("idle_seconds") or 0) >= idle_for


def _settle(t: Tenant) -> None:
    """Let a tenant that has just started reach Litestream's first monitor tick (only a
    database Litestream attached gets the final sync)."""
    if t.running and t.started_at is not None:
        time.sleep(max(0.0, t.started_at + names.LITESTREAM_ATTACH_S - time.time()))


def _set(fleet: Fleet, tenant: str, state: str, record: dict[str, Any]) -> None:
    s3 = fleet.storage.for_fleet()
    manifests.update(s3, tenant, lambda doc: {**doc, "state": state, PARK_KEY: record})


def clear(fleet: Fleet, tenant: str) -> None:
    """Drop the parking fields from the tenant's manifest (the object goes when empty)."""

    def change(doc: dict[str, Any]) -> dict[str, Any] | None:
        if PARK_KEY not in doc and "state" not in doc:
            return None
        return {k: v for k, v in doc.items() if k not in (PARK_KEY, "state")}

    manifests.update(fleet.storage.for_fleet(), tenant, change)


def _activity(t: Tenant) -> dict[str, Any]:
    """What the runtime reports (``GET /v1/activity``); {} when it does not answer."""
    if not t.running:
        return {}
    try:
        with api(t, timeout=5.0) as client:
            return client.activity()
    except FleetError as exc:
        log.warning("no activity report; parking without a deadline", tenant=t.name, error=exc)
        return {}


def _resume(fleet: Fleet, t: Tenant) -> None:
    """Start it again where it was (not waiting for health: the store may still be away)."""
    fleet.hosting.start(t)
    clear(fleet, t.name)


def _check_stopped_volume(fleet: Fleet, t: Tenant, held: S3Settings | None) -> float | None:
    """A stopped SQLite tenant: FinalSyncFailed unless the backup has every transaction of
    its volume; returns the earliest durable deadline recorded in the volume. ``held``: the
    key its container holds, used for the check (a new key would revoke it, and _resume may
    start that container again)."""
    if t.backend != names.BACKEND_SQLITE:
        return None
    key = held or fleet.storage.for_tenant(t.name)
    job = OneOff(t.name, t.image, key, status_command())
    local = max_txid(fleet.hosting.run_oneoff(t.host, job), "local_txid") or 0
    replicated = backup_state(fleet.storage.for_fleet(), t.name).txid
    if replicated < local:
        raise FinalSyncFailed(
            t.name, f"the backup is at txid {replicated:#x}, its volume at {local:#x}"
        )
    return _volume_deadline(fleet, t)


def _volume_deadline(fleet: Fleet, t: Tenant) -> float | None:
    from agent_runtime import RunStatus, open_copy

    waits = {RunStatus.SLEEPING.value, RunStatus.WAITING.value}
    with tempfile.TemporaryDirectory(prefix="fleet-park-") as tmp:
        found = fleet.hosting.read_volume(t.name, t.host, t.image, DB_FILES, Path(tmp))
        if not found:
            return None
        with open_copy(found[0]) as db:
            due = [r.wake_at for r in db.unfinished_runs() if r.status in waits and r.wake_at]
    return min(due) if due else None


def parked(fleet: Fleet, labels: dict[str, str] | None = None) -> list[Tenant]:
    """Tenants recorded as parked (or parking, waking) in object storage, as ``Tenant``
    records with state ``parked``: one LIST and parallel GETs (manifests.list_all)."""
    return parked_in(manifests.list_all(fleet.storage.for_fleet()), labels)


def parked_in(stored: list[manifests.Manifest], labels: dict[str, str] | None) -> list[Tenant]:
    """The parked tenants among these manifests, carrying all ``labels``."""
    found = []
    for m in stored:
        rec = parked_record(m)
        if rec is None:
            continue
        t = _tenant_of(m.tenant, m.state or names.STATE_PARKED, rec)
        if all(t.labels.get(k) == v for k, v in (labels or {}).items()):
            found.append(t)
    return sorted(found, key=lambda t: t.name)


def _tenant_of(name: str, state: str, rec: dict[str, Any]) -> Tenant:
    spec = rec.get("spec") or {}
    labels: dict[str, str] = dict(spec.get("labels") or {})
    expires = labels.get(names.LABEL_EXPIRES)
    return Tenant(
        name=name,
        host=str(rec.get("host") or "-"),
        state=state,
        health="-",
        created_at=float(rec.get("parked_at") or rec.get("since") or 0),
        labels=names.user_labels(labels),
        ttl=labels.get(names.LABEL_TTL),
        expires_at=float(expires) if expires else None,
        app=labels.get(names.LABEL_APP, str(spec.get("app", "?"))),
        backend=labels.get(names.LABEL_BACKEND, names.BACKEND_SQLITE),
        image=str(spec.get("image", "?")),
        egress=spec.get("egress"),
        template=spec.get("template"),
        template_version=spec.get("template_version"),
        idle_park=labels.get(names.LABEL_IDLE_PARK),
        next_wake_at=rec.get("next_wake_at"),
    )
