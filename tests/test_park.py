"""Parked tenants (issue 12) on a real engine, the tenant image and the embedded store: park,
wake through `fleet run` and through the gateway, durable timers while parked, auto-park,
the gateway's token check."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.docker_fixtures import the_store
from tests.fleet_support import one_line_error
from tests.park_support import (
    Fleet,
    Gateway,
    console_pages,
    gateway,
    ls,
    manifest,
    name,
    ok,
    park_env,
    run,
    wait_until,
)

pytestmark = pytest.mark.docker
__all__ = ["gateway", "park_env", "run"]  # fixtures


def _runs(run: Fleet, tenant: str) -> dict[str, dict[str, Any]]:
    return {r["id"]: r for r in json.loads(ok(run("runs", tenant, "--json")).out)}


def _status(run: Fleet, tenant: str, run_id: str) -> str:
    """The run's status, or the error while the tenant is between states (the gateway may be
    creating its container as `fleet runs` looks it up): polled, so a transient error retries."""
    r = run("runs", tenant, "--json")
    if r.code != 0:
        return f"error: {r.err.strip()}"
    return str({x["id"]: x for x in json.loads(r.out)}[run_id]["status"])


def _volumes(docker_client: Any, tenant: str) -> list[str]:
    return [v.name for v in docker_client.volumes.list(filters={"name": f"litefleet-{tenant}-"})]


def _containers(docker_client: Any, tenant: str) -> list[Any]:
    found: list[Any] = docker_client.containers.list(
        all=True, filters={"label": f"litefleet.tenant={tenant}"}
    )
    return found


def test_park_then_wake_through_fleet_run(
    run: Fleet,
    park_env: dict[str, str],
    docker_client: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    t = name()
    egress = "203.0.113.7:443"  # a policy of its own: wake must enforce it again
    up = ("up", t, "--label", "team=blue", "--ttl", "2h", "--env", "GREETING=hello")
    ok(run(*up, "--egress", egress))
    ok(run("run", t, "steps", "--input", '{"n": 3}', "--id", "before", "--wait"))
    ok(run("run", t, "research", "--input", '{"topic": "sqlite"}', "--id", "asks"))
    token = ok(run("token", t)).out.strip()
    before = _runs(run, t)
    wait_until(lambda: _runs(run, t)["asks"]["status"] == "waiting", 30, "research waits")

    parked = ok(run("park", t))
    assert "parked" in parked.out
    assert _containers(docker_client, t) == [] and _volumes(docker_client, t) == []
    store = the_store(docker_client, park_env["FLEET_S3_BUCKET"])
    record = manifest(store, park_env["FLEET_S3_BUCKET"], t)
    assert record is not None and record["state"] == "parked"
    assert record["park"]["spec"]["egress"] == egress
    assert token not in parked.out + parked.err
    row = ls(run)[t]
    assert row["state"] == "parked" and row["labels"] == {"team": "blue"} and row["ttl"] == "2h"
    assert row["egress"] == egress
    listing, page = console_pages(park_env, tmp_path, monkeypatch, t)
    assert '<span class="state parked">parked</span>' in listing and t in listing
    assert "before" in page and "asks" in page  # its runs, from the backup
    assert _containers(docker_client, t) == []  # the console woke nothing
    assert "already parked" in ok(run("park", t)).out
    assert ok(run("token", t)).out.strip() == token

    woke = ok(run("signal", t, "asks", "approve", "--data", '{"approved": true}'))
    assert f"tenant {t} is parked: waking it" in woke.err
    done = json.loads(
        ok(run("run", t, "echo", "--input", '{"message": "x"}', "--wait", "--json")).out
    )
    assert done["status"] == "completed"
    after = _runs(run, t)
    assert after["before"] == before["before"]  # every run and result intact
    wait_until(lambda: _runs(run, t)["asks"]["status"] == "completed", 30, "research ends")
    assert ok(run("token", t)).out.strip() == token  # same token after the wake
    row = ls(run)[t]
    assert row["state"] == "running" and row["ttl"] == "2h" and row["labels"] == {"team": "blue"}
    assert row["egress"] == egress  # enforced again: the supervisor waits for its rules
    assert manifest(store, park_env["FLEET_S3_BUCKET"], t) is None  # the record went with it
    env = docker_client.containers.get(f"litefleet-{t}").attrs["Config"]["Env"]
    assert "GREETING=hello" in env


def test_gateway_checks_tokens_and_wakes_on_request(
    run: Fleet, gateway: Gateway, park_env: dict[str, str], tmp_path: Any, docker_client: Any
) -> None:
    t, other = name(), name()
    ok(run("up", t, other))
    token, other_token = ok(run("token", t)).out.strip(), ok(run("token", other)).out.strip()
    with gateway.client(t, token) as c:
        first = c.post("/v1/runs", json={"workflow": "steps", "input": {"n": 2}, "id": "g1"})
        assert first.status_code == 201, first.text
    ok(run("park", t))
    for bad in (None, "wrong", other_token):  # missing, wrong, another tenant's
        with gateway.client(t, bad) as c:
            assert c.get("/v1/runs").status_code == 401
    with gateway.client("nobody-here", token) as c:
        assert c.get("/v1/runs").status_code == 401
    assert _containers(docker_client, t) == []  # a 401 woke nothing
    assert ls(run)[t]["state"] == "parked"

    t0 = time.monotonic()
    with gateway.client(t, token) as c:
        got = c.get("/v1/runs/g1")
        assert got.status_code == 200 and got.json()["status"] == "completed"
    assert time.monotonic() - t0 < 30
    assert ls(run)[t]["state"] == "running"
    metrics = gateway.metrics()
    assert 'litefleet_gateway_wakes_total{reason="request"} 1' in metrics
    assert "litefleet_gateway_wake_seconds_count 1" in metrics
    second = run("gateway", "--port", "1")
    assert "a gateway already serves this fleet" in one_line_error(second)


def test_durable_sleep_parked_mid_sleep_completes_on_time(
    run: Fleet, gateway: Gateway, docker_client: Any
) -> None:
    t = name()
    ok(run("up", t))
    ok(run("run", t, "steps", "--input", '{"n": 2, "sleep": 12}', "--id", "nap"))
    wait_until(lambda: _runs(run, t)["nap"]["status"] == "sleeping", 30, "the run sleeps")
    wake_at = json.loads(ok(run("runs", t, "--json")).out)[0]["wake_at"]
    parked = ok(run("park", t))
    assert "next durable deadline" in parked.out
    assert _containers(docker_client, t) == []
    # No request from here on: the gateway wakes it for the timer by itself.
    wait_until(lambda: 'reason="timer"' in gateway.metrics(), 40, "woken for the timer")
    wait_until(lambda: _status(run, t, "nap") == "completed", 40, "the run completes")
    done = _runs(run, t)["nap"]
    lateness = _epoch(done["updated_at"]) - _epoch(wake_at)
    assert lateness < 10, lateness


BUSY_APP = b"""
import time

