"""`fleet migrate` under load on real engines: a client keeps submitting runs while the tenant
moves from host a to host b; every acknowledged run must complete on b."""

from __future__ import annotations

import re
import threading
import time
import uuid
from typing import Any

import httpx
import pytest

from fleet.engine.container_spec import published_port
from tests.fleet_support import Result, fleet, one_line_error

pytestmark = pytest.mark.docker


def _ok(r: Result) -> Result:
    assert r.code == 0, f"exit {r.code}\nstdout: {r.out}\nstderr: {r.err}"
    return r


class Client:
    """Submits `steps` runs in a loop, finding the tenant on whichever engine serves it."""

    def __init__(self, tenant: str, engines: list[Any]) -> None:
        self.tenant, self.engines = tenant, engines
        self.acked: list[tuple[str, float]] = []  # (run id, when the 201 arrived)
        self.errors = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _endpoint(self) -> tuple[str, str] | None:
        for e in self.engines:
            for c in e.containers.list(filters={"label": f"litefleet.tenant={self.tenant}"}):
                port = published_port(c.attrs)
                env = dict(x.partition("=")[::2] for x in c.attrs["Config"]["Env"])
                if port:
                    return f"http://127.0.0.1:{port}", env["AGENT_RUNTIME_TOKEN"]
        return None

    def _loop(self) -> None:
        ep = None
        deadline = time.monotonic() + 120  # bounded in time and count
        for _ in range(5000):
            if self.stop.is_set() or time.monotonic() > deadline:
                return
            try:
                ep = ep or self._endpoint()
                if ep is None:
                    raise httpx.ConnectError("no endpoint yet")
                r = httpx.post(
                    ep[0] + "/v1/runs",
                    json={"workflow": "steps", "input": {"n": 2}},
                    headers={"Authorization": f"Bearer {ep[1]}"},
                    timeout=3.0,
                    trust_env=False,
                )
                r.raise_for_status()
                self.acked.append((r.json()["id"], time.monotonic()))
                time.sleep(0.02)
            except (httpx.HTTPError, KeyError):
                self.errors += 1
                ep = None
                time.sleep(0.05)


def test_migrate_under_load(two_hosts: dict[str, str], second_engine: str) -> None:
    import docker

    env = two_hosts
    t = f"h-{uuid.uuid4().hex[:8]}"
    a, b = docker.from_env(), docker.DockerClient(second_engine)
    try:
        _ok(fleet("up", t, "--host", "a", env=env))
        assert "already on host" in one_line_error(fleet("migrate", t, "--to", "a", env=env))
        client = Client(t, [a, b])
        client.thread.start()
        time.sleep(3.0)
        began = time.monotonic()
        r = _ok(fleet("migrate", t, "--to", "b", env=env))
        time.sleep(2.0)
        client.stop.set()
        client.thread.join(10)
        m = re.search(r"downtime ([\d.]+)s", r.out)
        assert m and "runs identical" in r.out and "replicated txid" in r.out, r.out
        print(f"\nmigration downtime {m.group(1)} s; {len(client.acked)} runs acked")

        before = [i for i, when in client.acked if when < began]
        assert len(before) > 10 and any(when > began for _, when in client.acked)
        # Nothing is left on host a; on b every acknowledged run completes.
        assert not a.containers.list(all=True, filters={"label": f"litefleet.tenant={t}"})
        assert not [v for v in a.volumes.list() if v.name == f"litefleet-{t}-data"]
        ep = client._endpoint()
        assert ep is not None and str(published_port(b.containers.get(f"litefleet-{t}").attrs))
        with httpx.Client(
            base_url=ep[0], headers={"Authorization": f"Bearer {ep[1]}"}, trust_env=False
        ) as http:
            deadline = time.monotonic() + 60
            for run_id, _ in client.acked:
                while (st := http.get(f"/v1/runs/{run_id}").json()["status"]) != "completed":
                    assert st in ("pending", "running") and time.monotonic() < deadline, st
                    time.sleep(0.1)
    finally:
        fleet("rm", t, "--purge", "--yes", env=env)
        a.close()
        b.close()
