"""Tenant lifecycle on the engines: up, down, rm, teardown, gc, logs.

A tenant is one container plus one volume, found by labels; the fleet keeps no database.
The per-tenant API token lives in the container's environment (the runtime reads it from
there), so the CLI reads it back from the engine and never prints it.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import httpx

from fleet.core import names
from fleet.core.context import Fleet
from fleet.core.errors import (
    FleetError,
    FleetTimeout,
    InvalidArgument,
    TenantNotFound,
    TenantNotRunning,
)
from fleet.core.log import log
from fleet.engine.container_spec import published_port, tenant_container_config
from fleet.engine.hosts import Host
from fleet.engine.image_transfer import TransferProgress
from fleet.storage.backups import purge as purge_backup
from fleet.storage.final_sync import stop_with_final_sync

from .api import RuntimeClient

TOKEN_ENV = "AGENT_RUNTIME_TOKEN"


@dataclass
class Tenant:
    """A tenant as its engine describes it."""

    name: str
    host: Host
    container: Any = field(repr=False)
    state: str  # docker state: running, exited, created, restarting, paused, dead
    health: str  # healthy, starting, unhealthy, or "-" without a health check
    created_at: float
    labels: dict[str, str]  # user labels
    ttl: str | None
    expires_at: float | None
    app: str
    backend: str
    image: str
    port: int | None = None
    _token: str | None = field(default=None, repr=False)

    @property
    def running(self) -> bool:
        return self.state == "running"

    @property
    def url(self) -> str | None:
        return f"http://127.0.0.1:{self.port}" if self.port else None

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and self.expires_at <= now

    def client(self, timeout: float = 15.0) -> RuntimeClient:
        """A client of this tenant's runtime API; TenantNotRunning unless it serves."""
        if not self.running or not self.url or not self._token:
            raise TenantNotRunning(self.name, self.state)
        return RuntimeClient(self.url, self._token, timeout=timeout)


@dataclass(frozen=True)
class UpResult:
    tenant: Tenant
    action: str  # created | started | running
    note: str | None = None  # for the user, e.g. how --db-url was rewritten


@dataclass(frozen=True)
class RmResult:
    tenant: str
    container: bool
    volume: bool
    purged: int | None  # backup objects deleted (None: not asked)


# -- lookups


def from_container(host: Host, c: Any) -> Tenant:
    attrs = c.attrs
    labels: dict[str, str] = attrs["Config"].get("Labels") or {}
    state = attrs["State"]
    env = dict(e.partition("=")[::2] for e in attrs["Config"].get("Env") or [])
    port = published_port(attrs)
    expires = labels.get(names.LABEL_EXPIRES)
    running = state.get("Status") == "running"
    return Tenant(
        name=labels.get(names.LABEL_TENANT, c.name),
        host=host,
        container=c,
        state=str(state.get("Status", "unknown")),
        # A stopped container keeps its last health status: only show it while running.
        health=str((state.get("Health") or {}).get("Status", "-")) if running else "-",
        created_at=_epoch(attrs["Created"]),
        labels=names.user_labels(labels),
        ttl=labels.get(names.LABEL_TTL),
        expires_at=float(expires) if expires else None,
        app=labels.get(names.LABEL_APP, "?"),
        backend=labels.get(names.LABEL_BACKEND, "sqlite"),
        image=str(attrs["Config"].get("Image", "?")),
        port=port if running else None,
        _token=env.get(TOKEN_ENV),
    )


def list_tenants(fleet: Fleet, labels: dict[str, str] | None = None) -> list[Tenant]:
    """Every tenant container on every host, optionally only those carrying all ``labels``."""
    wanted = [f"{names.LABEL_ROLE}={names.ROLE_TENANT}"]
    wanted += [f"{k}={v}" for k, v in names.engine_labels(labels or {}).items()]
    found: list[Tenant] = []
    for host in reachable_hosts(fleet):
        for c in host.client.containers.list(all=True, filters={"label": wanted}):
            found.append(from_container(host, c))
    return sorted(found, key=lambda t: (t.name, t.host.name))


