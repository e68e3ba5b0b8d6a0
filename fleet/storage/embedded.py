"""The embedded object store: moto's S3 server in container ``litefleet-s3`` on the first host.

Its data lives in memory only: removing or restarting the container loses every replica.
It is for development, tests and demos; production sets FLEET_S3_ENDPOINT to real storage.

Network design (checked on Docker 20.10 here, with a second dockerd on its own bridge):
- The store joins the tenants' ``litefleet`` network on its own engine (fleet/engine/network.py)
  and is published on 127.0.0.1:PORT (for the CLI) and on that network's gateway IP:PORT (for
  tenants). Tenants connect to the gateway IP, which is a host address: a tenant on the same
  bridge is served by docker-proxy, a tenant on another bridge or another engine's bridge is
  DNAT-ed to the store. Both were verified.
- Nothing is published on 0.0.0.0: the store does not answer on the host's external
  interfaces (verified: no answer on eth0's address).
The tenant endpoint is therefore ``http://<gateway of litefleet on the store's engine>:PORT``
for tenants on every engine of this machine.

It runs as a container, so this module uses fleet/engine (storage may import engine; engine
never imports storage).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from fleet.core.errors import ObjectStoreError
from fleet.core.names import (
    DEFAULT_BUCKET,
    DEFAULT_REGION,
    EMBEDDED_ACCESS_KEY_ID,
    EMBEDDED_SECRET_ACCESS_KEY,
    LABEL_MANAGED,
    LABEL_ROLE,
    NETWORK,
    ROLE_OBJECT_STORE,
    STORE_CONTAINER,
    STORE_PORT,
    image_ref,
)
from fleet.engine.images import ensure_image
from fleet.engine.network import ensure_tenant_network, network_gateway
from fleet.supervisor.s3 import S3Settings

from .s3 import client as s3_client

CONTAINER_NAME = STORE_CONTAINER
_READY_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class EmbeddedStore:
    """A running embedded store."""

    host_endpoint: str  # for the CLI on this machine, e.g. http://127.0.0.1:9000
    tenant_endpoint: str  # for tenant containers on any engine of this machine
    bucket: str
    region: str = DEFAULT_REGION
    access_key_id: str = EMBEDDED_ACCESS_KEY_ID
    secret_access_key: str = field(default=EMBEDDED_SECRET_ACCESS_KEY, repr=False)
    persistent: bool = False  # data lives in the container's memory

    def for_fleet(self) -> S3Settings:
        return _settings(self.host_endpoint, self.bucket)

    def for_tenants(self) -> S3Settings:
        return _settings(self.tenant_endpoint, self.bucket)


def _settings(endpoint: str, bucket: str) -> S3Settings:
    """The embedded store takes any credentials; these are the ones it was set up with."""
    return S3Settings(
        endpoint, bucket, DEFAULT_REGION, EMBEDDED_ACCESS_KEY_ID, EMBEDDED_SECRET_ACCESS_KEY
    )


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


STORE_OBJECT_BUFFER = 1024**3  # bytes an object may have before moto spools it to /tmp
STORE_MEMORY = "4g"  # every tenant's backup lives in this container's memory


def ensure_object_store(
    client: Any, *, bucket: str = DEFAULT_BUCKET, port: int = 9000, image: str | None = None
) -> EmbeddedStore:
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
            network=NETWORK,
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
    store = EmbeddedStore(
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


def client(endpoint: str) -> Any:
    """boto3 S3 client for the embedded store at ``endpoint`` (its fixed credentials)."""
    return s3_client(_settings(endpoint, ""), connect_timeout=2, read_timeout=10)


def _current_config(container: Any) -> bool:
    env = container.attrs.get("Config", {}).get("Env") or []
    return f"MOTO_S3_DEFAULT_KEY_BUFFER_SIZE={STORE_OBJECT_BUFFER}" in env


def _published_as(container: Any, port: int, gateway: str) -> bool:
    ports = (container.attrs.get("HostConfig") or {}).get("PortBindings") or {}
    have = {(b.get("HostIp"), b.get("HostPort")) for b in ports.get(f"{STORE_PORT}/tcp") or []}
    return have == {("127.0.0.1", str(port)), (gateway, str(port))}


def _wait_ready(store: EmbeddedStore) -> None:
    import botocore.exceptions

    s3 = client(store.host_endpoint)
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


def _ensure_bucket(store: EmbeddedStore) -> None:
    s3 = client(store.host_endpoint)
    names = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
    if store.bucket not in names:
        s3.create_bucket(Bucket=store.bucket)
