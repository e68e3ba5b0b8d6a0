"""A two-node Docker Swarm on this machine, and an object store that both nodes reach.

``running_swarm()`` (a context manager, also used by bench/) runs ``images/swarm.sh up``,
starts a moto S3 server as a host process on the manager's swarm address, yields a
:class:`SwarmCluster`, and at the end runs ``images/swarm.sh down`` (services, secrets, the
swarm's volumes on node 1, ``swarm leave --force`` on both nodes, node 2's dockerd and network
namespace, docker_gwbridge) and checks that node 1 is left as it was found: not in a swarm, with
its networks (the tenants' ``litefleet`` bridge and its gateway, where PostgreSQL and the
embedded store listen) unchanged.

Why a store of its own: tenants on node 1 run on a Swarm-usable network, not on the engine's
``litefleet`` bridge, so reaching the embedded store's container would cross from one Docker
bridge to another on the same engine, which Docker's isolation rules drop (when they are
intact). A host process bound to 10.251.0.1 is reached through INPUT from both nodes, the way
real S3 is reached from every node of a real swarm.

Recipe and measured facts: images/swarm.sh, docs/swarm.md.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "images" / "swarm.sh"
MANAGER_URL = "unix:///var/run/docker.sock"
CANNOT_RUN = 3  # images/swarm.sh's exit status when this machine cannot host the swarm


class SwarmUnavailable(RuntimeError):
    """This machine cannot run the two-node swarm; the message says why."""


@dataclass(frozen=True)
class SwarmCluster:
    manager_url: str
    node2_url: str
    node1_id: str
    node2_id: str
    node1_addr: str
    node2_addr: str
    s3_endpoint: str  # reached from the host and from containers on both nodes

    def kill_node(self) -> None:
        """Node 2 dies: its dockerd, containerd, shims and containers, all SIGKILLed."""
        swarm_script("kill-node2")

    def kill_engine(self) -> None:
        """SIGKILL node 2's dockerd only (its containers keep running)."""
        swarm_script("kill-engine2")

    def start_node(self) -> None:
        """Start node 2's dockerd again; returns once it answers."""
        swarm_script("start-node2")

    def partition(self) -> None:
        """Cut node 2 off from the manager only (swarm ports); the store stays reachable."""
        swarm_script("partition")

    def heal(self) -> None:
        swarm_script("heal")


def swarm_script(*args: str, timeout: float = 600, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(
        ["bash", str(SCRIPT), *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    if proc.returncode == CANNOT_RUN:
        raise SwarmUnavailable(proc.stderr.strip().splitlines()[-1])
    if proc.returncode != 0:
        raise RuntimeError(f"images/swarm.sh {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return proc.stdout


def unavailable_reason() -> str | None:
    """Why the swarm cannot run here (checked without changing anything), or None."""
    if os.geteuid() != 0:
        return "a two-node swarm needs root (network namespace, second dockerd)"
    for tool in ("docker", "dockerd", "ip", "iptables", "flock"):
        if shutil.which(tool) is None:
            return f"a two-node swarm needs {tool}"
    return None


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def _host_store(addr: str) -> Iterator[str]:
    """moto's S3 server as a process of this host, bound to ``addr``; yields its endpoint."""
    moto = Path(sys.executable).with_name("moto_server")
    port = _free_port(addr)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["MOTO_S3_DEFAULT_KEY_BUFFER_SIZE"] = str(1024**3)  # keep objects in memory
    proc = subprocess.Popen(
        [str(moto), "-H", addr, "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        env=env,
        start_new_session=True,
    )
    endpoint = f"http://{addr}:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError), socket.create_connection((addr, port), 0.5):
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"moto_server did not listen on {endpoint}")
            time.sleep(0.1)
        yield endpoint
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


def _engine_snapshot() -> dict[str, str]:
    """What node 1 must look like after ``down``: swarm state, and each network's subnets."""
    import docker

    client = docker.DockerClient(MANAGER_URL, timeout=30)
    try:
        nets = {
            str(n.name): " ".join(
                f"{c.get('Subnet')}@{c.get('Gateway')}"
                for c in (n.attrs.get("IPAM") or {}).get("Config") or []
            )
            for n in client.networks.list()
            if n.name in ("bridge", "litefleet")
        }
        state = str(client.info()["Swarm"]["LocalNodeState"])
    finally:
        client.close()
    return {"swarm": state, **nets}


SESSION_LOCK = "/run/lock/litefleet-swarm-session.lock"
_LOCK_WAIT_S = 1200.0


@contextlib.contextmanager
def _one_session_at_a_time() -> Iterator[None]:
    """Node 1 can be in one swarm only: a second test session or benchmark waits its turn."""
    import fcntl

    with open(SESSION_LOCK, "w") as lock:
        deadline = time.monotonic() + _LOCK_WAIT_S
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise SwarmUnavailable(
                        f"another session held {SESSION_LOCK} for {_LOCK_WAIT_S:g}s"
                    ) from None
                time.sleep(1)
        yield


@contextlib.contextmanager
def running_swarm(heartbeat: str = "1s") -> Iterator[SwarmCluster]:
    """Bring the swarm up (see the module doc); take it down and check node 1 afterwards.

    ``heartbeat`` is the dispatcher heartbeat period: a node is declared down after about
    three periods without one (Swarm's default 5s gives ~15 s, 1s gives ~3 s; docs/swarm.md).
    """
    reason = unavailable_reason()
    if reason is not None:
        raise SwarmUnavailable(reason)
    with _one_session_at_a_time(), _swarm_up(heartbeat) as cluster:
        yield cluster


@contextlib.contextmanager
def _swarm_up(heartbeat: str) -> Iterator[SwarmCluster]:
    if _engine_snapshot()["swarm"] != "inactive":
        swarm_script("down")  # a swarm an earlier run left behind; refuses one it did not make
    before = _engine_snapshot()
    try:
        out = swarm_script("up", env={"SWARM_HEARTBEAT": heartbeat})
        values = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
        with _host_store(values["SWARM_NODE1_ADDR"]) as endpoint:
            yield SwarmCluster(
                manager_url=MANAGER_URL,
                node2_url=values["SWARM_NODE2_HOST"],
                node1_id=values["SWARM_NODE1_ID"],
                node2_id=values["SWARM_NODE2_ID"],
                node1_addr=values["SWARM_NODE1_ADDR"],
                node2_addr=values["SWARM_NODE2_ADDR"],
                s3_endpoint=endpoint,
            )
    finally:
        swarm_script("down")
        after = _engine_snapshot()
        if any(after.get(k) != v for k, v in before.items()):
            raise AssertionError(f"node 1 changed: before {before}, after {after}")
