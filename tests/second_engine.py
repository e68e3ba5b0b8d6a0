"""Pytest plugin: a second Docker engine standing for a fresh host (no images, no volumes).

``second_engine`` (session) starts a dockerd with its own data root, exec root, pid file, unix
socket and bridge under a fresh directory in /tmp (short: unix socket paths are limited),
yields its ``unix://`` URL, and at the end stops it by its pid file and removes the bridge.
Each session gets its own bridge name and /24, so two test sessions never share one.
Recipe: /work/shared/notes/environment.md ("A second engine standing for a fresh host").
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

_START_TIMEOUT_S = 60.0


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=False)


def _free_subnet() -> int:
    """A third octet x such that 172.31.x.0/24 is not on any interface or route here."""
    used = _ip("-4", "route").stdout + _ip("-4", "addr").stdout
    for x in random.sample(range(0, 250), 250):
        if f"172.31.{x}." not in used:
            return x
    raise RuntimeError("no free 172.31.x.0/24")


def _stop(pidfile: Path, timeout: float = 20.0) -> None:
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _gone(pid):
            return
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _gone(pid: int) -> bool:
    """Whether ``pid`` has exited. The dockerd started here is this process's child: once
    it exits it stays a zombie (``kill(pid, 0)`` still succeeds) until reaped, so reap it."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    with contextlib.suppress(ChildProcessError):  # not our child: only kill() can tell
        return os.waitpid(pid, os.WNOHANG)[0] == pid
    return False


class SecondEngine:
    """A dockerd with its own data root, exec root, socket and bridge under ``root``; it can
    be stopped and started again on the same data root (an engine restart, as on a reboot)."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="lf-e2-", dir="/tmp"))
        self.x = _free_subnet()
        self.bridge = f"lfe2-{self.x}"
        self.pidfile = self.root / "docker.pid"
        self.log = self.root / "dockerd.log"
        self.url = f"unix://{self.root / 'docker.sock'}"
        _ip("link", "add", "name", self.bridge, "type", "bridge")
        _ip("addr", "add", f"172.31.{self.x}.1/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        self.started = False

    def start(self, first: bool = True) -> None:
        # Its own user-defined networks (the tenants' `litefleet`) come from a pool no other
        # engine here uses. Only on the first start: dockerd 20.10, restarted with a default
        # address pool, deletes the link named docker0 of its network namespace (this host's:
        # the main engine's bridge). Networks made on the first start keep their subnets.
        pool = ["--default-address-pool", f"base=172.30.{self.x}.0/24,size=28"] if first else []
        with self.log.open("ab") as out:
            subprocess.Popen(
                [
                    "dockerd",
                    "--data-root", str(self.root / "data"),
                    "--exec-root", str(self.root / "exec"),
                    "--pidfile", str(self.pidfile),
                    "-H", self.url,
                    "--bridge", self.bridge,
                    *pool,
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )  # fmt: skip
        self.started = True
        self._wait_answering()

    def _wait_answering(self) -> None:
        import docker

        deadline = time.monotonic() + _START_TIMEOUT_S
        while True:
            try:
                client = docker.DockerClient(self.url, timeout=5)
                client.ping()
                client.close()
                return
            except Exception:
                if time.monotonic() > deadline:
                    tail = self.log.read_text(errors="replace")[-2000:]
                    raise RuntimeError(
                        f"second dockerd did not answer in {_START_TIMEOUT_S:g}s:\n{tail}"
                    ) from None
                time.sleep(0.25)

    def restart(self, timeout: float = 60.0) -> None:
        """Stop the engine as a shutdown does (SIGTERM: it stops its containers first), then
        start it again on the same data root."""
        _stop(self.pidfile, timeout)
        self.start(first=False)

    def close(self) -> None:
        if self.started:
            _cleanup(url=self.url)
            _stop(self.pidfile)
        _ip("link", "set", self.bridge, "down")
        _ip("link", "delete", self.bridge)
        # What dockerd left mounted under its root (after a restart: the netns bind mount);
        # the root itself is no mount point, so `umount -R root` would not reach them.
        inside = [m.split()[1] for m in Path("/proc/mounts").read_text().splitlines()]
        for mount in sorted((m for m in inside if m.startswith(f"{self.root}/")), reverse=True):
            subprocess.run(["umount", "-l", mount], capture_output=True, check=False)
        shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def running_engine() -> Iterator[SecondEngine]:
    """Start a second dockerd (see the module doc); stops and removes it at the end."""
    engine = SecondEngine()
    try:
        engine.start()
        yield engine
    finally:
        engine.close()


@contextlib.contextmanager
def running_second_engine() -> Iterator[str]:
    """Start a second dockerd; yields its URL; stops and removes it."""
    with running_engine() as engine:
        yield engine.url


@pytest.fixture(scope="session")
def second_engine(docker_client: Any) -> Iterator[str]:
    """The ``unix://`` URL of a second, empty Docker engine on this machine."""
    pytest.importorskip("docker")
    if os.geteuid() != 0 or not shutil.which("dockerd") or not shutil.which("ip"):
        pytest.skip("a second engine needs root, dockerd and ip")
    with running_second_engine() as url:
        yield url


def _cleanup(url: str) -> None:
    """Remove every container, volume and network of the engine before stopping it."""
    import docker

    try:
        client = docker.DockerClient(url, timeout=30)
        for c in client.containers.list(all=True):
            with contextlib.suppress(Exception):
                c.remove(force=True)
        for v in client.volumes.list():
            with contextlib.suppress(Exception):
                v.remove(force=True)
        client.networks.prune()
        client.close()
    except Exception:
        pass  # the engine is going away anyway


@pytest.fixture
def two_hosts(second_engine: str, tenant_image: str, object_store: Any) -> dict[str, str]:
    """Environment for the `fleet` CLI with hosts ``a`` (this machine's engine, which runs the
    embedded store) and ``b`` (the second engine). Each test removes the tenants it made (by
    name): host ``a`` is shared with other test sessions, whose tenants are not ours."""
    from tests.docker_fixtures import TEST_BUCKET
    from tests.fleet_support import cli_env

    return cli_env(
        tenant_image, TEST_BUCKET, FLEET_HOSTS=f"a=unix:///var/run/docker.sock,b={second_engine}"
    )
