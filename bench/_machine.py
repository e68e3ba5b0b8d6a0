"""What the figures were measured on: CPU, RAM, the disk under the temp dir, versions."""

from __future__ import annotations

import os
import platform
import sqlite3
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def _cpu_model() -> str:
    for line in _read("/proc/cpuinfo").splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _mem_gib() -> float:
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            return round(int(line.split()[1]) / 1024 / 1024, 1)
    return 0.0


def _mount_of(path: Path) -> tuple[str, str, str]:
    """(device, mount point, fs type) of the longest /proc/mounts entry containing path."""
    best = ("unknown", "/", "unknown")
    target = str(path.resolve())
    for line in _read("/proc/mounts").splitlines():
        dev, mnt, fstype = line.split()[:3]
        inside = target == mnt or target.startswith(mnt.rstrip("/") + "/")
        if inside and len(mnt) >= len(best[1]):
            best = (dev, mnt, fstype)
    return best


def _disk(path: Path) -> dict[str, Any]:
    dev, mnt, fstype = _mount_of(path)
    st = os.statvfs(path)
    info: dict[str, Any] = {
        "device": dev,
        "mount": mnt,
        "fstype": fstype,
        "size_gib": round(st.f_blocks * st.f_frsize / 2**30, 1),
    }
    name = Path(dev).name.rstrip("0123456789") if dev.startswith("/dev/") else ""
    rotational = _read(f"/sys/block/{name}/queue/rotational").strip()
    if rotational:
        info["rotational"] = rotational == "1"
    return info


def _dist(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def _git_commit(repo: Path) -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def describe(workdir: Path, repo: Path) -> dict[str, Any]:
    try:
        import apsw

        apsw_sqlite: str | None = apsw.sqlite_lib_version()
    except ImportError:
        apsw_sqlite = None
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu": _cpu_model(),
        "ram_gib": _mem_gib(),
        "disk": _disk(workdir),
        "kernel": platform.release(),
        "os": _read("/etc/debian_version").strip() or platform.platform(),
        "python": platform.python_version(),
        "sqlite_apsw": apsw_sqlite,
        "sqlite_stdlib": sqlite3.sqlite_version,
        "dbos": _dist("dbos"),
        "git_commit": _git_commit(repo),
    }
