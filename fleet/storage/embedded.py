"""The embedded object store: moto's S3 server in container ``litefleet-s3``.

Its data lives in memory only: removing or restarting the container loses every replica.
It is for development, tests and demos; production sets FLEET_S3_ENDPOINT to real storage.

Network design (checked on Docker 20.10 here, with a second dockerd on its own bridge):
- Tenants of every engine join a user-defined bridge network ``litefleet`` on that engine,
  created with ``com.docker.network.bridge.enable_icc=false``: tenants cannot reach each other
  (nor the store's container address) over the bridge.
- The store joins ``litefleet`` on its own engine and is published on 127.0.0.1:PORT (for the
  CLI) and on that network's gateway IP:PORT (for tenants). Tenants connect to the gateway IP,
  which is a host address: a tenant on the same bridge is served by docker-proxy, a tenant on
  another bridge or another engine's bridge is DNAT-ed to the store. Both were verified.
- Nothing is published on 0.0.0.0: the store does not answer on the host's external
  interfaces (verified: no answer on eth0's address).
The tenant endpoint is therefore ``http://<gateway of litefleet on the store's engine>:PORT``
for tenants on every engine of this machine.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from fleet.core.errors import FleetError, ObjectStoreError
from fleet.engine.container_spec import LABEL_MANAGED, LABEL_ROLE, ROLE_OBJECT_STORE
from fleet.engine.images import ensure_image, image_ref

CONTAINER_NAME = "litefleet-s3"
NETWORK_NAME = "litefleet"
STORE_PORT = 9000  # inside the container
# moto accepts any credentials; these only have to be consistent.
ACCESS_KEY_ID = "litefleet"
SECRET_ACCESS_KEY = "litefleet-embedded"
REGION = "us-east-1"
_READY_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class ObjectStore:
    """A running embedded store."""

    host_endpoint: str  # for the CLI on this machine, e.g. http://127.0.0.1:9000
    tenant_endpoint: str  # for tenant containers on any engine of this machine
    bucket: str
    region: str = REGION
    access_key_id: str = ACCESS_KEY_ID
    secret_access_key: str = SECRET_ACCESS_KEY
    persistent: bool = False  # data lives in the container's memory


@dataclass(frozen=True)
class ObjectStoreStatus:
    container: str
    image: str
    state: str  # docker state: running, exited, ...
    host_endpoint: str | None
    tenant_endpoint: str | None
    started_at: str | None
    persistent: bool = False
    storage: str = "memory (lost when the container stops)"

    @property
    def running(self) -> bool:
        return self.state == "running"


def ensure_tenant_network(client: Any) -> str:
    """Create (or reuse) the tenants' bridge network on this engine; returns its name."""
    import docker.errors

    try:
        net = client.networks.get(NETWORK_NAME)
    except docker.errors.NotFound:
        net = client.networks.create(
            NETWORK_NAME,
            driver="bridge",
            options={"com.docker.network.bridge.enable_icc": "false"},
            labels={LABEL_MANAGED: "true"},
            check_duplicate=True,
        )
    opts = net.attrs.get("Options") or {}
    if opts.get("com.docker.network.bridge.enable_icc") != "false":
        raise FleetError(
            f"network {NETWORK_NAME!r} exists but lets containers talk to each other",
            f"remove it (docker network rm {NETWORK_NAME}) so litefleet can recreate it",
        )
    return str(net.name)


def network_gateway(client: Any, network: str = NETWORK_NAME) -> str:
    net = client.networks.get(network)
    for cfg in (net.attrs.get("IPAM") or {}).get("Config") or []:
        if cfg.get("Gateway"):
            return str(cfg["Gateway"]).split("/")[0]
    raise FleetError(f"network {network!r} has no gateway address")


STORE_OBJECT_BUFFER = 1024**3  # bytes an object may have before moto spools it to /tmp
STORE_MEMORY = "4g"  # every tenant's backup lives in this container's memory


