"""The tenant container on a real engine: health, replication, restore, hardening, SIGTERM."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import apsw
import pytest

from fleet.core.names import DB_PATH, TENANT_UID
from fleet.storage.embedded import EmbeddedStore as ObjectStore
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


def _submit(tenant: Tenant, workflow: str, inp: dict[str, Any]) -> str:
    with tenant.http() as http:
        r = http.post("/v1/runs", json={"workflow": workflow, "input": inp})
        assert r.status_code == 201, r.text
        return str(r.json()["id"])


def _events(tenant: Tenant, run_id: str) -> list[dict[str, Any]]:
    with tenant.http() as http:
        events: list[dict[str, Any]] = (
            http.get(f"/v1/runs/{run_id}/events").raise_for_status().json()["events"]
        )
        return events


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
    run_id = _submit(tenant, "echo", {"message": "replicate me"})
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
    run_id = _submit(first, "steps", {"n": 3})
    with first.http() as http:
        done = wait_run(http, run_id)
    history = _events(first, run_id)
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
    assert _events(second, run_id) == history
    assert "restored" in second.container.logs().decode(errors="replace").lower()


def test_plain_litestream_restores_tenant(
    start_tenant: StartTenant, object_store: ObjectStore, tmp_path: Path
) -> None:
    tenant = start_tenant()
    ids = [_submit(tenant, "echo", {"message": f"m{i}"}) for i in range(5)]
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


def test_container_is_hardened(start_tenant: StartTenant) -> None:
    tenant = start_tenant(memory="200m", cpus=0.25, pids=128, env={"APP_SETTING": "x1"})
    c = tenant.container
    c.reload()
    cfg, host = c.attrs["Config"], c.attrs["HostConfig"]
    assert cfg["User"] == f"{TENANT_UID}:{TENANT_UID}"
    assert host["ReadonlyRootfs"] is True
    assert host["CapDrop"] == ["ALL"] and not host.get("CapAdd")
    assert "no-new-privileges:true" in host["SecurityOpt"]
    assert host["Privileged"] is False
    assert host["Memory"] == 200 * 1024 * 1024
    assert host["NanoCpus"] == 250_000_000
    assert host["PidsLimit"] == 128
    assert "/tmp" in host["Tmpfs"]
    mounts = c.attrs["Mounts"]
    assert [(m["Type"], m["Destination"]) for m in mounts] == [("volume", "/data")]
    assert host.get("Binds") == [f"{tenant.volume}:/data:rw"]  # the volume, nothing else
    assert not any("docker.sock" in str(m) for m in mounts)
    for binding in host["PortBindings"]["8080/tcp"]:
        assert binding["HostIp"] == "127.0.0.1"

    # The same, seen from inside.
    def sh(cmd: str) -> tuple[int, str]:
        code, out = c.exec_run(["/bin/sh", "-c", cmd])
        return int(code), out.decode(errors="replace").strip()

    assert sh("id -u") == (0, str(TENANT_UID))
    assert sh("touch /opt/x")[0] != 0  # read-only root fs
    assert sh("touch /tmp/x && touch /data/x")[0] == 0
    status = sh("cat /proc/self/status")[1]
    assert "CapEff:\t0000000000000000" in status and "NoNewPrivs:\t1" in status
    assert sh("test -e /var/run/docker.sock || test -e /run/docker.sock")[0] != 0

    # Litestream runs with an explicit environment; the runtime gets the app's, minus S3 secrets.
    def environ(command: str) -> set[str]:
        # "[ ]" keeps the pattern from matching this probe's own command line.
        pattern = command.replace(" ", "[ ]", 1)
        script = (
            "for p in /proc/[0-9]*; do "
            f"tr '\\0' ' ' < $p/cmdline | grep -q '{pattern}' "
            "&& tr '\\0' '\\n' < $p/environ; done; true"
        )
        code, out = sh(script)
        assert code == 0 and out, f"no process runs {command!r}"
        return {line.split("=", 1)[0] for line in out.splitlines()}

    litestream_env = environ("litestream replicate")
    runtime_env = environ("agent-runtime serve")
    assert "LITESTREAM_SECRET_ACCESS_KEY" in litestream_env
    assert not {"APP_SETTING", "AGENT_RUNTIME_TOKEN", "AWS_CA_BUNDLE"} & litestream_env
    assert {"APP_SETTING", "AGENT_RUNTIME_TOKEN"} <= runtime_env
    assert not {"LITESTREAM_SECRET_ACCESS_KEY", "LITESTREAM_ACCESS_KEY_ID"} & runtime_env
    # Tenants see the database only through their volume, owned by their user.
    assert sh(f"stat -c %u {DB_PATH}") == (0, str(TENANT_UID))


def test_sigterm_mid_run_exits_cleanly_and_run_resumes(start_tenant: StartTenant) -> None:
    tenant = start_tenant()
    n = 8
    run_id = _submit(tenant, "steps", {"n": n, "sleep": 0.5})
    deadline = time.monotonic() + 20
    while True:
        before = [e for e in _events(tenant, run_id) if e["kind"] == "step_completed"]
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
    assert stopped_in < grace and state["ExitCode"] == 0, (stopped_in, state)
    logs = tenant.container.logs().decode(errors="replace")
    assert "signal received" in logs.lower() or "runtime_stopped" in logs, logs[-2000:]

    tenant.container.start()
    restarted_at = time.time()
    wait_healthy(tenant)
    with tenant.http() as http:
        run = wait_run(http, run_id)
    assert run["status"] == "completed" and run["result"] == n
    after = [e for e in _events(tenant, run_id) if e["kind"] == "step_completed"]
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
        _, out = a.container.exec_run(["python3", "-c", probe, url])
        return str(out.decode().strip())

    # The store answers (and, asked without credentials, refuses: it checks every request).
    assert fetch(f"{object_store.tenant_endpoint}/{object_store.bucket}") == "403"
    assert fetch(f"http://{b_ip}:8080/healthz") in ("URLError", "TimeoutError")
    assert fetch("http://127.0.0.1:8080/healthz") == "200"  # its own API, for contrast
