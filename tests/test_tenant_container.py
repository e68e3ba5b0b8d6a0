"""The tenant container on a real engine: health, replication, restore, hardening, SIGTERM."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import apsw
import pytest

from fleet.core.names import AGENT_GID, AGENT_UID, DB_PATH, SUPERVISOR_GID, SUPERVISOR_UID
from fleet.storage.embedded import EmbeddedStore as ObjectStore
from fleet.supervisor.exits import ENGINE_STOP
from tests.docker_fixtures import (
    Tenant,
    litestream_restore,
    query,
    replica_keys,
    wait_healthy,
    wait_run,
)

pytestmark = pytest.mark.docker

StartTenant = Callable[..., Tenant]


def _wait_replicated(
    store: ObjectStore, tenant: str, run_id: str, out: Path, timeout: float
) -> float:
    """Seconds until a plain litestream restore shows the run completed."""
    t0 = time.monotonic()
    while True:
        proc = litestream_restore(store, tenant, out)
        if proc.returncode == 0:
            try:
                rows = query(out, "SELECT status FROM runs WHERE id = ?", run_id)
            except apsw.SQLError:  # replica still at the empty database (no tables yet)
                rows = []
            if rows == [("completed",)]:
                return time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"run {run_id} not restorable after {timeout:g}s: {proc.stderr}")
        time.sleep(0.1)


def test_container_starts_and_becomes_healthy(start_tenant: StartTenant) -> None:
    tenant = start_tenant()
    # The image's health check script (bash /dev/tcp probe of /healthz, what `fleet ls` runs)
    # agrees with our probe; the engine does not run it periodically (names.py says why).
    code, _ = tenant.container.exec_run(["/opt/litefleet/bin/litefleet-healthcheck"])
    assert code == 0
    assert tenant.container.attrs["Config"]["Healthcheck"]["Test"] == ["NONE"]
    with tenant.http() as http:
        assert http.get("/healthz").status_code == 200
        assert http.get("/v1/runs", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert http.get("/v1/runs").status_code == 200


def test_committed_run_reaches_object_storage_within_3s(
    start_tenant: StartTenant, object_store: ObjectStore, tmp_path: Path
) -> None:
    tenant = start_tenant()
    run_id = tenant.submit("echo", {"message": "replicate me"})
    with tenant.http() as http:
        assert wait_run(http, run_id)["status"] == "completed"
    lag = _wait_replicated(object_store, tenant.name, run_id, tmp_path / "r.db", timeout=3.0)
    assert lag <= 3.0
    keys = replica_keys(object_store, tenant.name)
    assert keys and all(k.endswith(".ltx") for k in keys), keys


def test_empty_volume_restores_from_replica(
    start_tenant: StartTenant, object_store: ObjectStore, docker_client: Any, tmp_path: Path
) -> None:
    first = start_tenant()
    run_id = first.submit("steps", {"n": 3})
    with first.http() as http:
        done = wait_run(http, run_id)
    history = first.events(run_id)
    assert done["result"] == 3 and len(history) >= 4
    _wait_replicated(object_store, first.name, run_id, tmp_path / "r.db", timeout=10.0)
    # SIGKILL and delete the volume: only the replica is left, no final sync helped.
    first.container.remove(force=True)
    docker_client.volumes.get(first.volume).remove(force=True)

    second = start_tenant(name=first.name)  # same tenant, a new empty volume
    assert second.volume != first.volume
    with second.http() as http:
        run = http.get(f"/v1/runs/{run_id}").raise_for_status().json()
    assert run["status"] == "completed" and run["result"] == 3
    assert second.events(run_id) == history
    assert "restored" in second.container.logs().decode(errors="replace").lower()


def test_plain_litestream_restores_tenant(
    start_tenant: StartTenant, object_store: ObjectStore, tmp_path: Path
) -> None:
    tenant = start_tenant()
    ids = [tenant.submit("echo", {"message": f"m{i}"}) for i in range(5)]
    with tenant.http() as http:
        for run_id in ids:
            wait_run(http, run_id)
    tenant.container.stop(timeout=30)  # graceful: litestream's final sync
    out = tmp_path / "tenant.db"
    proc = litestream_restore(object_store, tenant.name, out)
    assert proc.returncode == 0, (
        proc.stderr,
        replica_keys(object_store, tenant.name),
        tenant.container.logs(tail=12).decode(errors="replace"),
    )
    assert query(out, "PRAGMA integrity_check") == [("ok",)]
    rows = query(out, "SELECT id, status, result FROM runs ORDER BY num")
    assert [r[0] for r in rows] == ids
    assert {r[1] for r in rows} == {"completed"}
    assert rows[0][2] is not None and "m0" in rows[0][2]


def processes(container: Any) -> dict[str, tuple[int, int]]:
    """The container's processes as `docker top` shows them: role -> (host pid, uid)."""
    roles = {  # first match wins: the runner's command line holds the runtime's
        "fleet.supervisor keep": "keeper",
        "litefleet-runner": "runner",
        "litestream replicate": "litestream",
        "agent_runtime serve": "runtime",
    }
    top = container.top(ps_args="-o pid,uid,args")
    found: dict[str, tuple[int, int]] = {}
    for pid, uid, args in top["Processes"]:
        role = next((r for pattern, r in roles.items() if pattern in args), None)
        if role is not None:
            found[role] = (int(pid), int(uid))
    return found


