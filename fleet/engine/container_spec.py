"""How a tenant container is created: the one place the fleet and the tests take it from.

A tenant container runs images/tenant (agent-runtime under ``litestream replicate``) with the
OWASP hardening set: non-root user, read-only root fs with a tmpfs /tmp, every capability
dropped, no-new-privileges, memory/CPU/pids limits, the API published on 127.0.0.1 only, the
tenant's volume at /data and nothing else mounted (never the Docker socket).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

TENANT_PORT = 8080
DATA_DIR = "/data"
DB_PATH = f"{DATA_DIR}/tenant.db"
TENANT_UID = 10001  # the image's `litefleet` user (images/tenant/Dockerfile)
# Pass to container.stop(timeout=...): runtime drain + Litestream's final sync. (The SDK's
# create() cannot set the container's own StopTimeout; docker's default is 10 s.)
STOP_TIMEOUT_S = 30

LABEL_PREFIX = "litefleet."
LABEL_TENANT = LABEL_PREFIX + "tenant"
LABEL_ROLE = LABEL_PREFIX + "role"
LABEL_MANAGED = LABEL_PREFIX + "managed"
ROLE_TENANT = "tenant"
ROLE_OBJECT_STORE = "object-store"

# Names the entrypoint and Litestream read; a caller's ``env`` cannot override them.
RESERVED_ENV = frozenset(
    {
        "TENANT",
        "LITEFLEET_S3_ENDPOINT",
        "LITEFLEET_S3_BUCKET",
        "LITEFLEET_S3_REGION",
        "LITESTREAM_ACCESS_KEY_ID",
        "LITESTREAM_SECRET_ACCESS_KEY",
        "AGENT_RUNTIME_TOKEN",
        "AGENT_RUNTIME_APP",
        "AGENT_RUNTIME_DB",
        "PGPASSWORD",
        "LITEFLEET_HOST",  # names the lease holder: a user --env must not fake it
    }
)

_TENANT_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_VOLUME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")  # a named volume, never a host path


@dataclass(frozen=True)
class S3Target:
    """Where a tenant's replica lives. ``repr`` never shows the secret."""

    endpoint: str
    bucket: str
    region: str
    access_key_id: str
    secret_access_key: str = field(repr=False)


def tenant_container_config(
    *,
    tenant: str,
    image: str,
    volume: str,
    s3: S3Target | None,
    token: str,
    app: str = "agent_runtime.examples",
    memory: str = "256m",
    cpus: float = 0.5,
    pids: int = 256,
    env: dict[str, str] | None = None,
    labels: dict[str, str] | None = None,
    network: str | None = None,
    db_url: str | None = None,
    db_password: str | None = None,
    name: str | None = None,
    tmp_size: str = "64m",
    host: str | None = None,
) -> dict[str, Any]:
    """Keyword arguments for ``docker_client.containers.create(**cfg)``.

    ``s3`` is required unless ``db_url`` (postgresql://...) selects the Postgres backend, which
    has no local file to replicate; its password goes in ``db_password`` (PGPASSWORD), not in
    the URL, which ends up on the runtime's command line. ``env`` adds variables for the app;
    the reserved ones (RESERVED_ENV) always come from the other arguments. ``host`` names
    the fleet host, recorded as the holder in the tenant's lease (LITEFLEET_HOST).
    """
    if not _TENANT_RE.fullmatch(tenant):
        raise ValueError(f"invalid tenant name {tenant!r}")
    if not _VOLUME_RE.fullmatch(volume):
        raise ValueError(f"volume must be a named volume, not {volume!r}")
    if db_url is None and s3 is None:
        raise ValueError("a SQLite tenant needs an S3 target for Litestream")
    if db_url is not None and not db_url.startswith(("postgresql://", "postgres://")):
        raise ValueError("db_url must be a postgresql:// URL")
    if cpus <= 0 or pids <= 0:
        raise ValueError("cpus and pids must be positive")

    environment = {k: v for k, v in (env or {}).items() if k not in RESERVED_ENV}
    environment.update({"TENANT": tenant, "AGENT_RUNTIME_TOKEN": token, "AGENT_RUNTIME_APP": app})
    if host is not None:
        environment["LITEFLEET_HOST"] = host
    if db_url is not None:
        environment["AGENT_RUNTIME_DB"] = db_url
        if db_password is not None:
            environment["PGPASSWORD"] = db_password
    if s3 is not None and db_url is None:
        environment.update(
            {
                "LITEFLEET_S3_ENDPOINT": s3.endpoint,
                "LITEFLEET_S3_BUCKET": s3.bucket,
                "LITEFLEET_S3_REGION": s3.region,
                "LITESTREAM_ACCESS_KEY_ID": s3.access_key_id,
                "LITESTREAM_SECRET_ACCESS_KEY": s3.secret_access_key,
            }
        )

    all_labels = {LABEL_ROLE: ROLE_TENANT, **(labels or {})}
    all_labels[LABEL_TENANT] = tenant
    all_labels[LABEL_MANAGED] = "true"

    cfg: dict[str, Any] = {
        "image": image,
        "name": name or f"litefleet-{tenant}",
        "hostname": tenant,
        "environment": environment,
        "labels": all_labels,
        "user": f"{TENANT_UID}:{TENANT_UID}",
        "read_only": True,
        "tmpfs": {"/tmp": f"rw,nosuid,nodev,noexec,size={tmp_size},mode=1777"},
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges:true"],
        "mem_limit": memory,
        "memswap_limit": memory,  # no swap: the limit is the limit
        "nano_cpus": int(cpus * 1_000_000_000),
        "pids_limit": pids,
        # tini as PID 1: forwards SIGTERM to Litestream and reaps whatever agent code forks.
        "init": True,
        "stop_signal": "SIGTERM",
        "ports": {f"{TENANT_PORT}/tcp": ("127.0.0.1", None)},  # random loopback port
        "log_config": {"type": "json-file", "config": {"max-size": "10m", "max-file": "3"}},
        "detach": True,
    }
    if db_url is None:
        cfg["volumes"] = {volume: {"bind": DATA_DIR, "mode": "rw"}}
    if network is not None:
        cfg["network"] = network
    return cfg


def published_port(attrs: dict[str, Any]) -> int | None:
    """The host port 8080 is published on, from ``container.attrs`` (None while not running)."""
    bindings = (attrs.get("NetworkSettings") or {}).get("Ports") or {}
    for b in bindings.get(f"{TENANT_PORT}/tcp") or []:
        if b.get("HostIp") in ("127.0.0.1", "") and b.get("HostPort"):
            return int(b["HostPort"])
    return None
