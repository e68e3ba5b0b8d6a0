"""Hostile agent code for tests/test_isolation.py: a workflow that tries, from inside the
runtime of tenant A, to reach what belongs to the keeper and Litestream. Each attempt reports
"denied (ERRNO)" or "ALLOWED: what it got"."""

from __future__ import annotations

import ctypes
import errno
import os
import signal
import socket
from collections.abc import Callable
from typing import Any

from agent_runtime import step, workflow

TRACKING = "/data/.tenant.db-litestream"
RECORD = "/data/.litefleet"
GATE = "/run/litefleet/lease.json"
DB = "/data/tenant.db"
LIBC = ctypes.CDLL(None, use_errno=True)
PTRACE_ATTACH = 16
CLONE_NEWUSER = 0x10000000


def find(pattern: str) -> int:
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    if pattern.encode() in f.read():
                        return int(entry)
            except OSError:
                continue
    raise LookupError(pattern)


def attempt(action: Callable[[], Any]) -> str:
    try:
        got = action()
    except OSError as exc:
        return f"denied ({errno.errorcode.get(exc.errno or 0, exc.errno)})"
    return f"ALLOWED: {str(got)[:120]}"


def read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read(200)


def write(path: str, mode: str = "wb") -> int:
    with open(path, mode) as f:
        return f.write(b"x")


def libc_call(result: int) -> int:
    if result == -1:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return result


def replace_with_symlink(target: str) -> None:
    link = f"/data/evil-{os.getpid()}"
    os.symlink(GATE, link)
    try:
        os.rename(link, target)
    finally:
        if os.path.lexists(link):
            os.unlink(link)


def attacks() -> dict[str, Callable[[], Any]]:
    keeper, litestream = find("fleet.supervisor\0keep"), find("litestream\0replicate")
    found: dict[str, Callable[[], Any]] = {}
    for name, pid in (("keeper", keeper), ("litestream", litestream), ("pid 1", 1)):
        found[f"read {name} environ"] = lambda p=pid: read(f"/proc/{p}/environ")
        found[f"read {name} memory"] = lambda p=pid: read(f"/proc/{p}/mem")
        found[f"read {name} maps"] = lambda p=pid: read(f"/proc/{p}/maps")
        found[f"ptrace {name}"] = lambda p=pid: libc_call(LIBC.ptrace(PTRACE_ATTACH, p, 0, 0))
        for sig in (0, signal.SIGTERM, signal.SIGSTOP, signal.SIGKILL):
            found[f"signal {sig} to {name}"] = lambda p=pid, s=sig: os.kill(p, s)
    found.update(
        {
            "list the tracking state": lambda: os.listdir(TRACKING),
            "write the tracking state": lambda: write(f"{TRACKING}/ltx/evil"),
            "move the tracking state": lambda: os.rename(TRACKING, "/data/moved"),
            "list the supervisor's record": lambda: os.listdir(RECORD),
            "write the lease gate": lambda: write(GATE),
            "add a file beside the lease gate": lambda: write("/run/litefleet/evil"),
            "remove the lease gate": lambda: os.unlink(GATE),
            "remove the database's WAL": lambda: os.unlink(f"{DB}-wal"),
            "move the database away": lambda: os.rename(DB, "/data/moved.db"),
            "replace the database by a link": lambda: replace_with_symlink(DB),
            "replace the WAL by a link": lambda: replace_with_symlink(f"{DB}-wal"),
            "chmod the database": lambda: os.chmod(DB, 0o600),
            "chown the database": lambda: os.chown(DB, os.getuid(), -1),
            "replace litestream": lambda: write("/opt/litefleet/bin/litestream", "r+b"),
            "replace python": lambda: write("/usr/bin/python3.11", "r+b"),
            "replace the keeper's code": lambda: write(keeper_module(), "ab"),
            "become root": lambda: os.setuid(0),
            "become the keeper's uid": lambda: os.setuid(10001),
            "join the keeper's group": lambda: os.setgroups([10001]),
            "a user namespace": lambda: libc_call(LIBC.unshare(CLONE_NEWUSER)),
            "Litestream's metrics and pprof": lambda: socket.create_connection(
                ("127.0.0.1", 9090), timeout=1
            ),
        }
    )
    return found


def keeper_module() -> str:
    import fleet.supervisor.keeper

    return str(fleet.supervisor.keeper.__file__)


def capabilities() -> dict[str, str]:
    with open("/proc/self/status") as f:
        lines = [ln.split(":\t") for ln in f.read().splitlines() if ln.startswith("Cap")]
    return {k: v.strip() for k, v in lines}


@step
def probe() -> dict[str, Any]:
    return {
        "uid": os.getuid(),
        "gid": os.getgid(),
        "groups": os.getgroups(),
        "capabilities": capabilities(),
        "attempts": {name: attempt(action) for name, action in attacks().items()},
    }


@workflow
async def attack() -> dict[str, Any]:
    return dict(await probe())


@step
def mark(i: int) -> int:
    return i


@workflow
async def after(n: int) -> int:
    """Plain work after the attacks: it must still reach the replica."""
    for i in range(n):
        await mark(i)
    return n
