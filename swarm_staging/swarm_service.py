"""A tenant as a Docker Swarm service: the spec, and where its task runs.

Staged here until fleet/ is reshaped (issue 9); it becomes the Swarm implementation of the
fleet's hosting interface. Pure functions: the Docker SDK is only called by the caller, with
``client.api.create_service(**tenant_service(t))``.

Design (measured facts in docs/swarm.md):
- service ``litefleet-<tenant>``, one replica, restart policy ``any``, update order stop-first:
  Swarm places it by its reservations and starts it elsewhere when its node dies;
- the image by id (``sha256:...``): a worker then runs it without trying a registry (a pull
  attempt by tag cost 20 s on a node without registry access), and ``docker save | load``
  keeps ids, so every node runs the same bytes;
- the token as a Swarm secret, mounted at /run/secrets/litefleet-token for the tenant's uid and
  read by ``agent-runtime serve`` through AGENT_RUNTIME_TOKEN_FILE: never in the spec's env;
- the API published in host mode on a port the fleet allocates from FLEET_SWARM_PORTS
  (30000-32767): no routing mesh here (no IPVS), the port is the same wherever the task runs,
  and the node firewall rules of images/swarm-node.sh keep tenants off that range;
- no network of its own: the task joins its node's default bridge. A swarm-scoped bridge
  network breaks on a node after that node crashed (moby/moby#37087: its tasks are rejected
  with "network <id> exists"); images/swarm-node.sh's rules do on docker0 what
  enable_icc=false would do for the API port.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

SERVICE_PREFIX = "litefleet-"
HOST_LABEL = "litefleet.host"  # node label naming a node for `fleet up --host NAME`
TOKEN_SECRET_FILE = "litefleet-token"
TENANT_PORT = 8080
TENANT_UID = 10001
DATA_DIR = "/data"
STOP_GRACE_S = 30  # runtime drain + Litestream's final sync
RESTART_DELAY_S = 1.0
PORT_RANGE = (30000, 32767)
LABEL_TENANT = "litefleet.tenant"
LABEL_ROLE = "litefleet.role"
LABEL_MANAGED = "litefleet.managed"
LABEL_SWARM = "litefleet.swarm"
LABEL_PORT = "litefleet.port"
LABEL_IMAGE = "litefleet.image"
_NS = 1_000_000_000


@dataclass(frozen=True)
class SwarmTenant:
    """What the service of one tenant is made of."""

    tenant: str
    image_id: str  # sha256:...
    image: str  # the tag it was resolved from, kept as a label
    token_secret_id: str
    token_secret_name: str
    port: int
    environment: Mapping[str, str] = field(repr=False)  # as on an engine, without the token
    labels: Mapping[str, str] = field(default_factory=dict)  # engine labels, namespaced
    memory_bytes: int = 256 * 1024**2
    cpus: float = 0.5
    pids: int = 256
    tmp_bytes: int = 64 * 1024**2
    host: str | None = None  # a node's litefleet.host label, or None: Swarm decides

    @property
    def service_name(self) -> str:
        return SERVICE_PREFIX + self.tenant

    @property
    def volume_name(self) -> str:
        return SERVICE_PREFIX + self.tenant


def constraints(host: str | None) -> list[str]:
    """`fleet up T --host NAME` -> node.labels.litefleet.host==NAME."""
    return [] if host is None else [f"node.labels.{HOST_LABEL}=={host}"]


def allocate_port(used: Iterable[int], lo: int = PORT_RANGE[0], hi: int = PORT_RANGE[1]) -> int:
    """The lowest port of [lo, hi] no service publishes yet."""
    taken = set(used)
    for port in range(lo, hi + 1):
        if port not in taken:
            return port
    raise ValueError(f"every port of {lo}-{hi} is taken: widen FLEET_SWARM_PORTS")


def tenant_service(t: SwarmTenant) -> dict[str, Any]:
    """Keyword arguments of ``APIClient.create_service`` (Docker API 1.41, engine 20.10)."""
    if "AGENT_RUNTIME_TOKEN" in t.environment:
        raise ValueError("the token goes in a Swarm secret, never in the service's env")
    labels = {
        **t.labels,
        LABEL_ROLE: "tenant",
        LABEL_TENANT: t.tenant,
        LABEL_MANAGED: "true",
        LABEL_PORT: str(t.port),
        LABEL_IMAGE: t.image,
    }
    return {
        "name": t.service_name,
        "labels": labels,
        "mode": {"Replicated": {"Replicas": 1}},
        "task_template": _task_template(t, labels),
        "update_config": {"Parallelism": 1, "Order": "stop-first", "FailureAction": "pause"},
        "endpoint_spec": {
            "Mode": "dnsrr",  # no virtual IP: it needs IPVS, which this kernel lacks
            "Ports": [
                {
                    "Protocol": "tcp",
                    "TargetPort": TENANT_PORT,
                    "PublishedPort": t.port,
                    "PublishMode": "host",
                }
            ],
        },
    }


def _task_template(t: SwarmTenant, labels: Mapping[str, str]) -> dict[str, Any]:
    env = {
        **t.environment,
        "AGENT_RUNTIME_TOKEN_FILE": f"/run/secrets/{TOKEN_SECRET_FILE}",
        # The lease holder: the node this task runs on (Swarm fills the template).
        "LITEFLEET_HOST": "{{.Node.ID}}",
    }
    return {
        "ContainerSpec": {
            "Image": t.image_id,
            "Labels": dict(labels),
            "Hostname": t.tenant,
            "Env": [f"{k}={v}" for k, v in env.items()],
            "User": f"{TENANT_UID}:{TENANT_UID}",
            "ReadOnly": True,
            "Init": True,
            "StopSignal": "SIGTERM",
            "StopGracePeriod": STOP_GRACE_S * _NS,
            "CapabilityDrop": ["ALL"],
            "Mounts": [
                {
                    "Type": "volume",
                    "Source": t.volume_name,
                    "Target": DATA_DIR,
                    "VolumeOptions": {
                        "Labels": {
                            LABEL_TENANT: t.tenant,
                            LABEL_MANAGED: "true",
                            LABEL_SWARM: "true",
                        }
                    },
                },
                {
                    "Type": "tmpfs",
                    "Target": "/tmp",
                    "TmpfsOptions": {"SizeBytes": t.tmp_bytes, "Mode": 0o1777},
                },
            ],
            "Secrets": [
                {
                    "File": {
                        "Name": TOKEN_SECRET_FILE,
                        "UID": str(TENANT_UID),
                        "GID": str(TENANT_UID),
                        "Mode": 0o400,
                    },
                    "SecretID": t.token_secret_id,
                    "SecretName": t.token_secret_name,
                }
            ],
        },
        "Resources": {
            "Limits": {
                "NanoCPUs": int(t.cpus * _NS),
                "MemoryBytes": t.memory_bytes,
                "Pids": t.pids,
            },
            # Swarm places by reservations: a node takes tenants while their memory limits
            # fit (as the engines backend places by free memory). No CPU reservation: idle
            # tenants use little, and reserving the 0.5-core limit would cap a 2-core node at
            # four tenants.
            "Reservations": {"MemoryBytes": t.memory_bytes},
        },
        "RestartPolicy": {"Condition": "any", "Delay": int(RESTART_DELAY_S * _NS)},
        "Placement": {"Constraints": constraints(t.host)},
        "LogDriver": {"Name": "json-file", "Options": {"max-size": "10m", "max-file": "3"}},
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
