"""Tenant lifecycle: create a tenant, start a stopped one, stop one (its final sync checked),
find them. `fleet up` is either of the first two (``up``); removal is removal.py.

The API token of a tenant is made here once and then lives in its container's environment;
the CLI reads it back from there and never prints it.
"""

from __future__ import annotations

import itertools
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from fleet.core import names
from fleet.core.context import Fleet
from fleet.core.durations import parse_duration
from fleet.core.errors import (
    ConfigError,
    FleetError,
    FleetTimeout,
    InvalidArgument,
    TenantNotFound,
)
from fleet.core.hosting import Tenant, TenantSpec, Transfer, TransferProgress
from fleet.core.log import log
from fleet.core.templates import parse_ref
from fleet.engine.egress import parse_egress
from fleet.storage import databases, fence
from fleet.storage.credentials import accepted
from fleet.storage.final_sync import check_final_sync

from . import postgres


@dataclass(frozen=True)
class TenantOptions:
    """How a new tenant is made (`fleet up` options). ``None``/empty means "not given": a
    stopped tenant starts with its own settings and refuses different ones."""

    app: str | None = None  # default: the template's app, else names.DEFAULT_APP
    image: str | None = None  # default: the template's image, else FLEET_IMAGE
    template: str | None = None  # NAME[:VERSION] (`up` pins the version)
    labels: dict[str, str] = field(default_factory=dict)  # user labels
    ttl: str | None = None  # e.g. "2h": `fleet gc` removes it after
    expires_at: float | None = None  # with ttl: a replaced tenant keeps its expiry
    memory: str = names.DEFAULT_MEMORY
    cpus: float = names.DEFAULT_CPUS
    env: dict[str, str] = field(default_factory=dict)
    db_url: str | None = None  # PostgreSQL instead of SQLite + Litestream
    postgres: bool = False  # PostgreSQL: a role and database of its own on FLEET_PG_ADMIN_URL
    database: str | None = None  # the one made by --postgres, when the tenant is made again
    db_password: str | None = field(default=None, repr=False)  # when db_url holds none
    token: str | None = None  # a moved tenant keeps its API token
    idle_park: str | None = None  # e.g. "10m": the gateway parks it after that long idle
    egress: str | None = None  # fleet/engine/egress.py; default public

    def check(self) -> None:
        """InvalidArgument on bad values, before any engine is contacted."""
        if self.egress is not None:
            parse_egress(self.egress)
        for duration in (self.ttl, self.idle_park):
            if duration is not None:
                parse_duration(duration)
        if self.db_url is not None:
            postgres.check_url(self.db_url)
            if self.postgres:
                raise InvalidArgument("give --postgres or --db-url, not both")
        if self.cpus <= 0:
            raise InvalidArgument(f"--cpus must be positive, got {self.cpus:g}")
        if self.template is not None and self.image is not None:
            raise InvalidArgument("give --template or --image, not both")

    @classmethod
    def of(cls, spec: TenantSpec) -> TenantOptions:
        """The options that make ``spec`` again (another host, same token)."""
        return cls(
            app=spec.app,
            image=spec.image,
            labels=names.user_labels(dict(spec.labels)),
            memory=spec.memory,
            cpus=spec.cpus,
            env=dict(spec.env),
            token=spec.token or None,
            template=f"{spec.template}:{spec.template_version}" if spec.template else None,
            db_url=spec.db_url,
            db_password=spec.db_password,
            database=spec.labels.get(names.LABEL_DATABASE),
            idle_park=spec.labels.get(names.LABEL_IDLE_PARK),
            egress=spec.egress,
        )


@dataclass(frozen=True)
class UpResult:
    tenant: Tenant
    action: str  # created | started | running
    note: str | None = None  # for the user, e.g. how --db-url was rewritten
    warning: str | None = None  # e.g. tenants share the fleet's object-store key


# -- lookups


def find(fleet: Fleet, tenant: str) -> Tenant:
    names.check_tenant(tenant)
    copies = fleet.hosting.tenants(name=tenant)
    if not copies:
        raise TenantNotFound(tenant)
    return copies[0]


def find_or_none(fleet: Fleet, tenant: str) -> Tenant | None:
    try:
        return find(fleet, tenant)
    except TenantNotFound:
        return None


def list_tenants(fleet: Fleet, labels: dict[str, str] | None = None) -> list[Tenant]:
    """Every tenant on every host, optionally only those carrying all ``labels``."""
    return fleet.hosting.tenants(labels=labels)


