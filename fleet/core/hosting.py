"""Where tenants run: the one interface ops/ reaches engines through, and the records it
speaks in.

Today one implementation, fleet/engine/docker_hosting.py: each tenant is a container (plus a
named volume) on one of the Docker engines of FLEET_HOSTS. A second placement backend (each
tenant a Docker Swarm service) implements the same protocol next to it; ops/ does not change.
Nothing here knows the Docker SDK: a tenant's engine object travels opaquely in
``Tenant.handle``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from fleet.supervisor.s3 import S3Settings

from . import names


@dataclass
class Tenant:
    """A tenant as the place it runs describes it."""

    name: str
    host: str  # the FLEET_HOSTS name it runs on
    state: str  # running, exited, created, restarting, paused, dead
    health: str  # healthy, starting, unhealthy, or "-" without a health check
    created_at: float
    labels: dict[str, str]  # user labels
    ttl: str | None
    expires_at: float | None
    app: str
    backend: str  # names.BACKEND_SQLITE or BACKEND_POSTGRES
    image: str
    database: str | None = None  # `up --postgres`: its own role and database (lf_<t>)
    template: str | None = None  # the template it runs (fleet up --template / --app PATH)
    template_version: str | None = None
    port: int | None = None  # the runtime API on 127.0.0.1 of its host, while running
    exit_code: int | None = None  # of its last run, once stopped
    oom_killed: bool = False  # the kernel's OOM killer killed a process of its last run
    restart_count: int = 0  # restarts by the engine's restart policy since its last start
    egress: str | None = None  # its egress policy, where the host enforces one
    token: str | None = field(default=None, repr=False)
    id: str = ""  # the engine's id of its container: the lease names it
    idle_park: str | None = None  # e.g. "10m": the gateway parks it after that long idle
    started_at: float | None = None  # when it last started (epoch s), while running
    next_wake_at: float | None = None  # parked: its earliest durable deadline (epoch s)
    handle: Any = field(default=None, repr=False, compare=False)  # the hosting's own object
    address: str = "127.0.0.1"  # where the API's port is: loopback, or a Swarm node

    @property
    def running(self) -> bool:
        return self.state == "running"

    @property
    def stopped(self) -> bool:
        return self.state not in ("running", "restarting", "paused")

    @property
    def url(self) -> str | None:
        return f"http://{self.address}:{self.port}" if self.port else None

    @property
    def template_spec(self) -> str | None:
        """``NAME:VERSION`` of the template it runs, if any."""
        return f"{self.template}:{self.template_version}" if self.template else None

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and self.expires_at <= now


@dataclass(frozen=True)
class TenantSpec:
    """What a tenant is made of: image, limits, environment, labels, where its state lives.

    SQLite tenants (``s3`` set) replicate to object storage under a lease, with the key
    ``ObjectStorage.for_tenant`` gave them; PostgreSQL tenants (``db_url``) keep their state
    there. The password goes in ``db_password`` (PGPASSWORD), never in the URL, which ends up
    on the runtime's command line."""

    tenant: str
    image: str
    token: str = field(repr=False)
    app: str = names.DEFAULT_APP
    memory: str = names.DEFAULT_MEMORY
    cpus: float = names.DEFAULT_CPUS
    pids: int = names.DEFAULT_PIDS
    env: Mapping[str, str] = field(default_factory=dict)  # for the app; reserved names dropped
    labels: Mapping[str, str] = field(default_factory=dict)  # engine labels, namespaced
    s3: S3Settings | None = None
    db_url: str | None = None
    db_password: str | None = field(default=None, repr=False)
    host: str | None = None  # the fleet host: recorded as the lease holder
    volume: str | None = None  # default names.volume_name(tenant)
    name: str | None = None  # default names.container_name(tenant)
    tmp_size: str = names.DEFAULT_TMP_SIZE
    template: str | None = None  # name and version of the template ``image`` is
    template_version: str | None = None
    egress: str = names.DEFAULT_EGRESS  # canonical text of fleet/engine/egress.py

    @property
    def volume_name(self) -> str:
        return self.volume or names.volume_name(self.tenant)

    @property
    def container_name(self) -> str:
        return self.name or names.container_name(self.tenant)

    def environment(self) -> dict[str, str]:
        """The container's environment: the app's variables, then the reserved ones."""
        env = {k: v for k, v in self.env.items() if not names.reserved_env(k)}
        env.update(
            {names.ENV_TENANT: self.tenant, names.ENV_TOKEN: self.token, names.ENV_APP: self.app}
        )
        if self.host is not None:
            env[names.ENV_HOST] = self.host
        if self.db_url is not None:
            env[names.ENV_DB] = self.db_url
            if self.db_password is not None:
                env[names.ENV_PGPASSWORD] = self.db_password
        elif self.s3 is not None:
            env.update(replica_environment(self.s3))
        return env

    def engine_labels(self) -> dict[str, str]:
        labels = {names.LABEL_ROLE: names.ROLE_TENANT, **self.labels}
        labels[names.LABEL_TENANT] = self.tenant
        labels[names.LABEL_MANAGED] = "true"
        if self.template is not None and self.template_version is not None:
            labels[names.LABEL_TEMPLATE] = self.template
            labels[names.LABEL_TEMPLATE_VERSION] = self.template_version
        return labels


