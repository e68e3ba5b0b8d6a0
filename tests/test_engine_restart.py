"""Issue 16: the engine restarts (a host reboot stops it the same way: SIGTERM to every
container, then it exits), on a second engine of this test's own, never the shared one.

Every tenant that was running comes back by itself with its lease and its runs continue; a
tenant stopped with `fleet down` stays stopped; one stopped with `docker kill` (Docker's manual
stop, which cancels the restart policy until then) comes back too.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from fleet.supervisor import exits, lease
from tests.fleet_support import Result, fleet
from tests.healing_support import OwnStore, own_store, until
from tests.second_engine import SecondEngine, running_engine

pytestmark = pytest.mark.docker


@pytest.fixture
def engine(docker_client: Any, tenant_image: str) -> Iterator[SecondEngine]:
    if os.geteuid() != 0 or not shutil.which("dockerd") or not shutil.which("ip"):
        pytest.skip("a second engine needs root, dockerd and ip")
    with running_engine() as e:
        save = subprocess.Popen(["docker", "save", tenant_image], stdout=subprocess.PIPE)
        subprocess.run(["docker", "-H", e.url, "load", "-q"], stdin=save.stdout, check=True,
                       capture_output=True)  # fmt: skip
        assert save.wait(60) == 0
        yield e


@pytest.fixture
def store(docker_client: Any) -> Iterator[OwnStore]:
    with own_store(docker_client, bucket="reboot") as s:
        yield s


def _link_exists(name: str) -> bool:
    return subprocess.run(["ip", "link", "show", name], capture_output=True).returncode == 0


def _ok(r: Result) -> Result:
    assert r.code == 0, f"exit {r.code}\nstdout: {r.out}\nstderr: {r.err}"
    return r


def test_an_engine_restart_brings_back_the_tenants_that_ran(
    engine: SecondEngine, store: OwnStore, tenant_image: str
) -> None:
    import docker

    env = {
        "FLEET_HOSTS": f"e={engine.url}",
        "FLEET_IMAGE": tenant_image,
        "FLEET_S3_ENDPOINT": store.for_host.endpoint,
        "FLEET_S3_BUCKET": store.bucket,
        "FLEET_S3_ACCESS_KEY_ID": "k",
        "FLEET_S3_SECRET_ACCESS_KEY": "s",
        "FLEET_HEALTH_TIMEOUT": "90",
        "FLEET_CONFIG": "",
    }
    tag = uuid.uuid4().hex[:6]
    running, down, killed = f"r-{tag}", f"d-{tag}", f"k-{tag}"
    for t in (running, down, killed):
        _ok(fleet("up", t, env=env))
    steps = '{"n": 40, "sleep": 0.25}'
    run = json.loads(_ok(fleet("run", running, "steps", "-i", steps, "--json", env=env)).out)
    client = docker.DockerClient(engine.url)
    try:
        held_before = lease.read(store.for_host, running)
        assert held_before is not None and held_before.holder is not None
        _ok(fleet("down", down, env=env))
        client.containers.get(f"litefleet-{killed}").kill()
        time.sleep(2)  # the running tenant's steps go on meanwhile

        had_docker0 = _link_exists("docker0")
        engine.restart()
        # Restarting our engine must leave the main engine's bridge alone (see SecondEngine).
        assert _link_exists("docker0") == had_docker0
        client.close()
        client = docker.DockerClient(engine.url)

        def states() -> dict[str, Any]:
            r = _ok(fleet("ls", "--json", env=env))
            return {row["tenant"]: row for row in json.loads(r.out)}

        until(lambda: states()[running]["health"] == "healthy", 120, "running tenant back")
        until(lambda: states()[killed]["state"] == "running", 120, "killed tenant back")
        rows = states()
        assert rows[down]["state"] == "exited", rows[down]
        assert rows[down]["last_exit"]["code"] == exits.DOWN
        # The same container, its lease taken again, the run continued to its end.
        held_after = lease.read(store.for_host, running)
        assert held_after is not None and held_after.container == held_before.container
        assert held_after.generation > held_before.generation
        echo = '{"message": "after"}'
        done = json.loads(
            _ok(fleet("run", running, "echo", "-i", echo, "--json", "--wait", env=env)).out
        )
        assert done["status"] == "completed"

        def finished() -> bool:
            runs = json.loads(_ok(fleet("runs", running, "--json", env=env)).out)
            return any(r["id"] == run["id"] and r["status"] == "completed" for r in runs)

        until(finished, 90, "the run started before the restart completed", every=1.0)
        time.sleep(3)
        assert states()[down]["state"] == "exited"  # still down
    finally:
        client.close()
        for t in (running, down, killed):
            fleet("rm", t, "--purge", "--yes", env=env)