def expired(
    fleet: Fleet, now: float | None = None, labels: dict[str, str] | None = None
) -> list[str]:
    """Tenants whose TTL has passed (carrying all ``labels``)."""
    now = time.time() if now is None else now
    return [t.name for t in list_tenants(fleet, labels) if t.expired(now)]


# -- up: start a stopped tenant, or create one


def up(
    fleet: Fleet,
    tenant: str,
    options: TenantOptions,
    *,
    host: str | None = None,
    force_takeover: bool = False,
    progress: TransferProgress | None = None,
) -> UpResult:
    """Start the tenant if it exists, else create it; a running tenant is left as it is."""
    names.check_tenant(tenant)
    options.check()
    options = with_template(fleet, options)
    existing = find_or_none(fleet, tenant)
    if existing is None:
        return create(
            fleet, tenant, options, host=host, force_takeover=force_takeover, progress=progress
        )
    return start(fleet, existing, options, host=host, force_takeover=force_takeover)


def with_template(fleet: Fleet, options: TenantOptions) -> TenantOptions:
    """The options with their template resolved: ``--template NAME[:VERSION]`` pinned to a
    version, or ``--app PATH`` (a local file or directory, without --template or --image)
    built as its implicit template; the image and the default app are the template's."""
    from agent_runtime._loader import is_app_path

    from . import templates

    if options.template is not None:
        template = templates.resolve(fleet, options.template)
        app = options.app or template.app_path
    elif options.app is not None and options.image is None and is_app_path(options.app):
        template = templates.build_implicit(fleet, Path(options.app)).template
        app = template.app_path
    else:
        return options
    return replace(options, template=template.spec, image=template.ref, app=app)


def start(
    fleet: Fleet,
    t: Tenant,
    given: TenantOptions | None = None,
    *,
    host: str | None = None,
    force_takeover: bool = False,
) -> UpResult:
    """Start a stopped tenant where it is, as it was created. Options ``given`` that would
    change it are refused (a container starts with its own settings)."""
    if host is not None and t.host != host:
        raise InvalidArgument(
            f"tenant {t.name!r} lives on host {t.host!r}",
            f"`fleet migrate {t.name} --to {host}` moves it",
        )
    if t.running:
        return UpResult(t, "running")
    _refuse_changes(t, given or TenantOptions())
    if t.backend == names.BACKEND_SQLITE:
        s3 = fleet.storage.checked()
        if force_takeover:
            fence.take_over(s3, t.name, container_id=t.id)
        else:
            fence.refuse_if_leased(s3, t.name, container_id=t.id)
        spec = fleet.hosting.spec_of(t)
        if spec.s3 is not None and not accepted(s3, spec.s3, t.name):
            return _recreate(fleet, t, spec)
    log.info("starting stopped tenant", tenant=t.name, host=t.host)
    fleet.hosting.start(t)
    sqlite = t.backend == names.BACKEND_SQLITE
    warning = fleet.storage.sharing_warning() if sqlite else None
    return UpResult(wait_healthy(fleet, t), "started", warning=warning)


def _recreate(fleet: Fleet, t: Tenant, spec: TenantSpec) -> UpResult:
    """The store refuses the key this stopped container holds (a newer container of the
    tenant got a new one, or the embedded store was made anew): make the container again on
    its volume, with its settings and token and a key that works."""
    log.warning("its object-store key is refused: recreating its container", tenant=t.name)
    fleet.hosting.remove(t)
    made = create(fleet, t.name, TenantOptions.of(spec), host=t.host)
    return UpResult(made.tenant, "started", made.note, made.warning)


def _refuse_changes(t: Tenant, given: TenantOptions) -> None:
    changed = [
        flag
        for flag, differs in (
            ("--template", given.template is not None and given.template != t.template_spec),
            ("--image", given.template is None and given.image not in (None, t.image)),
            ("--app", given.app is not None and given.app != t.app),
            ("--db-url", given.db_url is not None),
            ("--postgres", given.postgres and t.database is None),
            ("--env", bool(given.env)),
            ("--label", bool(given.labels) and given.labels != t.labels),
            ("--ttl", given.ttl is not None),
            ("--idle-park", given.idle_park is not None and given.idle_park != t.idle_park),
            ("--egress", given.egress is not None and _egress(given.egress) != t.egress),
        )
        if differs
    ]
    if changed:  # a stopped container starts as it was created: say so, change nothing
        hint = (
            f"`fleet deploy {t.name} --template NAME[:VERSION]` moves it to other code"
            if {"--template", "--app"} & set(changed)
            else f"run `fleet up {t.name}` alone, or `fleet rm {t.name}` (its backup is kept) "
            "and `fleet up` it again with the new settings"
        )
        raise InvalidArgument(
            f"tenant {t.name!r} exists (stopped) and starts with its own settings: "
            f"{', '.join(changed)} would be ignored",
            hint,
        )


