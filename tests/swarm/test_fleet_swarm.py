"""The `fleet` CLI with FLEET_BACKEND=swarm on the two-node test swarm, as a user runs it.

Nodes are named with `fleet hosts label`; a tenant goes up on a chosen node, runs, stops after
its final sync, starts again with its runs, and `fleet rm` leaves no service, secret, config or
volume behind.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.fleet_support import Result, fleet, one_line_error
from tests.swarm.tenants import NODE_NAMES
from tests.swarm_cluster import SwarmCluster

pytestmark = [pytest.mark.docker, pytest.mark.swarm]


def _ok(r: Result) -> Result:
    assert r.code == 0, f"exit {r.code}\nstdout: {r.out}\nstderr: {r.err}"
    return r


@pytest.fixture
def env(swarm_env: dict[str, str]) -> dict[str, str]:
    return swarm_env


def _lease_holder(env: dict[str, str], tenant: str) -> str:
    import boto3

    s3 = boto3.client(
        "s3",
        endpoint_url=env["FLEET_S3_ENDPOINT"],
        aws_access_key_id=env["FLEET_S3_ACCESS_KEY_ID"],
        aws_secret_access_key=env["FLEET_S3_SECRET_ACCESS_KEY"],
        region_name="us-east-1",
    )
    body = s3.get_object(Bucket=env["FLEET_S3_BUCKET"], Key=f"leases/{tenant}.json")["Body"]
    return str(json.loads(body.read())["holder"])


def _ls(env: dict[str, str], tenant: str) -> dict[str, Any]:
    rows = json.loads(_ok(fleet("ls", "--json", env=env)).out)
    return dict(next(r for r in rows if r["tenant"] == tenant))


def test_hosts_label_names_the_nodes(env: dict[str, str], swarm: SwarmCluster) -> None:
    for node_id, name in zip((swarm.node1_id, swarm.node2_id), NODE_NAMES, strict=True):
        r = _ok(fleet("hosts", "label", node_id[:8], name, env=env))
        assert f"is host {name}" in r.out
    rows = {h["host"]: h for h in json.loads(_ok(fleet("hosts", "--json", env=env)).out)}
    assert rows[NODE_NAMES[1]]["node_id"] == swarm.node2_id
    assert rows[NODE_NAMES[1]]["state"] == "ready" and rows[NODE_NAMES[1]]["reachable"]
    table = _ok(fleet("hosts", env=env)).out
    assert "AVAILABILITY" in table and NODE_NAMES[1] in table
    bad = fleet("hosts", "label", "no-such-node", "x", env=env)
    assert bad.code == 2 and "no Swarm node matches" in one_line_error(bad)
    unknown = fleet("up", "s-nowhere", "--host", "nowhere", env=env)  # refused: nothing made
    assert unknown.code == 2 and "litefleet.host=nowhere" in one_line_error(unknown)


def test_up_on_a_node_run_down_up_rm(
    env: dict[str, str], swarm: SwarmCluster, new_tenant: Callable[[], str]
) -> None:
    import docker

    tenant = new_tenant()
    _ok(fleet("up", tenant, "--host", NODE_NAMES[1], "--label", "team=blue", env=env))
    row = _ok_row(env, tenant)
    assert row["host"] == NODE_NAMES[1] and row["state"] == "running"
    # The same engines seen with FLEET_BACKEND=engines: the task's container (which carries
    # the service's labels) is not a tenant there, so a teardown or gc there leaves it alone.
    engines = {k: v for k, v in env.items() if k != "FLEET_BACKEND"}
    listed = json.loads(_ok(fleet("ls", "--json", env=engines)).out)
    assert tenant not in {r["tenant"] for r in listed}
    out = fleet("run", tenant, "echo", "-i", '{"message": "hi"}', "--id", "r1", "--wait",
                "--json", env=env)  # fmt: skip
    run = json.loads(_ok(out).out)
    assert run["status"] == "completed"

    _ok(fleet("down", tenant, env=env))
    assert _ls(env, tenant)["state"] == "exited"
    _ok(fleet("up", tenant, env=env))
    runs = json.loads(_ok(fleet("runs", tenant, "--json", env=env)).out)
    assert [r["id"] for r in runs] == ["r1"]

    manager = docker.DockerClient(swarm.manager_url)
    node2 = docker.DockerClient(swarm.node2_url)
    try:
        service = manager.services.get(f"litefleet-{tenant}")
        spec = json.dumps(service.attrs["Spec"])
        assert "AGENT_RUNTIME_TOKEN=" not in spec  # the token is a secret file
        assert "LITESTREAM_SECRET_ACCESS_KEY=" not in spec  # and so is the S3 key
        assert env["FLEET_S3_SECRET_ACCESS_KEY"] not in spec
        _ok(fleet("rm", tenant, "--purge", "--yes", env=env))
        flt = {"label": f"litefleet.token-of={tenant}"}
        assert not manager.services.list(filters={"name": f"litefleet-{tenant}"})
        assert not manager.api.secrets(filters=flt) and not manager.api.configs(filters=flt)
        assert f"litefleet-{tenant}-data" not in {v.name for v in node2.volumes.list()}
    finally:
        manager.close()
        node2.close()


def _ok_row(env: dict[str, str], tenant: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        row = _ls(env, tenant)
        if row["state"] == "running" or time.monotonic() > deadline:
            return row
        time.sleep(0.5)


def test_migrate_by_constraint(
    env: dict[str, str], swarm: SwarmCluster, new_tenant: Callable[[], str]
) -> None:
    import docker

    tenant = new_tenant()
    _ok(fleet("up", tenant, "--host", NODE_NAMES[1], env=env))
    for i in range(3):
        _ok(fleet("run", tenant, "echo", "-i", f'{{"message": "m{i}"}}', "--id", f"m{i}",
                  "--wait", env=env))  # fmt: skip
    out = _ok(fleet("migrate", tenant, "--to", NODE_NAMES[0], env=env)).out
    assert f"moved {NODE_NAMES[1]} -> {NODE_NAMES[0]}" in out and "3 runs identical" in out
    assert "downtime" in out
    row = _ls(env, tenant)
    assert row["host"] == NODE_NAMES[0] and row["state"] == "running"
    runs = json.loads(_ok(fleet("runs", tenant, "--json", env=env)).out)
    assert sorted(r["id"] for r in runs) == ["m0", "m1", "m2"]
    same = fleet("migrate", tenant, "--to", NODE_NAMES[0], env=env)
    assert same.code == 2 and "already on host" in one_line_error(same)

    node2 = docker.DockerClient(swarm.node2_url)
    try:  # the source node's volume went with the move
        assert f"litefleet-{tenant}-data" not in {v.name for v in node2.volumes.list()}
    finally:
        node2.close()
    _ok(fleet("rm", tenant, "--purge", "--yes", env=env))


def test_node_loss_the_tenant_continues_elsewhere_and_ls_says_where(
    env: dict[str, str], swarm: SwarmCluster, new_tenant: Callable[[], str]
) -> None:
    """A tenant Swarm placed on node 2 (not pinned: a pinned tenant waits for its node), runs
    in flight; node 2 dies. Every run acknowledged before the loss is on node 1 and completes;
    `fleet ls` shows node 1; `fleet logs` works there; teardown by label leaves nothing."""
    import docker

    tenant = new_tenant()
    manager = docker.DockerClient(swarm.manager_url)
    node1 = manager.nodes.get(swarm.node1_id)
    node1.update({**node1.attrs["Spec"], "Availability": "pause"})
    try:  # so that Swarm's own choice is node 2
        _ok(fleet("up", tenant, "--label", f"fo={tenant}", env=env))
    finally:
        node1.reload()
        node1.update({**node1.attrs["Spec"], "Availability": "active"})
    assert _ls(env, tenant)["host"] == NODE_NAMES[1]
    for i in range(3):
        _ok(fleet("run", tenant, "steps", "-i", '{"n": 30, "sleep": 0.5}', "--id", f"s{i}",
                  env=env))  # fmt: skip
    time.sleep(2.5)  # acknowledged more than 2 s before the loss

    swarm.kill_node()
    try:
        deadline = time.monotonic() + 120
        while (row := _ls(env, tenant))["host"] != NODE_NAMES[0] or row["state"] != "running":
            assert time.monotonic() < deadline, row
            time.sleep(1)
        while fleet("runs", tenant, env=env).code != 0:  # the keeper waits for the old lease
            assert time.monotonic() < deadline, "the API did not answer on node 1"
            time.sleep(1)
        for i in range(3):
            r = _ok(fleet("run", tenant, "steps", "-i", '{"n": 30, "sleep": 0.5}', "--id", f"s{i}",
                          "--wait", "--json", "--timeout", "120", env=env))  # fmt: skip
            assert json.loads(r.out)["status"] == "completed"
        # The lease moved with it: its holder is now the task on node 1.
        assert _lease_holder(env, tenant).startswith(swarm.node1_id)
    finally:
        swarm.start_node()
        manager.close()
    _ok(fleet("teardown", "--label", f"fo={tenant}", "--purge", "--yes", env=env))
    assert not [r for r in json.loads(_ok(fleet("ls", "--json", env=env)).out)
                if r["tenant"] == tenant]  # fmt: skip
