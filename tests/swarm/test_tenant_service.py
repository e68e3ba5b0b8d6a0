"""Tenants as Swarm services (swarm_staging/swarm_service.py) on the two-node test swarm.

- placed on the chosen node, the API answers the fleet with the token from a Swarm secret only,
  and no tenant reaches another tenant's API (same node or the other one);
- node loss (node 2's engine, containerd, shims and containers SIGKILLed) with runs in flight:
  the tenant is healthy on node 1 with every run acknowledged before the loss, and they
  complete; node 2's stale container, back, does not replicate;
- node 2 cut off from the manager only: Swarm starts a replacement, whose keeper refuses while
  node 2's task holds the lease (no second writer); once healed, the tenant moves with every run;
- migrate by constraint: the same runs on the other node.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.swarm.tenants import BUCKET, SwarmTenantHandle, SwarmTenants
from tests.swarm_cluster import SwarmCluster

pytestmark = [pytest.mark.docker, pytest.mark.swarm]

PROBE = """
import json, sys, urllib.request
out = {}
for url in sys.argv[1:]:
    try:
        out[url] = urllib.request.urlopen(url, timeout=3).status
    except Exception as exc:
        out[url] = type(exc).__name__
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def tenants(swarm: SwarmCluster, tenant_image: str) -> Iterator[SwarmTenants]:
    made = SwarmTenants(swarm, tenant_image)
    yield made
    made.close()


def _run(http: httpx.Client, workflow: str, payload: dict[str, Any], run_id: str) -> None:
    r = http.post("/v1/runs", json={"workflow": workflow, "input": payload, "id": run_id})
    assert r.status_code == 201, r.text


def _statuses(http: httpx.Client) -> dict[str, str]:
    runs = http.get("/v1/runs", params={"limit": 1000}).raise_for_status().json()["runs"]
    return {r["id"]: r["status"] for r in runs}


def _wait_completed(http: httpx.Client, ids: list[str], timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        statuses = _statuses(http)
        if all(statuses.get(i) == "completed" for i in ids):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"runs not completed after {timeout:g}s: {statuses}")
        time.sleep(0.3)


def _probe(container: Any, urls: list[str]) -> dict[str, Any]:
    code, out = container.exec_run(["python3", "-I", "-c", PROBE, *urls])
    assert code == 0, out
    return dict(json.loads(out))


def _container_on(client: Any, t: SwarmTenantHandle) -> Any:
    found = client.containers.list(sparse=True, filters={"label": f"litefleet.tenant={t.name}"})
    assert found, f"no running container of {t.name}"
    return client.containers.get(found[0].id)


def _on_node2_by_swarm(tenants: SwarmTenants) -> SwarmTenantHandle:
    """A tenant Swarm itself placed on node 2 (node 1 paused meanwhile), without a constraint,
    so that Swarm may move it."""
    node1 = tenants.manager.nodes.get(tenants.cluster.node1_id)
    node1.update({**node1.attrs["Spec"], "Availability": "pause"})
    try:
        t = tenants.create(None)
        tenants.wait_healthy(t, "two")
    finally:
        node1.reload()
        node1.update({**node1.attrs["Spec"], "Availability": "active"})
    return t


