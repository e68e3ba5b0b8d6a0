"""Many hosts on real engines: `fleet hosts`, placement, copying the image to a fresh engine,
`fleet restore` (latest and point in time) and bringing tenants back after losing a host.

Host ``a`` is this machine's engine (it runs the embedded store); host ``b`` is a second dockerd
started by tests/second_engine.py with no images.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from fleet.engine.hosts import parse_hosts
from fleet.engine.image_transfer import registry_ref
from tests.fleet_support import Result, fleet, one_line_error


def _name() -> str:
    return f"h-{uuid.uuid4().hex[:8]}"


def _ok(r: Result) -> Result:
    assert r.code == 0, f"exit {r.code}\nstdout: {r.out}\nstderr: {r.err}"
    return r


@pytest.fixture
def tenants(two_hosts: dict[str, str]) -> Iterator[list[str]]:
    """Names to remove (container, volume, backup, lease) when the test ends."""
    names: list[str] = []
    yield names
    for n in names:
        fleet("rm", n, "--purge", "--yes", env=two_hosts)


def _echo(env: dict[str, str], tenant: str, message: str) -> str:
    r = _ok(fleet("run", tenant, "echo", "-i", json.dumps({"message": message}), "--json",
                  "--wait", env=env))  # fmt: skip
    return str(json.loads(r.out)["id"])


def _runs(env: dict[str, str], tenant: str) -> dict[str, str]:
    rows = json.loads(_ok(fleet("runs", tenant, "--json", "--limit", "1000", env=env)).out)
    return {r["id"]: r["status"] for r in rows}


def _host_of(env: dict[str, str], tenant: str) -> str:
    rows = json.loads(_ok(fleet("ls", "--json", env=env)).out)
    return str(next(t["host"] for t in rows if t["tenant"] == tenant))


def _wait_in_sync(env: dict[str, str], tenant: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        rows = json.loads(_ok(fleet("ls", "--json", env=env)).out)
        rep = next(t for t in rows if t["tenant"] == tenant)["replication"]
        if rep["local_txid"] is not None and rep["lag_txns"] == 0:
            return
        assert time.monotonic() < deadline, f"{tenant} not replicated: {rep}"
        time.sleep(0.3)


# -- no engine needed


def test_fleet_hosts_parses_docker_urls() -> None:
    hosts = parse_hosts("a=unix:///var/run/docker.sock,b=tcp://host-b:2376,c=ssh://user@host")
    assert [(h.name, h.url) for h in hosts] == [
        ("a", "unix:///var/run/docker.sock"),
        ("b", "tcp://host-b:2376"),
        ("c", "ssh://user@host"),
    ]
    assert [h.name for h in parse_hosts("")] == ["local"]


def test_registry_ref() -> None:
    assert registry_ref("reg:5000/", "litefleet/tenant:0.1.0") == "reg:5000/litefleet/tenant:0.1.0"


# -- real engines


@pytest.mark.docker
def test_hosts_placement_and_restore_on_a_fresh_host(
    two_hosts: dict[str, str], tenants: list[str], second_engine: str
) -> None:
    import docker

    env = two_hosts
    listed = {h["host"]: h for h in json.loads(_ok(fleet("hosts", "--json", env=env)).out)}
    assert listed["a"]["reachable"] and listed["b"]["reachable"]
    assert listed["b"]["mem_total"] > 0 and listed["b"]["mem_free"] <= listed["b"]["mem_total"]
    table = _ok(fleet("hosts", env=env)).out
    assert "MEMORY FREE/TOTAL" in table and re.search(r"^b\s+yes\s", table, re.M), table

    t = _name()
    tenants.append(t)
    _ok(fleet("up", t, "--host", "a", env=env))
    early = [_echo(env, t, f"early-{i}") for i in range(3)]
    time.sleep(2.0)
    at = datetime.now(UTC).isoformat()
    time.sleep(2.0)
    late = [_echo(env, t, f"late-{i}") for i in range(3)]
    _wait_in_sync(env, t)

    # A running tenant is not restored next to itself.
    err = one_line_error(fleet("restore", t, "--host", "b", env=env))
    assert "runs on host 'a'" in err and "fleet migrate" in err

    # Gone from host a (backup kept): b, which never saw it, restores it. b may or may not have
    # the image yet (other tests copy it too); the copy itself is checked below.
    _ok(fleet("down", t, env=env))
    _ok(fleet("rm", t, env=env))
    r = _ok(fleet("restore", t, "--host", "b", env=env))
    assert "restored on b" in r.out and "txid 0x" in r.out and "s old)" in r.out, r.out
    assert _host_of(env, t) == "b"
    assert set(_runs(env, t)) == set(early + late)
    after = _echo(env, t, "on-b")  # and it keeps working (and replicating) there
    assert after in _runs(env, t)

    # Point in time: back to before the late runs, on b again.
    _wait_in_sync(env, t)
    _ok(fleet("rm", t, env=env))
    r = _ok(fleet("restore", t, "--host", "b", "--at", at, env=env))
    assert "as of" in r.out and f"archive/{t}/" in r.out, r.out
    runs = _runs(env, t)
    assert set(runs) == set(early), "runs after --at must be absent, earlier ones present"
    # The rewound tenant replicates onward: a later plain restore shows it, not the old tail.
    newer = _echo(env, t, "after-pitr")
    _wait_in_sync(env, t)
    _ok(fleet("rm", t, env=env))
    _ok(fleet("restore", t, "--host", "a", env=env))
    assert set(_runs(env, t)) == {*early, newer}

    # The image copy: remove it from b, and `up` on b brings it back through the engines.
    b = docker.DockerClient(second_engine)
    for c in b.containers.list(all=True):
        c.remove(force=True)
    b.images.remove(env["FLEET_IMAGE"], force=True)
    with pytest.raises(docker.errors.ImageNotFound):
        b.images.get(env["FLEET_IMAGE"])
    t2 = _name()
    tenants.append(t2)
    _ok(fleet("up", t2, "--host", "b", env=env))
    assert (
        b.images.get(env["FLEET_IMAGE"]).id == docker.from_env().images.get(env["FLEET_IMAGE"]).id
    )
    b.close()


@pytest.mark.docker
def test_host_loss_restore_elsewhere(two_hosts: dict[str, str], tenants: list[str]) -> None:
    import docker

    env = two_hosts
    t = _name()
    tenants.append(t)
    _ok(fleet("up", t, "--host", "a", env=env))
    committed = [_echo(env, t, f"before-loss-{i}") for i in range(5)]
    time.sleep(2.5)  # committed more than ~2 s before the loss

    # Host a "dies": the tenant's container is killed (no final sync, no lease release) and
    # its volume is gone.
    a = docker.from_env()
    c = a.containers.get(f"litefleet-{t}")
    c.kill()
    c.remove(force=True)
    a.volumes.get(f"litefleet-{t}-data").remove(force=True)

    # Its lease is still live (up to 15 s): a restore is refused without --force-takeover.
    err = one_line_error(fleet("restore", t, "--host", "b", env=env))
    assert "lease" in err and "--force-takeover" in err
    r = _ok(fleet("restore", t, "--host", "b", "--force-takeover", env=env))
    assert "restored on b" in r.out
    assert set(committed) <= set(_runs(env, t))
    a.close()