def settings_labels(labels: Mapping[str, str]) -> dict[str, str]:
    """The fleet's labels a tenant was created with (app, backend, TTL, idle park, user
    labels, ...) read back from its container or service: ``TenantSpec.labels``, without the
    ones ``engine_labels()`` adds itself (a placement's own, such as a Swarm service's port,
    are for its hosting to drop)."""
    own = {
        names.LABEL_ROLE,
        names.LABEL_TENANT,
        names.LABEL_MANAGED,
        names.LABEL_EGRESS,
        names.LABEL_DOWN_SIGNAL,
    }
    own |= names.TEMPLATE_LABELS  # TenantSpec fields, or inherited from a template's image
    return {k: v for k, v in labels.items() if k.startswith(names.LABEL_PREFIX) and k not in own}


def replica_environment(s3: S3Settings) -> dict[str, str]:
    """What Litestream and the lease keeper read in a tenant container."""
    return {
        names.ENV_S3_ENDPOINT: s3.endpoint,
        names.ENV_S3_BUCKET: s3.bucket,
        names.ENV_S3_REGION: s3.region,
        names.ENV_S3_ACCESS_KEY_ID: s3.access_key_id,
        names.ENV_S3_SECRET_ACCESS_KEY: s3.secret_access_key,
    }


@dataclass(frozen=True)
class OneOff:
    """A throwaway container of the tenant image: the tenant's volume at /data, Litestream's
    environment, ``argv`` run in /data instead of the supervisor. ``s3`` holds the tenant's
    own key (``ObjectStorage.for_tenant``, or what its container holds), never the fleet's:
    such a job reads a volume the tenant's code wrote. Litestream's config names the backup
    of ``replica`` (default: the tenant's own; `fleet fork` restores another's, with a
    read-only key on it: ``ObjectStorage.reader_of``)."""

    tenant: str
    image: str
    s3: S3Settings
    argv: list[str]
    timeout: float = 900.0
    replica: str | None = None


@dataclass(frozen=True)
class Sandbox:
    """A throwaway container of ``image`` running ``argv`` for code the fleet does not trust
    (a template's import check, a replay check of new code): the tenant's hardening, no
    secrets of the fleet, no network unless ``network`` (the tenants' network, for a check
    against PostgreSQL), ``files`` (name -> a file on this machine) copied into an empty
    /data first."""

    image: str
    argv: list[str]
    files: Mapping[str, Path] = field(default_factory=dict)
    environment: Mapping[str, str] = field(default_factory=dict, repr=False)
    network: bool = False
    timeout: float = 300.0


@dataclass(frozen=True)
class SandboxResult:
    exit_code: int
    stdout: str
    stderr: str


@dataclass(frozen=True)
class Stopped:
    """How a tenant's container ended after a graceful stop."""

    exit_code: int | None
    logs: str  # what it printed while stopping


@dataclass(frozen=True)
class SwarmNode:
    """What `fleet hosts` shows of a Swarm node beside the usual host figures."""

    id: str
    hostname: str
    label: str | None  # its litefleet.host label, the name `--host` and `--to` take
    state: str  # ready, down, unknown
    availability: str  # active, pause, drain

    def as_dict(self) -> dict[str, object]:
        return {
            "node_id": self.id,
            "hostname": self.hostname,
            "label": self.label,
            "state": self.state,
            "availability": self.availability,
        }