def test_on_the_chosen_node_token_from_a_secret_and_no_tenant_reaches_another(
    tenants: SwarmTenants, swarm: SwarmCluster
) -> None:
    a, b, c = tenants.create("two"), tenants.create("two"), tenants.create("one")
    place_a = tenants.wait_healthy(a, "two")
    place_b = tenants.wait_healthy(b, "two")
    place_c = tenants.wait_healthy(c, "one")
    assert place_a.address == swarm.node2_addr and place_c.address == swarm.node1_addr

    spec = tenants.service_attrs(a)["Spec"]
    assert spec["TaskTemplate"]["Placement"]["Constraints"] == ["node.labels.litefleet.host==two"]
    assert a.token not in json.dumps(spec)
    with tenants.http(a, place_a.address) as http:
        assert (
            httpx.get(str(http.base_url).rstrip("/") + "/v1/runs", trust_env=False).status_code
            == 401
        )
        _run(http, "echo", {"message": "hi"}, "e1")
        _wait_completed(http, ["e1"])

    container_a = _container_on(tenants.node2, a)
    container_b = _container_on(tenants.node2, b)
    b_ip = next(iter(container_b.attrs["NetworkSettings"]["Networks"].values()))["IPAddress"]
    gateway = next(iter(container_a.attrs["NetworkSettings"]["Networks"].values()))["Gateway"]
    reached = _probe(
        container_a,
        [
            f"http://{swarm.node2_addr}:{b.port}/healthz",  # same node, node address
            f"http://{gateway}:{b.port}/healthz",  # same node, bridge gateway
            f"http://{b_ip}:8080/healthz",  # same node, container address
            f"http://{swarm.node1_addr}:{c.port}/healthz",  # the other node
            f"{swarm.s3_endpoint}/",  # the object store: must work
        ],
    )
    assert reached.pop(f"{swarm.s3_endpoint}/") == 200
    assert all(v != 200 for v in reached.values()), reached
    # The manager host reaches all three.
    for t, place in ((a, place_a), (b, place_b), (c, place_c)):
        r = httpx.get(f"http://{place.address}:{t.port}/healthz", timeout=3, trust_env=False)
        assert r.status_code == 200


def test_node_loss_the_tenant_continues_on_node1(
    tenants: SwarmTenants, swarm: SwarmCluster
) -> None:
    t = _on_node2_by_swarm(tenants)
    with tenants.http(t, swarm.node2_addr) as http:
        for i in range(4):
            _run(http, "steps", {"n": 30, "sleep": 0.5}, f"s{i}")
        time.sleep(3)  # acknowledged and replicated (sync interval 1 s)
        before = _statuses(http)
    assert len(before) == 4 and all(s != "completed" for s in before.values()), before

    t0 = time.monotonic()
    swarm.kill_node()
    try:
        place = tenants.wait_healthy(t, "one", timeout=120)
        failover_s = time.monotonic() - t0
        print(f"failover: healthy on node 1 {failover_s:.1f}s after the node's SIGKILL")
        with tenants.http(t, place.address) as http:
            assert set(_statuses(http)) >= set(before)
            _wait_completed(http, list(before), timeout=120)
    finally:
        swarm.start_node()
    # Node 2 is back: its old task stays stopped and the tenant stays on node 1.
    time.sleep(5)
    assert not tenants.node2.containers.list(filters={"label": f"litefleet.tenant={t.name}"})
    assert tenants.wait_healthy(t, "one", timeout=30).node == "one"


def _lease(tenants: SwarmTenants, tenant: str) -> dict[str, Any]:
    import boto3

    s3 = boto3.client(
        "s3",
        endpoint_url=tenants.cluster.s3_endpoint,
        aws_access_key_id="litefleet",
        aws_secret_access_key="litefleet-test",
        region_name="us-east-1",
    )
    body = s3.get_object(Bucket=BUCKET, Key=f"leases/{tenant}.json")["Body"].read()
    return dict(json.loads(body))


