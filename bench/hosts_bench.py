"""Many hosts: restore time by database size, migration downtime, replication lag.

    .venv/bin/python bench/hosts_bench.py [--sizes 1,10,100] [--migrations 3] [--lag-samples 40]

Host ``a`` is this machine's engine (with the embedded store), host ``b`` a second dockerd
started here (tests/second_engine.py) and removed at the end. Everything goes through the
`fleet` CLI as a user runs it; the figures are what it prints plus wall-clock times.
- restore: a tenant on a, its database grown to N MB (a filler table written inside the
  container through a second SQLite connection, 1 MB blobs), in sync; `fleet down` + `fleet rm`
  (backup kept); then `fleet restore --host b`: the one-off restore and the time to healthy.
- migration downtime: `fleet migrate` of a small tenant a -> b -> a ..., as printed.
- replication lag at sync-interval 1s: a run is committed (`POST /v1/runs` + wait), then the
  bucket is listed every 20 ms until an LTX file with a higher txid appears.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._machine import describe  # noqa: E402
from fleet.core.names import image_ref  # noqa: E402
from fleet.storage.backups import LTX_KEY  # noqa: E402
from fleet.storage.embedded import ensure_object_store  # noqa: E402
from fleet.storage.s3 import client as s3_client  # noqa: E402
from fleet.supervisor.s3 import S3Settings  # noqa: E402
from tests.second_engine import running_second_engine  # noqa: E402

FLEET = str(Path(sys.executable).with_name("fleet"))
BUCKET = "litefleet-bench"


def sh(env: dict[str, str], *args: str) -> str:
    p = subprocess.run([FLEET, *args], env={**os.environ, **env}, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"fleet {' '.join(args)}: {p.stderr.strip()}")
    return p.stdout


def container(tenant: str) -> Any:
    import docker

    return docker.from_env().containers.get(f"litefleet-{tenant}")


def grow(tenant: str, mb: int) -> None:
    """Add ``mb`` MB to the tenant's database from inside its container."""
    code = (
        "import apsw, os, sys\n"
        "c = apsw.Connection('/data/tenant.db'); c.set_busy_timeout(10000)\n"
        "c.execute('CREATE TABLE IF NOT EXISTS filler (b BLOB)')\n"
        "for _ in range(int(sys.argv[1])):\n"
        "    with c:\n"
        "        c.execute('INSERT INTO filler VALUES (?)', (os.urandom(1 << 20),))\n"
    )
    r = container(tenant).exec_run(["python3", "-I", "-c", code, str(mb)], user="10002:10002")
    assert r.exit_code == 0, r.output