def find(fleet: Fleet, tenant: str) -> Tenant:
    names.check_tenant(tenant)
    filters = {"label": [f"{names.LABEL_TENANT}={tenant}"]}
    for host in reachable_hosts(fleet):
        for c in host.client.containers.list(all=True, filters=filters):
            return from_container(host, c)
    raise TenantNotFound(tenant)


def reachable_hosts(fleet: Fleet) -> list[Host]:
    """The hosts to look at: all of them with one host (its failure is the error), else the
    ones that answer, so one lost host does not stop the fleet (`fleet hosts` shows it)."""
    if len(fleet.hosts) == 1:
        return fleet.hosts
    alive = [h for h in fleet.hosts if h.reachable()]
    for h in fleet.hosts:
        if h not in alive:
            log.warning("host does not answer; skipping it", host=h.name)
    if not alive:
        from fleet.core.errors import EngineUnavailable

        raise EngineUnavailable("no host of FLEET_HOSTS answers")
    return alive


def _find_or_none(fleet: Fleet, tenant: str) -> Tenant | None:
    try:
        return find(fleet, tenant)
    except TenantNotFound:
        return None


# -- lifecycle


def up(
    fleet: Fleet,
    tenant: str,
    *,
    app: str = "agent_runtime.examples",
    image: str | None = None,
    labels: dict[str, str] | None = None,
    ttl: str | None = None,
    memory: str = "256m",
    cpus: float = 0.5,
    env: dict[str, str] | None = None,
    host: str | None = None,
    db_url: str | None = None,
    force_takeover: bool = False,
    progress: TransferProgress | None = None,
    token: str | None = None,
) -> UpResult:
    """Create and start the tenant, or start it again; a running tenant is left as it is.

    A new tenant goes to ``host``, else to the host with the most free memory; the image is
    copied there first when missing. A SQLite tenant whose lease is live elsewhere is refused
    (TenantLeased) unless ``force_takeover`` revokes it (the old holder stops replicating).

    ``db_url``: the tenant runs on that PostgreSQL database instead of SQLite + Litestream
    (see ``_postgres`` for how a loopback URL reaches the container)."""
    from . import postgres as _postgres

    names.check_tenant(tenant)
    ttl_s = _ttl_seconds(ttl)
    if db_url is not None:
        _postgres.check_url(db_url)
    if cpus <= 0:
        raise InvalidArgument(f"--cpus must be positive, got {cpus:g}")
    from fleet.engine.image_transfer import ensure_image_on
    from fleet.engine.placement import place
    from fleet.storage import fence as _fence

    existing = _find_or_none(fleet, tenant)
    if existing is not None:
        if host is not None and existing.host.name != host:
            raise InvalidArgument(
                f"tenant {tenant!r} lives on host {existing.host.name!r}",
                f"`fleet migrate {tenant} --to {host}` moves it",
            )
        if existing.running:
            return UpResult(existing, "running")
        changed = [
            flag
            for flag, given in (
                ("--image", image is not None and image != existing.image),
                ("--db-url", db_url is not None),
                ("--env", bool(env)),
                ("--label", bool(labels) and labels != existing.labels),
                ("--ttl", ttl is not None),
            )
            if given
        ]
        if changed:  # a stopped container starts as it was created: say so, change nothing
            raise InvalidArgument(
                f"tenant {tenant!r} exists (stopped) and starts with its own settings: "
                f"{', '.join(changed)} would be ignored",
                f"run `fleet up {tenant}` alone, or `fleet rm {tenant}` (its backup is kept) "
                "and `fleet up` it again with the new settings",
            )
        if existing.backend == "sqlite":
            _fence.ensure_free(
                fleet, tenant, container=existing.container, force_takeover=force_takeover
            )
        log.info("starting stopped tenant", tenant=tenant, host=existing.host.name)
        existing.container.start()
        return UpResult(wait_healthy(fleet, existing), "started")

    target = place(fleet, host)
    client = target.client
    image = image or fleet.settings.image
    from fleet.storage.embedded import ensure_tenant_network

    if db_url is None:  # refuse a live lease before copying anything
        _fence.ensure_free(fleet, tenant, check_only=force_takeover)
    ensure_image_on(fleet, target, image, progress)
    if db_url is None and force_takeover:  # only now stop the old holder
        _fence.ensure_free(fleet, tenant, force_takeover=True)
    s3 = None if db_url else fleet.s3_for_tenants()
    network = ensure_tenant_network(client)
    pg = None
    if db_url is not None:
        from fleet.storage.embedded import network_gateway

        gateway = network_gateway(client, network)
        pg = _postgres.for_tenant(db_url, gateway)
        if pg.host == gateway:
            _postgres.check_listening(pg, db_url)
    own = {
        names.LABEL_TENANT: tenant,
        names.LABEL_ROLE: names.ROLE_TENANT,
        names.LABEL_APP: app,
        names.LABEL_BACKEND: "postgres" if db_url else "sqlite",
        **names.engine_labels(labels or {}),
    }
    if ttl is not None and ttl_s is not None:
        own[names.LABEL_TTL] = ttl
        own[names.LABEL_EXPIRES] = str(int(time.time()) + ttl_s)
    volume = names.volume_name(tenant)
    new_volume = not db_url and not volume_exists(client, volume)
    if new_volume:
        client.volumes.create(name=volume, labels={names.LABEL_TENANT: tenant})
    cfg = tenant_container_config(
        tenant=tenant,
        image=image,
        volume=volume,
        s3=s3,
        token=token or secrets.token_urlsafe(32),  # a moved tenant keeps its API token
        app=app,
        memory=memory,
        cpus=cpus,
        # The lease keeper names its holder "<host>/<container id>".
        env=env,
        host=target.name,
        labels=own,
        network=network,
        db_url=pg.url if pg else None,
        db_password=pg.password if pg else None,
    )
    log.info("creating tenant", tenant=tenant, host=target.name, image=image)
    try:
        container = client.containers.create(**cfg)
    except Exception:
        if new_volume:  # leave nothing half-made behind
            client.volumes.get(volume).remove(force=True)
        raise
    container.start()
    container.reload()
    note = pg.note if pg else None
    return UpResult(wait_healthy(fleet, from_container(target, container)), "created", note)


