"""`fleet park` and `fleet wake` with FLEET_BACKEND=swarm, on the two-node test swarm.

A running tenant parks as on engines (stopped with its final sync checked, service, secrets
and volume removed, settings in its manifest) and wakes as a new service whose task restores
its backup, with the same token and runs. A stopped one is refused in one line: its volume
would be checked by a one-off container on its node, which the Swarm backend does not run.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from tests.fleet_support import Result, fleet, one_line_error
from tests.swarm_cluster import SwarmCluster

pytestmark = [pytest.mark.docker, pytest.mark.swarm]


def _ok(r: Result) -> Result:
    assert r.code == 0, f"exit {r.code}\nstdout: {r.out}\nstderr: {r.err}"
    return r


def _row(env: dict[str, str], tenant: str) -> dict[str, Any]:
    rows = json.loads(_ok(fleet("ls", "--json", env=env)).out)
    return next(r for r in rows if r["tenant"] == tenant)


def test_park_and_wake_a_running_tenant_refuse_a_stopped_one(
    swarm_env: dict[str, str], swarm: SwarmCluster, new_tenant: Callable[[], str]
) -> None:
    import docker

    env = swarm_env
    t = new_tenant()
    _ok(fleet("up", t, "--ttl", "2h", "--idle-park", "10m", "--label", "team=red", env=env))
    _ok(fleet("run", t, "echo", "-i", '{"message": "kept"}', "--id", "kept", "--wait", env=env))
    token = _ok(fleet("token", t, env=env)).out.strip()
    settings = {k: _row(env, t)[k] for k in ("ttl", "idle_park", "labels")}
    assert settings == {"ttl": "2h", "idle_park": "10m", "labels": {"team": "red"}}

    _ok(fleet("park", t, env=env))
    assert _row(env, t)["state"] == "parked"
    manager = docker.DockerClient(swarm.manager_url)
    try:
        assert not manager.services.list(filters={"name": f"litefleet-{t}"})
        assert not manager.api.secrets(filters={"label": f"litefleet.token-of={t}"})
    finally:
        manager.close()

    _ok(fleet("wake", t, env=env))
    assert _row(env, t)["state"] == "running"
    assert {k: _row(env, t)[k] for k in settings} == settings  # made again from its manifest
    assert _ok(fleet("token", t, env=env)).out.strip() == token
    runs = json.loads(_ok(fleet("runs", t, "--json", env=env)).out)
    assert [r["id"] for r in runs] == ["kept"]

    _ok(fleet("down", t, env=env))
    refused = fleet("park", t, env=env)
    err = one_line_error(refused)
    assert refused.code == 2 and "on Swarm the fleet cannot check its volume" in err, err
    assert f"fleet up {t}" in err
    assert _row(env, t)["state"] == "exited"  # nothing changed
