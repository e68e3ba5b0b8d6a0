"""The `fleet` CLI against a real Docker engine, the tenant image and the embedded store,
driven as a user would: the installed console script in a subprocess."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from fleet.storage.embedded import EmbeddedStore as ObjectStore
from tests import docker_fixtures as _fixtures
from tests.docker_fixtures import TEST_BUCKET

from .fleet_support import Result, cli_env, fleet, one_line_error

pytestmark = pytest.mark.docker

# The image helper's fixtures, in case tests/conftest.py does not load the plugin.
docker_client = _fixtures.docker_client
tenant_image = _fixtures.tenant_image
object_store = _fixtures.object_store

Fleet = Callable[..., Result]


@pytest.fixture
def env(tenant_image: str, object_store: ObjectStore) -> dict[str, str]:
    return cli_env(tenant_image, TEST_BUCKET)


@pytest.fixture
def run(env: dict[str, str]) -> Iterator[Fleet]:
    """``run(*args) -> Result`` with the test settings; removes every tenant it saw `up`."""
    seen: list[str] = []

    def call(*args: str, **kw: Any) -> Result:
        if args and args[0] == "up":
            seen.append(args[1])
        return fleet(*args, env={**env, **kw.pop("env", {})}, **kw)

    yield call
    for name in seen:
        fleet("rm", name, "--purge", "--yes", env=env)


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _ok(r: Result) -> Result:
    assert r.code == 0, f"exit {r.code}\nstdout: {r.out}\nstderr: {r.err}"
    return r


def _ls(run: Fleet, *args: str) -> dict[str, dict[str, Any]]:
    return {t["tenant"]: t for t in json.loads(_ok(run("ls", "--json", *args)).out)}


def _token(docker_client: Any, tenant: str) -> str:
    c = docker_client.containers.get(f"litefleet-{tenant}")
    env = dict(e.partition("=")[::2] for e in c.attrs["Config"]["Env"])
    return env["AGENT_RUNTIME_TOKEN"]


def _status(run: Fleet, tenant: str, run_id: str) -> str:
    runs = json.loads(_ok(run("runs", tenant, "--json")).out)
    return str(next(x["status"] for x in runs if x["id"] == run_id))


def _wait_replicated(run: Fleet, tenant: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        rep = _ls(run)[tenant]["replication"]
        if rep["local_txid"] and rep["lag_txns"] == 0:
            return dict(rep)
        assert time.monotonic() < deadline, rep
        time.sleep(0.5)


def test_lifecycle_and_runs(run: Fleet, docker_client: Any) -> None:
    t = _name("life")
    r = _ok(run("up", t, "--label", "suite=fleet", "--label", f"case={t}", "--ttl", "2h"))
    assert "created" in r.out and "http://127.0.0.1:" in r.out
    token = _token(docker_client, t)
    r2 = _ok(run("up", t))
    assert "already running" in r2.out
    # The token never reaches the user's terminal.
    assert token not in r.out + r.err + r2.out + r2.err

    info = _ls(run, "--label", f"case={t}")[t]
    assert info["state"] == "running" and info["host"] == "local"
    assert info["labels"] == {"suite": "fleet", "case": t}
    assert info["ttl"] == "2h" and info["db_bytes"] > 0
    assert list(_ls(run, "--label", "case=nobody")) == []

    done = json.loads(_ok(run("run", t, "echo", "-i", '{"message": "hi"}', "--wait", "--json")).out)
    assert done["status"] == "completed" and done["result"] == {"message": "hi"}
    inp = Path(f"/tmp/{t}-input.json")
    inp.write_text('{"n": 4}')
    try:
        done = json.loads(
            _ok(run("run", t, "steps", "-i", f"@{inp}", "--id", "s4", "--wait", "--json")).out
        )
    finally:
        inp.unlink()
    assert done["id"] == "s4" and done["result"] == 4
    # A failing run: printed, exit 1.
    r = run("run", t, "echo", "-i", '{"message": 5}', "--wait", "--json")
    assert r.code == 1 and json.loads(r.out)["status"] == "failed"

    # A signal releases a waiting run; cancel stops a sleeping one.
    _ok(run("run", t, "research", "-i", '{"topic": "t"}', "--id", "r1"))
    _ok(run("run", t, "steps", "-i", '{"n": 3, "sleep": 120}', "--id", "c1"))
    deadline = time.monotonic() + 30
    while _status(run, t, "r1") != "waiting":
        assert time.monotonic() < deadline, _status(run, t, "r1")
        time.sleep(0.3)
    _ok(run("signal", t, "r1", "approve", "--data", '{"ok": true}'))
    _ok(run("cancel", t, "c1"))
    deadline = time.monotonic() + 30
    while _status(run, t, "r1") != "completed":
        assert time.monotonic() < deadline, _status(run, t, "r1")
        time.sleep(0.3)
    runs = {x["id"]: x["status"] for x in json.loads(_ok(run("runs", t, "--json")).out)}
    assert runs["s4"] == "completed" and runs["r1"] == "completed"
    assert runs["c1"] == "cancelled"
    only = json.loads(_ok(run("runs", t, "--status", "cancelled", "--json")).out)
    assert [x["id"] for x in only] == ["c1"]
    assert "runtime_started" in _ok(run("logs", t)).out

    # down: stopped, data kept; commands that need the API say so in one line.
    _ok(run("down", t))
    assert _ls(run)[t]["state"] == "exited"
    assert "already" in _ok(run("down", t)).out
    r = run("runs", t)
    assert r.code == 3 and "is exited" in one_line_error(r)
    r = _ok(run("up", t))
    assert "started" in r.out
    runs_after = {x["id"] for x in json.loads(_ok(run("runs", t, "--json")).out)}
    assert {"s4", "r1", "c1"} <= runs_after

    _ok(run("rm", t))
    assert t not in _ls(run)
    assert not [v for v in docker_client.volumes.list() if v.name == f"litefleet-{t}-data"]


@pytest.mark.parametrize(
    "args",
    [
        ["down", "{t}"],
        ["rm", "{t}"],
        ["logs", "{t}"],
        ["run", "{t}", "echo"],
        ["runs", "{t}"],
        ["signal", "{t}", "r", "approve"],
        ["cancel", "{t}", "r"],
        ["inspect", "{t}"],
        ["pull", "{t}", "-o", "/tmp/{t}.db"],
    ],
)
def test_nonexistent_tenant(run: Fleet, args: list[str]) -> None:
    t = _name("ghost")
    r = run(*[a.format(t=t) for a in args])
    line = one_line_error(r)
    assert r.code in (3, 5), line
    assert t in line


def test_empty_volume_restores_from_backup_and_pull(run: Fleet, tmp_path: Path) -> None:
    t = _name("dur")
    _ok(run("up", t))
    ids = [f"job-{i}" for i in range(5)]
    for i in ids:
        _ok(run("run", t, "steps", "-i", '{"n": 2}', "--id", i, "--wait"))
    rep = _wait_replicated(run, t)
    assert rep["replicated_txid"] >= rep["local_txid"] > 0

    # pull while the tenant runs: a consistent copy, the container untouched.
    before = _ls(run)[t]
    out = tmp_path / "copy.db"
    r = _ok(run("pull", t, "-o", str(out)))
    assert "integrity ok" in r.out and f"{len(ids)} runs" in r.out
    import apsw

    conn = apsw.Connection(str(out), flags=apsw.SQLITE_OPEN_READONLY)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    got = {row[0] for row in conn.execute("SELECT id FROM runs WHERE status = 'completed'")}
    conn.close()
    assert got == set(ids)
    after = _ls(run)[t]
    assert after["state"] == "running" and after["created_at"] == before["created_at"]
    timeline = _ok(run("inspect", str(out), "--run", "job-0")).out
    assert timeline.count("step_completed") == 2

    # rm keeps the backup: a new tenant of that name starts from it on an empty volume.
    _ok(run("rm", t))
    _ok(run("up", t))
    runs = {x["id"]: x["status"] for x in json.loads(_ok(run("runs", t, "--json")).out)}
    assert all(runs.get(i) == "completed" for i in ids), runs

    # --purge without --yes on a non-terminal refuses and removes nothing.
    r = run("rm", t, "--purge")
    assert r.code == 1 and "pass --yes" in one_line_error(r)
    assert t in _ls(run)
    r = _ok(run("rm", t, "--purge", "--yes"))
    assert "backup" in r.out
    r = run("pull", t, "-o", str(tmp_path / "gone.db"))
    assert r.code == 5 and "no backup" in one_line_error(r)


def test_tenants_cannot_reach_each_other(run: Fleet, docker_client: Any) -> None:
    a, b = _name("iso-a"), _name("iso-b")
    _ok(run("up", a))
    _ok(run("up", b))
    ca = docker_client.containers.get(f"litefleet-{a}")
    cb = docker_client.containers.get(f"litefleet-{b}")
    b_ip = next(iter(cb.attrs["NetworkSettings"]["Networks"].values()))["IPAddress"]
    gateway = next(iter(ca.attrs["NetworkSettings"]["Networks"].values()))["Gateway"]
    b_port = int(_ls(run)[b]["url"].rsplit(":", 1)[1])

    def reach(host: str, port: int) -> bool:
        code, _ = ca.exec_run(
            ["timeout", "3", "bash", "-c", f"exec 3<>/dev/tcp/{host}/{port}"], user="10001"
        )
        return bool(code == 0)

    assert reach("127.0.0.1", 8080)  # control: the probe works (A's own API)
    assert b_ip and not reach(b_ip, 8080)  # B's container address on the tenant network
    assert not reach(gateway, b_port)  # B's published port (it is bound to 127.0.0.1 only)
    assert not reach(b, 8080)  # B's name does not resolve to anything reachable either


def test_teardown_by_label_removes_exactly_those(run: Fleet) -> None:
    batch = uuid.uuid4().hex[:8]
    doomed = [_name("td"), _name("td")]
    keep, bare = _name("keep"), _name("bare")
    for t in doomed:
        _ok(run("up", t, "--label", f"batch={batch}", "--label", "role=x"))
    _ok(run("up", keep, "--label", f"batch={batch}-other", "--label", "role=x"))
    _ok(run("up", bare))
    assert set(doomed) | {keep, bare} <= set(_ls(run))

    r = _ok(run("teardown", "--label", f"batch={batch}"))
    assert all(f"removed {t}" in r.out for t in doomed) and keep not in r.out
    after = _ls(run)
    assert not set(doomed) & set(after)
    # Other tenants (a different value, no labels at all) are untouched. Tenants of other
    # tests may come and go meanwhile, so only our own controls are checked.
    for t in (keep, bare):
        assert after[t]["state"] == "running"


def test_gc_removes_only_expired(run: Fleet) -> None:
    """`gc --label`: the engine is shared with other test sessions, whose expired tenants
    are theirs to remove; the label keeps this gc to the tenants made here."""
    batch = f"batch={uuid.uuid4().hex[:8]}"
    short, long_, other = _name("gc-short"), _name("gc-long"), _name("gc-other")
    _ok(run("up", short, "--ttl", "1s", "--label", batch))
    _ok(run("up", long_, "--ttl", "1h", "--label", batch))
    _ok(run("up", other, "--ttl", "1s"))
    time.sleep(1.5)
    dry = _ok(run("gc", "--dry-run", "--label", batch)).out
    assert short in dry and other not in dry
    r = _ok(run("gc", "--label", batch))
    assert f"removed {short}" in r.out and long_ not in r.out and other not in r.out
    left = _ls(run)
    assert short not in left and long_ in left and other in left


def test_s3_status_says_memory(run: Fleet) -> None:
    assert "running at http://127.0.0.1:" in _ok(run("s3", "up")).out  # idempotent
    r = _ok(run("s3", "status"))
    assert "running" in r.out and "memory" in r.out


def test_up_of_a_stopped_tenant_refuses_settings_it_would_ignore(run: Fleet) -> None:
    t = _name("stopped")
    _ok(run("up", t))
    _ok(run("down", t))
    r = run("up", t, "--image", "litefleet/tenant:other", "--env", "K=V")
    assert r.code == 2
    line = one_line_error(r)
    assert "exists (stopped)" in line and "--image" in line and "--env" in line
    assert _ls(run)[t]["state"] == "exited"  # nothing changed
    _ok(run("up", t))  # alone, it starts as it was
    assert _ls(run)[t]["state"] == "running"
