"""A tenant as a Docker Swarm service: the spec, and where its task runs.

Pure functions of the Swarm backend (swarm_hosting.py); the Docker SDK is called there.
Design and the measurements behind it: docs/swarm.md.
- service ``litefleet-<tenant>``, one replica, restart policy ``any``, update order stop-first:
  Swarm places it by its memory reservation and starts it elsewhere when its node dies;
- the image by id (``sha256:...``): a worker then runs it without trying a registry (a pull
  attempt by tag cost 20 s on a node without registry access), and ``docker save | load``
  keeps ids, so every node runs the same bytes;
- the token as a Swarm secret, mounted at /run/secrets/litefleet-token for the tenant's uid and
  read by ``agent-runtime serve`` through AGENT_RUNTIME_TOKEN_FILE: never in the spec's env;
  the S3 secret key likewise (/run/secrets/litefleet-s3-key, read by the supervisor through
  LITESTREAM_SECRET_ACCESS_KEY_FILE), so ``docker service inspect`` shows neither;
- the API published in host mode on a port the fleet allocates from FLEET_SWARM_PORTS: no
  routing mesh here (no IPVS), and the port is the same wherever the task runs;
- no network of its own: the task joins its node's default bridge. A swarm-scoped bridge
  network breaks on a node after that node crashed (moby/moby#37087: its tasks are rejected
  with "network <id> exists"); images/swarm-node.sh's rules keep tenants off each other's API.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from fleet.core import names
from fleet.core.hosting import TenantSpec

HOST_LABEL = "litefleet.host"  # node label naming a node for `--host NAME` / `--to NAME`
TOKEN_FILE = "litefleet-token"  # under /run/secrets in the task
ENV_TOKEN_FILE = "AGENT_RUNTIME_TOKEN_FILE"
KEY_FILE = "litefleet-s3-key"  # under /run/secrets: the S3 secret key of a SQLite tenant
LABEL_PORT = names.LABEL_PREFIX + "port"
LABEL_IMAGE = names.LABEL_PREFIX + "image"
LABEL_SWARM = names.LABEL_PREFIX + "swarm"
RESTART_DELAY_S = 1.0
_NS = 1_000_000_000


@dataclass(frozen=True)
class SecretRef:
    """A Swarm secret, as a service's task template names it."""

    id: str
    name: str


@dataclass(frozen=True)
class Placement:
    """How a service is made beyond its TenantSpec: the image id, the token's secret, the
    published port, the node label it is constrained to (None: Swarm decides), and the S3
    secret key's secret (a SQLite tenant must have one: its spec's key never goes in env)."""

    image_id: str
    secret_id: str
    secret_name: str
    port: int
    node: str | None
    key_secret: SecretRef | None = None


def constraints(host: str | None) -> list[str]:
    """`fleet up T --host NAME` -> node.labels.litefleet.host==NAME."""
    return [] if host is None else [f"node.labels.{HOST_LABEL}=={host}"]


def allocate_port(used: Iterable[int], lo: int, hi: int) -> int:
    """A port of [lo, hi] no service publishes yet, chosen at random: two `fleet up` running
    at once then rarely pick the same one (SwarmHosting.create checks and moves a loser)."""
    taken = set(used)
    free = [p for p in range(lo, hi + 1) if p not in taken]
    if not free:
        from fleet.core.errors import ConfigError

        raise ConfigError(f"every port of {lo}-{hi} is taken", "widen FLEET_SWARM_PORTS")
    return random.choice(free)


def service_args(spec: TenantSpec, where: Placement) -> dict[str, Any]:
    """Keyword arguments of ``APIClient.create_service`` (Docker API 1.41, engine 20.10)."""
    labels = {**spec.engine_labels(), LABEL_PORT: str(where.port), LABEL_IMAGE: spec.image}
    return {
        "name": spec.container_name,
        "labels": labels,
        "mode": {"Replicated": {"Replicas": 1}},
        "task_template": _task_template(spec, where, labels),
        "update_config": {"Parallelism": 1, "Order": "stop-first", "FailureAction": "pause"},
        "endpoint_spec": {
            "Mode": "dnsrr",  # no virtual IP: it needs IPVS, which this kernel lacks
            "Ports": [
                {
                    "Protocol": "tcp",
                    "TargetPort": names.RUNTIME_PORT,
                    "PublishedPort": where.port,
                    "PublishMode": "host",
                }
            ],
        },
    }


def environment(spec: TenantSpec) -> dict[str, str]:
    """The task's environment: the tenant's, without the token and the S3 secret key (secret
    files instead), and the lease holder named by the node the task runs on (Swarm fills
    the template)."""
    hidden = (names.ENV_TOKEN, names.ENV_S3_SECRET_ACCESS_KEY)
    env = {k: v for k, v in spec.environment().items() if k not in hidden}
    env[ENV_TOKEN_FILE] = f"/run/secrets/{TOKEN_FILE}"
    if spec.s3 is not None and spec.db_url is None:
        env[names.ENV_S3_SECRET_ACCESS_KEY_FILE] = f"/run/secrets/{KEY_FILE}"
    env[names.ENV_HOST] = "{{.Node.ID}}"
    return env


