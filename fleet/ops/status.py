"""`fleet ls`: tenants with health, age, TTL, database size and replication status.

Replication is measured, not guessed: the local txid comes from ``litestream status -json``
inside the container, the replicated txid from the newest LTX file name in the bucket. Their
difference (transactions not yet uploaded) and the age of the newest upload are the lag.

What the tenant's supervisor knows comes from its state file (fleet/supervisor/report.py),
read in the same probe: whether its lease is confirmed and since when object storage has
not answered. A stopped tenant says why from the engine (exit code, out of memory) and from
its supervisor's last line (``stopped: ...``, fleet/supervisor/exits.py); a running one how
often the engine restarted it and why the last time.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fleet.core import names
from fleet.core.context import Fleet
from fleet.core.errors import FleetError, translate
from fleet.core.hosting import Tenant
from fleet.core.log import log
from fleet.storage import manifests
from fleet.storage.backups import BackupState, backup_state
from fleet.storage.manifests import Manifest
from fleet.storage.s3 import client as s3_client
from fleet.supervisor.litestream import max_txid, status_command
from fleet.supervisor.s3 import S3Settings

from .park import parked_in
from .tenants import last_words, list_tenants
from .verify import recorded

_DB = names.DB_PATH
_HEALTHCHECK = "/opt/litefleet/bin/litefleet-healthcheck"  # the image's /healthz probe
_PROBE = (
    f"stat -c %s {_DB} {_DB}-wal 2>/dev/null; echo --; {shlex.join(status_command())} 2>/dev/null"
    f"; echo --; {_HEALTHCHECK} >/dev/null 2>&1 && echo healthy || echo unhealthy"
    f"; echo --; cat {names.STATE_FILE} 2>/dev/null"
)


@dataclass(frozen=True)
class Replication:
    local_txid: int | None  # None: unknown (stopped, postgres, probe failed)
    replicated_txid: int | None  # None: bucket unreachable
    last_upload: datetime | None
    note: str = ""  # why something is unknown

    @property
    def lag_txns(self) -> int | None:
        if self.local_txid is None or self.replicated_txid is None:
            return None
        return max(0, self.local_txid - self.replicated_txid)


@dataclass(frozen=True)
class TenantStatus:
    tenant: Tenant
    db_bytes: int | None
    replication: Replication
    supervisor: dict[str, Any] | None = None  # its state file, while running
    last_words: str | None = None  # its supervisor's last line, once stopped

    @property
    def lease(self) -> str | None:
        """held, unconfirmed, acquiring, lost, released; None when unknown."""
        return str(self.supervisor["lease"]) if self.supervisor else None

    @property
    def store_unreachable_since(self) -> float | None:
        since = (self.supervisor or {}).get("store_unreachable_since")
        return float(since) if since else None

    @property
    def last_crash(self) -> str | None:
        """Why the engine last restarted it (running), or why it stopped (stopped)."""
        if self.tenant.running:
            restarts = (self.supervisor or {}).get("restarts") or []
            return str(restarts[-1][1]) if restarts else None
        return self.last_words

    verified: dict[str, Any] | None = None  # the last restore drill (ops/verify.py)

    def as_dict(self, now: float) -> dict[str, Any]:
        t, r, sup = self.tenant, self.replication, self.supervisor or {}
        return {
            "tenant": t.name,
            "host": t.host,
            "state": t.state,
            "health": t.health,
            "url": t.url,
            "backend": t.backend,
            "database": t.database,
            "app": t.app,
            "image": t.image,
            "template": t.template,
            "template_version": t.template_version,
            "egress": t.egress,
            "created_at": t.created_at,
            "age_s": round(now - t.created_at, 1),
            "ttl": t.ttl,
            "expires_at": t.expires_at,
            "db_bytes": self.db_bytes,
            "replication": {
                "local_txid": r.local_txid,
                "replicated_txid": r.replicated_txid,
                "lag_txns": r.lag_txns,
                "last_upload": r.last_upload.isoformat() if r.last_upload else None,
                "note": r.note or None,
                "state": sup.get("replication"),
                "store": sup.get("store"),
                "store_unreachable_since": _iso(self.store_unreachable_since),
            },
            "lease": {
                "state": self.lease,
                "since": _iso(sup.get("lease_since")),
                "reason": sup.get("lease_reason"),
            },
            "restarts": t.restart_count,
            "last_exit": {
                "code": t.exit_code if not t.running else None,
                "oom": t.oom_killed,
                "why": self.last_crash,
            },
            "labels": t.labels,
            "idle_park": t.idle_park,
            "next_wake_at": t.next_wake_at,
            "verified": _verified(self.verified),
        }


def _iso(ts: Any) -> str | None:
    return datetime.fromtimestamp(float(ts), UTC).isoformat(timespec="seconds") if ts else None


def _verified(rec: dict[str, Any] | None) -> dict[str, Any] | None:
    if rec is None:
        return None
    at = datetime.fromtimestamp(float(rec.get("at") or 0), UTC).isoformat(timespec="seconds")
    return {
        "at": at,
        "passed": rec.get("passed"),
        "txid": rec.get("txid"),
        "detail": rec.get("detail"),
    }


def ls(fleet: Fleet, labels: dict[str, str] | None = None) -> list[TenantStatus]:
    """Tenants with a container, then the parked ones (no replication probe: their backup
    is complete, `fleet park` checked it)."""
    tenants = list_tenants(fleet, labels)
    stored = _manifests(fleet)
    verified = {m.tenant: recorded(m) for m in stored}
    shown = {t.name for t in tenants}
    rest = [
        TenantStatus(
            t, None, Replication(None, None, None, "parked"), verified=verified.get(t.name)
        )
        for t in parked_in(stored, labels)
        if t.name not in shown
    ]
    if not tenants:
        return rest
    s3, s3_note = _s3_or_note(fleet, tenants)
    s3c = s3_client(s3) if s3 else None
    with ThreadPoolExecutor(max_workers=min(8, len(tenants))) as pool:
        rows = list(pool.map(lambda t: _status(fleet, t, s3, s3c, s3_note), tenants))
    rows = [dataclasses.replace(r, verified=verified.get(r.tenant.name)) for r in rows]
    return sorted(rows + rest, key=lambda r: (r.tenant.name, r.tenant.host))


def _manifests(fleet: Fleet) -> list[Manifest]:
    """The fleet's records of tenants (parked ones, drills); none when unreadable (the
    running tenants' rows say why: their replication note)."""
    try:
        return manifests.list_all(fleet.storage.for_fleet())
    except FleetError as exc:
        log.warning("tenant records unreadable", error=exc.message)
        return []