def ensure_object_store(
    client: Any, *, bucket: str = "litefleet", port: int = 9000, image: str | None = None
) -> ObjectStore:
    """Start (or reuse) the embedded store, wait until it answers, create ``bucket``."""
    import docker.errors

    ensure_tenant_network(client)
    gateway = network_gateway(client)
    image = image or image_ref("s3")
    try:
        container = client.containers.get(CONTAINER_NAME)
    except docker.errors.NotFound:
        container = None
    if container is not None and not (
        _published_as(container, port, gateway) and _current_config(container)
    ):
        # Another port, a stale gateway or an older configuration: start over (its
        # memory-only data goes with it).
        container.remove(force=True)
        container = None
    if container is None:
        ensure_image(client, image)
        container = client.containers.create(
            image,
            name=CONTAINER_NAME,
            labels={LABEL_ROLE: ROLE_OBJECT_STORE, LABEL_MANAGED: "true"},
            network=NETWORK_NAME,
            ports={f"{STORE_PORT}/tcp": [("127.0.0.1", port), (gateway, port)]},
            # moto spools any object over MOTO_S3_DEFAULT_KEY_BUFFER_SIZE (5 MiB by
            # default) to /tmp; on a small tmpfs, Litestream's snapshot of a large
            # database then fails with "No space left on device". Keep objects in memory
            # (where this store's data lives anyway) and give it the room.
            environment={"MOTO_S3_DEFAULT_KEY_BUFFER_SIZE": str(STORE_OBJECT_BUFFER)},
            read_only=True,
            tmpfs={"/tmp": "rw,nosuid,nodev,size=64m"},
            cap_drop=["ALL"],
            security_opt=["no-new-privileges:true"],
            mem_limit=STORE_MEMORY,
            pids_limit=256,
            init=True,
            restart_policy={"Name": "unless-stopped"},
            log_config={"type": "json-file", "config": {"max-size": "10m", "max-file": "2"}},
            detach=True,
        )
    container.reload()
    if container.status != "running":
        container.start()
    store = ObjectStore(
        host_endpoint=f"http://127.0.0.1:{port}",
        tenant_endpoint=f"http://{gateway}:{port}",
        bucket=bucket,
    )
    _wait_ready(store)
    _ensure_bucket(store)
    return store


def object_store_status(client: Any) -> ObjectStoreStatus | None:
    """The store's container as the engine sees it; None when there is none."""
    import docker.errors

    try:
        c = client.containers.get(CONTAINER_NAME)
    except docker.errors.NotFound:
        return None
    ports = (c.attrs.get("HostConfig") or {}).get("PortBindings") or {}
    host_ep = tenant_ep = None
    for b in ports.get(f"{STORE_PORT}/tcp") or []:
        if b.get("HostIp") == "127.0.0.1":
            host_ep = f"http://127.0.0.1:{b['HostPort']}"
        elif b.get("HostIp"):
            tenant_ep = f"http://{b['HostIp']}:{b['HostPort']}"
    tags = c.image.tags if c.image is not None else []
    return ObjectStoreStatus(
        container=CONTAINER_NAME,
        image=tags[0] if tags else str(c.attrs.get("Config", {}).get("Image", "")),
        state=str(c.status),
        host_endpoint=host_ep,
        tenant_endpoint=tenant_ep,
        started_at=(c.attrs.get("State") or {}).get("StartedAt"),
    )


def remove_object_store(client: Any) -> bool:
    """Remove the store's container (and its data); False when there was none."""
    import docker.errors

    try:
        client.containers.get(CONTAINER_NAME).remove(force=True)
    except docker.errors.NotFound:
        return False
    return True


def s3_client(endpoint: str) -> Any:
    """boto3 S3 client for the embedded store at ``endpoint`` (its fixed credentials)."""
    from fleet.engine.container_spec import S3Target

    from .backups import s3_client as client_for

    target = S3Target(endpoint, "", REGION, ACCESS_KEY_ID, SECRET_ACCESS_KEY)
    return client_for(target, connect_timeout=2, read_timeout=10)


def _current_config(container: Any) -> bool:
    env = container.attrs.get("Config", {}).get("Env") or []
    return f"MOTO_S3_DEFAULT_KEY_BUFFER_SIZE={STORE_OBJECT_BUFFER}" in env


def _published_as(container: Any, port: int, gateway: str) -> bool:
    ports = (container.attrs.get("HostConfig") or {}).get("PortBindings") or {}
    have = {(b.get("HostIp"), b.get("HostPort")) for b in ports.get(f"{STORE_PORT}/tcp") or []}
    return have == {("127.0.0.1", str(port)), (gateway, str(port))}


def _wait_ready(store: ObjectStore) -> None:
    import botocore.exceptions

    s3 = s3_client(store.host_endpoint)
    deadline = time.monotonic() + _READY_TIMEOUT_S
    while True:
        try:
            s3.list_buckets()
            return
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError):
            if time.monotonic() >= deadline:
                raise ObjectStoreError(
                    f"the embedded object store did not answer at {store.host_endpoint} "
                    f"within {_READY_TIMEOUT_S:g}s",
                    f"`docker logs {CONTAINER_NAME}` shows why",
                ) from None
            time.sleep(0.2)


def _ensure_bucket(store: ObjectStore) -> None:
    s3 = s3_client(store.host_endpoint)
    names = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
    if store.bucket not in names:
        s3.create_bucket(Bucket=store.bucket)
