"""How a tenant container is created on a Docker engine: the one place the fleet and the tests
take it from.

A tenant container runs images/tenant (the supervisor, Litestream and agent-runtime) with
the OWASP hardening set: non-root user, read-only root fs with a tmpfs /tmp, every capability
dropped, no-new-privileges, memory/CPU/pids limits, the API published on 127.0.0.1 only, the
tenant's volume at /data and nothing else mounted (never the Docker socket). One-off
containers of the same image (restore, probes) get the same set without the API.
"""

from __future__ import annotations

import re
from typing import Any

from fleet.core import names
from fleet.core.hosting import OneOff, Sandbox, TenantSpec, replica_environment

_VOLUME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")  # a named volume, never a host path


def container_config(
    spec: TenantSpec, network: str | None = None, mac_address: str | None = None
) -> dict[str, Any]:
    """Keyword arguments for ``docker_client.containers.create(**cfg)`` of a tenant.

    ``mac_address``: the host enforces the tenant's egress policy on packets from this MAC
    (fleet/engine/egress_rules.py); the container then records the policy and its supervisor
    starts nothing until the rules are in place."""
    _check(spec)
    cfg = _hardened(spec.image, spec.tenant, spec.memory, spec.cpus, spec.pids, spec.tmp_size)
    cfg.update(
        name=spec.container_name,
        hostname=spec.tenant,
        environment=spec.environment(),
        labels=spec.engine_labels(),
        # tini as PID 1: forwards SIGTERM to the supervisor and reaps what agent code forks.
        init=True,
        stop_signal="SIGTERM",
        ports={f"{names.RUNTIME_PORT}/tcp": ("127.0.0.1", None)},  # random loopback port
        healthcheck=_healthcheck(),
    )
    if spec.db_url is None:
        cfg["volumes"] = {spec.volume_name: {"bind": names.DATA_DIR, "mode": "rw"}}
    if network is not None:
        cfg["network"] = network
    if mac_address is not None:
        cfg["mac_address"] = mac_address
        cfg["environment"][names.ENV_EGRESS] = spec.egress
        cfg["labels"][names.LABEL_EGRESS] = spec.egress
    return cfg


def container_mac(attrs: dict[str, Any]) -> str | None:
    """The MAC address a tenant container was created with (None: Docker's own choice)."""
    return (attrs.get("Config") or {}).get("MacAddress") or None


def oneoff_config(job: OneOff, name: str, network: str | None = None) -> dict[str, Any]:
    """A throwaway container of the tenant image running ``job.argv`` in /data, with the
    tenant's volume and only Litestream's environment; not a tenant (no tenant labels)."""
    cfg = _hardened(
        job.image, job.tenant, names.DEFAULT_MEMORY, names.DEFAULT_CPUS, names.DEFAULT_PIDS
    )
    cfg.update(
        name=name,
        hostname=job.tenant,
        # ENV_TENANT only names the replica path in Litestream's config (tenants/${TENANT}).
        environment={names.ENV_TENANT: job.replica or job.tenant, **replica_environment(job.s3)},
        labels={names.LABEL_MANAGED: "true", names.LABEL_ONEOFF: job.tenant},
        init=True,
        entrypoint=[job.argv[0]],
        command=job.argv[1:],
        working_dir=names.DATA_DIR,
        volumes={names.volume_name(job.tenant): {"bind": names.DATA_DIR, "mode": "rw"}},
    )
    if network is not None:
        cfg["network"] = network
    return cfg


def sandbox_config(job: Sandbox, name: str, network: str | None) -> dict[str, Any]:
    """A container for untrusted code (a template's import check, a replay check): the
    tenant's hardening, only ``job.environment``, no network unless ``network``, no tenant
    labels. /data is the image's anonymous volume (``job.files`` are put there before start),
    removed with the container."""
    cfg = _hardened(job.image, "sandbox", names.DEFAULT_MEMORY, names.DEFAULT_CPUS, 128)
    cfg.update(
        name=name,
        hostname="sandbox",
        environment=dict(job.environment),
        labels={names.LABEL_MANAGED: "true", names.LABEL_ONEOFF: "sandbox"},
        init=True,
        entrypoint=[job.argv[0]],
        command=job.argv[1:],
        working_dir=names.DATA_DIR,
    )
    if network is None:
        cfg["network_disabled"] = True
    else:
        cfg["network"] = network
    return cfg


def reader_config(tenant: str, image: str, name: str) -> dict[str, Any]:
    """A container that is only created, never started, to copy files out of the tenant's
    volume (``get_archive``)."""
    cfg = _hardened(image, tenant, names.DEFAULT_MEMORY, names.DEFAULT_CPUS, names.DEFAULT_PIDS)
    cfg.update(
        name=name,
        labels={names.LABEL_MANAGED: "true", names.LABEL_ONEOFF: tenant},
        entrypoint=["true"],
        network_disabled=True,
        volumes={names.volume_name(tenant): {"bind": names.DATA_DIR, "mode": "ro"}},
    )
    return cfg


def _hardened(
    image: str,
    tenant: str,
    memory: str,
    cpus: float,
    pids: int,
    tmp_size: str = names.DEFAULT_TMP_SIZE,
) -> dict[str, Any]:
    if not names.valid_tenant(tenant):
        raise ValueError(f"invalid tenant name {tenant!r}")
    if cpus <= 0 or pids <= 0:
        raise ValueError("cpus and pids must be positive")
    return {
        "image": image,
        "user": f"{names.TENANT_UID}:{names.TENANT_UID}",
        "read_only": True,
        "tmpfs": {"/tmp": f"rw,nosuid,nodev,noexec,size={tmp_size},mode=1777"},
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges:true"],
        "mem_limit": memory,
        "memswap_limit": memory,  # no swap: the limit is the limit
        "nano_cpus": int(cpus * 1_000_000_000),
        "pids_limit": pids,
        "log_config": {"type": "json-file", "config": {"max-size": "10m", "max-file": "3"}},
        "detach": True,
    }


def _healthcheck() -> dict[str, Any]:
    """The engine's health check of a tenant (names.HEALTH_CHECK_INTERVAL_S; None: off)."""
    every = names.HEALTH_CHECK_INTERVAL_S
    if every is None:
        return {"test": ["NONE"]}
    ns = 1_000_000_000
    return {
        "test": ["CMD", "/opt/litefleet/bin/litefleet-healthcheck"],
        "interval": every * ns,
        "timeout": 3 * ns,
        "retries": 3,
        "start_period": 60 * ns,
    }


def _check(spec: TenantSpec) -> None:
    if not _VOLUME_RE.fullmatch(spec.volume_name):
        raise ValueError(f"volume must be a named volume, not {spec.volume_name!r}")
    if spec.db_url is None and spec.s3 is None:
        raise ValueError("a SQLite tenant needs an S3 target for Litestream")
    if spec.db_url is not None and not spec.db_url.startswith(names.POSTGRES_SCHEMES):
        raise ValueError("db_url must be a postgresql:// URL")


def published_port(attrs: dict[str, Any]) -> int | None:
    """The host port the runtime is published on, from ``container.attrs`` (None while not
    running)."""
    bindings = (attrs.get("NetworkSettings") or {}).get("Ports") or {}
    for b in bindings.get(f"{names.RUNTIME_PORT}/tcp") or []:
        if b.get("HostIp") in ("127.0.0.1", "") and b.get("HostPort"):
            return int(b["HostPort"])
    return None
