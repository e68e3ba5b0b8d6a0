"""Every name, label, path, default and the version the fleet uses: one home per fact.

What the tenant container reads itself (paths inside it, its environment variables, object
keys, the tenant-name rule) is defined in fleet/supervisor/layout.py, which runs inside the
container without the fleet's dependencies, and re-exported here: fleet code looks here.
"""

from __future__ import annotations

import os
import re

from fleet.supervisor.layout import (
    AGENT_GID,
    AGENT_UID,
    ARCHIVE_PREFIX,
    BACKUP_PREFIX,
    CONTAINER_CAPS,
    CONTAINER_USER,
    DATA_DIR,
    DB_PATH,
    DEFAULT_APP,
    DEFAULT_REGION,
    EGRESS_SENTINEL,
    ENV_APP,
    ENV_CONTROL_FD,
    ENV_DB,
    ENV_EGRESS,
    ENV_HOST,
    ENV_LEASE_FILE,
    ENV_PGPASSWORD,
    ENV_READY_FD,
    ENV_RUNNER_PID,
    ENV_S3_ACCESS_KEY_ID,
    ENV_S3_BUCKET,
    ENV_S3_ENDPOINT,
    ENV_S3_REGION,
    ENV_S3_SECRET_ACCESS_KEY,
    ENV_S3_SECRET_ACCESS_KEY_FILE,
    ENV_TENANT,
    ENV_TOKEN,
    LEASE_PREFIX,
    LITESTREAM_CONFIG,
    POSTGRES_SCHEMES,
    RUN_DIR,
    RUN_DIR_SIZE,
    RUNTIME_PORT,
    STATE_FILE,
    SUPERVISOR_GID,
    SUPERVISOR_UID,
    TENANT_RULE,
    backup_prefix,
    lease_key,
    valid_tenant,
)

from .errors import InvalidArgument

__all__ = [
    "AGENT_GID",
    "AGENT_UID",
    "ARCHIVE_PREFIX",
    "BACKUP_PREFIX",
    "CONTAINER_CAPS",
    "CONTAINER_USER",
    "DATA_DIR",
    "DB_PATH",
    "DEFAULT_APP",
    "DEFAULT_REGION",
    "EGRESS_SENTINEL",
    "ENV_APP",
    "ENV_DB",
    "ENV_EGRESS",
    "ENV_HOST",
    "ENV_PGPASSWORD",
    "ENV_S3_ACCESS_KEY_ID",
    "ENV_S3_BUCKET",
    "ENV_S3_ENDPOINT",
    "ENV_S3_REGION",
    "ENV_S3_SECRET_ACCESS_KEY",
    "ENV_S3_SECRET_ACCESS_KEY_FILE",
    "ENV_TENANT",
    "ENV_TOKEN",
    "LEASE_PREFIX",
    "LITESTREAM_CONFIG",
    "POSTGRES_SCHEMES",
    "RUNTIME_PORT",
    "RUN_DIR",
    "RUN_DIR_SIZE",
    "STATE_FILE",
    "SUPERVISOR_GID",
    "SUPERVISOR_UID",
    "TENANT_RULE",
    "backup_prefix",
    "lease_key",
    "valid_tenant",
]

PACKAGE = "litefleet"
UNKNOWN_VERSION = "0+unknown"


def version() -> str:
    """The installed package's version (pyproject.toml is its only source)."""
    from importlib import metadata  # not at import: it costs `fleet --help` ~10 ms

    try:
        return metadata.version(PACKAGE)
    except metadata.PackageNotFoundError:  # a checkout on sys.path without install
        return UNKNOWN_VERSION


def image_ref(name: str) -> str:
    """``litefleet/<name>:<tag>`` for name in tenant, s3: the tag is the version, or
    LITEFLEET_IMAGE_TAG (what images/build.sh tagged; parallel checkouts on one engine)."""
    return f"litefleet/{name}:{os.environ.get('LITEFLEET_IMAGE_TAG') or version()}"


