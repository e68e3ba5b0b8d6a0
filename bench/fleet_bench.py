"""Fleet benchmarks (issue 4): `fleet up` / `fleet teardown` of many tenants, and what 100 idle
tenants cost the host. The CLI is driven as a user drives it: one `.venv/bin/fleet up NAME
--label bench=1 --label benchrun=RUN` process per tenant, --parallel of them at a time.

Parts:
  up     `fleet up` of --tenants tenants in parallel (wall time, tenants/s, per-command
         latency), then one `fleet teardown --label bench=1 --label benchrun=RUN --purge --yes`.
  idle   --idle-tenants tenants up, --settle seconds idle, then: host memory (/proc/meminfo,
         as free(1) computes it) before and after, the sum over containers of per-process
         VmRSS / Pss and of memory-cgroup usage, the per-container host processes
         (containerd-shim, docker-proxy) and host CPU in use while idle; then teardown.
  cli    what one command costs: `fleet --help` and `fleet ls` wall time (Python start-up
         and imports of the CLI) next to the containers' own start.

    python bench/fleet_bench.py [--only up,idle,cli] [--parallel 8] [--json OUT]

Everything is removed at the end (teardown --purge; the engine API as a fallback), also on
failure, Ctrl-C or --max-minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _containers as cx  # noqa: E402

FLEET = str(Path(sys.executable).parent / "fleet")
PARTS = ["cli", "up", "idle"]
USER_LABEL = "litefleet.label."  # fleet.core.names.USER_LABEL_PREFIX
HOST_PROCS = ("containerd-shim", "docker-proxy", "dockerd", "containerd")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--only", default=",".join(PARTS), help="parts to run (default: all)")
    p.add_argument("--tenants", type=int, default=50, help="tenants for part up (default 50)")
    p.add_argument("--idle-tenants", type=int, default=100, help="tenants for part idle (100)")
    p.add_argument("--parallel", type=int, default=8, help="fleet commands at a time (8)")
    p.add_argument("--settle", type=float, default=30.0, help="idle seconds before measuring")
    p.add_argument("--cmd-timeout", type=float, default=300.0, help="per fleet command, s")
    p.add_argument("--max-minutes", type=float, default=45.0, help="hard stop (default 45)")
    p.add_argument("--json", type=Path, metavar="OUT", help="also write the results as JSON")
    args = p.parse_args(argv)
    args.parts = [s.strip() for s in args.only.split(",") if s.strip()]
    bad = [s for s in args.parts if s not in PARTS]
    if bad:
        p.error(f"unknown part {bad[0]!r} (choose from {', '.join(PARTS)})")
    return args


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        import docker

        self.args = args
        self.run = uuid.uuid4().hex[:6]
        self.labels = ["--label", "bench=1", "--label", f"benchrun={self.run}"]
        self.client = docker.from_env(timeout=120)
        self.client.ping()
        # Generous: 100 tenants starting on 2 cores take longer than one does.
        self.env = {**os.environ, "FLEET_HEALTH_TIMEOUT": str(int(args.cmd_timeout) - 30)}
        self.cleaned = False

    def fleet(self, *argv: str, timeout: float | None = None) -> tuple[float, str]:
        """Run one fleet command; (wall seconds, stderr tail). Raises on failure."""
        t0 = time.monotonic()
        proc = subprocess.run(
            [FLEET, *argv],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout or self.args.cmd_timeout,
            check=False,
        )
        took = time.monotonic() - t0
        if proc.returncode != 0:
            why = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
            raise RuntimeError(f"fleet {' '.join(argv[:2])}: {why}")
        return took, proc.stderr.strip()[-200:]

    def up_many(self, names: list[str]) -> dict[str, Any]:
        lat: list[float] = []
        errors: list[str] = []

        def one(name: str) -> None:
            try:
                took, _ = self.fleet("up", name, *self.labels)
                lat.append(took)
            except Exception as exc:  # counted and reported; the others go on
                errors.append(f"{name}: {exc}"[:200])
            done = len(lat) + len(errors)
            if done % 10 == 0:
                say(f"  up {done}/{len(names)}")

        # CPU: the whole host's, and the fleet CLI processes' own (children of this one).
        cpu0, kids0 = cx.cpu_seconds(), _children_cpu()
        t0 = time.monotonic()
        with ThreadPoolExecutor(max_workers=self.args.parallel) as pool:
            list(pool.map(one, names))
        wall = time.monotonic() - t0
        cpu, kids = cx.cpu_seconds() - cpu0, _children_cpu() - kids0
        out: dict[str, Any] = {
            "host_cpu_s_per_tenant": cpu / len(names),
            "fleet_cli_cpu_s_per_tenant": kids / len(names),
            "tenants": len(names),
            "parallel": self.args.parallel,
            "wall_s": wall,
            "tenants_per_s": len(lat) / wall,
            "ok": len(lat),
            "failed": errors[:10],
            "failed_count": len(errors),
        }
        if lat:
            out["per_command_s"] = cx.dist(lat)
        return out

    def teardown(self) -> dict[str, Any]:
        n = len(self.mine())
        took, _ = self.fleet(
            "teardown", *self.labels, "--purge", "--yes", timeout=self.args.cmd_timeout * 4
        )
        left = len(self.mine())
        return {"tenants": n, "wall_s": took, "tenants_per_s": n / took, "left": left}

    def mine(self) -> list[Any]:
        flt = {"label": [f"{USER_LABEL}benchrun={self.run}"]}
        return list(self.client.containers.list(all=True, filters=flt))

    def names(self, prefix: str, n: int) -> list[str]:
        return [f"fb{self.run}-{prefix}{i:03d}" for i in range(n)]

    # -- parts

    def part_cli(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for label, argv in (("fleet --help", ["--help"]), ("fleet ls", ["ls", *self.labels])):
            times = [self.fleet(*argv)[0] for _ in range(5)]
            out[label] = statistics.median(times)
        return out

    def part_up(self) -> dict[str, Any]:
        n = self.args.tenants
        say(f"up: {n} tenants, {self.args.parallel} at a time")
        up = self.up_many(self.names("u", n))
        healthy = self.healthy_count()
        say(f"up: {up['ok']} ok in {up['wall_s']:.1f} s; teardown ...")
        down = self.teardown()
        return {"up": up, "healthy_after_up": healthy, "teardown": down}

    def part_idle(self) -> dict[str, Any]:
        n = self.args.idle_tenants
        settle_before = 10.0
        time.sleep(settle_before)  # let the previous part's teardown settle
        before = cx.host_memory()
        procs_before = cx.host_processes_mib(HOST_PROCS)
        cpu_before = cx.cpu_busy(10)
        say(f"idle: {n} tenants, {self.args.parallel} at a time")
        up = self.up_many(self.names("i", n))
        say(f"idle: {up['ok']} up in {up['wall_s']:.1f} s; settling {self.args.settle:g} s")
        time.sleep(self.args.settle)
        healthy = self.healthy_count()
        after = cx.host_memory()
        procs_after = cx.host_processes_mib(HOST_PROCS)
        cpu_idle = cx.cpu_busy(10)
        containers = self.container_memory()
        store = self.store_memory()
        say("idle: teardown ...")
        down = self.teardown()
        time.sleep(5)
        return {
            "up": up,
            "healthy": healthy,
            "host_mib_before": before,
            "host_mib_after": after,
            "host_mib_after_teardown": cx.host_memory(),
            "host_used_delta_mib": after["used"] - before["used"],
            "host_in_use_delta_mib": after["in_use"] - before["in_use"],
            "containers": containers,
            "host_processes_before": procs_before,
            "host_processes_after": procs_after,
            "object_store": store,
            "cpu_cores_busy_before": cpu_before,
            "cpu_cores_busy_idle_tenants": cpu_idle,
            "teardown": down,
        }

    def healthy_count(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for c in self.mine():
            state = c.attrs["State"]
            key = state["Status"]
            if key == "running":
                key = (state.get("Health") or {}).get("Status", "running")
            counts[key] = counts.get(key, 0) + 1
        return counts

    def container_memory(self) -> dict[str, Any]:
        rss = pss = anon = usage = 0.0
        n = 0
        for c in self.mine():
            if c.status != "running":
                continue
            procs = cx.process_memory(self.client, c.id)
            rss += sum(p["rss_kib"] for p in procs) / 1024
            pss += sum(p["pss_kib"] for p in procs) / 1024
            anon += sum(p["anon_kib"] for p in procs) / 1024
            usage += cx.cgroup_memory(c.id).get("usage", 0) / 2**20
            n += 1
        return {
            "containers": n,
            "sum_rss_mib": rss,
            "sum_pss_mib": pss,
            "sum_anon_mib": anon,
            "sum_cgroup_usage_mib": usage,
            "per_tenant_rss_mib": rss / max(1, n),
            "per_tenant_pss_mib": pss / max(1, n),
        }

    def store_memory(self) -> dict[str, float]:
        """The embedded object store keeps every replica in its memory."""
        try:
            c = self.client.containers.get("litefleet-s3")
        except Exception:
            return {}
        return {"cgroup_usage_mib": cx.cgroup_memory(c.id).get("usage", 0) / 2**20}

    # -- cleanup

    def cleanup(self) -> None:
        if self.cleaned:
            return
        self.cleaned = True
        if not self.mine():
            return
        try:
            self.fleet("teardown", *self.labels, "--purge", "--yes", timeout=900)
        except Exception as exc:  # fall back to the engine API
            say(f"cleanup: teardown failed ({exc}); removing through the engine")
        for c in self.mine():
            c.remove(force=True)
        for v in self.client.volumes.list():
            if v.name.startswith(f"litefleet-fb{self.run}-"):
                v.remove(force=True)


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


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
    if "cli" in p:
        print(
            "one fleet command (median of 5): "
            + ", ".join(f"`{k}` {v:.2f} s" for k, v in p["cli"].items())
        )
    for part, title in (("up", "fleet up"), ("idle", "fleet up (idle part)")):
        if part not in p:
            continue
        u = p[part]["up"]
        lat = u.get("per_command_s", {})
        print(
            f"{title} of {u['tenants']} tenants, {u['parallel']} in parallel: {u['wall_s']:.1f} s, "
            f"{u['tenants_per_s']:.2f} tenants/s; per command p50 {lat.get('p50', 0):.1f} s, "
            f"p95 {lat.get('p95', 0):.1f} s; failed {u['failed_count']}"
        )
        print(
            f"  host CPU per tenant {u['host_cpu_s_per_tenant']:.2f} s, of it the `fleet up` "
            f"process {u['fleet_cli_cpu_s_per_tenant']:.2f} s"
        )
        h = p[part].get("healthy_after_up") or p[part].get("healthy")
        print(f"  states after: {h}")
        t = p[part]["teardown"]
        print(
            f"  fleet teardown --purge of {t['tenants']}: {t['wall_s']:.1f} s, "
            f"{t['tenants_per_s']:.2f} tenants/s, left {t['left']}"
        )
    if "idle" in p:
        i = p["idle"]
        c = i["containers"]
        b, a = i["host_mib_before"], i["host_mib_after"]
        print(
            f"\n{c['containers']} idle tenants after {res['config']['settle']:g} s: host `used` "
            f"{b['used']} -> {a['used']} MiB (+{i['host_used_delta_mib']}), total - available "
            f"{b['in_use']} -> {a['in_use']} MiB (+{i['host_in_use_delta_mib']}); "
            f"after teardown used {i['host_mib_after_teardown']['used']} MiB"
        )
        print(
            f"  containers: sum VmRSS {c['sum_rss_mib']:.0f} MiB ({c['per_tenant_rss_mib']:.1f}/"
            f"tenant), sum Pss {c['sum_pss_mib']:.0f} MiB ({c['per_tenant_pss_mib']:.1f}/tenant), "
            f"anonymous {c['sum_anon_mib']:.0f} MiB, "
            f"cgroup usage {c['sum_cgroup_usage_mib']:.0f} MiB"
        )
        hb, ha = i["host_processes_before"], i["host_processes_after"]
        print(
            "  host processes (count, Pss MiB) before -> after: "
            + "; ".join(
                f"{k} {hb[k]['count']:.0f}/{hb[k]['pss_mib']:.0f} -> "
                f"{ha[k]['count']:.0f}/{ha[k]['pss_mib']:.0f}"
                for k in HOST_PROCS
            )
        )
        if i["object_store"]:
            print(f"  object store container: {i['object_store']['cgroup_usage_mib']:.0f} MiB")
        print(
            f"  host CPU busy: {i['cpu_cores_busy_before']:.2f} cores before, "
            f"{i['cpu_cores_busy_idle_tenants']:.2f} cores with the idle tenants"
        )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    bench = Bench(args)
    cx.arm_hard_stop(args.max_minutes * 60, bench.cleanup)
    started = time.time()
    res: dict[str, Any] = {
        "command": " ".join(["python", "bench/fleet_bench.py", *(argv or sys.argv[1:])]),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "machine": cx.machine(bench.client, HERE.parent),
        "config": {k: v for k, v in vars(args).items() if k not in ("json", "parts")},
        "load_start": cx.loadavg(),
        "run": bench.run,
        "parts": {},
    }
    failed = False
    # Once, before the parallel `fleet up`s: they would all race to create the store.
    bench.fleet("s3", "up", timeout=120)
    try:
        for part in args.parts:
            try:
                res["parts"][part] = getattr(bench, f"part_{part}")()
            except cx.HardStop:
                raise
            except Exception as exc:  # report the part as failed, go on with the others
                failed = True
                res.setdefault("errors", {})[part] = f"{type(exc).__name__}: {exc}"[:400]
                say(f"{part} FAILED: {exc}")
            finally:
                bench.cleaned = False
                bench.cleanup()  # nothing of a part outlives it
    finally:
        bench.cleanup()
    res["load_end"] = cx.loadavg()
    res["duration_s"] = round(time.time() - started, 1)
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