def wait_healthy(fleet: Fleet, tenant: Tenant) -> Tenant:
    """Poll /healthz on the published loopback port until it answers 200."""
    deadline = time.monotonic() + fleet.settings.health_timeout
    while True:
        tenant.container.reload()
        t = from_container(tenant.host, tenant.container)
        if t.state in ("exited", "dead"):
            code = t.container.attrs["State"].get("ExitCode")
            raise FleetError(
                f"tenant {t.name!r} exited during start (exit code {code})",
                f"`fleet logs {t.name}` shows why",
            )
        if t.running and t.url:
            try:
                with httpx.Client(trust_env=False, timeout=2.0) as http:
                    if http.get(t.url + "/healthz").status_code == 200:
                        return t
            except httpx.HTTPError:
                pass  # not listening yet
        if time.monotonic() >= deadline:
            raise FleetTimeout(
                f"tenant {t.name!r} not healthy after {fleet.settings.health_timeout:g}s",
                f"`fleet logs {t.name}` shows what it is doing",
            )
        time.sleep(0.2)


def down(fleet: Fleet, tenant: str) -> tuple[Tenant, bool]:
    """Stop the container, letting Litestream finish its final sync; (tenant, was_running)."""
    t = find(fleet, tenant)
    if t.state not in ("running", "restarting", "paused"):
        return t, False
    # SIGTERM: the runtime drains, then litestream does its final sync before exiting.
    if t.backend == "postgres":
        t.container.stop(timeout=fleet.settings.stop_timeout)
    else:
        stop_with_final_sync(t.container, tenant, fleet.settings.stop_timeout)
    t.container.reload()
    return from_container(t.host, t.container), True