def _egress(text: str | None) -> str:
    """The canonical text of a policy (``None``: the default)."""
    return str(parse_egress(text or names.DEFAULT_EGRESS))


def create(
    fleet: Fleet,
    tenant: str,
    options: TenantOptions,
    *,
    host: str | None = None,
    force_takeover: bool = False,
    progress: TransferProgress | None = None,
) -> UpResult:
    """Create and start a tenant on ``host``, else on the host with the most free memory; the
    image is copied there first when missing. A SQLite tenant whose lease is live elsewhere
    is refused (TenantLeased) unless ``force_takeover`` revokes it (the old holder stops
    replicating). ``options.db_url``: the tenant runs on that PostgreSQL database instead of
    SQLite + Litestream (see postgres.py for how a loopback URL reaches the container);
    ``options.postgres``: on a role and database of its own (fleet/storage/databases.py)."""
    if options.postgres:
        names.pg_tenant_name(tenant)  # short enough for PostgreSQL
        if fleet.settings.pg_admin_url is None:
            raise ConfigError(
                "--postgres needs FLEET_PG_ADMIN_URL",
                "set it to a postgresql:// DSN of a role with CREATEROLE and CREATEDB",
            )
    target = fleet.hosting.place(host)
    image = options.image or fleet.settings.image
    sqlite = options.db_url is None and not options.postgres
    if sqlite:
        claim_and_copy(fleet, tenant, target, image, force_takeover, progress)
    else:
        fleet.hosting.ensure_image(target, image, progress)
    spec, note = _spec(fleet, tenant, options, target, image)
    created = fleet.hosting.create(spec, target)
    warning = fleet.storage.sharing_warning() if sqlite else None
    return UpResult(wait_healthy(fleet, created), "created", note, warning)


def claim_and_copy(
    fleet: Fleet,
    tenant: str,
    target: str,
    image: str,
    force_takeover: bool,
    progress: TransferProgress | None,
) -> Transfer:
    """Get the image onto ``target`` under the one-writer rule: a live lease elsewhere is
    refused before anything is copied, or (``force_takeover``) revoked only once the image
    is there, so the old holder stops as late as possible."""
    s3 = fleet.storage.checked()
    if not force_takeover:
        fence.refuse_if_leased(s3, tenant)
    transfer = fleet.hosting.ensure_image(target, image, progress)
    if force_takeover:
        fence.take_over(s3, tenant)
    return transfer


def _spec(
    fleet: Fleet, tenant: str, options: TenantOptions, host: str, image: str
) -> tuple[TenantSpec, str | None]:
    """The tenant's spec, and a note for the user (how --db-url was rewritten)."""
    app = options.app or names.DEFAULT_APP
    postgres_backend = options.db_url is not None or options.postgres
    labels = {
        names.LABEL_APP: app,
        names.LABEL_BACKEND: names.BACKEND_POSTGRES if postgres_backend else names.BACKEND_SQLITE,
        **names.engine_labels(options.labels),
    }
    if options.ttl is not None:
        labels[names.LABEL_TTL] = options.ttl
        expires = options.expires_at or time.time() + parse_duration(options.ttl)
        labels[names.LABEL_EXPIRES] = str(int(expires))
    if options.idle_park is not None:
        labels[names.LABEL_IDLE_PARK] = options.idle_park
    if options.postgres or options.database:
        labels[names.LABEL_DATABASE] = options.database or names.pg_tenant_name(tenant)
    where, note = _state(fleet, tenant, options, host)
    spec = TenantSpec(
        tenant=tenant,
        image=image,
        token=options.token or secrets.token_urlsafe(32),
        app=app,
        memory=options.memory,
        cpus=options.cpus,
        env=options.env,
        labels=labels,
        host=host,  # the lease keeper names its holder "<host>/<container id>"
        egress=_egress(options.egress),
        **where,
    )
    if options.template is not None:
        name, version = parse_ref(options.template)
        spec = replace(spec, template=name, template_version=version)
    return spec, note


