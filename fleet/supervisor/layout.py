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
RUNNER = "/opt/litefleet/bin/litefleet-runner"  # images/tenant/runner.sh
CONTROL_FD = 3  # the runner's end of the keeper's control pipe
RUNTIME_PORT = 8080
# Litestream attaches to the database on its first monitor tick (configs/litestream.yml:
# monitor-interval 1s) and makes a final sync only of a database it has attached.
LITESTREAM_ATTACH_S = 1.5

# -- identities (images/tenant/Dockerfile creates them). The supervisor starts as root with
# CAP_SETUID/SETGID/SETPCAP only, and every process drops to one of these before it runs:
SUPERVISOR_UID = 10001  # `litefleet`: the keeper and Litestream (they hold the S3 key)
SUPERVISOR_GID = 10001
AGENT_UID = 10002  # `agent`: the runner and the runtime, so all agent code
AGENT_GID = 10002  # also the group of the database files: Litestream reads and writes them
# How a tenant container is started so that the supervisor can switch uids (any backend).
CONTAINER_USER = "0:0"
CONTAINER_CAPS = ("SETUID", "SETGID", "SETPCAP")  # dropped before any tenant code runs

# -- the supervisor's own directory: a tmpfs of the keeper's uid that agent code can read (the
# lease-gate file) but neither write nor fill
RUN_DIR = "/run/litefleet"
RUN_DIR_SIZE = "4m"
LEASE_GATE_FILE = f"{RUN_DIR}/lease.json"  # the runtime's --lease-file (agent_runtime/_lease_gate)
STATE_FILE = f"{RUN_DIR}/state.json"  # lease, store and restarts, for `fleet ls`
# HOME and TMPDIR of the keeper and Litestream, 0700: on Swarm RUN_DIR itself is sticky and
# writable by all (a service's tmpfs has no owner), and Litestream reads ~/.aws/config.
SUPERVISOR_HOME = f"{RUN_DIR}/home"
# On the volume, the supervisor's record of crashes (the restart bound) lives in a directory of
# its own that agent code cannot enter.
RECORD_DIR = f"{DATA_DIR}/.litefleet"

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
ENV_RUNNER_PID = "LITEFLEET_RUNNER_PID"  # set by the supervisor itself, for the keeper
ENV_CONTROL_FD = "LITEFLEET_CONTROL_FD"  # the keeper's end of its pipe to the runner
ENV_READY_FD = "LITEFLEET_READY_FD"  # where the replicate stage says the database is ready
ENV_LEASE_FILE = "AGENT_RUNTIME_LEASE_FILE"
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
