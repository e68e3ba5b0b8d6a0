"""Shared parts of the container and fleet benchmarks: engine facts, health polling, memory.

Memory is read on the host, not through `docker stats`:
- per process: VmRSS (/proc/PID/status) and Pss (/proc/PID/smaps_rollup) of every process
  `docker top` lists for the container. RSS counts shared file pages (python, libc, the
  litestream binary) in full for every tenant; PSS splits them between the tenants sharing them,
  so the sum of PSS over N tenants is what they really cost together.
- per cgroup (v1 here): memory.usage_in_bytes and memory.stat's rss/cache. `docker stats`
  shows usage minus cache.
"""

from __future__ import annotations

import math
import os
import signal
import statistics
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from types import FrameType
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
BENCH_LABEL = "litefleet.bench"  # engine label on everything the container bench creates


def docker_facts(client: Any) -> dict[str, Any]:
    info = client.info()
    ver = client.version()
    return {
        "docker_server": ver.get("Version"),
        "containerd": (info.get("ContainerdCommit") or {}).get("ID"),
        "storage_driver": info.get("Driver"),
        "backing_fs": dict(info.get("DriverStatus") or []).get("Backing Filesystem"),
        "cgroup": f"v{info.get('CgroupVersion', '?')} ({info.get('CgroupDriver')})",
        "runtime": info.get("DefaultRuntime"),
        "containers_running_at_start": info.get("ContainersRunning"),
    }


def machine(client: Any, workdir: Path) -> dict[str, Any]:
    import _machine

    m = _machine.describe(workdir, REPO)
    for key in ("dbos", "sqlite_stdlib"):
        m.pop(key, None)
    m.update(docker_facts(client))
    return m


def pct(values: Iterable[float], p: float) -> float:
    """The p-th percentile (0..100), linear between closest ranks."""
    xs = sorted(values)
    if not xs:
        return math.nan
    k = (len(xs) - 1) * p / 100
    lo, hi = math.floor(k), math.ceil(k)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def dist(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50": pct(values, 50),
        "p95": pct(values, 95),
        "min": min(values),
        "max": max(values),
        "mean": statistics.fmean(values),
    }


def loadavg() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def wait_healthz(port: int, timeout: float, interval: float = 0.02) -> float:
    """Poll http://127.0.0.1:PORT/healthz until 200; returns time.monotonic() of the answer."""
    deadline = time.monotonic() + timeout
    with httpx.Client(trust_env=False, timeout=1.0) as http:
        while True:
            try:
                if http.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                    return time.monotonic()
            except httpx.HTTPError:
                pass  # not listening yet
            if time.monotonic() >= deadline:
                raise TimeoutError(f"no /healthz answer on port {port} within {timeout:g} s")
            time.sleep(interval)


def _kib(path: Path, field: str) -> int:
    try:
        text = path.read_text()
    except OSError:
        return 0
    for line in text.splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def process_memory(client: Any, container_id: str) -> list[dict[str, Any]]:
    """VmRSS, RssAnon and Pss (KiB) of each process in the container, by host pid."""
    top = client.api.top(container_id, ps_args="-o pid,args")
    rows = []
    for pid, *args in top["Processes"]:
        proc = Path("/proc") / str(pid)
        rows.append(
            {
                "pid": int(pid),
                "cmd": " ".join(args)[:80],
                "rss_kib": _kib(proc / "status", "VmRSS"),
                "anon_kib": _kib(proc / "status", "RssAnon"),
                "pss_kib": _kib(proc / "smaps_rollup", "Pss"),
            }
        )
    return rows


def cgroup_memory(container_id: str) -> dict[str, int]:
    """Bytes charged to the container's memory cgroup (v1, or v2 with the systemd driver)."""
    v1 = Path("/sys/fs/cgroup/memory/docker") / container_id
    if v1.is_dir():
        stat = dict(ln.split() for ln in (v1 / "memory.stat").read_text().splitlines())
        usage = int((v1 / "memory.usage_in_bytes").read_text())
        cache = int(stat.get("total_cache", stat.get("cache", 0)))
        return {"usage": usage, "rss": int(stat.get("total_rss", 0)), "cache": cache}
    v2 = Path(f"/sys/fs/cgroup/system.slice/docker-{container_id}.scope")
    if v2.is_dir():
        stat = dict(ln.split() for ln in (v2 / "memory.stat").read_text().splitlines())
        usage = int((v2 / "memory.current").read_text())
        return {"usage": usage, "rss": int(stat.get("anon", 0)), "cache": int(stat.get("file", 0))}
    return {}


def host_memory() -> dict[str, int]:
    """MiB from /proc/meminfo; ``used`` is what free(1) prints (total - free - buffers/cache)."""
    lines = Path("/proc/meminfo").read_text().splitlines()
    info = {ln.split(":")[0]: int(ln.split()[1]) for ln in lines}
    cache = info["Buffers"] + info["Cached"] + info.get("SReclaimable", 0)
    mib = {
        "total": info["MemTotal"],
        "available": info["MemAvailable"],
        "used": info["MemTotal"] - info["MemFree"] - cache,
        "in_use": info["MemTotal"] - info["MemAvailable"],
    }
    return {k: v // 1024 for k, v in mib.items()}


def host_processes_mib(names: tuple[str, ...]) -> dict[str, dict[str, float]]:
    """Count and summed RSS/PSS (MiB) of host processes whose comm is one of ``names``."""
    out = {n: {"count": 0.0, "rss_mib": 0.0, "pss_mib": 0.0} for n in names}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            comm = (proc / "comm").read_text().strip()
        except OSError:
            continue
        if comm in out:
            out[comm]["count"] += 1
            out[comm]["rss_mib"] += _kib(proc / "status", "VmRSS") / 1024
            out[comm]["pss_mib"] += _kib(proc / "smaps_rollup", "Pss") / 1024
    return out


def cpu_seconds() -> float:
    """Host CPU time used so far by everything (busy jiffies of /proc/stat), in seconds."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def cpu_busy(seconds: float) -> float:
    """Host CPU in use over ``seconds``, in cores (from /proc/stat)."""

    def sample() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
        idle = fields[3] + fields[4]
        return sum(fields) - idle, sum(fields)

    b0, t0 = sample()
    time.sleep(seconds)
    b1, t1 = sample()
    return (b1 - b0) / max(1, t1 - t0) * (os.cpu_count() or 1)


class HardStop(Exception):
    """The benchmark ran past its --max-minutes."""


def arm_hard_stop(seconds: float, cleanup: Callable[[], None]) -> None:
    """SIGALRM after ``seconds`` and SIGTERM/SIGINT raise HardStop in the main thread, so the
    caller's ``finally`` runs its cleanup; ``cleanup`` also runs when the process is ending."""

    def stop(signum: int, _frame: FrameType | None) -> None:
        raise HardStop(f"stopped by {signal.Signals(signum).name}")

    for sig in (signal.SIGALRM, signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stop)
    signal.alarm(max(1, int(seconds)))
    import atexit

    atexit.register(cleanup)
