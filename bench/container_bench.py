"""Tenant container benchmarks (issue 3), on the real engine with the embedded object store.

Every container is created with fleet.engine.container_spec.container_config, exactly as
`fleet up` creates it (hardened, cpus 0.5, memory 256m, on the `litefleet` network).

Parts:
  start    create + start on a fresh volume (empty replica: the restore check finds nothing)
           until GET /healthz answers 200, --starts times; then a graceful stop and a start
           of the same container (database on the volume: no restore check). Where the time
           goes comes from the containers' own log timestamps (see PHASES).
  rss      idle memory of --rss-tenants tenants kept from `start`, after --settle seconds:
           VmRSS and Pss of each process inside (docker top pids, /proc on the host) and the
           container's memory cgroup.
  restore  a tenant database filled to --restore-mb MiB through the runtime API (echo runs
           with incompressible messages), stopped (final sync), then restored --restores
           times: a new container on an empty volume until healthy, and plain
           `litestream restore` on the host.
  image    image size and its largest layers.
  diag     what a start is made of: python start-up/imports, litestream start-up and an empty
           replica check in one-shot containers at cpus 0.5 (the fleet's default) and cpus 2.

    python bench/container_bench.py [--only start,rss,restore,image,diag] [--json OUT]

Everything created carries the label litefleet.bench=<run id> and is removed at the end, also
on failure, Ctrl-C or --max-minutes.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import _containers as cx  # noqa: E402
import httpx  # noqa: E402

from fleet.core.hosting import TenantSpec  # noqa: E402
from fleet.core.names import STOP_TIMEOUT_S, image_ref  # noqa: E402
from fleet.engine.container_spec import container_config, published_port  # noqa: E402
from fleet.engine.network import ensure_tenant_network  # noqa: E402
from fleet.storage.embedded import EmbeddedStore as ObjectStore  # noqa: E402
from fleet.storage.embedded import client as s3_client  # noqa: E402
from fleet.storage.embedded import ensure_object_store, remove_object_store  # noqa: E402

BUCKET = "litefleet-bench"
LITESTREAM = str(Path(sys.executable).parent / "litestream")
PARTS = ["start", "rss", "restore", "image", "diag"]
# Log lines marking the end of each start phase (docker's receive timestamps).
PHASES = [
    ("restore_check", ("no replica at", "restored /data", "using /data")),
    ("litestream_up", ("msg=litestream version",)),
    ("runtime_started", ('"runtime_started"',)),
]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--only", default=",".join(PARTS), help="parts to run (default: all)")
    p.add_argument("--starts", type=int, default=20, help="fresh-volume starts (default 20)")
    p.add_argument("--rss-tenants", type=int, default=5, help="tenants measured idle (default 5)")
    p.add_argument("--settle", type=float, default=20.0, help="idle seconds before RSS (20)")
    p.add_argument("--restore-mb", type=int, default=100, help="database size, MiB (default 100)")
    p.add_argument("--restores", type=int, default=3, help="restores of each kind (default 3)")
    p.add_argument(
        "--restore-store",
        choices=["private", "embedded"],
        default="private",
        help="store for part restore (default private: see Bench.private_store)",
    )
    p.add_argument("--diag-rounds", type=int, default=5, help="rounds per diagnostic (5)")
    p.add_argument("--cpus", type=float, default=0.5, help="tenant CPU limit (fleet default)")
    p.add_argument("--image", default=image_ref("tenant"), help="tenant image")
    p.add_argument("--max-minutes", type=float, default=40.0, help="hard stop (default 40)")
    p.add_argument("--json", type=Path, metavar="OUT", help="also write the results as JSON")
    args = p.parse_args(argv)
    args.parts = [s.strip() for s in args.only.split(",") if s.strip()]
    bad = [s for s in args.parts if s not in PARTS]
    if bad:
        p.error(f"unknown part {bad[0]!r} (choose from {', '.join(PARTS)})")
    if "rss" in args.parts and "start" not in args.parts:
        p.error("part rss measures tenants kept from part start: add start")
    return args


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def docker_epoch(stamp: str) -> float:
    """Seconds since the epoch of a docker timestamp (nanoseconds, Z)."""
    head, _, frac = stamp.rstrip("Z").partition(".")
    return datetime.fromisoformat(head + "+00:00").timestamp() + float("0." + (frac or "0"))


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        import docker

        self.args = args
        self.run = uuid.uuid4().hex[:6]
        self.client = docker.from_env(timeout=120)
        self.client.ping()
        self.store: ObjectStore = ensure_object_store(self.client, bucket=BUCKET)
        self.network = ensure_tenant_network(self.client)
        self.s3 = self.store.for_tenants()
        self.cleaned = False

    # -- containers

    def tenant(self, suffix: str) -> str:
        return f"cb{self.run}-{suffix}"

    def create(self, tenant: str, volume: str | None = None, **kw: Any) -> tuple[Any, str]:
        """A tenant container (not started) on ``volume`` (a new one by default)."""
        label = {cx.BENCH_LABEL: self.run}
        volume = self.volume(volume or f"litefleet-bench-{tenant}-{uuid.uuid4().hex[:4]}")
        kw.setdefault("cpus", self.args.cpus)
        spec = TenantSpec(
            tenant=tenant,
            image=self.args.image,
            volume=volume,
            s3=self.s3,
            token=uuid.uuid4().hex,
            name=f"litefleet-bench-{tenant}-{uuid.uuid4().hex[:4]}",
            labels=label,
            **kw,
        )
        return self.client.containers.create(**container_config(spec, self.network)), volume

    def start_timed(self, container: Any, t0: float, w0: float) -> dict[str, Any]:
        """Start ``container`` (created at monotonic t0 / epoch w0), wait for /healthz."""
        t_create = time.monotonic()
        container.start()
        container.reload()
        port = published_port(container.attrs)
        if port is None:
            raise RuntimeError(f"{container.name}: no published port")
        t_ok = cx.wait_healthz(port, timeout=120)
        container.reload()
        r: dict[str, Any] = {"total_s": t_ok - t0, "start_to_healthy_s": t_ok - t_create}
        r["phases"] = self.phases(container, w0, w0 + (t_ok - t0))
        r["port"] = port
        return r

    def phases(self, container: Any, w0: float, w_ok: float) -> dict[str, float]:
        """Seconds spent in each start phase, from the container's log timestamps."""
        started = docker_epoch(container.attrs["State"]["StartedAt"])
        marks = {"engine": started}
        logs = container.logs(timestamps=True, since=int(w0) - 1).decode(errors="replace")
        for line in logs.splitlines():
            stamp, _, text = line.partition(" ")
            at = docker_epoch(stamp)
            if at < w0:
                continue
            for phase, needles in PHASES:
                if phase not in marks and any(n in text for n in needles):
                    marks[phase] = at
        out: dict[str, float] = {}
        prev = w0
        for phase in ["engine"] + [p for p, _ in PHASES]:
            if phase in marks:
                out[phase] = marks[phase] - prev
                prev = marks[phase]
        out["listen_and_poll"] = w_ok - prev
        return out

    def volume(self, name: str) -> str:
        self.client.volumes.create(name=name, labels={cx.BENCH_LABEL: self.run})
        return name

    # -- parts

    def part_start(self) -> tuple[dict[str, Any], list[Any]]:
        fresh: list[dict[str, Any]] = []
        restart: list[dict[str, Any]] = []
        stops: list[float] = []
        kept: list[Any] = []
        n = self.args.starts
        for i in range(n):
            w0, t0 = time.time(), time.monotonic()
            c, _ = self.create(self.tenant(f"s{i}"))
            fresh.append(self.start_timed(c, t0, w0))
            t_stop = time.monotonic()
            c.stop(timeout=STOP_TIMEOUT_S)
            stops.append(time.monotonic() - t_stop)
            w0, t0 = time.time(), time.monotonic()
            restart.append(self.start_timed(c, t0, w0))
            say(
                f"start {i + 1}/{n}: fresh {fresh[-1]['total_s']:.2f} s, "
                f"stop {stops[-1]:.2f} s, restart {restart[-1]['total_s']:.2f} s"
            )
            if i >= n - self.args.rss_tenants:
                kept.append(c)
            else:
                c.remove(force=True)
        return {
            "fresh": summarize_starts(fresh),
            "restart": summarize_starts(restart),
            "graceful_stop_s": cx.dist(stops),
        }, kept

    def part_rss(self, kept: list[Any]) -> dict[str, Any]:
        say(f"rss: {len(kept)} idle tenants, settling {self.args.settle:g} s")
        time.sleep(self.args.settle)
        per: list[dict[str, Any]] = []
        for c in kept:
            procs = cx.process_memory(self.client, c.id)
            cg = cx.cgroup_memory(c.id)
            per.append(
                {
                    "processes": procs,
                    "rss_mib": sum(p["rss_kib"] for p in procs) / 1024,
                    "pss_mib": sum(p["pss_kib"] for p in procs) / 1024,
                    "anon_mib": sum(p["anon_kib"] for p in procs) / 1024,
                    "cgroup_usage_mib": cg.get("usage", 0) / 2**20,
                    "cgroup_rss_mib": cg.get("rss", 0) / 2**20,
                    "cgroup_cache_mib": cg.get("cache", 0) / 2**20,
                }
            )
        by_proc: dict[str, list[float]] = {}
        anon_by_proc: dict[str, list[float]] = {}
        for t in per:
            for p in t["processes"]:
                by_proc.setdefault(proc_kind(p["cmd"]), []).append(p["rss_kib"] / 1024)
                anon_by_proc.setdefault(proc_kind(p["cmd"]), []).append(p["anon_kib"] / 1024)
        keys = ["rss_mib", "pss_mib", "anon_mib"]
        keys += ["cgroup_usage_mib", "cgroup_rss_mib", "cgroup_cache_mib"]
        return {
            "tenants": len(per),
            "median": {k: statistics.median(t[k] for t in per) for k in keys},
            "rss_mib_by_process": {k: statistics.median(v) for k, v in by_proc.items()},
            "anon_mib_by_process": {k: statistics.median(v) for k, v in anon_by_proc.items()},
            "per_tenant": per,
        }

    @contextlib.contextmanager
    def private_store(self) -> Iterator[None]:
        """A store of our own (same litefleet/s3 image and hardening) for the restore part.

        The embedded store cannot hold this replica: moto spools every object over ~5 MB
        (MOTO_S3_DEFAULT_KEY_BUFFER_SIZE) to /tmp, a 64 MB tmpfs there, and uploads then fail
        with ENOSPC. Here objects stay in memory; everything else is as the fleet's store.
        """
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        name = f"litefleet-bench-s3-{self.run}"
        saved = self.store, self.s3
        try:
            self.store = ensure_object_store(self.client, bucket=BUCKET, port=port, name=name)
            self.s3 = self.store.for_tenants()
            yield
        finally:
            self.store, self.s3 = saved
            remove_object_store(self.client, name)

    def part_restore(self) -> dict[str, Any]:
        if self.args.restore_store == "private":
            with self.private_store():
                return self._restore()
        return self._restore()

    def _restore(self) -> dict[str, Any]:
        tenant = self.tenant("big")
        w0, t0 = time.time(), time.monotonic()
        c, volume = self.create(tenant)
        first = self.start_timed(c, t0, w0)
        mount = Path(self.client.volumes.get(volume).attrs["Mountpoint"])
        fill = self.fill(c, first["port"], mount / "tenant.db")
        t_stop = time.monotonic()
        c.stop(timeout=120)  # the final sync ships whatever is still local
        stop_s = time.monotonic() - t_stop
        db_bytes = (mount / "tenant.db").stat().st_size
        sync_failed = [
            ln[:300]
            for ln in c.logs().decode(errors="replace").splitlines()
            if "shutdown sync failed" in ln
        ]
        c.remove(force=True)
        keys = self.replica_objects(tenant)
        say(
            f"restore: {db_bytes / 2**20:.0f} MiB database, replica {len(keys)} objects "
            f"{sum(keys.values()) / 2**20:.0f} MiB, stop {stop_s:.1f} s"
        )
        containers: list[dict[str, Any]] = []
        for i in range(self.args.restores):
            w0, t0 = time.time(), time.monotonic()
            c, volume = self.create(tenant)
            r = self.start_timed(c, t0, w0)
            r["restore_ms_logged"] = restore_ms(c)
            r["db_mib"] = (
                Path(self.client.volumes.get(volume).attrs["Mountpoint"]) / "tenant.db"
            ).stat().st_size / 2**20
            r["last_run_status"] = self.run_status(r["port"], c, fill["last_run"])
            c.remove(force=True)  # SIGKILL: nothing new reaches the replica
            self.client.volumes.get(volume).remove(force=True)
            containers.append(r)
            say(f"restore {i + 1}: container healthy after {r['total_s']:.2f} s")
        host = [self.host_restore(tenant) for _ in range(self.args.restores)]
        for h in host:
            say(f"restore: host litestream restore {h['s']:.2f} s")
        return {
            "db_mib": db_bytes / 2**20,
            "fill": fill,
            "graceful_stop_s": stop_s,
            "final_sync_failed": sync_failed,
            "store": self.args.restore_store,
            "replica_objects": len(keys),
            "replica_mib": sum(keys.values()) / 2**20,
            "container": {
                **summarize_starts(containers),
                "restore_ms_logged": cx.dist([float(r["restore_ms_logged"]) for r in containers]),
                "db_mib": [r["db_mib"] for r in containers],
                "last_run_status": [r["last_run_status"] for r in containers],
            },
            "host_litestream_restore_s": cx.dist([h["s"] for h in host]),
            "host_restored_mib": [h["mib"] for h in host],
        }

    def fill(self, c: Any, port: int, db: Path) -> dict[str, Any]:
        """Echo runs with ~700 KB incompressible messages until the file reaches the size."""
        target = self.args.restore_mb * 2**20
        token = c.attrs["Config"]["Env"]
        token = next(e.split("=", 1)[1] for e in token if e.startswith("AGENT_RUNTIME_TOKEN="))
        runs = 0
        last = ""
        t0 = time.monotonic()
        with httpx.Client(
            base_url=f"http://127.0.0.1:{port}",
            headers={"Authorization": f"Bearer {token}"},
            trust_env=False,
            timeout=30,
        ) as http:
            while db.stat().st_size < target and runs < 4 * self.args.restore_mb:
                msg = base64.b64encode(os.urandom(525_000)).decode()  # 700,000 chars
                resp = http.post("/v1/runs", json={"workflow": "echo", "input": {"message": msg}})
                resp.raise_for_status()
                last = resp.json()["id"]
                runs += 1
                if runs % 8 == 0:  # let litestream checkpoint the WAL into the file
                    self.wait_run(http, last)
            self.wait_run(http, last)
        return {"runs": runs, "seconds": time.monotonic() - t0, "last_run": last}

    @staticmethod
    def wait_run(http: httpx.Client, run_id: str) -> None:
        deadline = time.monotonic() + 60
        while http.get(f"/v1/runs/{run_id}").json()["status"] != "completed":
            if time.monotonic() > deadline:
                raise RuntimeError(f"run {run_id} not completed after 60 s")
            time.sleep(0.05)

    @staticmethod
    def run_status(port: int, c: Any, run_id: str) -> str:
        env = c.attrs["Config"]["Env"]
        token = next(e.split("=", 1)[1] for e in env if e.startswith("AGENT_RUNTIME_TOKEN="))
        with httpx.Client(trust_env=False, timeout=10) as http:
            r = http.get(
                f"http://127.0.0.1:{port}/v1/runs/{run_id}",
                headers={"Authorization": f"Bearer {token}"},
            )
        return str(r.json().get("status")) if r.status_code == 200 else f"HTTP {r.status_code}"

    def replica_objects(self, tenant: str) -> dict[str, int]:
        s3 = s3_client(self.store)
        found: dict[str, int] = {}
        for page in s3.get_paginator("list_objects_v2").paginate(
            Bucket=BUCKET, Prefix=f"tenants/{tenant}/"
        ):
            found.update({o["Key"]: o["Size"] for o in page.get("Contents", [])})
        return found

    def host_restore(self, tenant: str) -> dict[str, float]:
        """Plain `litestream restore` on the host from the store's loopback endpoint."""
        with tempfile.TemporaryDirectory(prefix="cbench-", dir=HERE.parent / "build") as tmp:
            out = Path(tmp, "restored.db")
            cfg = Path(tmp, "litestream.yml")
            st = self.store
            cfg.write_text(
                f"dbs:\n  - path: {out}\n    replica:\n      type: s3\n"
                f"      bucket: {st.bucket}\n      path: tenants/{tenant}\n"
                f"      endpoint: {st.host_endpoint}\n      region: {st.region}\n"
                "      force-path-style: true\n"
            )
            env = {  # explicit: AWS_CA_BUNDLE in the shell breaks litestream's S3 client
                "PATH": "/usr/bin:/bin",
                "HOME": tmp,
                "LITESTREAM_ACCESS_KEY_ID": st.access_key_id,
                "LITESTREAM_SECRET_ACCESS_KEY": st.secret_access_key,
            }
            t0 = time.monotonic()
            proc = subprocess.run(
                [LITESTREAM, "restore", "-config", str(cfg), str(out)],
                env=env,
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )
            s = time.monotonic() - t0
            if proc.returncode != 0:
                raise RuntimeError(f"litestream restore failed: {proc.stderr.strip()[-300:]}")
            return {"s": s, "mib": out.stat().st_size / 2**20}

    def part_image(self) -> dict[str, Any]:
        img = self.client.images.get(self.args.image)
        layers = [
            {"mb": h["Size"] / 1e6, "created_by": h["CreatedBy"][-90:]}
            for h in img.history()
            if h["Size"] > 1_000_000
        ]
        base = img.attrs["Config"].get("Labels") or {}
        return {
            "image": self.args.image,
            "id": img.id[7:19],
            "size_mb": img.attrs["Size"] / 1e6,
            "layers_over_1mb": layers,
            "version_label": base.get("org.opencontainers.image.version"),
        }

    def part_diag(self) -> dict[str, Any]:
        """One-shot containers with the tenant's hardening: what a start costs, piece by piece."""
        steps = {
            "python_bare": ["python3", "-c", "pass"],
            "python_runtime_imports": [
                "python3",
                "-c",
                "import uvicorn, agent_runtime._http, agent_runtime._runtime, "
                "agent_runtime.examples",
            ],
            "litestream_version": ["litestream", "version"],
            "litestream_restore_check": [
                "litestream",
                "restore",
                "-config",
                "/etc/litefleet/litestream.yml",
                "-if-db-not-exists",
                "-if-replica-exists",
                "/tmp/x.db",
            ],
        }
        out: dict[str, Any] = {}
        for cpus in (self.args.cpus, 2.0):
            for name, cmd in steps.items():
                times = [self.oneshot(cmd, cpus) for _ in range(self.args.diag_rounds)]
                out[f"{name}@cpus={cpus:g}"] = statistics.median(times)
                say(f"diag {name} cpus={cpus:g}: {out[f'{name}@cpus={cpus:g}']:.3f} s")
        out["importtime_top"] = self.importtime()
        return out

    def oneshot(self, cmd: list[str], cpus: float) -> float:
        """Wall seconds of ``cmd`` inside the container, timed by the container's bash."""
        script = (
            't0=$EPOCHREALTIME; "$@" >/dev/null 2>&1; t1=$EPOCHREALTIME; '
            'echo "DIAG $(( ${t1/./} - ${t0/./} ))"'
        )
        volume = self.volume(f"litefleet-bench-diag-{uuid.uuid4().hex[:6]}")
        spec = TenantSpec(
            tenant=self.tenant("diag"),
            image=self.args.image,
            volume=volume,
            s3=self.s3,
            token="diag",
            labels={cx.BENCH_LABEL: self.run},
            cpus=cpus,
            name=f"litefleet-bench-diag-{uuid.uuid4().hex[:6]}",
        )
        cfg = container_config(spec, self.network)
        # The entrypoint's trimmed environment for litestream (no AWS_* variables).
        cfg["entrypoint"] = ["/bin/bash", "-c", script, "diag"]
        cfg["command"] = cmd
        c = self.client.containers.create(**cfg)
        try:
            c.start()
            c.wait(timeout=120)
            text = c.logs().decode(errors="replace")
        finally:
            c.remove(force=True)
            self.client.volumes.get(volume).remove(force=True)
        for line in text.splitlines():
            if line.startswith("DIAG "):
                return int(line.split()[1]) / 1e6
        raise RuntimeError(f"diag {cmd!r}: {text[-200:]}")

    def importtime(self) -> list[tuple[str, float]]:
        """Biggest cumulative imports (ms) of the runtime, from python -X importtime."""
        out = self.client.containers.run(
            self.args.image,
            entrypoint=["python3", "-X", "importtime", "-c"],
            command=[
                "import uvicorn, agent_runtime._http, agent_runtime._runtime, "
                "agent_runtime.examples"
            ],
            user="10001:10001",
            read_only=True,
            remove=True,
            stdout=False,
            stderr=True,
            labels={cx.BENCH_LABEL: self.run},
            network_mode="none",
        ).decode(errors="replace")
        rows: list[tuple[str, float]] = []
        for line in out.splitlines():
            if not line.startswith("import time:") or "cumulative" in line:
                continue
            _, cum, raw = line[len("import time:") :].split("|")
            if len(raw) - len(raw.lstrip()) == 1:  # top level: nested imports are indented
                rows.append((raw.strip(), int(cum) / 1000))
        return sorted(rows, key=lambda r: -r[1])[:12]

    # -- cleanup

    def cleanup(self) -> None:
        if self.cleaned:
            return
        self.cleaned = True
        flt = {"label": f"{cx.BENCH_LABEL}={self.run}"}
        for c in self.client.containers.list(all=True, filters=flt):
            c.remove(force=True)
        for v in self.client.volumes.list(filters=flt):
            v.remove(force=True)
        s3 = s3_client(self.store)
        for page in s3.get_paginator("list_objects_v2").paginate(
            Bucket=BUCKET, Prefix=f"tenants/cb{self.run}-"
        ):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                s3.delete_objects(Bucket=BUCKET, Delete={"Objects": keys})