# -- engine labels (containers, volumes, networks)
LABEL_PREFIX = "litefleet."
LABEL_TENANT = LABEL_PREFIX + "tenant"
LABEL_ROLE = LABEL_PREFIX + "role"
LABEL_MANAGED = LABEL_PREFIX + "managed"
LABEL_ONEOFF = LABEL_PREFIX + "oneoff"  # restore/inspect helpers: never listed as tenants
LABEL_TTL = LABEL_PREFIX + "ttl"  # as given by the user, e.g. "2h"
LABEL_EXPIRES = LABEL_PREFIX + "expires-at"  # epoch seconds
LABEL_APP = LABEL_PREFIX + "app"
LABEL_BACKEND = LABEL_PREFIX + "backend"  # BACKEND_SQLITE (Litestream) or BACKEND_POSTGRES
# The signal that stops a tenant for good (fleet down, park, migrate, rm), sent before the
# engine's stop; a container without the label predates it (its supervisor would die of it).
LABEL_DOWN_SIGNAL = LABEL_PREFIX + "down-signal"
DOWN_SIGNAL = "SIGUSR1"
LABEL_DATABASE = LABEL_PREFIX + "database"  # `up --postgres`: the role and database it owns
# A tenant's template (on its container) and a template's record (on its image; containers of
# the image inherit these): name, version, the app module in its directory, its workflows.
LABEL_TEMPLATE = LABEL_PREFIX + "template"
LABEL_TEMPLATE_VERSION = LABEL_PREFIX + "template-version"
LABEL_TEMPLATE_APP = LABEL_PREFIX + "template-app"  # "agents"; the runtime loads LABEL_APP
LABEL_TEMPLATE_WORKFLOWS = LABEL_PREFIX + "template-workflows"  # a JSON list
LABEL_TEMPLATE_BASE = LABEL_PREFIX + "template-base"  # id of the tenant image it was built on
TEMPLATE_LABELS = frozenset(
    {
        LABEL_TEMPLATE,
        LABEL_TEMPLATE_VERSION,
        LABEL_TEMPLATE_APP,
        LABEL_TEMPLATE_WORKFLOWS,
        LABEL_TEMPLATE_BASE,
    }
)
LABEL_IDLE_PARK = LABEL_PREFIX + "idle-park"  # as given, e.g. "10m": the gateway parks it then
LABEL_EGRESS = LABEL_PREFIX + "egress"  # the egress policy enforced on the host (canonical text)
USER_LABEL_PREFIX = LABEL_PREFIX + "label."  # user labels live in their own namespace
# A user label (shown by `fleet ls`, filterable with --label) on a tenant made by `fleet fork`.
LABEL_FORKED_FROM = LABEL_PREFIX + "forked-from"
ROLE_TENANT = "tenant"
ROLE_OBJECT_STORE = "object-store"
ROLE_FIREWALL = "firewall"
BACKEND_SQLITE = "sqlite"
BACKEND_POSTGRES = "postgres"

# -- engine objects
NETWORK = "litefleet"  # the tenants' bridge network on each engine (no inter-container traffic)
STORE_CONTAINER = "litefleet-s3"  # the embedded object store
STORE_PORT = 9000  # inside the store's container; the host port is a setting
LOCAL_HOST = "local"  # the one host when FLEET_HOSTS is empty
# Each engine's host keeps its tenants' egress rules through this container (and its records
# in this volume): fleet/engine/network.py and fleet/engine/firewall.py.
FIREWALL_CONTAINER = "litefleet-firewall"
FIREWALL_VOLUME = "litefleet-firewall"

# -- what a tenant container gets unless told otherwise
DEFAULT_MEMORY = "256m"
DEFAULT_CPUS = 0.5
DEFAULT_PIDS = 256
DEFAULT_TMP_SIZE = "64m"
POSTGRES_MAX_RESTARTS = 10  # the engine's on-failure count (SQLite tenants keep their own)
# The engine's own health check of a tenant container: None turns it off. Each check is a
# `docker exec` (~65 ms of CPU in runc, dockerd and the container): every 15 s that was the
# largest part of an idle tenant's CPU. `fleet up` waits for /healthz itself and `fleet ls`
# probes it in the exec it makes anyway. Set an interval (s) for tools that need the
# engine's health status (docs/benchmarks.md, "Idle tenants").
HEALTH_CHECK_INTERVAL_S: int | None = None
# Litestream attaches to a database on its first monitor tick (configs/litestream.yml,
# monitor-interval 1s): a tenant is parked only once it has run this long, so that the
# final sync of its stop covers what it committed.
LITESTREAM_ATTACH_S = 2.0
DEFAULT_EGRESS = "public"  # fleet/engine/egress.py
# Pass to container.stop(timeout=...): runtime drain + Litestream's final sync. (The SDK's
# create() cannot set the container's own StopTimeout; docker's default is 10 s.)
STOP_TIMEOUT_S = 30

