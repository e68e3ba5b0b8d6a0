"""`fleet pull`: a consistent copy of a tenant's database from its backup, checked before it
replaces the output file. The running container is not touched."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from fleet.core.errors import BackupNotFound, FleetError, InvalidArgument
from fleet.storage.backups import backup_state
from fleet.storage.litestream import parse_timestamp, restore_copy
from fleet.supervisor.s3 import S3Settings


@dataclass(frozen=True)
class PullResult:
    path: Path
    bytes: int
    runs: int
    integrity: str


def pull(
    s3: S3Settings, tenant: str, out: Path, *, at: str | None = None, force: bool = False
) -> PullResult:
    """Restore the tenant's database (at ``at``, RFC 3339) into ``out``; the copy must pass
    PRAGMA integrity_check first."""
    from agent_runtime import open_copy

    stamp = parse_timestamp(at) if at else None
    if out.exists() and not force:
        raise InvalidArgument(f"{out} exists", "pass --force to overwrite it, or -o another path")
    if backup_state(s3, tenant).txid == 0:
        raise BackupNotFound(tenant, s3.bucket)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".fleet-pull-", dir=out.parent) as tmp:
        partial = Path(tmp, "tenant.db")
        restore_copy(s3, tenant, partial, stamp)
        with open_copy(partial) as db:
            integrity = db.integrity_check()
            # A tenant that never started its runtime has no tables: no runs.
            runs = sum(db.count_by_status().values())
        if integrity != "ok":
            raise FleetError(f"the restored copy fails integrity_check: {integrity}")
        os.replace(partial, out)
    return PullResult(path=out, bytes=out.stat().st_size, runs=runs, integrity=integrity)
