"""Tenants on Docker Swarm: failover after node loss, migrate downtime, many tenants up.

    .venv/bin/python bench/swarm_bench.py [--failovers 3] [--migrations 3] [--tenants 50]
        [--no-service-layer]

Runs on the two-node swarm of images/swarm.sh (tests/swarm_cluster.py: node 1 is this machine's
engine, node 2 a second dockerd in its own network namespace), with tenant services made by the
Swarm spec (swarm_staging/swarm_service.py) and driven over their HTTP API from the manager.
- failover: a tenant Swarm placed on node 2, 4 runs in flight; node 2's engine, containerd,
  shims and containers SIGKILLed. Timeline from the SIGKILL, polled every 100 ms: node 2
  ``down`` in the manager's view, the replacement task's container started on node 1, the lease
  held by node 1 (leases/<t>.json), the API healthy on node 1, the runs completed. Then node 2
  is started again for the next trial. Once with the dispatcher heartbeat at 1 s, once at
  Swarm's default 5 s.
- migrate: the placement constraint changed from node 2 to node 1 (stop-first: SIGTERM, final
  sync, lease released, new task restores); downtime = last 200 on the old node's port to
  first 200 on the new one, probed every 50 ms.
- up: N tenant services created one after another (one secret each), then until all answer.
- fleet: the same through the `fleet` CLI with FLEET_BACKEND=swarm: `fleet up` of N tenants,
  8 commands at a time (each returns once its tenant answers /healthz), and the downtime
  `fleet migrate` prints (stop with the final sync checked, constrain, start, runs compared).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._machine import describe  # noqa: E402
from tests.swarm.tenants import BUCKET, SwarmTenantHandle, SwarmTenants  # noqa: E402
from tests.swarm_cluster import SwarmCluster, running_swarm  # noqa: E402


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url, timeout=0.5, trust_env=False).status_code == 200
    except httpx.HTTPError:
        return False


def _lease_holder(tenants: SwarmTenants, tenant: str) -> str | None:
    import boto3

    s3 = boto3.client(
        "s3",
        endpoint_url=tenants.cluster.s3_endpoint,
        aws_access_key_id="litefleet",
        aws_secret_access_key="litefleet-test",
        region_name="us-east-1",
    )
    try:
        body = s3.get_object(Bucket=BUCKET, Key=f"leases/{tenant}.json")["Body"].read()
    except Exception:
        return None
    holder = json.loads(body).get("holder")
    return str(holder) if holder else None


def _on_node2(tenants: SwarmTenants) -> SwarmTenantHandle:
    node1 = tenants.manager.nodes.get(tenants.cluster.node1_id)
    node1.update({**node1.attrs["Spec"], "Availability": "pause"})
    try:
        t = tenants.create(None, prefix="bench")
        tenants.wait_healthy(t, "two")
    finally:
        node1.reload()
        node1.update({**node1.attrs["Spec"], "Availability": "active"})
    return t


def _container_started_on(tenants: SwarmTenants, t: SwarmTenantHandle, node_id: str) -> bool:
    for task in tenants.manager.api.tasks(filters={"service": t.service_id}):
        if task.get("NodeID") == node_id and task["Status"]["State"] in ("starting", "running"):
            return True
    return False


def failover_trial(tenants: SwarmTenants, swarm: SwarmCluster) -> dict[str, float]:
    t = _on_node2(tenants)
    with tenants.http(t, swarm.node2_addr) as http:
        for i in range(4):
            http.post("/v1/runs", json={"workflow": "steps", "input": {"n": 40, "sleep": 0.5},
                                        "id": f"s{i}"}).raise_for_status()  # fmt: skip
        time.sleep(2.5)
    marks: dict[str, float] = {}
    t0 = time.monotonic()
    swarm.kill_node()
    url = f"http://{swarm.node1_addr}:{t.port}/healthz"
    while "healthy" not in marks and time.monotonic() - t0 < 180:
        now = time.monotonic() - t0
        node2 = tenants.manager.nodes.get(swarm.node2_id).attrs["Status"]["State"]
        if "node_down" not in marks and node2 == "down":
            marks["node_down"] = now
        if "started" not in marks and _container_started_on(tenants, t, swarm.node1_id):
            marks["started"] = now
        if "lease" not in marks and (_lease_holder(tenants, t.name) or "").startswith(
            swarm.node1_id
        ):
            marks["lease"] = now
        if _healthy(url):
            marks["healthy"] = now
        time.sleep(0.1)
    with tenants.http(t, swarm.node1_addr) as http:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            runs = http.get("/v1/runs").json()["runs"]
            if len(runs) == 4 and all(r["status"] == "completed" for r in runs):
                marks["runs_completed"] = time.monotonic() - t0
                break
            time.sleep(0.5)
    swarm.start_node()
    _wait_ready(tenants, swarm.node2_id)
    return {k: round(v, 2) for k, v in marks.items()}


def _wait_ready(tenants: SwarmTenants, node_id: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while tenants.manager.nodes.get(node_id).attrs["Status"]["State"] != "ready":
        if time.monotonic() > deadline:
            raise RuntimeError("node 2 did not come back")
        time.sleep(0.5)


def migrate_trial(tenants: SwarmTenants, swarm: SwarmCluster) -> float:
    t = tenants.create("two", prefix="bench")
    tenants.wait_healthy(t, "two")
    with tenants.http(t, swarm.node2_addr) as http:
        http.post("/v1/runs", json={"workflow": "echo", "input": {"message": "m"}, "id": "m"})
    time.sleep(1.5)
    spec = tenants.service_attrs(t)
    template = spec["Spec"]["TaskTemplate"]
    template["Placement"]["Constraints"] = ["node.labels.litefleet.host==one"]
    old = f"http://{swarm.node2_addr}:{t.port}/healthz"
    new = f"http://{swarm.node1_addr}:{t.port}/healthz"
    tenants.manager.api.update_service(
        t.service_id, spec["Version"]["Index"], task_template=template, fetch_current_spec=True
    )
    last_old = time.monotonic()
    while True:
        if _healthy(old):
            last_old = time.monotonic()
        elif _healthy(new):
            return round(time.monotonic() - last_old, 2)
        time.sleep(0.05)


def up_many(tenants: SwarmTenants, n: int) -> dict[str, float]:
    t0 = time.monotonic()
    made = [tenants.create(None, prefix="bench") for _ in range(n)]
    created = time.monotonic() - t0
    pending = {t.name: t for t in made}
    while pending and time.monotonic() - t0 < 900:
        for name, t in list(pending.items()):
            place = tenants.place(t)
            if place and place.address and _healthy(f"http://{place.address}:{t.port}/healthz"):
                del pending[name]
        time.sleep(0.5)
    total = time.monotonic() - t0
    nodes = [tenants.place(t) for t in made]
    per_node: dict[str, int] = {}
    for p in nodes:
        if p is not None:
            per_node[p.node] = per_node.get(p.node, 0) + 1
    return {
        "tenants": n,
        "not_healthy": len(pending),
        "create_calls_s": round(created, 1),
        "all_healthy_s": round(total, 1),
        "tenants_per_s": round(n / total, 2),
        **{f"on_{k}": v for k, v in sorted(per_node.items())},
    }


def fleet_env(swarm: SwarmCluster, image: str) -> dict[str, str]:
    import os

    return {
        **os.environ,
        "FLEET_BACKEND": "swarm",
        "FLEET_HOSTS": f"one={swarm.manager_url},two={swarm.node2_url}",
        "FLEET_IMAGE": image,
        "FLEET_S3_ENDPOINT": swarm.s3_endpoint,
        "FLEET_S3_BUCKET": BUCKET,
        "FLEET_S3_ACCESS_KEY_ID": "litefleet",
        "FLEET_S3_SECRET_ACCESS_KEY": "litefleet-test",
        "FLEET_HEALTH_TIMEOUT": "300",
        "FLEET_CONFIG": "",
    }


def _fleet(env: dict[str, str], *args: str) -> str:
    import subprocess

    fleet_bin = str(Path(sys.executable).with_name("fleet"))
    p = subprocess.run([fleet_bin, *args], env=env, capture_output=True, text=True, check=False)
    if p.returncode != 0:
        raise RuntimeError(f"fleet {' '.join(args)}: {p.stderr.strip()}")
    return p.stdout


def fleet_up_many(env: dict[str, str], n: int, parallel: int = 8) -> dict[str, float]:
    from concurrent.futures import ThreadPoolExecutor

    names = [f"fb-{i:03d}" for i in range(n)]
    t0 = time.monotonic()
    with ThreadPoolExecutor(parallel) as pool:
        list(pool.map(lambda name: _fleet(env, "up", name, "--label", "bench=up"), names))
    total = time.monotonic() - t0
    rows = json.loads(_fleet(env, "ls", "--json"))
    t1 = time.monotonic()
    _fleet(env, "teardown", "--label", "bench=up", "--purge", "--yes")
    return {
        "tenants": n,
        "parallel": parallel,
        "all_up_s": round(total, 1),
        "tenants_per_s": round(n / total, 2),
        "running": sum(1 for r in rows if r["state"] == "running"),
        "teardown_s": round(time.monotonic() - t1, 1),
    }


def fleet_migrations(env: dict[str, str], trials: int) -> list[float]:
    import re

    _fleet(env, "up", "fb-mig", "--host", "two")
    _fleet(env, "run", "fb-mig", "echo", "-i", '{"message": "m"}', "--wait")
    downtimes = []
    for i in range(trials):
        out = _fleet(env, "migrate", "fb-mig", "--to", "one" if i % 2 == 0 else "two")
        m = re.search(r"downtime ([0-9.]+)s", out)
        if m:
            downtimes.append(float(m.group(1)))
    _fleet(env, "rm", "fb-mig", "--purge", "--yes")
    return downtimes


def _set_heartbeat(tenants: SwarmTenants, period_s: int) -> None:
    swarm = tenants.manager.swarm
    swarm.reload()
    swarm.update(dispatcher_heartbeat_period=period_s * 1_000_000_000)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--failovers", type=int, default=3)
    ap.add_argument("--migrations", type=int, default=3)
    ap.add_argument("--tenants", type=int, default=50)
    ap.add_argument(
        "--no-service-layer", dest="service_layer", action="store_false",
        help="skip the figures of services made directly (only the fleet CLI's)",
    )  # fmt: skip
    args = ap.parse_args()
    from fleet.core.names import image_ref

    out: dict[str, Any] = {"machine": describe(Path("/tmp"), ROOT)}
    with running_swarm(heartbeat="1s") as swarm:
        tenants = SwarmTenants(swarm, image_ref("tenant"))
        try:
            if args.failovers:
                trials = [failover_trial(tenants, swarm) for _ in range(args.failovers)]
                out["failover_heartbeat_1s"] = trials
                out["failover_heartbeat_1s_healthy_median"] = statistics.median(
                    x["healthy"] for x in trials
                )
                _set_heartbeat(tenants, 5)
                out["failover_heartbeat_5s"] = [failover_trial(tenants, swarm)]
                _set_heartbeat(tenants, 1)
            if args.service_layer:
                downtimes = [migrate_trial(tenants, swarm) for _ in range(args.migrations)]
                out["migrate_downtime_s"] = downtimes
                out["up_many"] = up_many(tenants, args.tenants)
            env = fleet_env(swarm, image_ref("tenant"))
            for name, label in (("one", swarm.node1_id), ("two", swarm.node2_id)):
                _fleet(env, "hosts", "label", label, name)
            out["fleet_migrate_downtime_s"] = fleet_migrations(env, args.migrations)
            out["fleet_up_many"] = fleet_up_many(env, args.tenants)
        finally:
            tenants.close()
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
