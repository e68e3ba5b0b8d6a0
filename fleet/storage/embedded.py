"""The embedded object store: moto's S3 and IAM server in a container (``litefleet-s3``, or
FLEET_S3_CONTAINER) on the first host, checking every request's credentials.

Its data lives in memory only: removing or restarting the container loses every replica.
It is for development, tests and demos; production sets FLEET_S3_ENDPOINT to real storage.

Credentials (images/s3/serve.py): no request is anonymous. When the fleet creates the
container it makes a random admin key and passes it in the container's environment; the
server installs it before it listens, and the fleet reads it back from the engine on every
command (as it reads tenant tokens), so it is kept nowhere else and never printed. Tenants get
keys of their own through the store's IAM API (fleet/storage/credentials.py).

A store created by an older fleet checks no credentials. It is replaced, like a store on
another port or gateway, but only while it holds nothing: one that holds objects is refused
with one line saying what would be lost (its data is in memory, so replacing it would delete
every backup in it).

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

import secrets
import string
import time
from dataclasses import dataclass, field
from typing import Any

from fleet.core.errors import ObjectStoreError
from fleet.core.names import (
    DEFAULT_BUCKET,
    DEFAULT_REGION,
    ENV_STORE_ADMIN_KEY_ID,
    ENV_STORE_ADMIN_SECRET,
    LABEL_MANAGED,
    LABEL_ROLE,
    NETWORK,
    ROLE_OBJECT_STORE,
    STORE_CONTAINER,
    STORE_PORT,
    UNCHECKED_ACCESS_KEY_ID,
    UNCHECKED_SECRET_ACCESS_KEY,
    image_ref,
)
from fleet.engine.images import ensure_image
from fleet.engine.network import ensure_tenant_network, network_gateway
from fleet.supervisor.s3 import S3Settings

from .s3 import client as s3_client

_READY_TIMEOUT_S = 90.0  # moto imports S3 and IAM first: tens of seconds on a loaded host
STORE_OBJECT_BUFFER = 1024**3  # bytes an object may have before moto spools it to /tmp
STORE_MEMORY = "4g"  # every tenant's backup lives in this container's memory
_BUFFER_ENV = "MOTO_S3_DEFAULT_KEY_BUFFER_SIZE"


@dataclass(frozen=True)
class EmbeddedStore:
    """A running embedded store and its admin key."""

    host_endpoint: str  # for the CLI on this machine, e.g. http://127.0.0.1:9000
    tenant_endpoint: str  # for tenant containers on any engine of this machine
    bucket: str
    access_key_id: str = UNCHECKED_ACCESS_KEY_ID
    secret_access_key: str = field(default=UNCHECKED_SECRET_ACCESS_KEY, repr=False)
    checks_credentials: bool = True  # False: made by an older fleet, any key works
    region: str = DEFAULT_REGION
    persistent: bool = False  # data lives in the container's memory

    def for_fleet(self) -> S3Settings:
        return self._settings(self.host_endpoint)

    def for_tenants(self) -> S3Settings:
        """The admin key at the tenants' endpoint: what every tenant holds with
        FLEET_S3_CREDENTIALS=shared."""
        return self._settings(self.tenant_endpoint)

    def _settings(self, endpoint: str) -> S3Settings:
        return S3Settings(
            endpoint, self.bucket, self.region, self.access_key_id, self.secret_access_key
        )


@dataclass(frozen=True)
class ObjectStoreStatus:
    container: str
    image: str
    state: str  # docker state: running, exited, ...
    host_endpoint: str | None
    tenant_endpoint: str | None
    started_at: str | None
    checks_credentials: bool
    persistent: bool = False
    storage: str = "memory (lost when the container stops)"

    @property
    def running(self) -> bool:
        return self.state == "running"


def ensure_object_store(
    client: Any,
    *,
    bucket: str = DEFAULT_BUCKET,
    port: int = 9000,
    name: str = STORE_CONTAINER,
    image: str | None = None,
) -> EmbeddedStore:
    """Start (or reuse) the embedded store, wait until it answers, create ``bucket``."""
    ensure_tenant_network(client)
    gateway = network_gateway(client)
    container = _container(client, name)
    if container is not None:
        why = _outdated(container, port, gateway)
        if why is not None:
            _remove_if_empty(container, why)
            container = None
    if container is None:
        container = _create(client, name, image or image_ref("s3"), port, gateway)
    container.reload()
    if container.status != "running":
        container.start()
        container.reload()
    store = _store_of(container, bucket)
    _wait_ready(store, name)
    _ensure_bucket(store)
    return store


def running_object_store(client: Any, name: str, bucket: str) -> EmbeddedStore:
    """The store as it runs now; ObjectStoreError when it does not."""
    container = _container(client, name)
    if container is None or container.status != "running":
        raise ObjectStoreError(
            "the embedded object store is not running", "`fleet s3 up` starts it"
        )
    return _store_of(container, bucket)


def object_store_status(client: Any, name: str = STORE_CONTAINER) -> ObjectStoreStatus | None:
    """The store's container as the engine sees it; None when there is none."""
    c = _container(client, name)
    if c is None:
        return None
    host_ep, tenant_ep = _endpoints(c)
    tags = c.image.tags if c.image is not None else []
    return ObjectStoreStatus(
        container=name,
        image=tags[0] if tags else str(c.attrs.get("Config", {}).get("Image", "")),
        state=str(c.status),
        host_endpoint=host_ep,
        tenant_endpoint=tenant_ep,
        started_at=(c.attrs.get("State") or {}).get("StartedAt"),
        checks_credentials=ENV_STORE_ADMIN_KEY_ID in _env(c),
    )