def in_sync(env: dict[str, str], tenant: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = json.loads(sh(env, "ls", "--json"))
        rep = next(t for t in rows if t["tenant"] == tenant)["replication"]
        if rep["local_txid"] is not None and rep["lag_txns"] == 0:
            return
        time.sleep(0.5)
    raise RuntimeError(f"{tenant} not in sync after {timeout}s")


def bench_restore(env: dict[str, str], mb: int) -> dict[str, Any]:
    t = f"hb-{uuid.uuid4().hex[:6]}"
    try:
        sh(env, "up", t, "--host", "a")
        if mb > 1:
            grow(t, mb - 1)  # the runtime's own tables and a run are the first ~0.1 MB
        else:
            grow(t, 1)
        in_sync(env, t)
        sh(env, "down", t)
        sh(env, "rm", t)
        t0 = time.monotonic()
        out = sh(env, "restore", t, "--host", "b")
        wall = time.monotonic() - t0
        m = re.search(r"restore ([\d.]+)s, healthy after ([\d.]+)s", out)
        assert m, out
        return {"mb": mb, "restore_s": float(m[1]), "healthy_s": float(m[2]), "cli_s": wall}
    finally:
        sh_quiet(env, "rm", t, "--purge", "--yes")


def bench_migrate(env: dict[str, str], rounds: int) -> list[float]:
    t = f"hb-{uuid.uuid4().hex[:6]}"
    downs = []
    try:
        sh(env, "up", t, "--host", "a")
        for i in range(3):
            sh(env, "run", t, "steps", "-i", '{"n": 3}', "--id", f"r{i}", "--wait")
        for i in range(rounds):
            out = sh(env, "migrate", t, "--to", "b" if i % 2 == 0 else "a")
            m = re.search(r"downtime ([\d.]+)s", out)
            assert m, out
            downs.append(float(m[1]))
    finally:
        sh_quiet(env, "rm", t, "--purge", "--yes")
    return downs


def bench_lag(env: dict[str, str], s3: S3Settings, samples: int) -> list[float]:
    t = f"hb-{uuid.uuid4().hex[:6]}"
    client = s3_client(s3)
    prefix = f"tenants/{t}/0000/"

    def newest() -> int:
        got = client.list_objects_v2(Bucket=s3.bucket, Prefix=prefix).get("Contents", [])
        return max((int(m["max"], 16) for o in got if (m := LTX_KEY.search(o["Key"]))), default=0)

    lags = []
    try:
        sh(env, "up", t, "--host", "a")
        c = container(t)
        port = c.attrs["NetworkSettings"]["Ports"]["8080/tcp"][0]["HostPort"]
        token = dict(e.partition("=")[::2] for e in c.attrs["Config"]["Env"])["AGENT_RUNTIME_TOKEN"]
        import httpx

        api = httpx.Client(
            base_url=f"http://127.0.0.1:{port}",
            headers={"Authorization": f"Bearer {token}"},
            trust_env=False,
        )
        time.sleep(2)
        for i in range(samples):
            before = newest()
            # 201 = the run is committed (synchronous=FULL): the clock starts there.
            api.post("/v1/runs", json={"workflow": "echo", "input": {"message": str(i)}})
            committed = time.monotonic()
            deadline = committed + 10
            while newest() <= before and time.monotonic() < deadline:
                time.sleep(0.01)
            lags.append(time.monotonic() - committed)
            time.sleep(1.0 + (i % 7) * 0.13)  # commits at spread phases of the sync interval
        api.close()
    finally:
        sh_quiet(env, "rm", t, "--purge", "--yes")
    return lags


def sh_quiet(env: dict[str, str], *args: str) -> None:
    subprocess.run([FLEET, *args], env={**os.environ, **env}, capture_output=True, check=False)


def pct(xs: list[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="1,10,100", help="database sizes in MB")
    ap.add_argument("--migrations", type=int, default=3)
    ap.add_argument("--lag-samples", type=int, default=40)
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--only", choices=["restore", "migrate", "lag"], help="one measurement")
    args = ap.parse_args()

    import docker

    store = ensure_object_store(docker.from_env(), bucket=BUCKET)
    s3 = store.for_fleet()
    results: dict[str, Any] = {"machine": describe(Path("/tmp"), ROOT)}
    with running_second_engine() as url:
        env = {
            "FLEET_HOSTS": f"a=unix:///var/run/docker.sock,b={url}",
            "FLEET_IMAGE": image_ref("tenant"),
            "FLEET_S3_BUCKET": BUCKET,
            "FLEET_CONFIG": "",
            "FLEET_HEALTH_TIMEOUT": "180",
        }
        t0 = time.monotonic()
        sh(env, "up", "hb-warm", "--host", "b")  # copies the image to b once
        results["image_copy_and_first_up_s"] = round(time.monotonic() - t0, 2)
        sh_quiet(env, "rm", "hb-warm", "--purge", "--yes")
        sizes = [] if args.only not in (None, "restore") else args.sizes.split(",")
        results["restore"] = [bench_restore(env, int(mb)) for mb in sizes]
        for r in results["restore"]:
            print(f"restore {r['mb']:>4} MB: litestream restore {r['restore_s']:.1f}s, "
                  f"healthy after {r['healthy_s']:.1f}s (CLI {r['cli_s']:.1f}s)")  # fmt: skip
        downs = bench_migrate(env, args.migrations if args.only in (None, "migrate") else 0)
        results["migration_downtime_s"] = downs
        print(f"migration downtime: {', '.join(f'{d:.2f}' for d in downs)} s")
        lags = bench_lag(env, s3, args.lag_samples if args.only in (None, "lag") else 1)
        results["replication_lag_s"] = {
            "p50": round(statistics.median(lags), 3),
            "p99": round(pct(lags, 99), 3),
            "max": round(max(lags), 3),
            "n": len(lags),
        }
        print(f"replication lag (sync-interval 1s): {results['replication_lag_s']}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