def proc_status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return dict(line.split(":\t", 1) for line in lines if ":\t" in line)


def proc_environ(pid: int) -> set[str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return {item.split(b"=", 1)[0].decode() for item in raw.split(b"\0") if item}


def test_container_is_hardened(start_tenant: StartTenant) -> None:
    tenant = start_tenant(memory="200m", cpus=0.25, pids=128, env={"APP_SETTING": "x1"})
    c = tenant.container
    c.reload()
    cfg, host = c.attrs["Config"], c.attrs["HostConfig"]
    # Root with three capabilities, for the supervisor's first stage only (below: gone).
    assert cfg["User"] == "0:0"
    assert host["CapDrop"] == ["ALL"] and sorted(host["CapAdd"]) == ["SETGID", "SETPCAP", "SETUID"]
    assert host["ReadonlyRootfs"] is True
    assert "no-new-privileges:true" in host["SecurityOpt"]
    assert host["Privileged"] is False
    assert host["Memory"] == 200 * 1024 * 1024
    assert host["NanoCpus"] == 250_000_000
    assert host["PidsLimit"] == 128
    assert {"/tmp", "/run/litefleet"} == set(host["Tmpfs"])
    assert host["RestartPolicy"]["Name"] == "on-failure"
    mounts = c.attrs["Mounts"]
    assert [(m["Type"], m["Destination"]) for m in mounts] == [("volume", "/data")]
    assert host.get("Binds") == [f"{tenant.volume}:/data:rw"]  # the volume, nothing else
    assert not any("docker.sock" in str(m) for m in mounts)
    for binding in host["PortBindings"]["8080/tcp"]:
        assert binding["HostIp"] == "127.0.0.1"

    # `docker top`: the keeper (PID 1) and Litestream under one uid, the runner and the
    # runtime (all agent code) under another; no capability left anywhere, bounding set
    # included, and no way to gain one.
    procs = processes(c)
    assert set(procs) == {"keeper", "runner", "litestream", "runtime"}, c.top()
    assert {procs["keeper"][1], procs["litestream"][1]} == {SUPERVISOR_UID}
    assert {procs["runner"][1], procs["runtime"][1]} == {AGENT_UID}
    for role, (pid, _) in procs.items():
        st = proc_status(pid)
        for caps in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
            assert st[caps] == "0000000000000000", (role, caps, st[caps])
        assert st["NoNewPrivs"] == "1", role
    assert proc_status(procs["runtime"][0])["Groups"].split() == []
    assert proc_status(procs["keeper"][0])["Groups"].split() == [str(AGENT_GID)]

    # Litestream and the keeper run with an explicit environment; the runtime gets the app's,
    # without anything of the supervisor's (read from the host: see environment.md).
    secrets = {"LITESTREAM_SECRET_ACCESS_KEY", "LITESTREAM_ACCESS_KEY_ID"}
    for role in ("keeper", "litestream"):
        env = proc_environ(procs[role][0])
        assert secrets <= env and not {"APP_SETTING", "AGENT_RUNTIME_TOKEN"} & env, role
    for role in ("runner", "runtime"):
        env = proc_environ(procs[role][0])
        assert {"APP_SETTING", "AGENT_RUNTIME_TOKEN"} <= env, role
        assert not secrets & env and not {e for e in env if e.startswith("LITEFLEET_S3")}, role

    # The same seen from inside, as the keeper's uid (the fleet's probes run so).
    def sh(cmd: str, user: str = f"{SUPERVISOR_UID}:{SUPERVISOR_GID}") -> tuple[int, str]:
        code, out = c.exec_run(["/bin/sh", "-c", cmd], user=user)
        return int(code), out.decode(errors="replace").strip()

    assert sh("touch /opt/x")[0] != 0  # read-only root fs
    assert sh("test -e /var/run/docker.sock || test -e /run/docker.sock")[0] != 0
    # Database files: the keeper's, the agent group's, never world-readable; Litestream's
    # tracking and the supervisor's record closed to everyone else.
    listing = sh(f"stat -c '%n %u %g %a' /data {DB_PATH} {DB_PATH}-wal {DB_PATH}-shm "
                 f"/data/.tenant.db-litestream /data/.litefleet /run/litefleet")[1]  # fmt: skip
    modes = {line.split()[0]: line.split()[1:] for line in listing.splitlines()}
    sup, agent = str(SUPERVISOR_UID), str(AGENT_GID)
    assert modes["/data"] == [sup, agent, "3770"]
    for f in (DB_PATH, f"{DB_PATH}-wal", f"{DB_PATH}-shm"):
        assert modes[f] == [sup, agent, "660"], (f, modes[f])
    assert modes["/data/.tenant.db-litestream"][2] == "700"
    assert modes["/data/.litefleet"][2] == "700"
    assert modes["/run/litefleet"] == [sup, str(SUPERVISOR_GID), "755"]


def test_sigterm_mid_run_exits_cleanly_and_run_resumes(start_tenant: StartTenant) -> None:
    tenant = start_tenant()
    n = 8
    run_id = tenant.submit("steps", {"n": n, "sleep": 0.5})
    deadline = time.monotonic() + 20
    while True:
        before = [e for e in tenant.events(run_id) if e["kind"] == "step_completed"]
        if len(before) >= 2:
            break
        assert time.monotonic() < deadline, "steps did not start"
        time.sleep(0.05)

    grace = 30
    t0 = time.monotonic()
    tenant.container.stop(timeout=grace)
    stopped_in = time.monotonic() - t0
    tenant.container.reload()
    state = tenant.container.attrs["State"]
    # SIGTERM alone (what the engine sends) stops it cleanly until the engine starts again.
    assert stopped_in < grace and state["ExitCode"] == ENGINE_STOP, (stopped_in, state)
    logs = tenant.container.logs().decode(errors="replace")
    assert "signal received" in logs.lower() or "runtime_stopped" in logs, logs[-2000:]

    tenant.container.start()
    restarted_at = time.time()
    wait_healthy(tenant)
    with tenant.http() as http:
        run = wait_run(http, run_id)
    assert run["status"] == "completed" and run["result"] == n
    after = [e for e in tenant.events(run_id) if e["kind"] == "step_completed"]
    # Every step ran exactly once: the steps done before SIGTERM kept their results.
    assert sorted(e["data"]["result"]["i"] for e in after) == list(range(n))
    for e in before:
        assert e in after
    # And the run did resume after the restart rather than finish while draining.
    from datetime import datetime

    last = datetime.fromisoformat(after[-1]["at"]).timestamp()
    assert last >= restarted_at - 1.0, "run finished before the restart: nothing resumed"


def test_tenants_reach_the_store_but_not_each_other(
    start_tenant: StartTenant, object_store: ObjectStore
) -> None:
    a, b = start_tenant(), start_tenant()
    b.container.reload()
    b_ip = next(iter(b.container.attrs["NetworkSettings"]["Networks"].values()))["IPAddress"]
    probe = (
        "import sys, urllib.error, urllib.request\n"
        "try:\n"
        "    print(urllib.request.urlopen(sys.argv[1], timeout=2).status)\n"
        "except urllib.error.HTTPError as e:\n"
        "    print(e.code)\n"
        "except Exception as e:\n"
        "    print(type(e).__name__)\n"
    )

    def fetch(url: str) -> str:
        _, out = a.container.exec_run(["python3", "-I", "-c", probe, url], user="10002")
        return str(out.decode().strip())

    # The store answers (and, asked without credentials, refuses: it checks every request).
    assert fetch(f"{object_store.tenant_endpoint}/{object_store.bucket}") == "403"
    assert fetch(f"http://{b_ip}:8080/healthz") in ("URLError", "TimeoutError")
    assert fetch("http://127.0.0.1:8080/healthz") == "200"  # its own API, for contrast