def _state(
    fleet: Fleet, tenant: str, options: TenantOptions, host: str
) -> tuple[dict[str, Any], str | None]:
    """Where the tenant's state lives, as TenantSpec fields, and a note for the user: object
    storage with the key the tenant holds, or a PostgreSQL database (its own with
    ``options.postgres``, made now; else the user's --db-url)."""
    db_url = options.db_url
    if options.postgres:
        admin = fleet.settings.pg_admin_url
        assert admin is not None  # create() checked
        db_url = databases.provision(admin.get_secret_value(), tenant)
    if db_url is None:
        return {"s3": fleet.storage.for_tenant(tenant)}, None
    gateway = fleet.hosting.gateway(host)
    dsn = postgres.for_tenant(db_url, gateway)
    if dsn.host == gateway:
        postgres.check_listening(dsn, db_url)
    password = dsn.password if dsn.password is not None else options.db_password
    # The note explains a rewritten --db-url; FLEET_PG_ADMIN_URL's is rewritten silently.
    return {"db_url": dsn.url, "db_password": password}, dsn.note if options.db_url else None


def wait_healthy(fleet: Fleet, t: Tenant) -> Tenant:
    """Poll /healthz on the published loopback port until it answers 200: every 0.1 s with
    one client, asking the engine again only until the port is known and then every 10th
    time (has it exited?), so that starting many tenants from one process stays cheap."""
    from .api import RuntimeClient

    deadline = time.monotonic() + fleet.settings.health_timeout
    probe: RuntimeClient | None = None
    try:
        for attempt in itertools.count():
            if probe is None or attempt % 10 == 0:
                t = _started(fleet, t)
            if probe is None and t.running and t.url:
                probe = RuntimeClient(t.url, t.token or "", timeout=2.0)
            if probe is not None and probe.healthy():
                return t
            if time.monotonic() >= deadline:
                raise FleetTimeout(
                    f"tenant {t.name!r} not healthy after {fleet.settings.health_timeout:g}s",
                    f"`fleet logs {t.name}` shows what it is doing",
                )
            time.sleep(0.1)
    finally:
        if probe is not None:
            probe.__exit__()
    raise AssertionError("unreachable")


def _started(fleet: Fleet, t: Tenant) -> Tenant:
    t = fleet.hosting.refresh(t)
    if t.state in ("exited", "dead"):
        why = last_words(fleet, t)
        raise FleetError(
            f"tenant {t.name!r} exited during start (exit code {t.exit_code}"
            + (f": {why})" if why else ")"),
            f"`fleet logs {t.name}` shows why",
        )
    return t


def last_words(fleet: Fleet, t: Tenant) -> str | None:
    """The supervisor's (or the runner's) last line in a stopped tenant's log: why it stopped
    (``stopped: ...``, fleet/supervisor/exits.py) or what died."""
    try:
        tail = b"".join(fleet.hosting.logs(t, tail=40)).decode(errors="replace")
    except Exception:  # the engine lost it meanwhile: nothing to say
        return None
    lines = [ln for ln in tail.splitlines() if ln.startswith(_SUPERVISOR_LOGS)]
    return lines[-1].split(": ", 1)[1][:300] if lines else None


_SUPERVISOR_LOGS = ("litefleet-supervisor: ", "litefleet-runner: ")


# -- stopping


def stop(fleet: Fleet, t: Tenant) -> None:
    """SIGTERM: the runtime drains, then Litestream does its final sync; for a SQLite tenant
    FinalSyncFailed when that sync did not complete (its volume still has everything)."""
    stopped = fleet.hosting.stop(t, fleet.settings.stop_timeout)
    if t.backend == names.BACKEND_SQLITE:
        check_final_sync(t.name, stopped, fleet.settings.stop_timeout)


def down(fleet: Fleet, tenant: str) -> tuple[Tenant, bool]:
    """Stop the tenant after its final sync; (tenant, was_running)."""
    t = find(fleet, tenant)
    if t.stopped:
        return t, False
    stop(fleet, t)
    return fleet.hosting.refresh(t), True


def logs(
    fleet: Fleet, tenant: str, *, follow: bool = False, tail: int | None = None
) -> Iterator[bytes]:
    yield from fleet.hosting.logs(find(fleet, tenant), follow=follow, tail=tail)