def _s3_or_note(fleet: Fleet, tenants: list[Tenant]) -> tuple[S3Settings | None, str]:
    if all(t.backend != names.BACKEND_SQLITE for t in tenants):
        return None, ""
    try:
        return fleet.storage.for_fleet(), ""
    except FleetError as exc:
        return None, exc.message


def _status(fleet: Fleet, t: Tenant, s3: S3Settings | None, s3c: Any, s3_note: str) -> TenantStatus:
    words = None if t.running else last_words(fleet, t)
    if t.backend != names.BACKEND_SQLITE:
        rep = Replication(None, None, None, f"{t.backend}: no Litestream")
        return TenantStatus(t, None, rep, last_words=words)
    size, local, health, supervisor = _probe(fleet, t) if t.running else (None,) * 4
    if health is not None and t.health == "-":  # no engine health check: what /healthz says
        t = dataclasses.replace(t, health=health)
    backup: BackupState | None = None
    note = s3_note
    if s3 is not None:
        try:
            backup = backup_state(s3, t.name, s3c)
        except Exception as exc:
            err = translate(exc)
            if err is None:
                raise
            note = err.message
    rep = Replication(
        local_txid=local,
        replicated_txid=backup.txid if backup else None,
        last_upload=backup.last_upload if backup else None,
        note=note,
    )
    return TenantStatus(t, size, rep, supervisor, words)


def _probe(
    fleet: Fleet, t: Tenant
) -> tuple[int | None, int | None, str | None, dict[str, Any] | None]:
    """(database + WAL bytes, local txid, health, the supervisor's state) read inside the
    container, in one exec;
    Nones when it fails."""
    out = fleet.hosting.exec(t, ["bash", "-c", _PROBE])
    if out is None:
        return None, None, None, None
    sizes, _, rest = out.partition("--")
    status, _, rest = rest.partition("--")
    health, _, state = rest.partition("--")
    size = sum(int(s) for s in sizes.split() if s.isdigit()) or None
    try:
        supervisor = json.loads(state)
    except ValueError:
        supervisor = None
    return (
        size,
        max_txid(status, "local_txid"),
        health.strip() or None,
        supervisor if isinstance(supervisor, dict) else None,
    )