def proc_kind(cmd: str) -> str:
    if "fleet.supervisor keep" in cmd:
        return "supervisor"  # the keeper, PID 1 (python3 -I -m fleet.supervisor keep)
    if "litefleet-runner" in cmd or "fleet.supervisor run-app" in cmd:
        return "runner"  # the agent uid's end of the supervisor (its command holds the runtime's)
    if "agent_runtime serve" in cmd or "agent-runtime" in cmd:
        return "agent-runtime"
    for kind in ("docker-init", "litestream"):
        if kind in cmd:
            return kind
    return cmd.split()[0] if cmd else "?"


def restore_ms(c: Any) -> int:
    """The restore time the entrypoint logged ('restored ... in N ms'), -1 when absent."""
    for line in c.logs().decode(errors="replace").splitlines():
        if "restored /data/tenant.db" in line and line.endswith(" ms"):
            return int(line.split()[-2])
    return -1


def summarize_starts(rows: list[dict[str, Any]]) -> dict[str, Any]:
    names: list[str] = []
    for r in rows:
        names += [k for k in r["phases"] if k not in names]
    return {
        "total_s": cx.dist([r["total_s"] for r in rows]),
        "start_to_healthy_s": cx.dist([r["start_to_healthy_s"] for r in rows]),
        "phases_p50_s": {
            k: cx.pct([r["phases"][k] for r in rows if k in r["phases"]], 50) for k in names
        },
    }


