"""The two-node swarm the Swarm tests stand on (tests/swarm_cluster.py, images/swarm.sh).

Checks the facts the Swarm backend builds on, with plain services: a task placed on node 2 by a
node label runs from an image referenced by id (no registry), gets its secret as a file and a
named volume on its node, answers on node 2's address through a host-mode port, and reaches
the object store; a second ``up`` changes nothing.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.swarm.tenants import NODE_NAMES
from tests.swarm_cluster import SwarmCluster, swarm_script

pytestmark = [pytest.mark.docker, pytest.mark.swarm]

SERVE = "import http.server as h; h.test(h.SimpleHTTPRequestHandler, port=8080, bind='0.0.0.0')"


@pytest.fixture
def manager(swarm: SwarmCluster) -> Iterator[Any]:
    import docker

    client = docker.DockerClient(swarm.manager_url, timeout=30)
    yield client
    client.close()


@pytest.fixture
def node2(swarm: SwarmCluster) -> Iterator[Any]:
    import docker

    client = docker.DockerClient(swarm.node2_url, timeout=30)
    yield client
    client.close()


def _wait_task(manager: Any, service: Any, timeout: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        tasks = service.tasks(filters={"desired-state": "running"})
        running = [t for t in tasks if t["Status"]["State"] == "running"]
        if running:
            return dict(running[0])
        if time.monotonic() > deadline:
            raise AssertionError(f"{service.name}: no running task after {timeout:g}s: {tasks}")
        time.sleep(0.2)


def test_a_task_on_node2_gets_its_secret_volume_and_port(
    swarm: SwarmCluster, manager: Any, node2: Any, tenant_image: str
) -> None:
    from docker.types import EndpointSpec, SecretReference, ServiceMode

    name = f"lf-exp-{uuid.uuid4().hex[:8]}"
    node = manager.nodes.get(swarm.node2_id)
    labels = {**(node.attrs["Spec"].get("Labels") or {}), "litefleet.host": NODE_NAMES[1]}
    node.update({**node.attrs["Spec"], "Labels": labels})
    secret = manager.secrets.create(name=name, data=b"s3cret-value")
    image_id = manager.images.get(tenant_image).id
    service = None
    try:
        t0 = time.monotonic()
        service = manager.services.create(
            image_id,  # by id: the node runs it without trying (and failing) to pull it
            command=["python3", "-I", "-c", SERVE],
            name=name,
            workdir="/run/secrets",
            mode=ServiceMode("replicated", replicas=1),
            constraints=[f"node.labels.litefleet.host=={NODE_NAMES[1]}"],
            secrets=[SecretReference(secret.id, name, filename="token", uid="10001", mode=0o400)],
            mounts=[f"{name}-vol:/data:rw"],
            endpoint_spec=EndpointSpec(ports={18123: (8080, "tcp", "host")}),
            healthcheck={"Test": ["NONE"]},
        )
        task = _wait_task(manager, service)
        started_s = time.monotonic() - t0
        assert task["NodeID"] == swarm.node2_id
        assert started_s < 20, f"a task by image id took {started_s:.1f}s to run on node 2"
        deadline = time.monotonic() + 20
        while True:
            try:
                r = httpx.get(f"http://{swarm.node2_addr}:18123/token", timeout=2, trust_env=False)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        assert r.text == "s3cret-value"
        assert f"{name}-vol" in {v.name for v in node2.volumes.list()}
        found = node2.containers.list(
            sparse=True, filters={"label": f"com.docker.swarm.service.id={service.id}"}
        )
        container = node2.containers.get(found[0].id)
        env = container.attrs["Config"]["Env"] or []
        assert not any("s3cret-value" in e for e in env)
        code, out = container.exec_run(
            [
                "python3",
                "-I",
                "-c",
                f"import urllib.request as u; print(u.urlopen('{swarm.s3_endpoint}').status)",
            ]
        )
        assert code == 0 and out.strip() == b"200", out
    finally:
        if service is not None:
            service.remove()
        _wait_gone(node2, name)
        secret.remove()
        with contextlib.suppress(Exception):
            node2.volumes.get(f"{name}-vol").remove(force=True)


def _wait_gone(client: Any, name: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    # sparse: a plain list inspects each container and fails on one removed meanwhile
    while client.containers.list(all=True, sparse=True, filters={"name": name}):
        if time.monotonic() > deadline:
            raise AssertionError(f"containers of {name} still on the node after {timeout:g}s")
        time.sleep(0.2)


def test_up_again_changes_nothing(swarm: SwarmCluster, manager: Any) -> None:
    nodes_before = sorted(n.id for n in manager.nodes.list())
    out = swarm_script("up")
    assert f"SWARM_NODE2_ID={swarm.node2_id}" in out
    assert sorted(n.id for n in manager.nodes.list()) == nodes_before
    states = {n.id: n.attrs["Status"]["State"] for n in manager.nodes.list()}
    assert states == {swarm.node1_id: "ready", swarm.node2_id: "ready"}
