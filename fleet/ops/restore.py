"""`fleet restore TENANT --host B [--at T]`: bring a tenant back from object storage on a host
that never saw it (a new host, or after losing the old one).

Steps: the lease must be free (expired after a host loss, or revoked with --force-takeover);
the image is copied to B if missing; a one-off container restores the backup (optionally to a
point in time) into a new volume on B and reports the txid; only then is the tenant started
from that volume, and stale copies of it on other reachable hosts are removed (their volumes
are kept: they may hold transactions the backup lacks).

Point in time: the restored copy becomes the tenant. It replicates onward into the same
backup: Litestream sees the database behind the replica and writes a full snapshot as the next
transaction, so "latest" now means the rewound state plus what follows. The discarded
history stays in the backup (restorable with an earlier --at) only until Litestream's
retention drops it, so it is first copied to ``archive/<tenant>/<UTC time>/`` in the bucket.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fleet.core import names
from fleet.core.context import Fleet
from fleet.core.errors import BackupNotFound, FleetError, InvalidArgument, ObjectStoreError
from fleet.core.log import log
from fleet.engine.container_spec import (
    DATA_DIR,
    DB_PATH,
    LABEL_MANAGED,
    S3Target,
    tenant_container_config,
)
from fleet.engine.hosts import Host
from fleet.engine.image_transfer import Transfer, TransferProgress, ensure_image_on
from fleet.engine.placement import place
from fleet.storage import fence as _fence
from fleet.storage.backups import _LTX_KEY, backup_state, parse_timestamp, s3_client

from .tenants import Tenant, reachable_hosts, up, volume_exists

LITESTREAM_CONFIG = "/etc/litefleet/litestream.yml"
LABEL_ONEOFF = "litefleet.oneoff"  # restore/inspect helpers: never listed as tenants


@dataclass(frozen=True)
class RestoreResult:
    tenant: Tenant
    txid: int
    newest_at: datetime | None  # upload time of the newest restored transaction
    at: str | None  # the point in time asked for
    restore_s: float  # the one-off restore
    total_s: float  # until the tenant answered /healthz
    transfer: Transfer
    archived: str | None  # where the rewound history was copied (--at only)
    removed_stale: list[str]  # hosts a stopped copy of the tenant was removed from

    def age_s(self, now: float | None = None) -> float | None:
        if self.newest_at is None:
            return None
        return (time.time() if now is None else now) - self.newest_at.timestamp()


def restore(
    fleet: Fleet,
    tenant: str,
    *,
    host: str | None = None,
    at: str | None = None,
    force_takeover: bool = False,
    app: str | None = None,
    memory: str = "256m",
    cpus: float = 0.5,
    progress: TransferProgress | None = None,
) -> RestoreResult:
    names.check_tenant(tenant)
    stamp = parse_timestamp(at) if at else None
    t0 = time.monotonic()
    target = place(fleet, host)
    stale = _copies(fleet, tenant)
    for t in stale:
        if t.host is target:
            raise InvalidArgument(
                f"tenant {tenant!r} already exists on host {target.name!r}",
                f"`fleet up {tenant}` starts it; `fleet rm {tenant}` first to restore anew",
            )
        if t.running and not force_takeover:
            raise InvalidArgument(
                f"tenant {tenant!r} runs on host {t.host.name!r}",
                f"`fleet migrate {tenant} --to {target.name}` moves it without losing data",
            )
    s3_host = fleet.s3(start=True)
    state = backup_state(s3_host, tenant)
    if state.txid == 0:
        raise BackupNotFound(tenant, s3_host.bucket)
    _fence.ensure_free(fleet, tenant, check_only=force_takeover)  # refuse before copying
    transfer = ensure_image_on(fleet, target, fleet.settings.image, progress)
    if force_takeover:
        _fence.ensure_free(fleet, tenant, force_takeover=True)

    client = target.client
    volume = names.volume_name(tenant)
    if volume_exists(client, volume):
        raise InvalidArgument(
            f"host {target.name!r} already has a volume for {tenant!r} ({volume})",
            f"remove it (`docker volume rm {volume}` there) to restore from object storage",
        )
    from fleet.storage.embedded import ensure_tenant_network

    network = ensure_tenant_network(client)
    client.volumes.create(name=volume, labels={names.LABEL_TENANT: tenant})
    try:
        r0 = time.monotonic()
        cmd = ["restore", "-config", LITESTREAM_CONFIG, "-json"]
        if stamp:
            cmd += ["-timestamp", stamp]
        cmd.append(DB_PATH)
        out = run_oneoff(
            target, tenant, fleet.settings.image, fleet.s3_for_tenants(), network, cmd, "litestream"
        )
        restore_s = time.monotonic() - r0
        txid = _restored_txid(out)
        archived = _archive(s3_host, tenant) if stamp else None
        removed = []
        for t in stale:  # stopped copies elsewhere would shadow the restored tenant
            # Remove the container but keep its volume: after a failed final sync it is the
            # only place holding the newest transactions. It cannot rewind the backup: a
            # tenant started on a volume behind the replica keeps that database aside and
            # restores (images/tenant/entrypoint.sh).
            log.info("removing stale copy, keeping its volume", tenant=tenant, host=t.host.name)
            t.container.remove(force=True)
            removed.append(t.host.name)
        source = stale[0] if stale else None
        result = up(
            fleet,
            tenant,
            host=target.name,
            app=app or (source.app if source else "agent_runtime.examples"),
            labels=source.labels if source else None,
            memory=memory,
            cpus=cpus,
        )
    except BaseException:
        if not _used(client, volume):  # leave nothing half-made behind
            _remove_volume(client, volume)
        raise
    return RestoreResult(
        tenant=result.tenant,
        txid=txid,
        newest_at=_txid_time(s3_host, tenant, txid),
        at=stamp,
        restore_s=restore_s,
        total_s=time.monotonic() - t0,
        transfer=transfer,
        archived=archived,
        removed_stale=removed,
    )


def run_oneoff(
    host: Host,
    tenant: str,
    image: str,
    s3: S3Target,
    network: str,
    command: list[str],
    entrypoint: str,
    timeout: float = 900.0,
) -> str:
    """Run ``entrypoint command`` in a hardened throwaway container of the tenant image with the
    tenant's volume at /data and Litestream's environment; returns its stdout. FleetError
    (with the last line of stderr) when it fails."""
    cfg = tenant_container_config(
        tenant=tenant,
        image=image,
        volume=names.volume_name(tenant),
        s3=s3,
        token="unused",
        network=network,
        name=f"litefleet-{tenant}-oneoff-{int(time.time() * 1000) % 10**8}",
    )
    keep = ("TENANT", "LITEFLEET_S3_", "LITESTREAM_")
    cfg["environment"] = {
        k: v for k, v in cfg["environment"].items() if k.startswith(keep) or k == "TENANT"
    }
    cfg["labels"] = {LABEL_MANAGED: "true", LABEL_ONEOFF: tenant}  # not a tenant container
    cfg.pop("ports", None)
    cfg.update(entrypoint=[entrypoint], command=command, working_dir=DATA_DIR)
    container = host.client.containers.create(**cfg)
    try:
        container.start()
        status = container.wait(timeout=timeout)
        stdout = str(container.logs(stdout=True, stderr=False).decode(errors="replace"))
        if int(status.get("StatusCode", 1)) != 0:
            lines = container.logs(stdout=False, stderr=True).decode(errors="replace").splitlines()
            last = next((ln for ln in reversed(lines) if ln.strip()), "no output")
            raise FleetError(f"{entrypoint} {command[0]} on host {host.name!r} failed: {last}")
        return stdout
    finally:
        container.remove(force=True)


def _restored_txid(out: str) -> int:
    try:
        return int(json.loads(out)["txid"], 16)
    except (ValueError, KeyError, TypeError):
        raise ObjectStoreError(
            f"unexpected output from litestream restore: {out[:200]!r}"
        ) from None


def _txid_time(s3: S3Target, tenant: str, txid: int) -> datetime | None:
    """When the LTX file ending at ``txid`` was uploaded (the newest restored data)."""
    client = s3_client(s3)
    best: datetime | None = None
    for page in client.get_paginator("list_objects_v2").paginate(
        Bucket=s3.bucket, Prefix=names.backup_prefix(tenant)
    ):
        for obj in page.get("Contents", []):
            m = _LTX_KEY.search(obj["Key"])
            if m and int(m["max"], 16) == txid and (best is None or obj["LastModified"] < best):
                best = obj["LastModified"]  # the first upload of it (compactions come later)
    return best


def _archive(s3: S3Target, tenant: str) -> str:
    """Copy the tenant's current backup to archive/<tenant>/<stamp>/ (server-side)."""
    client = s3_client(s3)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    src = names.backup_prefix(tenant)
    dest = f"{names.archive_prefix(tenant)}{stamp}/"
    copied = 0
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=s3.bucket, Prefix=src):
        for obj in page.get("Contents", []):
            client.copy_object(
                Bucket=s3.bucket,
                Key=dest + obj["Key"][len(src) :],
                CopySource={"Bucket": s3.bucket, "Key": obj["Key"]},
            )
            copied += 1
    log.info("archived backup before point-in-time restore", tenant=tenant, objects=copied)
    return dest


def _copies(fleet: Fleet, tenant: str) -> list[Tenant]:
    from .tenants import from_container

    found = []
    for h in reachable_hosts(fleet):
        for c in h.client.containers.list(
            all=True, filters={"label": [f"{names.LABEL_TENANT}={tenant}"]}
        ):
            if (c.labels or {}).get(names.LABEL_ROLE) == names.ROLE_TENANT:
                found.append(from_container(h, c))
    return found


def _used(client: Any, volume: str) -> bool:
    return bool(client.containers.list(all=True, filters={"volume": volume}))


def _remove_volume(client: Any, volume: str) -> None:
    import docker.errors

    try:
        client.volumes.get(volume).remove(force=True)
    except docker.errors.NotFound:
        pass
    except docker.errors.APIError as exc:
        raise FleetError(f"could not remove volume {volume}: {exc.explanation}") from None
