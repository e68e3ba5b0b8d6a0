"""`fleet verify`: restore drills. Restores are where backups fail, so each tenant's newest
backup is restored on this machine into a scratch directory (Litestream, as `fleet pull`
does; the tenant is not touched), checked with ``PRAGMA integrity_check``, and its txid
compared with what the tenant has:

- the restored txid must reach the newest txid the bucket listed just before the restore
  (an LTX file that cannot be read or applied fails the restore, or falls short);
- a running tenant's own txid (read inside its container, after the restore) must not be
  behind the restored one: a backup ahead of its live database means another writer.

The result (when, passed, txid, detail) goes into the fleet's record of the tenant,
``manifests/<t>.json`` under ``verify``: written with the fleet's key only, under a prefix no
tenant key can write, so a tenant cannot fake a passed drill. `fleet ls` shows it.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fleet.core import names
from fleet.core.context import Fleet
from fleet.core.errors import FleetError, InvalidArgument, ObjectStoreError, TenantNotFound
from fleet.core.hosting import Tenant
from fleet.storage import manifests
from fleet.storage.backups import backup_state
from fleet.storage.litestream import restore_copy
from fleet.supervisor.litestream import max_txid, status_command
from fleet.supervisor.s3 import S3Settings

from .park import parked, parked_record
from .tenants import find_or_none, list_tenants

VERIFY_KEY = "verify"  # this module's field in a manifest


@dataclass(frozen=True)
class Verification:
    tenant: str
    at: float  # when the drill ran (epoch s)
    passed: bool | None  # None: nothing to verify (a PostgreSQL tenant)
    txid: int | None  # the restored txid
    detail: str
    seconds: float = 0.0

    def record(self) -> dict[str, Any]:
        """What the manifest keeps (and `fleet ls --json` shows as ``verified``)."""
        return {"at": self.at, "passed": self.passed, "txid": self.txid, "detail": self.detail}


def verify(fleet: Fleet, tenant: str) -> Verification:
    """Run the drill for one tenant and record it; TenantNotFound when the fleet knows
    neither the tenant nor a backup of it."""
    names.check_tenant(tenant)
    s3 = fleet.storage.for_fleet(start=True)
    t = find_or_none(fleet, tenant)
    t0, at = time.monotonic(), time.time()
    if t is not None and t.backend != names.BACKEND_SQLITE:
        return Verification(tenant, at, None, None, f"{t.backend}: no Litestream backup")
    listed = backup_state(s3, tenant).txid
    if listed == 0:
        if t is None and parked_record(manifests.read(s3, tenant)) is None:
            raise TenantNotFound(tenant)
        passed, txid, detail = False, None, f"no backup in bucket {s3.bucket!r}"
    else:
        passed, txid, detail = _drill(fleet, s3, tenant, listed, t)
    result = Verification(tenant, at, passed, txid, detail, time.monotonic() - t0)
    record(s3, result)
    return result


def _drill(
    fleet: Fleet, s3: S3Settings, tenant: str, listed: int, t: Tenant | None
) -> tuple[bool, int | None, str]:
    """(passed, restored txid, detail) of restoring the newest backup into a scratch copy."""
    from agent_runtime import open_copy

    with tempfile.TemporaryDirectory(prefix="fleet-verify-") as scratch:
        copy = Path(scratch, "tenant.db")
        try:
            txid = restore_copy(s3, tenant, copy)
        except ObjectStoreError as exc:
            return False, None, exc.message
        try:
            with open_copy(copy) as db:
                integrity = db.integrity_check()
        except Exception as exc:  # not a database at all: the drill's finding, not ours
            return False, txid, f"the restored copy cannot be read: {exc}"
        size = copy.stat().st_size
    if integrity != "ok":
        return False, txid, f"integrity_check: {integrity}"
    if txid < listed:
        return False, txid, f"restored txid {txid:x} but the bucket lists txid {listed:x}"
    local = _local_txid(fleet, t)
    if local is not None and local < txid:
        return False, txid, f"the backup (txid {txid:x}) is ahead of the tenant (txid {local:x})"
    behind = "" if local is None else f"; the tenant is at txid {local:x}"
    return True, txid, f"integrity ok, {size} bytes, txid {txid:x}{behind}"


def _local_txid(fleet: Fleet, t: Tenant | None) -> int | None:
    """The running tenant's own txid, as Litestream inside it reports (None: not running)."""
    if t is None or not t.running:
        return None
    refreshed = find_or_none(fleet, t.name)  # it may have stopped during the restore
    if refreshed is None or not refreshed.running:
        return None
    out = fleet.hosting.exec(refreshed, status_command())
    return max_txid(out, "local_txid") if out else None


def record(s3: S3Settings, result: Verification) -> None:
    """Keep the result in the tenant's manifest (beside whatever else the fleet keeps)."""
    if result.passed is None:
        return

    def change(doc: dict[str, Any]) -> dict[str, Any]:
        return {**doc, VERIFY_KEY: result.record()}

    manifests.update(s3, result.tenant, change)


def forget(s3: S3Settings, tenant: str) -> None:
    """Drop the drill's record (the backup it judged is gone); the object goes when empty."""

    def change(doc: dict[str, Any]) -> dict[str, Any] | None:
        if VERIFY_KEY not in doc:
            return None
        return {k: v for k, v in doc.items() if k != VERIFY_KEY}

    manifests.update(s3, tenant, change)


def recorded(m: manifests.Manifest) -> dict[str, Any] | None:
    """The last drill's record in a manifest (None: never verified)."""
    rec = m.doc.get(VERIFY_KEY)
    return rec if isinstance(rec, dict) else None


def due(fleet: Fleet, every: float, now: float) -> list[str]:
    """SQLite tenants (running, stopped or parked) whose last drill is older than ``every``
    seconds, or who never had one: oldest first. What `fleet gateway --verify-every` runs;
    it goes by the recorded times, so a restarted gateway does not start over."""
    last = {m.tenant: float((recorded(m) or {}).get("at") or 0) for m in manifests_of(fleet)}
    known = [t.name for t in list_tenants(fleet) if t.backend == names.BACKEND_SQLITE]
    known += [t.name for t in parked(fleet) if t.backend == names.BACKEND_SQLITE]
    stale = [n for n in dict.fromkeys(known) if now - last.get(n, 0.0) >= every]
    return sorted(stale, key=lambda n: last.get(n, 0.0))


def manifests_of(fleet: Fleet) -> list[manifests.Manifest]:
    return manifests.list_all(fleet.storage.for_fleet())


def chosen(fleet: Fleet, given: list[str], labels: dict[str, str] | None, every: bool) -> list[str]:
    """The tenants named, then those carrying ``labels`` (or every one with ``every``),
    running, stopped or parked. Names are checked before anything is contacted."""
    for n in given:
        names.check_tenant(n)
    if len(set(given)) != len(given):
        raise InvalidArgument("a tenant is named twice")
    wanted = list(given)
    if labels or every:
        found = [t.name for t in list_tenants(fleet, labels or None)]
        found += [t.name for t in parked(fleet, labels or None)]
        wanted += [n for n in dict.fromkeys(found) if n not in wanted]
    return wanted


def failed_summary(results: list[Verification]) -> FleetError | None:
    """The error that makes `fleet verify` exit non-zero, when any drill failed."""
    bad = [r.tenant for r in results if r.passed is False]
    if not bad:
        return None
    return FleetError(
        f"{len(bad)} of {len(results)} restore drill(s) failed: {', '.join(bad)}",
        "the lines above say why; the backup of a failed tenant cannot be trusted",
    )