from agent_runtime import step, workflow


@step
def work(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@workflow
async def busy(seconds: float) -> float:
    return await work(seconds)
"""


def _volume_with_app(docker_client: Any, tenant: str, image: str) -> str:
    """The tenant's volume, made before `fleet up`, holding /data/busy.py (uid 10001)."""
    import io
    import tarfile

    volume = f"litefleet-{tenant}-data"
    docker_client.volumes.create(name=volume, labels={"litefleet.tenant": tenant})
    holder = docker_client.containers.create(
        image, entrypoint=["true"], volumes={volume: {"bind": "/data", "mode": "rw"}}
    )
    try:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            info = tarfile.TarInfo("busy.py")
            info.size, info.uid, info.gid, info.mode = len(BUSY_APP), 10001, 10001, 0o644
            tar.addfile(info, io.BytesIO(BUSY_APP))
        holder.put_archive("/data", buf.getvalue())
    finally:
        holder.remove(force=True)
    return "/data/busy.py"


def test_idle_tenant_is_parked_but_not_while_a_run_executes(
    run: Fleet, gateway: Gateway, docker_client: Any, tenant_image: str
) -> None:
    t = name()
    app = _volume_with_app(docker_client, t, tenant_image)
    ok(run("up", t, "--idle-park", "8s", "--image", tenant_image, "--app", app))
    token = ok(run("token", t)).out.strip()
    with gateway.client(t, token) as c:  # within 8 s of the start (the app dies with a park)
        r = c.post("/v1/runs", json={"workflow": "busy", "input": {"seconds": 20}, "id": "b1"})
        assert r.status_code == 201, r.text
    assert ls(run)[t]["idle_park"] == "8s"
    time.sleep(12)  # idle for the API, but a run executes: stays up
    assert ls(run)[t]["state"] == "running"
    assert "litefleet_gateway_parks_total{" not in gateway.metrics()
    wait_until(lambda: ls(run)[t]["state"] == "parked", 40, "parked once the run ended")
    assert 'litefleet_gateway_parks_total{reason="idle"} 1' in gateway.metrics()


def test_parking_with_a_failed_final_sync_leaves_it_running(
    docker_client: Any, tenant_image: str, tmp_path: Any
) -> None:
    """The tenants' path to the object store is cut (an INPUT rule for this test's own
    store port only, removed at the end) while the fleet still reaches it."""
    import subprocess

    from fleet.engine.network import ensure_tenant_network, network_gateway
    from fleet.storage.embedded import ensure_object_store, remove_object_store
    from tests.fleet_support import fleet, free_port

    network = ensure_tenant_network(docker_client)
    gw_ip = network_gateway(docker_client)
    port = free_port()
    own = f"litefleet-test-s3-{port}"
    store = ensure_object_store(docker_client, bucket="park-sync", port=port, name=own)
    admin = store.for_fleet()
    bridge = "br-" + docker_client.networks.get(network).id[:12]
    rule = [
        "INPUT",
        "-i",
        bridge,
        "-d",
        gw_ip,
        "-p",
        "tcp",
        "--dport",
        str(port),
        "-j",
        "REJECT",
        "--reject-with",
        "tcp-reset",
    ]
    env = {
        "FLEET_IMAGE": tenant_image,
        "FLEET_S3_ENDPOINT": f"http://127.0.0.1:{port}",
        "FLEET_S3_TENANT_ENDPOINT": f"http://{gw_ip}:{port}",
        "FLEET_S3_BUCKET": "park-sync",
        "FLEET_S3_ACCESS_KEY_ID": admin.access_key_id,
        "FLEET_S3_SECRET_ACCESS_KEY": admin.secret_access_key,
        "FLEET_HEALTH_TIMEOUT": "90",
        "FLEET_CONFIG": "",
    }
    t = name()
    try:
        ok(fleet("up", t, env=env))
        ok(fleet("run", t, "steps", "--input", '{"n": 2}', "--id", "kept", "--wait", env=env))
        subprocess.run(["iptables", "-I", *rule], check=True)
        ok(fleet("run", t, "echo", "--input", '{"message": "late"}', "--id", "late", env=env))
        failed = fleet("park", t, env=env)
        line = one_line_error(failed)
        assert "was not parked" in line and "final sync" in line and "running again" in line
        assert failed.code == 5
        (c,) = _containers(docker_client, t)
        assert c.status in ("running", "restarting") or c.reload() is None
        assert _volumes(docker_client, t)
    finally:
        subprocess.run(["iptables", "-D", *rule], check=False)
    try:
        wait_until(lambda: fleet("runs", t, "--json", env=env).code == 0, 90, "serves again")
        runs = {r["id"]: r["status"] for r in json.loads(fleet("runs", t, "--json", env=env).out)}
        assert runs["kept"] == "completed" and "late" in runs
        row = {r["tenant"]: r for r in json.loads(ok(fleet("ls", "--json", env=env)).out)}[t]
        assert row["state"] == "running"
    finally:
        fleet("rm", t, "--purge", "--yes", env=env)
        remove_object_store(docker_client, own)


def _epoch(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso).timestamp()


def test_bulk_up_park_wake(run: Fleet, docker_client: Any) -> None:
    prefix = name("bk") + "-"
    ok(run("up", "--count", "3", "--prefix", prefix))
    names = [f"{prefix}{i}" for i in (1, 2, 3)]
    assert {n for n, r in ls(run).items() if r["state"] == "running"} >= set(names)
    ok(run("park", "--count", "3", "--prefix", prefix))
    assert all(ls(run)[n]["state"] == "parked" for n in names)
    out = ok(run("wake", *names))
    assert out.out.count("woken") == 3
    assert all(ls(run)[n]["state"] == "running" for n in names)
    failed = run("wake", names[0], "nope-" + prefix.rstrip("-"))
    assert failed.code == 3 and "1 of 2 tenants failed" in failed.err


SHOUT_APP = """\
from agent_runtime import step, workflow

@step
async def upper(text: str) -> str:
    return text.upper()

@workflow
async def shout(text: str) -> str:
    return await upper(text)
"""


def test_a_template_tenant_wakes_on_its_template_with_its_egress(
    run: Fleet, tmp_path: Path
) -> None:
    template, t = name("tpl"), name()
    src = tmp_path / "app"
    src.mkdir()
    (src / "agents.py").write_text(SHOUT_APP)
    ok(run("template", "build", str(src), "--name", template))
    try:
        ok(run("up", t, "--template", template, "--egress", "none"))
        version = ls(run)[t]["template_version"]
        assert version and ls(run)[t]["template"] == template

        def shout(text: str) -> Any:
            payload = json.dumps({"text": text})
            done = ok(run("run", t, "shout", "--input", payload, "--wait", "--json"))
            return json.loads(done.out)["result"]

        assert shout("before") == "BEFORE"
        ok(run("park", t))
        row = ls(run)[t]
        assert row["state"] == "parked" and row["egress"] == "none"
        assert (row["template"], row["template_version"]) == (template, version)
        ok(run("wake", t))
        row = ls(run)[t]
        assert row["state"] == "running" and row["egress"] == "none"
        assert (row["template"], row["template_version"]) == (template, version)
        assert shout("after") == "AFTER"  # the template's code, not the stock image's
    finally:
        run("rm", t, "--purge", "--yes")
        run("template", "rm", template, "--force")
