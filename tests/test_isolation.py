"""Issue 11, item 1, from inside a tenant: agent code (a workflow of tenant A, never a
`docker exec`: see environment.md) tries to reach what belongs to the keeper and Litestream
(their environment and memory, signals, Litestream's tracking state, the lease gate, their
executables, capabilities). Every attempt must fail, and A's replication must still work.
(Object-store keys and the network: tests/test_isolation_storage.py and
tests/test_isolation_network.py.)"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import apsw
import pytest

from tests.docker_fixtures import litestream_restore, query, wait_run
from tests.healing_support import OwnStore, Tenants, host_pids, own_store, until

pytestmark = pytest.mark.docker


@pytest.fixture
def store(docker_client: Any) -> Iterator[OwnStore]:
    with own_store(docker_client, bucket="isolation") as s:
        yield s


@pytest.fixture
def tenants(docker_client: Any, tenant_image: str, store: OwnStore) -> Iterator[Tenants]:
    t = Tenants(docker_client, tenant_image, store.for_tenants)
    yield t
    t.cleanup()


def test_agent_code_cannot_touch_the_keeper_or_litestream(
    tenants: Tenants, store: OwnStore, tmp_path: Path
) -> None:
    tenant = tenants.start("probe_app.py")
    pids = host_pids(tenant.container)
    with tenant.http() as http:
        r = http.post("/v1/runs", json={"workflow": "attack", "input": None})
        assert r.status_code == 201, r.text
        run = wait_run(http, r.json()["id"], timeout=60)
    assert run["status"] == "completed", run
    found = run["result"]
    # The runtime runs as a uid of its own, in no group of the keeper's, without capabilities.
    assert (found["uid"], found["gid"], found["groups"]) == (10002, 10002, [])
    assert set(found["capabilities"].values()) == {"0000000000000000"}, found["capabilities"]
    allowed = {k: v for k, v in found["attempts"].items() if not v.startswith("denied")}
    assert not allowed, allowed
    assert len(found["attempts"]) >= 40

    # Nothing was stopped, killed or replaced, and A's own replication works.
    assert host_pids(tenant.container) == pids
    with tenant.http() as http:
        r = http.post("/v1/runs", json={"workflow": "after", "input": {"n": 3}})
        run_id = r.json()["id"]
        assert wait_run(http, run_id)["status"] == "completed"
    out = tmp_path / "a.db"

    def replicated() -> bool:
        if litestream_restore(store, tenant.name, out).returncode != 0:
            return False
        try:
            return query(out, "SELECT status FROM runs WHERE id = ?", run_id) == [("completed",)]
        except apsw.SQLError:
            return False

    until(replicated, 60, "A's run in the replica", every=1.0)
    assert query(out, "PRAGMA integrity_check") == [("ok",)]