# -- the embedded store. Its admin key is made when its container is created and kept in that
# container's environment (the fleet reads it back from the engine, like tenant tokens).
ENV_STORE_ADMIN_KEY_ID = "LITEFLEET_S3_ADMIN_KEY_ID"
ENV_STORE_ADMIN_SECRET = "LITEFLEET_S3_ADMIN_SECRET"
# A store made by an older fleet checks no credentials; this is the key it was used with.
UNCHECKED_ACCESS_KEY_ID = "litefleet"
UNCHECKED_SECRET_ACCESS_KEY = "litefleet-embedded"
DEFAULT_BUCKET = "litefleet"

# -- object-store credentials of tenants (FLEET_S3_CREDENTIALS)
CREDENTIALS_IAM = "iam"  # a key of its own per tenant, scoped to its backup and lease
CREDENTIALS_SHARED = "shared"  # every tenant holds the fleet's key
TENANT_USER_PATH = "/litefleet/"  # IAM path of the tenants' users
TENANT_POLICY = "litefleet-tenant"  # name of each such user's inline policy

# -- PostgreSQL tenants of `fleet up --postgres` (FLEET_PG_ADMIN_URL's server)
PG_TENANT_PREFIX = "lf_"  # role and database lf_<tenant>
PG_TENANT_GROUP = "litefleet_tenants"  # every tenant role is a member (pg_hba matches it)
PG_NAME_MAX = 63  # PostgreSQL truncates longer identifiers

# Variables a user's --env cannot set: what the supervisor, Litestream or the runtime read, and
# what changes how programs load (every Python in a tenant runs with -I, which ignores PYTHON*
# anyway). PG*: a PostgreSQL tenant's connection is the fleet's to set.
RESERVED_ENV = frozenset(
    {
        ENV_TENANT,
        ENV_S3_ENDPOINT,
        ENV_S3_BUCKET,
        ENV_S3_REGION,
        ENV_S3_ACCESS_KEY_ID,
        ENV_S3_SECRET_ACCESS_KEY,
        ENV_S3_SECRET_ACCESS_KEY_FILE,
        ENV_TOKEN,
        ENV_APP,
        ENV_DB,
        ENV_PGPASSWORD,
        ENV_HOST,  # names the lease holder: a user --env must not fake it
        ENV_LEASE_FILE,
        "AGENT_RUNTIME_TOKEN_FILE",
        ENV_RUNNER_PID,
        ENV_CONTROL_FD,
        ENV_READY_FD,
        "PATH",
        "HOME",
        "BASH_ENV",
        "ENV",
        ENV_EGRESS,
    }
)
RESERVED_ENV_PREFIXES = ("LD_", "PYTHON", "PG", "LITESTREAM_", "AWS_")


def reserved_env(name: str) -> bool:
    return name in RESERVED_ENV or name.startswith(RESERVED_ENV_PREFIXES)


_LABEL_KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def check_tenant(name: str) -> str:
    """Return ``name`` if it is a valid tenant name, else raise InvalidArgument."""
    if not valid_tenant(name):
        raise InvalidArgument(f"invalid tenant name {name!r}", f"use {TENANT_RULE}")
    return name


# -- templates: a tenant image plus the user's code (fleet template build)
TEMPLATE_REPO = "litefleet/tmpl-"  # + NAME, tagged with the version
TEMPLATE_APP_DIR = "/app"  # where a template's files are in its image (read-only, root's)
TEMPLATE_RULE = "a DNS label: a-z, 0-9 and '-', at most 63 characters"


def check_template(name: str) -> str:
    """Return ``name`` if it can name a template (and its image), else raise InvalidArgument."""
    if not valid_tenant(name):
        raise InvalidArgument(f"invalid template name {name!r}", f"use {TEMPLATE_RULE}")
    return name


def template_ref(name: str, version: str) -> str:
    """The image of a template version: ``litefleet/tmpl-NAME:VERSION``."""
    return f"{TEMPLATE_REPO}{name}:{version}"