def _task_template(spec: TenantSpec, where: Placement, labels: Mapping[str, str]) -> dict[str, Any]:
    from docker.utils import parse_bytes

    memory = int(parse_bytes(spec.memory))
    return {
        "ContainerSpec": {
            "Image": where.image_id,
            "Labels": dict(labels),
            "Hostname": spec.tenant,
            "Env": [f"{k}={v}" for k, v in environment(spec).items()],
            # Root with three capabilities the supervisor's first stage drops (identity.py)
            # before it runs the keeper and the runtime under two uids of their own.
            "User": names.CONTAINER_USER,
            "ReadOnly": True,
            "Init": False,  # the supervisor is PID 1: it reaps what agent code forks
            # Swarm stops a task only when the service no longer wants it there (fleet down,
            # park, migrate, a node drained): that is the supervisor's "down" (final sync,
            # exit 0), not an engine shutting down; Swarm's own restart policy is "any".
            "StopSignal": names.DOWN_SIGNAL,
            "StopGracePeriod": names.STOP_TIMEOUT_S * _NS,
            "CapabilityDrop": ["ALL"],
            "CapabilityAdd": list(names.CONTAINER_CAPS),
            "Mounts": _mounts(spec),
            "Secrets": _secrets(spec, where),
        },
        "Resources": {
            "Limits": {"NanoCPUs": int(spec.cpus * _NS), "MemoryBytes": memory, "Pids": spec.pids},
            # Swarm places by reservations: a node takes tenants while their memory limits fit
            # (as the engines backend places by free memory). No CPU reservation: reserving
            # the 0.5-core limit would cap a 2-core node at four tenants.
            "Reservations": {"MemoryBytes": memory},
        },
        "RestartPolicy": {"Condition": "any", "Delay": int(RESTART_DELAY_S * _NS)},
        "Placement": {"Constraints": constraints(where.node)},
        "LogDriver": {"Name": "json-file", "Options": {"max-size": "10m", "max-file": "3"}},
    }


def _mounts(spec: TenantSpec) -> list[dict[str, Any]]:
    from docker.utils import parse_bytes

    volume_labels = {
        names.LABEL_TENANT: spec.tenant,
        names.LABEL_MANAGED: "true",
        LABEL_SWARM: "true",
    }
    return [
        {
            "Type": "volume",
            "Source": spec.volume_name,
            "Target": names.DATA_DIR,
            "VolumeOptions": {"Labels": volume_labels},
        },
        {
            "Type": "tmpfs",
            "Target": "/tmp",
            "TmpfsOptions": {"SizeBytes": int(parse_bytes(spec.tmp_size)), "Mode": 0o1777},
        },
        {
            # The keeper's files (lease gate, state). A service's tmpfs cannot be given an
            # owner (TmpfsOptions has no uid), so it is sticky and writable by all: agent code
            # may add files there but not replace the keeper's.
            "Type": "tmpfs",
            "Target": names.RUN_DIR,
            "TmpfsOptions": {"SizeBytes": int(parse_bytes(names.RUN_DIR_SIZE)), "Mode": 0o1777},
        },
    ]


def _secrets(spec: TenantSpec, where: Placement) -> list[dict[str, Any]]:
    """The token's secret (a file of the agent uid's: the runtime reads it), and the S3 key's
    for a SQLite tenant (the keeper's uid's: the keeper and Litestream use it)."""
    token = SecretRef(where.secret_id, where.secret_name)
    files = [_secret_file(TOKEN_FILE, token, names.AGENT_UID, names.AGENT_GID)]
    if spec.s3 is not None and spec.db_url is None:
        if where.key_secret is None:
            raise ValueError("a SQLite tenant's service needs its S3 key as a secret")
        key = _secret_file(KEY_FILE, where.key_secret, names.SUPERVISOR_UID, names.SUPERVISOR_GID)
        files.append(key)
    return files


def _secret_file(name: str, secret: SecretRef, uid: int, gid: int) -> dict[str, Any]:
    return {
        "File": {"Name": name, "UID": str(uid), "GID": str(gid), "Mode": 0o400},
        "SecretID": secret.id,
        "SecretName": secret.name,
    }


@dataclass(frozen=True)
class TaskPlace:
    """Where a tenant's current task runs, as the manager sees it."""

    node_id: str
    node: str  # the node's litefleet.host label, else its id
    address: str  # the node's address: the API is at http://address:port
    state: str  # Swarm task state: running, starting, preparing, failed, ...
    error: str


def current_task(tasks: Iterable[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The task that is meant to run (desired state running), newest first; None if none."""
    wanted = [t for t in tasks if t.get("DesiredState") == "running"]
    if not wanted:
        return None
    return max(wanted, key=lambda t: str(t.get("UpdatedAt", "")))


def task_place(task: Mapping[str, Any], nodes: Mapping[str, Mapping[str, Any]]) -> TaskPlace:
    """``nodes``: node id -> node attrs (``docker node inspect``)."""
    node_id = str(task.get("NodeID") or "")
    node = nodes.get(node_id, {})
    label = ((node.get("Spec") or {}).get("Labels") or {}).get(HOST_LABEL)
    status = task.get("Status") or {}
    return TaskPlace(
        node_id=node_id,
        node=str(label or node_id[:12] or "-"),
        address=str((node.get("Status") or {}).get("Addr") or ""),
        state=str(status.get("State") or "-"),
        error=str(status.get("Err") or ""),
    )