def test_cut_off_from_the_manager_no_second_writer(
    tenants: SwarmTenants, swarm: SwarmCluster
) -> None:
    t = _on_node2_by_swarm(tenants)
    with tenants.http(t, swarm.node2_addr) as http:
        _run(http, "echo", {"message": "before"}, "before")
        _wait_completed(http, ["before"])
    holder = _lease(tenants, t.name)["holder"]
    assert holder.startswith(swarm.node2_id)

    swarm.partition()
    try:
        # Swarm declares node 2 down and starts a replacement on node 1, which must wait.
        deadline = time.monotonic() + 60
        refused = False
        while time.monotonic() < deadline and not refused:
            tasks = tenants.manager.api.tasks(filters={"service": t.service_id})
            # The keeper refuses a lease live elsewhere and stays down (exit 0, "stopped:
            # ..."); Swarm's restart policy "any" tries again later.
            refused = any(
                x.get("NodeID") == swarm.node1_id
                and x["Status"].get("State") == "complete"
                and (x["Status"].get("ContainerStatus") or {}).get("ExitCode") == 0
                for x in tasks
            )
            time.sleep(1)
        assert refused, "no replacement on node 1 was refused the lease"
        assert _lease(tenants, t.name)["holder"] == holder
        with tenants.http(t, swarm.node2_addr) as http:  # node 2's task still serves, alone
            _run(http, "echo", {"message": "during"}, "during")
            _wait_completed(http, ["during"])
        assert _lease(tenants, t.name)["holder"] == holder
    finally:
        swarm.heal()
    place = tenants.wait_healthy(t, "one", timeout=120)
    with tenants.http(t, place.address) as http:
        assert {"before", "during"} <= set(_statuses(http))
    assert _lease(tenants, t.name)["holder"].startswith(swarm.node1_id)


def test_migrate_by_constraint_keeps_every_run(tenants: SwarmTenants, swarm: SwarmCluster) -> None:
    t = tenants.create("two")
    tenants.wait_healthy(t, "two")
    with tenants.http(t, swarm.node2_addr) as http:
        for i in range(3):
            _run(http, "echo", {"message": f"m{i}"}, f"m{i}")
        _wait_completed(http, ["m0", "m1", "m2"])
    spec = tenants.service_attrs(t)["Spec"]
    template = spec["TaskTemplate"]
    template["Placement"]["Constraints"] = ["node.labels.litefleet.host==one"]
    version = tenants.service_attrs(t)["Version"]["Index"]
    t0 = time.monotonic()
    tenants.manager.api.update_service(
        t.service_id, version, task_template=template, fetch_current_spec=True
    )
    place = tenants.wait_healthy(t, "one")
    print(f"migrate by constraint: healthy on node 1 after {time.monotonic() - t0:.1f}s")
    with tenants.http(t, place.address) as http:
        assert {"m0", "m1", "m2"} <= {k for k, v in _statuses(http).items() if v == "completed"}


def test_engine_killed_alone_the_old_container_stays_the_only_writer(
    tenants: SwarmTenants, swarm: SwarmCluster
) -> None:
    """SIGKILL of node 2's dockerd alone leaves its containers running (docs/swarm.md): Swarm
    starts a replacement on node 1 while the old task still serves and replicates. The lease
    keeps the replacement waiting; once node 2's engine is back it kills the old container
    (no final sync), the lease lapses, and the replacement restores with every run."""
    t = _on_node2_by_swarm(tenants)
    with tenants.http(t, swarm.node2_addr) as http:
        _run(http, "echo", {"message": "before"}, "before")
        _wait_completed(http, ["before"])
    holder = _lease(tenants, t.name)["holder"]

    swarm.kill_engine()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # Swarm gives up on node 2 and tries node 1
            tasks = tenants.manager.api.tasks(filters={"service": t.service_id})
            if any(x.get("NodeID") == swarm.node1_id for x in tasks):
                break
            time.sleep(0.5)
        else:
            raise AssertionError("no replacement task on node 1")
        time.sleep(20)  # the replacement's keeper waits its 20 s for the lease
        assert _lease(tenants, t.name)["holder"] == holder
        with tenants.http(t, swarm.node2_addr) as http:  # the old task still serves, alone
            _run(http, "echo", {"message": "while"}, "while")
            _wait_completed(http, ["while"])
        time.sleep(2)  # replicated (sync interval 1 s)
    finally:
        swarm.start_node()
    place = tenants.wait_healthy(t, "one", timeout=120)
    with tenants.http(t, place.address) as http:
        assert {"before", "while"} <= set(_statuses(http))
    assert _lease(tenants, t.name)["holder"].startswith(swarm.node1_id)
