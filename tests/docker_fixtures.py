"""Pytest plugin: a real Docker engine, the embedded object store and tenant containers.

Loaded from tests/conftest.py (``pytest_plugins = ["tests.docker_fixtures"]``). Fixtures skip
with a reason when no engine answers or the images are missing (``make engine images``).
Tenant containers are created with ``container_config``, exactly as the fleet does.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from fleet.core.hosting import TenantSpec
from fleet.core.names import STORE_CONTAINER, image_ref
from fleet.engine.container_spec import container_config, published_port
from fleet.engine.network import ensure_tenant_network
from fleet.storage.embedded import EmbeddedStore as ObjectStore
from fleet.storage.embedded import client as s3_client
from fleet.storage.embedded import ensure_object_store
from fleet.supervisor.s3 import S3Settings

TEST_BUCKET = "litefleet-test"
LITESTREAM = str(Path(sys.executable).parent / "litestream")


@dataclass
class Tenant:
    name: str
    token: str
    volume: str
    container: Any

    @property
    def url(self) -> str:
        self.container.reload()
        port = published_port(self.container.attrs)
        if port is None:
            raise AssertionError(f"tenant {self.name} has no published port")
        return f"http://127.0.0.1:{port}"

    def http(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {self.token}"},
            trust_env=False,
            timeout=10.0,
        )

    def submit(self, workflow: str, inp: dict[str, Any]) -> str:
        """Start a run (201 expected); its id."""
        with self.http() as http:
            r = http.post("/v1/runs", json={"workflow": workflow, "input": inp})
            assert r.status_code == 201, r.text
            return str(r.json()["id"])

    def events(self, run_id: str) -> list[dict[str, Any]]:
        with self.http() as http:
            got: list[dict[str, Any]] = (
                http.get(f"/v1/runs/{run_id}/events").raise_for_status().json()["events"]
            )
            return got


@pytest.fixture(scope="session")
def docker_client() -> Iterator[Any]:
    docker = pytest.importorskip("docker")
    try:
        client = docker.from_env(timeout=30)
        client.ping()
    except Exception as exc:  # any failure means "no engine here"
        pytest.skip(f"no Docker engine answers ({type(exc).__name__}); run `make engine`")
    yield client
    client.close()


def _require_image(client: Any, image: str) -> str:
    import docker.errors

    try:
        client.images.get(image)
    except docker.errors.ImageNotFound:
        pytest.skip(f"image {image} is missing; run `make images`")
    return image


@pytest.fixture(scope="session")
def tenant_image(docker_client: Any) -> str:
    return _require_image(docker_client, image_ref("tenant"))


@pytest.fixture(scope="session")
def object_store(docker_client: Any) -> ObjectStore:
    """The embedded store (shared with anything else on this engine), with a test bucket."""
    _require_image(docker_client, image_ref("s3"))
    return the_store(docker_client, TEST_BUCKET)


def the_store(docker_client: Any, bucket: str) -> ObjectStore:
    """The embedded store the fleet CLI of the tests uses, with ``bucket``: FLEET_S3_CONTAINER
    / FLEET_S3_PORT, when set, name another one than the default (the CLI inherits them)."""
    return ensure_object_store(
        docker_client,
        bucket=bucket,
        name=os.environ.get("FLEET_S3_CONTAINER") or STORE_CONTAINER,
        port=int(os.environ.get("FLEET_S3_PORT") or 9000),
    )


@pytest.fixture(scope="session")
def tenant_s3(object_store: ObjectStore) -> S3Settings:
    """The S3 settings tenant containers are given (the store's admin key, as with
    FLEET_S3_CREDENTIALS=shared)."""
    return object_store.for_tenants()


@pytest.fixture
def start_tenant(
    docker_client: Any, tenant_image: str, tenant_s3: S3Settings
) -> Iterator[Callable[..., Tenant]]:
    """``start_tenant(name=None, volume=None, **config_overrides) -> Tenant`` (healthy).

    Containers and volumes it created are removed when the test ends.
    """
    import docker.errors

    network = ensure_tenant_network(docker_client)
    containers: list[Any] = []
    volumes: set[str] = set()

    def start(name: str | None = None, volume: str | None = None, **kw: Any) -> Tenant:
        name = name or f"t-{uuid.uuid4().hex[:10]}"
        volume = volume or f"litefleet-test-{name}-{uuid.uuid4().hex[:6]}"
        token = uuid.uuid4().hex
        volumes.add(volume)
        spec = TenantSpec(
            tenant=name,
            image=tenant_image,
            volume=volume,
            s3=tenant_s3,
            token=token,
            name=f"litefleet-test-{name}-{uuid.uuid4().hex[:6]}",
            labels={"litefleet.test": "true"},
            **kw,
        )
        cfg = container_config(spec, network)
        container = docker_client.containers.create(**cfg)
        containers.append(container)
        container.start()
        tenant = Tenant(name=name, token=token, volume=volume, container=container)
        wait_healthy(tenant)
        return tenant

    yield start
    for c in containers:
        with contextlib.suppress(docker.errors.NotFound):
            c.remove(force=True)
    for v in volumes:
        with contextlib.suppress(docker.errors.NotFound):
            docker_client.volumes.get(v).remove(force=True)


def wait_healthy(tenant: Tenant, timeout: float = 60.0) -> float:
    """Poll /healthz on the loopback port; returns the seconds it took."""
    t0 = time.monotonic()
    while True:
        tenant.container.reload()
        if tenant.container.status in ("exited", "dead"):
            logs = tenant.container.logs(tail=30).decode(errors="replace")
            raise AssertionError(f"tenant {tenant.name} exited during start:\n{logs}")
        port = published_port(tenant.container.attrs)
        if port is not None:
            try:
                with httpx.Client(trust_env=False, timeout=1.0) as http:
                    if http.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                        return time.monotonic() - t0
            except httpx.HTTPError:
                pass
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"tenant {tenant.name} not healthy after {timeout:g}s")
        time.sleep(0.05)


def wait_run(http: httpx.Client, run_id: str, timeout: float = 30.0) -> dict[str, Any]:
    """Poll a run until it is terminal; returns it."""
    deadline = time.monotonic() + timeout
    while True:
        run: dict[str, Any] = http.get(f"/v1/runs/{run_id}").raise_for_status().json()
        if run["status"] in ("completed", "failed", "cancelled"):
            return run
        if time.monotonic() > deadline:
            raise AssertionError(f"run {run_id} still {run['status']} after {timeout:g}s")
        time.sleep(0.05)


def replica_keys(store: ObjectStore, tenant: str) -> list[str]:
    s3 = s3_client(store)
    keys: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(
        Bucket=store.bucket, Prefix=f"tenants/{tenant}/"
    ):
        keys.extend(o["Key"] for o in page.get("Contents", []))
    return keys


def litestream_restore(
    store: ObjectStore, tenant: str, out: Path
) -> subprocess.CompletedProcess[str]:
    """Restore a tenant with the plain litestream binary and a hand-written config.

    No project code is involved; litestream gets an explicit environment (no AWS_CA_BUNDLE).
    """
    cfg = out.parent / f"{out.name}.litestream.yml"
    cfg.write_text(
        "dbs:\n"
        f"  - path: {out}\n"
        "    replica:\n"
        "      type: s3\n"
        f"      bucket: {store.bucket}\n"
        f"      path: tenants/{tenant}\n"
        f"      endpoint: {store.host_endpoint}\n"
        f"      region: {store.region}\n"
        "      force-path-style: true\n"
    )
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(out.parent),
        "LITESTREAM_ACCESS_KEY_ID": store.access_key_id,
        "LITESTREAM_SECRET_ACCESS_KEY": store.secret_access_key,
    }
    for p in (out, Path(f"{out}-wal"), Path(f"{out}-shm")):
        p.unlink(missing_ok=True)
    return subprocess.run(
        [LITESTREAM, "restore", "-config", str(cfg), str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def query(db: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    import apsw

    conn = apsw.Connection(str(db), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        return list(conn.execute(sql, params))
    finally:
        conn.close()