def container_name(tenant: str) -> str:
    return f"litefleet-{tenant}"


def oneoff_name(tenant: str, stamp: int) -> str:
    return f"litefleet-{tenant}-oneoff-{stamp}"


def volume_name(tenant: str) -> str:
    return f"litefleet-{tenant}-data"


def tenant_user(bucket: str, tenant: str) -> str:
    """The IAM user holding a tenant's key: unique per bucket and tenant, at most 64
    characters (IAM's limit), so it is found again from the two names alone."""
    import hashlib

    digest = hashlib.sha256(f"{bucket}/{check_tenant(tenant)}".encode()).hexdigest()[:8]
    return f"lf-{tenant[:48]}-{digest}"


def pg_tenant_name(tenant: str) -> str:
    """Role and database of a `fleet up --postgres` tenant (exactly ``lf_<tenant>``)."""
    name = PG_TENANT_PREFIX + check_tenant(tenant)
    if len(name) > PG_NAME_MAX:
        raise InvalidArgument(
            f"tenant name {tenant!r} is too long for --postgres",
            f"PostgreSQL names hold {PG_NAME_MAX} bytes: use at most "
            f"{PG_NAME_MAX - len(PG_TENANT_PREFIX)} characters",
        )
    return name


# -- parked tenants (fleet/storage/manifests.py): objects only the fleet's own key can reach
MANIFEST_PREFIX = "manifests/"  # manifests/<t>.json: the fleet's record of a tenant
GATEWAY_KEY = "fleet/gateway.json"  # the one gateway of the fleet (a lease), not a tenant name
MANIFEST_INDEX_KEY = "fleet/manifests-index.json"  # a self-checking cache for listing
STATE_PARKED = "parked"  # `fleet ls` state of a tenant that lives only in object storage
STATE_PARKING = "parking"
STATE_WAKING = "waking"
# `fleet verify`: restore drills at once (each runs Litestream and integrity_check here).
VERIFY_PARALLEL = 4
PARK_PARALLEL = 8  # bulk up/park/wake: tenants handled at once by one fleet process
GATEWAY_PORT = 8000
GATEWAY_HOLD_S = 30.0  # a request waits this long for a waking / moving tenant, then 503
GATEWAY_LEASE_S = 15.0  # a gateway that has not renewed its record for this long is gone
WAKE_LEAD_S = 2.0  # a parked tenant is woken this long before its earliest durable deadline


def manifest_key(tenant: str) -> str:
    return f"{MANIFEST_PREFIX}{check_tenant(tenant)}.json"


def archive_prefix(tenant: str) -> str:
    """Where point-in-time restores keep the history they rewound (fleet restore --at)."""
    return f"{ARCHIVE_PREFIX}{check_tenant(tenant)}/"


def parse_label(text: str) -> tuple[str, str]:
    """``k=v`` -> (k, v); the key is checked, the value may be empty."""
    key, sep, value = text.partition("=")
    if not sep or not _LABEL_KEY_RE.fullmatch(key):
        raise InvalidArgument(f"invalid label {text!r}", "use key=value, key of [A-Za-z0-9._-]")
    return key, value


def parse_labels(items: list[str] | None) -> dict[str, str]:
    return dict(parse_label(item) for item in items or [])


def parse_env(items: list[str] | None) -> dict[str, str]:
    env: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not _ENV_NAME_RE.fullmatch(key):
            raise InvalidArgument(f"invalid environment variable {key!r}", "use --env NAME=value")
        if reserved_env(key):
            raise InvalidArgument(
                f"--env {key} is reserved",
                "the supervisor, Litestream or the runtime set it (also LD_*, PYTHON*, PG*, "
                "LITESTREAM_*, AWS_*)",
            )
        env[key] = value
    return env


def user_labels(labels: dict[str, str]) -> dict[str, str]:
    """User labels from an engine object's labels (namespace stripped)."""
    n = len(USER_LABEL_PREFIX)
    return {k[n:]: v for k, v in labels.items() if k.startswith(USER_LABEL_PREFIX)}


def engine_labels(user: dict[str, str]) -> dict[str, str]:
    return {USER_LABEL_PREFIX + k: v for k, v in user.items()}
