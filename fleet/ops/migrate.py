"""`fleet migrate TENANT --to B`: move a tenant to another host through object storage.

1. Copy the image to B first (outside the downtime).
2. Stop the runtime on the source (SIGTERM: the runtime drains, Litestream does its final
   sync, the lease keeper releases the lease).
3. Read the stopped source volume with a one-off container: Litestream's local txid and every
   run (id, status). Wait until the bucket's replicated txid reaches the local txid: nothing
   committed is left behind.
4. Remove the source container (its volume stays as the way back) and start the tenant on B
   from object storage, with the same token, app, labels, limits and environment.
5. Compare runs: every source run must exist on B, with the same status if it had finished.
   Only then is the source volume removed. On failure before B is healthy, the tenant is
   started again on the source from its volume.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass
from typing import Any

from fleet.core import names
from fleet.core.context import Fleet
from fleet.core.errors import FleetError, FleetTimeout, InvalidArgument
from fleet.core.log import log
from fleet.engine.container_spec import RESERVED_ENV
from fleet.engine.hosts import pick
from fleet.engine.image_transfer import TransferProgress, ensure_image_on
from fleet.storage.backups import backup_state

from .restore import LITESTREAM_CONFIG, _remove_volume, run_oneoff
from .status import parse_status_txid
from .tenants import TOKEN_ENV, Tenant, find, up, volume_exists

TERMINAL = frozenset({"completed", "failed", "cancelled"})
_SYNC_WAIT_S = 30.0
# Reads the stopped database without writing to it (no checkpoint on close).
_READ_RUNS = (
    "import apsw, json\n"
    "try:\n"
    "    c = apsw.Connection('/data/tenant.db', flags=apsw.SQLITE_OPEN_READONLY)\n"
    "    print(json.dumps(dict(c.execute('SELECT id, status FROM runs'))))\n"
    "except apsw.SQLError:\n"
    "    print('{}')\n"  # the runtime never created its tables
)


@dataclass(frozen=True)
class MigrateResult:
    tenant: Tenant
    source: str
    local_txid: int
    replicated_txid: int
    runs: int  # runs compared
    stop_s: float  # SIGTERM until the source container exited (drain + final sync)
    downtime_s: float  # SIGTERM on the source until /healthz answered on the target


def migrate(
    fleet: Fleet, tenant: str, *, to: str, progress: TransferProgress | None = None
) -> MigrateResult:
    src = find(fleet, tenant)
    target = pick(fleet.hosts, to)
    if src.host is target:
        raise InvalidArgument(f"tenant {tenant!r} is already on host {to!r}")
    if src.backend != "sqlite":
        raise InvalidArgument(f"tenant {tenant!r} uses {src.backend}: there is nothing to move")
    ensure_image_on(fleet, target, src.image, progress)
    volume = names.volume_name(tenant)
    if volume_exists(target.client, volume):
        raise InvalidArgument(
            f"host {to!r} already has a volume for {tenant!r} ({volume})",
            f"remove it there (`docker volume rm {volume}`) first",
        )
    settings = _settings_of(src)

    t0 = time.monotonic()
    log.info("stopping source", tenant=tenant, host=src.host.name)
    src.container.stop(timeout=fleet.settings.stop_timeout)
    src.container.reload()
    stop_s = time.monotonic() - t0
    code = src.container.attrs["State"].get("ExitCode")
    if code not in (0, 143):
        src.container.start()
        raise FleetError(
            f"tenant {tenant!r} did not stop cleanly on {src.host.name!r} (exit code {code}); "
            "it was started again there",
            f"`fleet logs {tenant}` shows why",
        )
    from fleet.storage.embedded import ensure_tenant_network

    out = run_oneoff(
        src.host,
        tenant,
        src.image,
        fleet.s3_for_tenants(),
        ensure_tenant_network(src.host.client),
        [
            "-c",
            f'litestream status -config {LITESTREAM_CONFIG}; echo ---; python3 -c "$0"',
            _READ_RUNS,
        ],
        "bash",
    )
    status_text, _, runs_text = out.partition("---")
    local = parse_status_txid(status_text)
    source_runs: dict[str, str] = json.loads(runs_text.strip() or "{}")
    if local is None:
        src.container.start()
        raise FleetError(f"cannot read the local txid of {tenant!r}; it was started again")
    replicated = _wait_replicated(fleet, tenant, local)
    if replicated < local:
        src.container.start()
        raise FleetTimeout(
            f"the final sync of {tenant!r} did not reach object storage "
            f"(replicated txid {replicated:#x} < local {local:#x}); it was started again on "
            f"{src.host.name!r}",
            "check object storage and `fleet logs`, then retry",
        )

    src.container.remove(force=True)  # the volume stays: it is the way back
    try:
        new = up(fleet, tenant, host=target.name, **settings).tenant
    except Exception:
        log.warning("start on target failed; rolling back", tenant=tenant, host=target.name)
        _rollback(fleet, tenant, target.name, src.host.name, settings)
        raise
    downtime_s = time.monotonic() - t0

    with new.client(timeout=30.0) as api:
        moved = {r["id"]: r["status"] for r in api.list_runs(limit=10**9)}
    missing = [i for i in source_runs if i not in moved]
    changed = [i for i, st in source_runs.items() if st in TERMINAL and moved.get(i, st) != st]
    if missing or changed:
        raise FleetError(
            f"runs differ after moving {tenant!r}: {len(missing)} missing, {len(changed)} "
            f"changed (e.g. {(missing or changed)[0]}); the source volume {volume} is kept on "
            f"{src.host.name!r}",
            "do not remove it; report this",
        )
    _remove_volume(src.host.client, volume)
    return MigrateResult(
        tenant=new,
        source=src.host.name,
        local_txid=local,
        replicated_txid=replicated,
        runs=len(source_runs),
        stop_s=stop_s,
        downtime_s=downtime_s,
    )


def _wait_replicated(fleet: Fleet, tenant: str, local: int) -> int:
    s3 = fleet.s3(start=False)
    deadline = time.monotonic() + _SYNC_WAIT_S
    while True:
        replicated = backup_state(s3, tenant).txid
        if replicated >= local or time.monotonic() >= deadline:
            return replicated
        time.sleep(0.2)


def _settings_of(t: Tenant) -> dict[str, Any]:
    """What `up` needs to recreate ``t`` elsewhere as it was."""
    attrs = t.container.attrs
    env = dict(e.partition("=")[::2] for e in attrs["Config"].get("Env") or [])
    image_env = {e.partition("=")[0] for e in (t.container.image.attrs["Config"].get("Env") or [])}
    user_env = {k: v for k, v in env.items() if k not in RESERVED_ENV and k not in image_env}
    host_cfg = attrs["HostConfig"]
    memory = int(host_cfg.get("Memory") or 0)
    nano = int(host_cfg.get("NanoCpus") or 0)
    return {
        "app": t.app,
        "image": t.image,
        "labels": t.labels,
        "memory": f"{memory // (1 << 20)}m" if memory else "256m",
        "cpus": nano / 1e9 if nano else 0.5,
        "env": user_env,
        "token": env.get(TOKEN_ENV),
    }


def _rollback(
    fleet: Fleet, tenant: str, target: str, source: str, settings: dict[str, Any]
) -> None:
    host = pick(fleet.hosts, target)
    import docker.errors

    with contextlib.suppress(docker.errors.NotFound):
        host.client.containers.get(names.container_name(tenant)).remove(force=True)
    _remove_volume(host.client, names.volume_name(tenant))
    up(fleet, tenant, host=source, force_takeover=True, **settings)