@dataclass(frozen=True)
class HostInfo:
    name: str
    url: str
    reachable: bool
    tenants: int | None = None  # tenant containers (any state)
    running: int | None = None
    mem_total: int | None = None  # bytes
    mem_reserved: int | None = None  # memory limits of running containers
    images: bool | None = None  # has the fleet's tenant image
    version: str | None = None
    error: str | None = None
    node: SwarmNode | None = None  # on Swarm: the node this host name stands for

    @property
    def mem_free(self) -> int | None:
        if self.mem_total is None or self.mem_reserved is None:
            return None
        return max(0, self.mem_total - self.mem_reserved)

    def as_dict(self) -> dict[str, object]:
        node = {} if self.node is None else self.node.as_dict()
        return {
            **node,
            "host": self.name,
            "url": self.url,
            "reachable": self.reachable,
            "tenants": self.tenants,
            "running": self.running,
            "mem_free": self.mem_free,
            "mem_total": self.mem_total,
            "tenant_image": self.images,
            "engine": self.version,
            "error": self.error,
        }


class TransferProgress(Protocol):
    """How an image copy reports to its caller (the CLI: a Rich progress bar on stderr)."""

    def start(self, image: str, source: str, target: str, total: int | None) -> None: ...

    def advance(self, nbytes: int) -> None: ...

    def finish(self) -> None: ...


@dataclass(frozen=True)
class Transfer:
    image: str
    target: str
    source: str | None  # host it came from; None: it was there already / pulled
    bytes: int
    how: str  # present | copied | pulled


@runtime_checkable
class Placing(Protocol):
    """A hosting that moves a tenant by its placement (Swarm: the same service, its
    constraint changed) instead of recreating it on another host."""

    def constrain(self, t: Tenant, host: str) -> None:
        """Run ``t`` only on ``host`` from its next start on (a stopped tenant stays stopped)."""
        ...


class Hosting(Protocol):
    """Where tenants run. Hosts are named as in FLEET_HOSTS; tenants are found by labels, so
    the fleet keeps no database of its own."""

    # -- hosts
    def host_names(self) -> list[str]: ...

    def hosts(self) -> list[HostInfo]:
        """Every host, probed (an unreachable one is reported, not raised)."""
        ...

    def place(self, host: str | None) -> str:
        """The named host (checked), else the reachable one with the most free memory."""
        ...

    def ensure_image(
        self, host: str, image: str, progress: TransferProgress | None = None
    ) -> Transfer: ...

    def gateway(self, host: str) -> str:
        """The address tenants on ``host`` reach that host's own services at."""
        ...

    # -- tenants
    def tenants(
        self, *, labels: dict[str, str] | None = None, name: str | None = None
    ) -> list[Tenant]:
        """Tenants on every reachable host carrying all ``labels`` (user labels), or the
        copies of tenant ``name``; sorted by name and host."""
        ...

    def create(self, spec: TenantSpec, host: str) -> Tenant:
        """Create and start the tenant on ``host`` (its volume too, when missing)."""
        ...

    def start(self, t: Tenant) -> None: ...

    def stop(self, t: Tenant, timeout: int) -> Stopped:
        """SIGTERM, then wait up to ``timeout`` s before killing."""
        ...

    def remove(self, t: Tenant) -> None:
        """Remove the tenant's container (never its volume)."""
        ...

    def refresh(self, t: Tenant) -> Tenant: ...

    def logs(
        self, t: Tenant, *, follow: bool = False, tail: int | None = None
    ) -> Iterator[bytes]: ...

    def exec(self, t: Tenant, argv: list[str]) -> str | None:
        """stdout of ``argv`` run inside the running tenant; None when that failed."""
        ...

    def spec_of(self, t: Tenant) -> TenantSpec:
        """What the tenant was created with (to recreate it elsewhere)."""
        ...

    # -- volumes
    def has_volume(self, tenant: str, host: str) -> bool: ...

    def create_volume(self, tenant: str, host: str) -> None: ...

    def remove_volume(self, tenant: str, host: str) -> bool:
        """False when there was none."""
        ...

    def run_sandboxed(self, host: str, job: Sandbox) -> SandboxResult:
        """Run ``job`` on ``host`` and remove it (FleetTimeout when it outlives its timeout)."""
        ...

    def run_oneoff(self, host: str, job: OneOff) -> str:
        """stdout of ``job``; FleetError with its last line of stderr when it fails."""
        ...

    def read_volume(
        self, tenant: str, host: str, image: str, files: list[str], dest: Path
    ) -> list[Path]:
        """Copy ``files`` (names in the tenant's volume on ``host``) into ``dest``, through a
        container of ``image`` that runs nothing; returns the ones found."""
        ...

    def close(self) -> None: ...
