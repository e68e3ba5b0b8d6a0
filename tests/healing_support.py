"""What the self-healing and isolation tests share: an object store of their own that a
firewall rule can cut off (never the shared `litefleet-s3`), tenants with an app file of the
test's own, and ways to look at a tenant from the host.

- ``own_store``: a moto server on the tenants' bridge gateway address and a free port, so
  tenants reach it as they reach the embedded store, and the test can drop their packets to
  it (``cut_off``: one iptables rule on that bridge and port, removed in a ``finally``)
  without touching anybody else's traffic.
- ``Tenants``: creates tenant containers exactly as the fleet does (``container_config``),
  optionally with an app file put into the volume before start (the runtime's loader takes a
  file path), and removes what it created.
"""

from __future__ import annotations

import contextlib
import io
import subprocess
import tarfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

from fleet.core.hosting import TenantSpec
from fleet.engine.container_spec import container_config
from fleet.engine.network import ensure_tenant_network, network_gateway
from fleet.supervisor.s3 import S3Settings
from tests.docker_fixtures import Tenant, wait_healthy
from tests.fleet_support import free_port
from tests.moto_support import MOTO, clean_env

APPS = Path(__file__).parent / "apps"


class OwnStore:
    def __init__(self, gateway: str, port: int, bridge: str, bucket: str) -> None:
        self.gateway, self.port, self.bridge, self.bucket = gateway, port, bridge, bucket

    @property
    def for_tenants(self) -> S3Settings:
        return S3Settings(f"http://{self.gateway}:{self.port}", self.bucket, "us-east-1", "k", "s")

    @property
    def for_host(self) -> S3Settings:
        return self.for_tenants  # the host reaches its own bridge address through loopback

    # what tests.docker_fixtures.litestream_restore reads
    host_endpoint = property(lambda self: self.for_host.endpoint)
    region = "us-east-1"
    access_key_id = "k"
    secret_access_key = "s"


@contextlib.contextmanager
def own_store(docker_client: Any, bucket: str = "healing") -> Iterator[OwnStore]:
    network = docker_client.networks.get(ensure_tenant_network(docker_client))
    gateway = network_gateway(docker_client, network.name)
    bridge = f"br-{network.id[:12]}"
    port = free_port()
    proc = subprocess.Popen(
        [MOTO, "-H", gateway, "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**clean_env(), "MOTO_S3_DEFAULT_KEY_BUFFER_SIZE": str(64 << 20)},
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with httpx.Client(trust_env=False) as h:
                    h.put(f"http://{gateway}:{port}/{bucket}").raise_for_status()
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "moto_server did not start"
                time.sleep(0.2)
        yield OwnStore(gateway, port, bridge, bucket)
    finally:
        proc.terminate()
        proc.wait(10)


def _iptables(*args: str) -> None:
    subprocess.run(["iptables", *args], check=True, capture_output=True)


@contextlib.contextmanager
def cut_off(store: OwnStore) -> Iterator[None]:
    """Drop every packet tenants send to ``store`` (nothing else), until the block ends."""
    rule = ["INPUT", "-i", store.bridge, "-p", "tcp", "--dport", str(store.port), "-j", "DROP"]
    _iptables("-I", *rule)
    try:
        yield
    finally:
        _iptables("-D", *rule)


def app_archive(source: Path, name: str) -> bytes:
    """A tar of one app file for ``put_archive`` into /data (the keeper's, world-readable:
    agent code may read it, not change it)."""
    data = source.read_bytes()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.uid, info.gid = len(data), 0o644, 10001, 10002
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


class Tenants:
    """Creates tenant containers on ``docker_client`` as the fleet does; removes them."""

    def __init__(self, docker_client: Any, image: str, s3: S3Settings) -> None:
        self.client, self.image, self.s3 = docker_client, image, s3
        self.containers: list[Any] = []
        self.volumes: set[str] = set()

    def create(
        self,
        app: str | None = None,
        lease_ttl: float | None = None,
        volume: str | None = None,
        **kw: Any,
    ) -> Tenant:
        name = f"t-{uuid.uuid4().hex[:10]}"
        volume = volume or f"litefleet-test-{name}"
        self.volumes.add(volume)
        env = dict(kw.pop("env", {}))
        labels = {"litefleet.test": "true", **kw.pop("labels", {})}
        if lease_ttl is not None:
            env.update(LITEFLEET_LEASE_TTL=str(lease_ttl), LITEFLEET_LEASE_RENEW=str(lease_ttl / 3))
        spec = TenantSpec(
            tenant=name,
            image=self.image,
            volume=volume,
            s3=self.s3,
            token=uuid.uuid4().hex,
            name=f"litefleet-test-{name}",
            labels=labels,
            app=f"/data/{Path(app).name}" if app else "agent_runtime.examples",
            env=env,
            **kw,
        )
        container = self.client.containers.create(
            **container_config(spec, ensure_tenant_network(self.client))
        )
        self.containers.append(container)
        if app:
            container.put_archive("/data", app_archive(APPS / app, Path(app).name))
        return Tenant(name=name, token=spec.token, volume=volume, container=container)

    def start(self, app: str | None = None, **kw: Any) -> Tenant:
        tenant = self.create(app, **kw)
        tenant.container.start()
        wait_healthy(tenant, timeout=90)
        return tenant

    def cleanup(self) -> None:
        import docker.errors

        for c in self.containers:
            with contextlib.suppress(docker.errors.NotFound):
                c.remove(force=True)
        for v in self.volumes:
            with contextlib.suppress(docker.errors.NotFound):
                self.client.volumes.get(v).remove(force=True)


def until(ok: Callable[[], Any], timeout: float, what: str, every: float = 0.2) -> Any:
    """Poll ``ok()`` until it returns something truthy; its value."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(httpx.HTTPError, OSError, KeyError, ValueError):
            value = ok()
            if value:
                return value
        assert time.monotonic() < deadline, f"{what}: not within {timeout:g}s"
        time.sleep(every)


def host_pids(container: Any) -> dict[str, int]:
    """role -> host pid of a tenant's processes (keeper, runner, litestream, runtime)."""
    from tests.test_tenant_container import processes

    return {role: pid for role, (pid, _) in processes(container).items()}


def state_of(container: Any) -> dict[str, Any]:
    """The supervisor's state file (as the fleet's probe reads it)."""
    import json

    code, out = container.exec_run(["cat", "/run/litefleet/state.json"], user="10001:10001")
    assert code == 0, out
    data: dict[str, Any] = json.loads(out)
    return data