def report(res: dict[str, Any]) -> None:
    m = res["machine"]
    print(
        f"machine: {m['nproc']} cpu ({m['cpu']}), {m['ram_gib']} GiB RAM, kernel {m['kernel']}, "
        f"docker {m['docker_server']}, {m['storage_driver']} on {m['backing_fs']}, "
        f"cgroup {m['cgroup']}, commit {m['git_commit']}"
    )
    print(f"command: {res['command']}")
    print(f"load average at start {res['load_start']:.2f}, at end {res['load_end']:.2f}\n")
    p = res["parts"]
    for kind in ("fresh", "restart"):
        if "start" not in p:
            break
        s = p["start"][kind]
        t = s["total_s"]
        label = "fresh volume" if kind == "fresh" else "restart (stopped container)"
        print(
            f"start to /healthz, {label}: p50 {t['p50']:.2f} s, p95 {t['p95']:.2f} s "
            f"(n={t['n']}, min {t['min']:.2f}, max {t['max']:.2f}; target p50 <= 1.5 s)"
        )
        print(
            "  p50 phases: "
            + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in s["phases_p50_s"].items())
        )
    if "start" in p:
        g = p["start"]["graceful_stop_s"]
        print(f"graceful stop (final sync): p50 {g['p50']:.2f} s, p95 {g['p95']:.2f} s")
    if "rss" in p:
        r = p["rss"]
        med = r["median"]
        print(
            f"\nidle memory per tenant (median of {r['tenants']}): sum of VmRSS "
            f"{med['rss_mib']:.1f} MiB (target <= 64), sum of Pss {med['pss_mib']:.1f} MiB, "
            f"anonymous {med['anon_mib']:.1f} MiB; cgroup usage {med['cgroup_usage_mib']:.1f} MiB "
            f"(rss {med['cgroup_rss_mib']:.1f}, cache {med['cgroup_cache_mib']:.1f})"
        )
        anon = r["anon_mib_by_process"]
        print(
            "  VmRSS (of it anonymous) by process: "
            + ", ".join(
                f"{k} {v:.1f} ({anon[k]:.1f}) MiB" for k, v in r["rss_mib_by_process"].items()
            )
        )
    if "restore" in p:
        r = p["restore"]
        c = r["container"]
        print(
            f"\nrestore of a {r['db_mib']:.0f} MiB database ({r['fill']['runs']} echo runs; "
            f"replica {r['replica_objects']} objects, {r['replica_mib']:.0f} MiB):"
        )
        print(
            f"  new container on an empty volume to /healthz: p50 {c['total_s']['p50']:.2f} s "
            f"(min {c['total_s']['min']:.2f}, max {c['total_s']['max']:.2f}, n={c['total_s']['n']})"
            f"; litestream restore inside: p50 {c['restore_ms_logged']['p50'] / 1000:.2f} s"
        )
        h = r["host_litestream_restore_s"]
        print(
            f"  plain `litestream restore` on the host: p50 {h['p50']:.2f} s "
            f"(min {h['min']:.2f}, max {h['max']:.2f})"
        )
        print(
            f"  last run after restore: {c['last_run_status']}; "
            f"graceful stop (final sync) before: {r['graceful_stop_s']:.1f} s; "
            f"store: {r['store']}"
        )
        for line in r["final_sync_failed"]:
            print(f"  FINAL SYNC FAILED: {line}")
    if "image" in p:
        im = p["image"]
        print(f"\nimage {im['image']} ({im['id']}): {im['size_mb']:.0f} MB")
        for layer in im["layers_over_1mb"]:
            what = layer["created_by"].strip() or "base image (imported Debian rootfs)"
            print(f"  {layer['mb']:7.1f} MB  {what}")
    if "diag" in p:
        print("\ndiagnostics (one-shot containers, median wall seconds):")
        for k, v in p["diag"].items():
            if k != "importtime_top":
                print(f"  {k:<44} {v:.3f}")
        print(
            "  biggest imports (cumulative ms, cpus unlimited): "
            + ", ".join(f"{n} {ms:.0f}" for n, ms in p["diag"]["importtime_top"][:8])
        )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    bench = Bench(args)
    cx.arm_hard_stop(args.max_minutes * 60, bench.cleanup)
    started = time.time()
    res: dict[str, Any] = {
        "command": " ".join(["python", "bench/container_bench.py", *(argv or sys.argv[1:])]),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "machine": cx.machine(bench.client, HERE.parent),
        "config": {k: v for k, v in vars(args).items() if k not in ("json", "parts")},
        "load_start": cx.loadavg(),
        "parts": {},
    }
    res["config"]["image"] = args.image
    failed = False
    try:
        parts = res["parts"]
        kept: list[Any] = []
        for part in args.parts:
            try:
                if part == "start":
                    parts["start"], kept = bench.part_start()
                elif part == "rss":
                    parts["rss"] = bench.part_rss(kept)
                elif part == "restore":
                    for c in kept:  # idle tenants are not part of the restore figures
                        c.remove(force=True)
                    kept = []
                    parts["restore"] = bench.part_restore()
                elif part == "image":
                    parts["image"] = bench.part_image()
                elif part == "diag":
                    parts["diag"] = bench.part_diag()
            except cx.HardStop:
                raise
            except Exception as exc:  # report the part as failed, go on with the others
                failed = True
                res.setdefault("errors", {})[part] = f"{type(exc).__name__}: {exc}"[:400]
                say(f"{part} FAILED: {exc}")
    finally:
        bench.cleanup()
    res["load_end"] = cx.loadavg()
    res["duration_s"] = round(time.time() - started, 1)
    for part in list(res.get("errors", {})):
        res["parts"].pop(part, None)
    report(res)
    for part, why in res.get("errors", {}).items():
        print(f"{part}: FAILED {why}")
    if args.json:
        args.json.write_text(json.dumps(res, indent=2, default=str) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except cx.HardStop as stop:
        print(f"error: {stop} (everything it created was removed)", file=sys.stderr)
        sys.exit(2)
