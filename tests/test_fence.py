"""One writer per tenant on real engines: a second `up` elsewhere is refused, a direct second
container waits and gives up, --force-takeover stops the old holder without a final sync and
the backup stays restorable. (The lease itself: tests/test_supervisor_lease.py.)"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from fleet.supervisor import exits
from tests.fleet_support import Result, fleet, one_line_error

# -- on real engines


def _ok(r: Result) -> Result:
    assert r.code == 0, f"exit {r.code}\nstdout: {r.out}\nstderr: {r.err}"
    return r


@pytest.mark.docker
def test_fence_on_two_hosts(
    two_hosts: dict[str, str], second_engine: str, object_store: Any, tmp_path: Path
) -> None:
    import docker

    from fleet.core.hosting import TenantSpec
    from fleet.engine.container_spec import container_config
    from fleet.engine.network import ensure_tenant_network
    from fleet.supervisor.s3 import S3Settings

    env = two_hosts
    t = f"h-{uuid.uuid4().hex[:8]}"
    # An operator who only sees host b (and the same object storage, as an external endpoint).
    only_b = {
        **env,
        "FLEET_HOSTS": env["FLEET_HOSTS"].split(",")[1],
        "FLEET_S3_ENDPOINT": object_store.host_endpoint,
        "FLEET_S3_TENANT_ENDPOINT": object_store.tenant_endpoint,
        "FLEET_S3_ACCESS_KEY_ID": object_store.access_key_id,
        "FLEET_S3_SECRET_ACCESS_KEY": object_store.secret_access_key,
    }
    try:
        _ok(fleet("up", t, "--host", "a", env=env))
        ids = [
            json.loads(_ok(fleet("run", t, "echo", "-i", '{"message": "x"}', "--json", "--wait",
                                 env=env)).out)["id"]
            for _ in range(3)
        ]  # fmt: skip

        # The fleet refuses a second `up` of the live tenant elsewhere: one line, exit 8.
        r = fleet("up", t, env=only_b)
        assert r.code == 8 and "lease" in one_line_error(r) and "host a" in r.err

        # A container started behind the fleet's back (here on host a, which has the image) is
        # fenced by its own keeper: it watches the lease (2 s here), sees it renewed, and stays
        # down (exit 0: the engine's restart policy leaves it stopped).
        b = docker.DockerClient(second_engine)
        a = docker.from_env()
        tenant_env = dict(
            e.partition("=")[::2] for e in a.containers.get(f"litefleet-{t}").attrs["Config"]["Env"]
        )
        s3 = S3Settings(
            tenant_env["LITEFLEET_S3_ENDPOINT"],
            tenant_env["LITEFLEET_S3_BUCKET"],
            tenant_env["LITEFLEET_S3_REGION"],
            tenant_env["LITESTREAM_ACCESS_KEY_ID"],
            tenant_env["LITESTREAM_SECRET_ACCESS_KEY"],
        )
        rogue = a.containers.create(
            **container_config(
                TenantSpec(
                    tenant=t,
                    image=env["FLEET_IMAGE"],
                    volume=f"rogue-{t}",
                    s3=s3,
                    token="x",
                    name=f"rogue-{t}",
                    env={"LITEFLEET_LEASE_WAIT": "2"},
                ),
                ensure_tenant_network(a),
            )
        )
        rogue.start()
        assert rogue.wait(timeout=60)["StatusCode"] == exits.DOWN
        assert "stopped: the tenant is live elsewhere" in rogue.logs().decode()
        rogue.remove(force=True)
        a.volumes.get(f"rogue-{t}").remove(force=True)

        # --force-takeover: the old holder stops replicating at once, without a final sync.
        # (b gets the image from a first: the b-only operator has nowhere to copy it from.)
        from fleet.core.settings import FleetSettings
        from fleet.ops.connect import connect

        both = connect(FleetSettings(hosts=env["FLEET_HOSTS"]))
        both.hosting.ensure_image(both.hosting.host_names()[1], env["FLEET_IMAGE"])
        both.close()
        old = a.containers.get(f"litefleet-{t}")
        _ok(fleet("up", t, "--force-takeover", env=only_b))
        old.reload()
        assert old.status == "exited" and old.attrs["State"]["ExitCode"] == exits.DOWN
        old_logs = old.logs().decode()
        assert "without a final sync" in old_logs
        assert "stopped: the lease was taken over" in old_logs
        old.remove(force=True)
        a.volumes.get(f"litefleet-{t}-data").remove(force=True)

        # The new holder serves every run and its backup restores cleanly.
        runs = json.loads(_ok(fleet("runs", t, "--json", env=only_b)).out)
        assert set(ids) <= {x["id"] for x in runs}
        more = json.loads(
            _ok(fleet("run", t, "echo", "-i", '{"message": "y"}', "--json", "--wait",
                      env=only_b)).out
        )["id"]  # fmt: skip
        time.sleep(2.0)
        out = tmp_path / "after.db"
        r = _ok(fleet("pull", t, "-o", str(out), env=only_b))
        assert "integrity ok" in r.out
        from agent_runtime import open_copy

        with open_copy(out) as db:
            got = set(db.statuses())
        assert {*ids, more} <= got
        a.close()
        b.close()
    finally:
        fleet("rm", t, "--purge", "--yes", env=env)
