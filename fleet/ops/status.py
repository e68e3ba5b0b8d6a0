"""`fleet ls`: tenants with health, age, TTL, database size and replication status.

Replication is measured, not guessed: the local txid comes from ``litestream status`` inside
the container, the replicated txid from the newest LTX file name in the bucket. Their
difference (transactions not yet uploaded) and the age of the newest upload are the lag.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fleet.core.context import Fleet
from fleet.core.errors import FleetError, translate
from fleet.core.log import log
from fleet.engine.container_spec import DB_PATH, S3Target
from fleet.storage.backups import BackupState, backup_state, s3_client

from .tenants import Tenant, list_tenants

LITESTREAM_CONFIG = "/etc/litefleet/litestream.yml"
_PROBE = (
    f"stat -c %s {DB_PATH} {DB_PATH}-wal 2>/dev/null; echo --; "
    f"litestream status -config {LITESTREAM_CONFIG} 2>/dev/null"
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

    def as_dict(self, now: float) -> dict[str, Any]:
        t, r = self.tenant, self.replication
        return {
            "tenant": t.name,
            "host": t.host.name,
            "state": t.state,
            "health": t.health,
            "url": t.url,
            "backend": t.backend,
            "app": t.app,
            "image": t.image,
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
            },
            "labels": t.labels,
        }


def ls(fleet: Fleet, labels: dict[str, str] | None = None) -> list[TenantStatus]:
    tenants = list_tenants(fleet, labels)
    if not tenants:
        return []
    s3, s3_note = _s3_or_note(fleet, tenants)
    s3c = s3_client(s3) if s3 else None
    with ThreadPoolExecutor(max_workers=min(8, len(tenants))) as pool:
        return list(pool.map(lambda t: _status(t, s3, s3c, s3_note), tenants))


def _s3_or_note(fleet: Fleet, tenants: list[Tenant]) -> tuple[S3Target | None, str]:
    if all(t.backend != "sqlite" for t in tenants):
        return None, ""
    try:
        return fleet.s3(start=False), ""
    except FleetError as exc:
        return None, exc.message


def _status(t: Tenant, s3: S3Target | None, s3c: Any, s3_note: str) -> TenantStatus:
    if t.backend != "sqlite":
        return TenantStatus(t, None, Replication(None, None, None, f"{t.backend}: no Litestream"))
    size, local = _probe(t) if t.running else (None, None)
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
    return TenantStatus(t, size, rep)


def _probe(t: Tenant) -> tuple[int | None, int | None]:
    """(database + WAL bytes, local txid) read inside the container; Nones when it fails."""
    try:
        _code, out = t.container.exec_run(["bash", "-c", _PROBE], demux=False)
    except Exception as exc:  # the container may have stopped since it was listed
        log.debug("probe failed", tenant=t.name, error=type(exc).__name__)
        return None, None
    text = (out or b"").decode(errors="replace")
    sizes, _, status = text.partition("--")
    size = sum(int(s) for s in sizes.split() if s.isdigit()) or None
    return size, parse_status_txid(status)


def parse_status_txid(text: str) -> int | None:
    """The local txid from ``litestream status`` output (a table; txid is hex)."""
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[0] == DB_PATH:
            try:
                return int(parts[2], 16)
            except ValueError:
                return None
    return None
