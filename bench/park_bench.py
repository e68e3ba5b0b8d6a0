"""Parked tenants (issue 12): idle CPU of running tenants and where it goes, `fleet up` of
many tenants in one command, park and wake (through the gateway) of a tenant with a 1 MB
database, and 1,000 tenants on one host (950 parked, 50 running idle).

    python bench/park_bench.py [--only up,idle,wake,thousand] [--tenants 50] [--json OUT]

Everything runs against an object store of its own (a `litefleet/s3` container on a free
port, removed at the end), so that its CPU is the tenants' alone; tenants are named
``pb-<run>-...`` and removed at the end. The CLI is driven as a user does (subprocesses of
.venv/bin/fleet). The 950 parked tenants of part ``thousand`` are copies of one parked
tenant: its backup objects copied server-side under 950 names, and its manifest with the
name, a new token and a label changed; waking one restores a real 1 MB database.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import secrets
import statistics
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT))

from _machine import describe  # noqa: E402

from fleet.core.names import image_ref  # noqa: E402
from fleet.storage.embedded import client as s3_client  # noqa: E402

FLEET = str(Path(sys.executable).with_name("fleet"))
HZ = os.sysconf("SC_CLK_TCK")
DAEMONS = {"dockerd", "containerd", "containerd-shim", "containerd-shim-runc-v2", "docker-proxy"}


class Bench:
    def __init__(self, run: str) -> None:
        import docker

        from fleet.engine.network import ensure_tenant_network, network_gateway

        self.run = run
        self.docker = docker.from_env()
        net = ensure_tenant_network(self.docker)
        gw = network_gateway(self.docker)
        self.port = _free_port()
        self.store = self.docker.containers.run(
            image_ref("s3"),
            name=f"litefleet-park-bench-s3-{run}",
            network=net,
            ports={"9000/tcp": [("127.0.0.1", self.port), (gw, self.port)]},
            environment={"MOTO_S3_DEFAULT_KEY_BUFFER_SIZE": str(64 << 20)},
            mem_limit="4g",
            detach=True,
        )
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "FLEET_S3_ENDPOINT": self.endpoint,
            "FLEET_S3_TENANT_ENDPOINT": f"http://{gw}:{self.port}",
            "FLEET_S3_BUCKET": "park-bench",
            "FLEET_HEALTH_TIMEOUT": "180",
            "FLEET_CONFIG": "",
            "COLUMNS": "250",
        }
        _wait(lambda: _answers(self.endpoint + "/"), 60)
        self.s3 = s3_client(self.endpoint)
        self.s3.create_bucket(Bucket="park-bench")
        self.gateway: subprocess.Popen[bytes] | None = None
        self.gateway_url = ""

    def fleet(self, *args: str, check: bool = True) -> tuple[str, float, float]:
        """(stdout, wall s, CPU s of the fleet process)."""
        t0 = time.monotonic()
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        proc = subprocess.run([FLEET, *args], capture_output=True, text=True, env=self.env)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if check and proc.returncode != 0:
            raise RuntimeError(f"fleet {' '.join(args)}: {proc.stderr.strip()[-500:]}")
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        return proc.stdout, time.monotonic() - t0, cpu

    def start_gateway(self) -> None:
        port = _free_port()
        with open(ROOT / "build" / f"park-bench-gateway-{self.run}.log", "wb") as log:
            self.gateway = subprocess.Popen(
                [FLEET, "gateway", "--port", str(port)],
                env={**self.env, "FLEET_LOG_LEVEL": "info"},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.gateway_url = f"http://127.0.0.1:{port}"
        _wait(lambda: _answers(self.gateway_url + "/healthz"), 300)

    def close(self) -> None:
        if self.gateway is not None:
            self.gateway.terminate()
            self.gateway.wait(30)
        prefix = f"litefleet-pb-{self.run}-"
        for c in self.docker.containers.list(all=True, filters={"name": prefix}):
            c.remove(force=True)
        for v in self.docker.volumes.list(filters={"name": prefix}):
            v.remove(force=True)
        self.store.remove(force=True)


def part_up_and_idle(b: Bench, n: int, window: float) -> dict[str, Any]:
    """`fleet up` of n tenants in one command, then their idle CPU, split by process."""
    daemons0 = _cpu_of(DAEMONS)
    time.sleep(10)
    base = (_cpu_of(DAEMONS) - daemons0) / 10
    _, wall, cpu = b.fleet("up", "--count", str(n), "--prefix", f"pb-{b.run}-i")
    out: dict[str, Any] = {
        "up_tenants": n,
        "up_wall_s": round(wall, 2),
        "up_tenants_per_s": round(n / wall, 2),
        "up_fleet_cpu_s_per_tenant": round(cpu / n, 3),
    }
    time.sleep(30)  # settle: first syncs, compactions
    out.update(idle_sample(b, f"litefleet-pb-{b.run}-i", window, base))
    return out


def idle_sample(b: Bench, prefix: str, window: float, base_daemons: float) -> dict[str, Any]:
    cs = b.docker.containers.list(filters={"name": prefix})
    n = len(cs)
    cg0 = {c.id: _cg(c.id) for c in cs}
    p0 = {c.id: _procs(c.id) for c in cs}
    store0, d0, host0 = _cg(b.store.id), _cpu_of(DAEMONS), _host_cpu()
    since = int(time.time())
    time.sleep(window)
    ids = {c.id for c in cs}
    events = b.docker.events(
        since=since, until=int(time.time()), filters={"event": "exec_start"}, decode=True
    )
    execs = sum(1 for ev in events if ev.get("id") in ids)
    cg1 = {c.id: _cg(c.id) for c in cs}
    p1 = {c.id: _procs(c.id) for c in cs}
    store1, d1, host1 = _cg(b.store.id), _cpu_of(DAEMONS), _host_cpu()
    by: dict[str, float] = {}
    for cid in p1:
        for pid, (cmd, t) in p1[cid].items():
            if pid in p0[cid]:
                by[cmd] = by.get(cmd, 0.0) + t - p0[cid][pid][1]
    mc = 1000 / window / n  # CPU seconds -> millicores per tenant
    containers = sum(cg1[i] - cg0[i] for i in cg0)
    return {
        "idle_tenants": n,
        "idle_window_s": window,
        "mc_per_tenant_containers": round(containers * mc, 2),
        "mc_per_tenant_by_process": {k: round(v * mc, 2) for k, v in sorted(by.items())},
        "mc_per_tenant_other_in_containers": round((containers - sum(by.values())) * mc, 2),
        "execs_into_these_containers_by_others": execs,  # e.g. other `fleet ls` on the engine
        "mc_per_tenant_object_store": round((store1 - store0) * mc, 2),
        "mc_per_tenant_engine_daemons_above_base": round(
            ((d1 - d0) - base_daemons * window) * mc, 2
        ),
        "host_cores_busy_all_work": round((host1 - host0) / window, 2),
    }


def part_wake(b: Bench, rounds: int) -> dict[str, Any]:
    """Park and wake (a request through the gateway) a tenant with a ~1 MB database."""
    t = f"pb-{b.run}-w"
    b.fleet("up", t)
    token = b.fleet("token", t)[0].strip()
    b.start_gateway()
    big = "x" * 25_000  # 10 runs: a ~1 MB database (input and events hold it)
    with httpx.Client(base_url=f"{b.gateway_url}/t/{t}", trust_env=False, timeout=60) as c:
        c.headers["Authorization"] = f"Bearer {token}"
        for i in range(10):
            c.post("/v1/runs", json={"workflow": "echo", "input": {"message": big}, "id": f"m{i}"})
        time.sleep(3)
        parks, wakes, park_cmd = [], [], []
        for _ in range(rounds):
            time.sleep(2.5)  # names.LITESTREAM_ATTACH_S after the last start
            out, wall, _ = b.fleet("park", t)
            parks.append(float(out.split(" parked in ")[1].split("s")[0]))
            park_cmd.append(wall)
            time.sleep(1)
            t0 = time.monotonic()
            r = c.get("/v1/runs/m9")
            wakes.append(time.monotonic() - t0)
            assert r.status_code == 200 and len(r.json()["input"]["message"]) == len(big), r.text
    db = json.loads(b.fleet("ls", "--json")[0])
    size = next(x["db_bytes"] for x in db if x["tenant"] == t)
    return {
        "db_bytes": size,
        "rounds": rounds,
        "park_s_p50": round(statistics.median(parks), 3),
        "park_s_max": round(max(parks), 3),
        "park_command_wall_s_p50": round(statistics.median(park_cmd), 3),
        "wake_request_to_response_s_p50": round(statistics.median(wakes), 3),
        "wake_request_to_response_s_max": round(max(wakes), 3),
    }


def part_thousand(b: Bench, parked: int, running: int, window: float) -> dict[str, Any]:
    """`parked` copies of one parked 1 MB tenant + `running` idle tenants, then: fleet ls,
    host CPU and memory, a request to a random parked tenant through the gateway."""
    src = f"pb-{b.run}-w"
    if not any(x["tenant"] == src for x in json.loads(b.fleet("ls", "--json")[0])):
        part_wake(b, 1)
    b.fleet("park", src, check=False)
    manifest = json.loads(
        b.s3.get_object(Bucket="park-bench", Key=f"manifests/{src}.json")["Body"].read()
    )
    keys = [o["Key"] for o in _list(b, f"tenants/{src}/")]
    names = [f"pb-{b.run}-p{i:04d}" for i in range(parked)]
    tokens = {n: secrets.token_urlsafe(32) for n in names}
    t0 = time.monotonic()
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda n: _copy_parked(b, src, n, keys, manifest, tokens[n]), names))
    copy_s = time.monotonic() - t0
    mem0 = _mem_used()
    if not b.docker.containers.list(filters={"name": f"litefleet-pb-{b.run}-i"}):
        b.fleet("up", "--count", str(running), "--prefix", f"pb-{b.run}-i", check=False)
    if b.gateway is None:
        b.start_gateway()
    time.sleep(30)
    ls_times = [b.fleet("ls")[1] for _ in range(3)]
    ls_json = json.loads(b.fleet("ls", "--json")[0])
    states: dict[str, int] = {}
    for row in ls_json:
        states[row["state"]] = states.get(row["state"], 0) + 1
    idle = idle_sample(b, f"litefleet-pb-{b.run}-i", window, 0.0)
    gw_cpu = _proc_cpu(b.gateway.pid) if b.gateway else 0.0
    time.sleep(window)
    gw_cpu = ((_proc_cpu(b.gateway.pid) if b.gateway else 0.0) - gw_cpu) / window
    pick = random.choice(names)
    t0 = time.monotonic()
    r = httpx.get(
        f"{b.gateway_url}/t/{pick}/v1/runs/m9",
        headers={"Authorization": f"Bearer {tokens[pick]}"},
        trust_env=False,
        timeout=60,
    )
    wake = time.monotonic() - t0
    assert r.status_code == 200, r.text
    return {
        "parked": parked,
        "running": running,
        "synthesis_s": round(copy_s, 1),
        "ls_states": states,
        "fleet_ls_s": [round(x, 2) for x in ls_times],
        "host_mem_used_mib_delta_with_running": round((_mem_used() - mem0) / 2**20),
        "host_mem_used_mib": round(_mem_used() / 2**20),
        "store_container_mib": round(_cg_mem(b.store.id) / 2**20),
        "gateway_cores_idle": round(gw_cpu, 4),
        "random_parked_request_s": round(wake, 3),
        "random_parked_tenant": pick,
        **{f"idle_{k}": v for k, v in idle.items()},
    }


def _copy_parked(
    b: Bench, src: str, name: str, keys: list[str], doc: dict[str, Any], token: str
) -> None:
    for key in keys:
        b.s3.copy_object(
            Bucket="park-bench",
            Key=f"tenants/{name}/" + key[len(f"tenants/{src}/") :],
            CopySource={"Bucket": "park-bench", "Key": key},
        )
    rec = json.loads(json.dumps(doc))
    rec["park"]["spec"]["tenant"] = name
    rec["park"]["secrets"]["token"] = token
    rec["park"]["next_wake_at"] = None
    body = json.dumps(rec).encode()
    b.s3.put_object(Bucket="park-bench", Key=f"manifests/{name}.json", Body=body)


def _list(b: Bench, prefix: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for page in b.s3.get_paginator("list_objects_v2").paginate(Bucket="park-bench", Prefix=prefix):
        out.extend(page.get("Contents", []))
    return out


def _cg(cid: str) -> float:
    return int(Path(f"/sys/fs/cgroup/cpuacct/docker/{cid}/cpuacct.usage").read_text()) / 1e9


def _cg_mem(cid: str) -> int:
    return int(Path(f"/sys/fs/cgroup/memory/docker/{cid}/memory.usage_in_bytes").read_text())


def _procs(cid: str) -> dict[str, tuple[str, float]]:
    out = {}
    for pid in Path(f"/sys/fs/cgroup/cpuacct/docker/{cid}/cgroup.procs").read_text().split():
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        words = [a.decode(errors="replace").rsplit("/", 1)[-1] for a in argv[:4] if a]
        out[pid] = (" ".join(words[:3]), (int(fields[11]) + int(fields[12])) / HZ)
    return out


def _proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / HZ


def _cpu_of(names: set[str]) -> float:
    total = 0.0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        if stat[stat.index("(") + 1 : stat.rindex(")")] in names:
            f = stat.rsplit(")", 1)[1].split()
            total += (int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])) / HZ
    return total


def _host_cpu() -> float:
    f = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    busy = sum(int(x) for x in f[:3]) + sum(int(x) for x in f[5:8])
    return busy / HZ


def _mem_used() -> int:
    info = {
        ln.split(":")[0]: int(ln.split()[1]) * 1024
        for ln in Path("/proc/meminfo").read_text().splitlines()
    }
    return info["MemTotal"] - info["MemAvailable"]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, trust_env=False, timeout=2).status_code < 500
    except httpx.HTTPError:
        return False


def _wait(check: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError("did not become ready")
        time.sleep(0.2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="up,idle,wake,thousand")
    ap.add_argument("--tenants", type=int, default=50)
    ap.add_argument("--parked", type=int, default=950)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--window", type=float, default=60.0)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    parts = set(args.only.split(","))
    result: dict[str, Any] = {"machine": describe(Path("/tmp"), ROOT), "commit": _commit()}
    b = Bench(uuid.uuid4().hex[:6])
    try:
        if parts & {"up", "idle"}:
            result["up_idle"] = part_up_and_idle(b, args.tenants, args.window)
            print(json.dumps(result["up_idle"], indent=2), flush=True)
        if "wake" in parts:
            result["wake"] = part_wake(b, args.rounds)
            print(json.dumps(result["wake"], indent=2), flush=True)
        if "thousand" in parts:
            result["thousand"] = part_thousand(b, args.parked, args.tenants, args.window)
            print(json.dumps(result["thousand"], indent=2), flush=True)
    finally:
        b.close()
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


def _commit() -> str:
    return subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()


if __name__ == "__main__":
    main()
