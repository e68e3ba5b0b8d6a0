"""Tenant backups in object storage: Litestream's LTX files under ``tenants/<tenant>/``, and
the history point-in-time restores set aside under ``archive/<tenant>/``.

A manifest of parked (hibernated) tenants kept in the bucket belongs beside this module.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fleet.core.errors import ObjectStoreError
from fleet.core.log import log
from fleet.core.names import archive_prefix, backup_prefix
from fleet.supervisor.s3 import S3Settings

from .s3 import client as s3_client

# <prefix><level as 4 hex>/<min txid>-<max txid>.ltx (Litestream 0.5 layout)
LTX_KEY = re.compile(r"(?P<level>[0-9a-f]{4})/(?P<min>[0-9a-f]{16})-(?P<max>[0-9a-f]{16})\.ltx$")


@dataclass(frozen=True)
class BackupState:
    """What the bucket holds for one tenant."""

    objects: int
    bytes: int
    txid: int  # highest transaction id replicated (0: none)
    last_upload: datetime | None


def _objects(s3: S3Settings, prefix: str, client: Any = None) -> Any:
    client = client or s3_client(s3)
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=s3.bucket, Prefix=prefix):
        yield from page.get("Contents", [])


def backup_state(s3: S3Settings, tenant: str, client: Any = None) -> BackupState:
    objects = size = txid = 0
    last: datetime | None = None
    for obj in _objects(s3, backup_prefix(tenant), client):
        objects += 1
        size += int(obj["Size"])
        m = LTX_KEY.search(obj["Key"])
        if m:
            txid = max(txid, int(m["max"], 16))
            if last is None or obj["LastModified"] > last:
                last = obj["LastModified"]
    return BackupState(objects=objects, bytes=size, txid=txid, last_upload=last)


def txid_time(s3: S3Settings, tenant: str, txid: int) -> datetime | None:
    """When the LTX file ending at ``txid`` was uploaded (the newest restored data)."""
    best: datetime | None = None
    for obj in _objects(s3, backup_prefix(tenant)):
        m = LTX_KEY.search(obj["Key"])
        if m and int(m["max"], 16) == txid and (best is None or obj["LastModified"] < best):
            best = obj["LastModified"]  # the first upload of it (compactions come later)
    return best


def archive(s3: S3Settings, tenant: str) -> str:
    """Copy the tenant's current backup to archive/<tenant>/<stamp>/ (server-side)."""
    client = s3_client(s3)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    src = backup_prefix(tenant)
    dest = f"{archive_prefix(tenant)}{stamp}/"
    copied = 0
    for obj in _objects(s3, src, client):
        client.copy_object(
            Bucket=s3.bucket,
            Key=dest + obj["Key"][len(src) :],
            CopySource={"Bucket": s3.bucket, "Key": obj["Key"]},
        )
        copied += 1
    log.info("archived backup before point-in-time restore", tenant=tenant, objects=copied)
    return dest


def purge(s3: S3Settings, tenant: str) -> int:
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
