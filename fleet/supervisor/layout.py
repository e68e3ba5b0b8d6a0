"""Names the tenant container and the fleet agree on: paths inside the container, the
variables it is configured through, object keys in the bucket, and the tenant-name rule.

The one home of these facts; fleet.core.names re-exports them for the host side.
"""

from __future__ import annotations

import re

# A DNS label: it becomes a container name, a hostname and an S3 prefix, so no slashes,
# dots or spaces that could escape ``tenants/<tenant>/``.
TENANT_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
TENANT_RULE = "1-63 characters a-z, 0-9 and '-', not starting or ending with '-'"

# -- inside the tenant container (images/tenant/Dockerfile creates them)
DATA_DIR = "/data"  # the tenant's volume
DB_PATH = f"{DATA_DIR}/tenant.db"
LITESTREAM_CONFIG = "/etc/litefleet/litestream.yml"
APP_ENV_FILE = "/tmp/litefleet-app.env"  # the runtime's environment, written at start (0600)
RUNTIME_PORT = 8080
TENANT_UID = 10001  # the image's `litefleet` user

# -- the environment a tenant container is created with
ENV_TENANT = "TENANT"
ENV_S3_ENDPOINT = "LITEFLEET_S3_ENDPOINT"
ENV_S3_BUCKET = "LITEFLEET_S3_BUCKET"
ENV_S3_REGION = "LITEFLEET_S3_REGION"
ENV_S3_ACCESS_KEY_ID = "LITESTREAM_ACCESS_KEY_ID"
ENV_S3_SECRET_ACCESS_KEY = "LITESTREAM_SECRET_ACCESS_KEY"
# Instead of the key itself: a file holding it (a Swarm secret; read by environments.py).
ENV_S3_SECRET_ACCESS_KEY_FILE = "LITESTREAM_SECRET_ACCESS_KEY_FILE"
ENV_HOST = "LITEFLEET_HOST"  # the fleet host: names the lease holder
ENV_LEASE_TTL = "LITEFLEET_LEASE_TTL"
ENV_LEASE_RENEW = "LITEFLEET_LEASE_RENEW"
ENV_LEASE_WAIT = "LITEFLEET_LEASE_WAIT"
ENV_TOKEN = "AGENT_RUNTIME_TOKEN"
ENV_APP = "AGENT_RUNTIME_APP"
ENV_DB = "AGENT_RUNTIME_DB"  # postgresql://... selects the PostgreSQL backend
ENV_PGPASSWORD = "PGPASSWORD"
# The tenant's egress policy (fleet/engine/egress.py). When set, the supervisor starts nothing
# until the host enforces it (fleet/supervisor/egress.py).
ENV_EGRESS = "LITEFLEET_EGRESS"
S3_CREDENTIALS = (ENV_S3_ACCESS_KEY_ID, ENV_S3_SECRET_ACCESS_KEY)

DEFAULT_APP = "agent_runtime.examples"
DEFAULT_REGION = "us-east-1"
POSTGRES_SCHEMES = ("postgresql://", "postgres://")

# A TCP destination only a tenant's own egress chain answers, with a reset (see
# fleet/engine/egress_rules.py): 192.0.0.8 is the IPv4 dummy address (RFC 7600), no host has it.
EGRESS_SENTINEL = ("192.0.0.8", 9)

# -- object keys in the bucket
BACKUP_PREFIX = "tenants/"  # Litestream's replica of each tenant
LEASE_PREFIX = "leases/"  # the one-writer lease of each tenant
ARCHIVE_PREFIX = "archive/"  # history set aside by point-in-time restores


def tracking_dir(db: str) -> str:
    """Litestream's local state for the database at ``db``."""
    head, _, name = db.rpartition("/")
    return f"{head}/.{name}-litestream"


TRACKING_DIR = tracking_dir(DB_PATH)


def valid_tenant(name: str) -> bool:
    return TENANT_RE.fullmatch(name) is not None


def backup_prefix(tenant: str) -> str:
    """Where Litestream keeps the tenant's replica inside the bucket."""
    return f"{BACKUP_PREFIX}{tenant}/"


def lease_key(tenant: str) -> str:
    return f"{LEASE_PREFIX}{tenant}.json"


def conditional_check_key(tenant: str) -> str:
    """A scratch object the keeper checks conditional writes on: inside the tenant's replica
    prefix, the only place its key may write besides the lease, and outside Litestream's
    level directories (``tenants/<t>/NNNN/``), which is all Litestream reads."""
    return f"{backup_prefix(tenant)}conditional-write-check"
