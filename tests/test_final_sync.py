"""A stop whose final sync never reached object storage is reported, not hidden."""

from __future__ import annotations

import contextlib
import time
import uuid
from typing import Any

import httpx
import pytest

from fleet.core.hosting import TenantSpec
from fleet.engine.container_spec import container_config, published_port
from fleet.engine.docker_hosting import DockerHosting, tenant_of
from fleet.engine.hosts import Host
from fleet.engine.network import ensure_tenant_network
from fleet.storage import embedded
from fleet.storage.final_sync import FinalSyncFailed, check_final_sync
from tests.fleet_support import free_port

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def _wait(url: str, ok: Any, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if ok(httpx.get(url, timeout=2, trust_env=False)):
                return
        time.sleep(0.2)
    raise AssertionError(f"{url} did not answer in time")


def test_down_reports_a_failed_final_sync(docker_client: Any, tenant_image: str) -> None:
    suffix = uuid.uuid4().hex[:8]
    network = ensure_tenant_network(docker_client)
    store_name = f"litefleet-test-s3-{suffix}"
    container = None
    volume = f"litefleet-test-sync-{suffix}"
    try:
        store_at = embedded.ensure_object_store(
            docker_client, bucket="sync-test", port=free_port(), name=store_name
        )
        token = uuid.uuid4().hex
        spec = TenantSpec(
            tenant=f"sync-{suffix}",
            image=tenant_image,
            volume=volume,
            s3=store_at.for_tenants(),
            token=token,
            name=f"litefleet-test-sync-{suffix}",
        )
        container = docker_client.containers.create(**container_config(spec, network))
        container.start()
        container.reload()
        url = f"http://127.0.0.1:{published_port(container.attrs)}"
        _wait(f"{url}/healthz", lambda r: r.status_code == 200)
        auth = {"Authorization": f"Bearer {token}"}
        r = httpx.post(
            f"{url}/v1/runs",
            json={"workflow": "echo", "input": {"message": "a"}},
            headers=auth,
            trust_env=False,
        )
        assert r.status_code == 201
        time.sleep(2)  # replicated while the store is up
        embedded.remove_object_store(docker_client, store_name)  # the store goes away...
        r = httpx.post(
            f"{url}/v1/runs",
            json={"workflow": "echo", "input": {"message": "b"}},
            headers=auth,
            trust_env=False,
        )
        assert r.status_code == 201  # ...while the tenant keeps committing locally
        hosting = DockerHosting([Host("local", None, docker_client)], tenant_image)
        stopped = hosting.stop(tenant_of("local", container), timeout=60)
        with pytest.raises(FinalSyncFailed, match="final sync to object storage failed"):
            check_final_sync(f"sync-{suffix}", stopped, timeout=60)
    finally:
        if container is not None:
            with contextlib.suppress(Exception):
                container.remove(force=True)
        embedded.remove_object_store(docker_client, store_name)
        with contextlib.suppress(Exception):
            docker_client.volumes.get(volume).remove(force=True)