def remove_object_store(client: Any, name: str = STORE_CONTAINER) -> bool:
    """Remove the store's container (and its data); False when there was none."""
    c = _container(client, name)
    if c is None:
        return False
    c.remove(force=True)
    return True


def client(store: EmbeddedStore) -> Any:
    """boto3 S3 client for ``store`` from this machine, with its admin key."""
    return s3_client(store.for_fleet(), connect_timeout=2, read_timeout=10)


def new_admin_key() -> tuple[str, str]:
    """A random key in AWS's shapes (20-character id starting AKIA, 40-character secret)."""
    alphabet = string.ascii_uppercase + string.digits
    key_id = "AKIA" + "".join(secrets.choice(alphabet) for _ in range(16))
    return key_id, secrets.token_urlsafe(30)


def _container(client: Any, name: str) -> Any:
    import docker.errors

    try:
        return client.containers.get(name)
    except docker.errors.NotFound:
        return None


def _create(client: Any, name: str, image: str, port: int, gateway: str) -> Any:
    ensure_image(client, image)
    key_id, secret = new_admin_key()
    return client.containers.create(
        image,
        name=name,
        labels={LABEL_ROLE: ROLE_OBJECT_STORE, LABEL_MANAGED: "true"},
        network=NETWORK,
        ports={f"{STORE_PORT}/tcp": [("127.0.0.1", port), (gateway, port)]},
        # moto spools any object over MOTO_S3_DEFAULT_KEY_BUFFER_SIZE (5 MiB by
        # default) to /tmp; on a small tmpfs, Litestream's snapshot of a large
        # database then fails with "No space left on device". Keep objects in memory
        # (where this store's data lives anyway) and give it the room.
        environment={
            _BUFFER_ENV: str(STORE_OBJECT_BUFFER),
            ENV_STORE_ADMIN_KEY_ID: key_id,
            ENV_STORE_ADMIN_SECRET: secret,
        },
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


def _env(container: Any) -> dict[str, str]:
    items = container.attrs.get("Config", {}).get("Env") or []
    return dict(e.partition("=")[::2] for e in items)


def _store_of(container: Any, bucket: str) -> EmbeddedStore:
    host_ep, tenant_ep = _endpoints(container)
    if host_ep is None:
        raise ObjectStoreError(
            f"the embedded object store ({container.name}) is not published on 127.0.0.1",
            "`fleet s3 down` and `fleet s3 up` recreate it (its data is lost: memory only)",
        )
    env = _env(container)
    if ENV_STORE_ADMIN_KEY_ID not in env:
        return EmbeddedStore(host_ep, tenant_ep or host_ep, bucket, checks_credentials=False)
    return EmbeddedStore(
        host_ep,
        tenant_ep or host_ep,
        bucket,
        env[ENV_STORE_ADMIN_KEY_ID],
        env.get(ENV_STORE_ADMIN_SECRET, ""),
    )


def _endpoints(container: Any) -> tuple[str | None, str | None]:
    """(for this machine, for tenants) from the container's published ports."""
    ports = (container.attrs.get("HostConfig") or {}).get("PortBindings") or {}
    host_ep = tenant_ep = None
    for b in ports.get(f"{STORE_PORT}/tcp") or []:
        if b.get("HostIp") == "127.0.0.1":
            host_ep = f"http://127.0.0.1:{b['HostPort']}"
        elif b.get("HostIp"):
            tenant_ep = f"http://{b['HostIp']}:{b['HostPort']}"
    return host_ep, tenant_ep


def _outdated(container: Any, port: int, gateway: str) -> str | None:
    """Why the existing store cannot be used as it is; None when it can."""
    ports = (container.attrs.get("HostConfig") or {}).get("PortBindings") or {}
    have = {(b.get("HostIp"), b.get("HostPort")) for b in ports.get(f"{STORE_PORT}/tcp") or []}
    if have != {("127.0.0.1", str(port)), (gateway, str(port))}:
        return f"it is published elsewhere than port {port} on 127.0.0.1 and {gateway}"
    env = _env(container)
    if ENV_STORE_ADMIN_KEY_ID not in env:
        return "it was made by an older fleet and checks no credentials"
    if env.get(_BUFFER_ENV) != str(STORE_OBJECT_BUFFER):
        return "it was made with an older configuration"
    return None


def _remove_if_empty(container: Any, why: str) -> None:
    """Replace a store that holds nothing; refuse (one line) to delete one that holds data."""
    held = _objects_held(container) if container.status == "running" else 0
    if held:
        raise ObjectStoreError(
            f"the embedded object store ({container.name}) must be recreated because {why}, "
            f"but it holds {'at least ' if held >= 1000 else ''}{held} object(s) in memory "
            "that recreating it would delete",
            "copy what you need first (`fleet pull`), then `fleet s3 down` and `fleet up` "
            "again (tenants restore from a backup only if one exists)",
        )
    container.remove(force=True)


def _objects_held(container: Any) -> int:
    """Objects in every bucket of a running store (at most 1000 counted); 0 when it does not
    answer (then nothing can be read from it either)."""
    import botocore.exceptions

    try:
        store = _store_of(container, "")
        s3 = client(store)
        held = 0
        for b in s3.list_buckets().get("Buckets", []):
            held += int(s3.list_objects_v2(Bucket=b["Name"], MaxKeys=1000).get("KeyCount", 0))
            if held >= 1000:
                break
        return held
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError, ObjectStoreError):
        return 0


def _wait_ready(store: EmbeddedStore, name: str) -> None:
    import botocore.exceptions

    s3 = client(store)
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
                    f"`docker logs {name}` shows why",
                ) from None
            time.sleep(0.2)


def _ensure_bucket(store: EmbeddedStore) -> None:
    s3 = client(store)
    names = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
    if store.bucket not in names:
        s3.create_bucket(Bucket=store.bucket)