def rm(fleet: Fleet, tenant: str, *, purge: bool = False) -> RmResult:
    """Remove the container and the volume; with ``purge`` also the backup."""
    names.check_tenant(tenant)
    s3 = fleet.s3(start=False) if purge else None  # fail before deleting anything
    t = _find_or_none(fleet, tenant)
    removed_container = removed_volume = False
    hosts = [t.host] if t else fleet.hosts
    if t is not None:
        if t.running and not purge:
            # Keep the backup complete: the final sync happens on a graceful stop, and
            # nothing is removed if it failed.
            if t.backend == "postgres":
                t.container.stop(timeout=fleet.settings.stop_timeout)
            else:
                stop_with_final_sync(t.container, tenant, fleet.settings.stop_timeout)
        t.container.remove(force=True)
        removed_container = True
    import docker.errors

    for h in hosts:
        try:
            h.client.volumes.get(names.volume_name(tenant)).remove(force=True)
            removed_volume = True
        except docker.errors.NotFound:
            pass
    purged = purge_backup(s3, tenant) if s3 is not None else None
    if purge:
        from fleet.storage.fence import forget

        forget(fleet, tenant)  # the lease object goes with the backup
    if not (removed_container or removed_volume or purged):
        raise TenantNotFound(tenant)
    return RmResult(tenant, removed_container, removed_volume, purged)


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
    return _remove_many(fleet, [t.name for t in list_tenants(fleet, labels)], purge, reporter)


def expired(fleet: Fleet, now: float | None = None) -> list[str]:
    """Tenants whose TTL has passed."""
    now = time.time() if now is None else now
    return [t.name for t in list_tenants(fleet) if t.expired(now)]


def gc(fleet: Fleet, *, purge: bool = False, reporter: Reporter | None = None) -> Removal:
    """Remove the tenants whose TTL has passed, in parallel."""
    return _remove_many(fleet, expired(fleet), purge, reporter)


def _remove_many(
    fleet: Fleet, tenants: list[str], purge: bool, reporter: Reporter | None, parallel: int = 8
) -> Removal:
    from fleet.core.errors import translate

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
        fleet.s3(start=False)  # resolve once, before the threads race for it
    with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(tenants)))) as pool:
        for r in pool.map(one, tenants):
            if isinstance(r, RmResult):
                removal.done.append(r)
            else:
                removal.failed.append(r)
    return removal


def logs(
    fleet: Fleet, tenant: str, *, follow: bool = False, tail: int | None = None
) -> Iterator[bytes]:
    t = find(fleet, tenant)
    kw: dict[str, Any] = {"stream": True, "follow": follow}
    if tail is not None:
        kw["tail"] = tail
    yield from t.container.logs(**kw)


def client(fleet: Fleet, tenant: str, timeout: float = 15.0) -> RuntimeClient:
    return find(fleet, tenant).client(timeout)


# -- helpers


def volume_exists(client: Any, name: str) -> bool:
    import docker.errors

    try:
        client.volumes.get(name)
    except docker.errors.NotFound:
        return False
    return True


def _ttl_seconds(ttl: str | None) -> int | None:
    from fleet.core.durations import parse_duration

    return parse_duration(ttl) if ttl is not None else None


def _epoch(docker_time: str) -> float:
    # Docker prints nanoseconds ("2026-11-26T06:20:01.123456789Z"); Python takes micro.
    head, _, frac = docker_time.rstrip("Z").partition(".")
    return datetime.fromisoformat(head + "+00:00").timestamp() + float("0." + (frac or "0"))
