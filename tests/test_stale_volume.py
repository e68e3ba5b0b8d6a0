"""A volume that is behind the backup must not rewind it (one writer, the replica is truth).

An old copy of a tenant's volume (a host that comes back after a restore elsewhere, a
rolled-back migration, a restored tarball) holds an older database. Started as is, Litestream
would carry on from it and the backup would lose the newer runs. The entrypoint keeps such a
database aside and restores from the replica instead.
"""

from __future__ import annotations

import contextlib
import uuid
from typing import Any

import pytest

from tests.docker_fixtures import Tenant, wait_run

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def _run(tenant: Tenant, message: str) -> str:
    with tenant.http() as http:
        r = http.post("/v1/runs", json={"workflow": "echo", "input": {"message": message}})
        assert r.status_code == 201, r.text
        run_id = str(r.json()["id"])
        assert wait_run(http, run_id)["status"] == "completed"
        return run_id


def _copy_volume(docker_client: Any, image: str, src: str, dst: str) -> None:
    docker_client.containers.run(
        image,
        entrypoint=["sh", "-c", "cp -a /src/. /dst/ && chown 10001:10001 /dst"],
        user="0",
        volumes={src: {"bind": "/src", "mode": "ro"}, dst: {"bind": "/dst", "mode": "rw"}},
        remove=True,
    )


def test_a_volume_behind_the_replica_is_set_aside(
    docker_client: Any, tenant_image: str, start_tenant: Any
) -> None:
    name = f"stale-{uuid.uuid4().hex[:8]}"
    current = f"litefleet-test-{name}-current"
    old = f"litefleet-test-{name}-old"
    try:
        first = start_tenant(name=name, volume=current)
        r1 = _run(first, "one")
        first.container.stop(timeout=30)  # final sync; the lease is released
        _copy_volume(docker_client, tenant_image, current, old)  # the copy that falls behind

        again = start_tenant(name=name, volume=current)
        r2, r3 = _run(again, "two"), _run(again, "three")
        again.container.stop(timeout=30)

        revived = start_tenant(name=name, volume=old)  # the stale copy comes back
        with revived.http() as http:
            ids = {r["id"] for r in http.get("/v1/runs").json()["runs"]}
        assert {r1, r2, r3} <= ids, "runs committed after the copy were lost"
        logs = revived.container.logs().decode()
        assert "behind the replica" in logs
    finally:
        with contextlib.suppress(Exception):
            docker_client.volumes.get(old).remove(force=True)
