"""`fleet migrate` through the gateway under load: clients keep submitting runs to
``/t/<tenant>/v1/runs`` while the tenant moves from host a to host b; the gateway holds the
requests (no failure) and every acknowledged run completes on b."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import httpx
import pytest

from tests.docker_fixtures import the_store
from tests.fleet_support import fleet
from tests.park_support import ok, start_gateway, stop_gateway

pytestmark = pytest.mark.docker


class Load:
    """``n`` clients, each submitting runs with its own ids in a loop (bounded in time)."""

    def __init__(self, url: str, token: str, n: int = 4) -> None:
        self.url, self.token = url, token
        self.acked: list[tuple[str, float, float]] = []  # id, when sent, latency
        self.failures: list[str] = []
        self.stop = threading.Event()
        self.threads = [
            threading.Thread(target=self._loop, args=(i,), daemon=True) for i in range(n)
        ]

    def _loop(self, me: int) -> None:
        headers = {"Authorization": f"Bearer {self.token}"}
        with httpx.Client(base_url=self.url, headers=headers, trust_env=False, timeout=60) as c:
            for i in range(3000):
                if self.stop.is_set():
                    return
                run_id = f"c{me}-{i}"
                t0 = time.monotonic()
                try:
                    r = c.post(
                        "/v1/runs", json={"workflow": "steps", "input": {"n": 2}, "id": run_id}
                    )
                except httpx.HTTPError as exc:
                    self.failures.append(f"{run_id}: {type(exc).__name__}")
                    continue
                if r.status_code not in (200, 201):
                    self.failures.append(f"{run_id}: {r.status_code} {r.text[:200]}")
                    continue
                self.acked.append((run_id, t0, time.monotonic() - t0))
                time.sleep(0.02)


def test_gateway_holds_requests_across_migrate(
    two_hosts: dict[str, str], docker_client: Any, tmp_path: Any
) -> None:
    bucket = f"lf-park-{uuid.uuid4().hex[:10]}"
    the_store(docker_client, bucket)
    env = {**two_hosts, "FLEET_S3_BUCKET": bucket}
    t = f"h-{uuid.uuid4().hex[:8]}"
    gw = start_gateway(env, str(tmp_path))
    try:
        ok(fleet("up", t, "--host", "a", env=env))
        token = ok(fleet("token", t, env=env)).out.strip()
        load = Load(f"{gw.url}/t/{t}", token)
        for th in load.threads:
            th.start()
        time.sleep(3)
        began = time.monotonic()
        moved = ok(fleet("migrate", t, "--to", "b", env=env))
        ended = time.monotonic()
        time.sleep(3)
        load.stop.set()
        for th in load.threads:
            th.join(60)
        assert load.failures == [], load.failures[:5]
        during = [lat for _, sent, lat in load.acked if began <= sent <= ended]
        steady = sorted(lat for _, sent, lat in load.acked if sent < began)
        assert during and steady and len(load.acked) > 50
        p99 = steady[int(len(steady) * 0.99) - 1]
        print(
            f"\n{len(load.acked)} runs acked, 0 failed; steady p99 {p99 * 1000:.1f} ms; "
            f"slowest while moving {max(during):.2f} s; {moved.out.strip()}"
        )
        with httpx.Client(
            base_url=f"{gw.url}/t/{t}",
            headers={"Authorization": f"Bearer {token}"},
            trust_env=False,
            timeout=30,
        ) as c:
            deadline = time.monotonic() + 120
            for run_id, _, _ in load.acked:
                while (st := c.get(f"/v1/runs/{run_id}").json()["status"]) != "completed":
                    assert st in ("pending", "running") and time.monotonic() < deadline, st
                    time.sleep(0.1)
        ls = ok(fleet("ls", "--json", env=env)).out
        assert '"host": "b"' in ls
    finally:
        stop_gateway(gw)
        fleet("rm", t, "--purge", "--yes", env=env)
