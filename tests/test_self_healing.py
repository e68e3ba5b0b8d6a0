"""Issue 16 on a real engine: faults cost no tenant.

- The object store unreachable (packets to the test's own store dropped by a firewall rule):
  the container never exits, reads keep answering, writes answer 503 and no step runs from
  the moment a contender could take the lease over, and everything resumes by itself when the
  store is back: every acknowledged run completes, no step is recorded twice, the replica
  catches up. If the lease was taken over meanwhile, the tenant stops for good and sets its
  volume aside.
- Crashes: kill -9 of each process, the OOM killer, a crash loop (the restart bound),
  `docker kill`.
- A full volume: writes answer 507, Litestream and the keeper ride it out.
(Engine restarts: tests/test_engine_restart.py, on a second engine of the test's own.)
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import apsw
import httpx
import pytest

from fleet.supervisor import exits, lease
from tests.docker_fixtures import Tenant, litestream_restore, query, wait_healthy, wait_run
from tests.fleet_support import fleet
from tests.healing_support import (
    OwnStore,
    Tenants,
    cut_off,
    host_pids,
    own_store,
    state_of,
    until,
)

pytestmark = pytest.mark.docker

TTL = 6.0  # the tenants' lease ttl here (renewed every 2 s), to keep outages short


@pytest.fixture
def store(docker_client: Any) -> Iterator[OwnStore]:
    with own_store(docker_client) as s:
        yield s


@pytest.fixture
def tenants(docker_client: Any, tenant_image: str, store: OwnStore) -> Iterator[Tenants]:
    t = Tenants(docker_client, tenant_image, store.for_tenants)
    yield t
    t.cleanup()


def completed_steps(tenant: Tenant, run_id: str) -> list[tuple[int, float]]:
    """(position, unix time) of each step_completed event of the run."""
    return [
        (int(e["position"]), datetime.fromisoformat(e["at"]).timestamp())
        for e in tenant.events(run_id)
        if e["kind"] == "step_completed"
    ]


def started(container: Any) -> tuple[str, int]:
    container.reload()
    return container.attrs["State"]["StartedAt"], int(container.attrs["RestartCount"])


class Load:
    """Submits a short run every 0.3 s; remembers what was acknowledged and what refused."""

    def __init__(self, tenant: Tenant) -> None:
        self.tenant = tenant
        self.acked: list[str] = []
        self.refused: list[tuple[float, int, str | None]] = []  # time, status, Retry-After
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        with self.tenant.http() as http:
            while not self._stop.is_set():
                body = {"workflow": "ticks", "input": {"n": 3, "pause": 0.1}}
                try:
                    r = http.post("/v1/runs", json=body, timeout=5)
                except httpx.HTTPError as exc:
                    self.errors.append(f"{type(exc).__name__}: {exc}")
                else:
                    if r.status_code == 201:
                        self.acked.append(r.json()["id"])
                    else:
                        self.refused.append(
                            (time.time(), r.status_code, r.headers.get("retry-after"))
                        )
                self._stop.wait(0.3)


def fleet_ls(store: OwnStore, label: str) -> dict[str, Any]:
    env = {
        "FLEET_S3_ENDPOINT": store.for_host.endpoint,
        "FLEET_S3_BUCKET": store.bucket,
        "FLEET_S3_ACCESS_KEY_ID": "k",
        "FLEET_S3_SECRET_ACCESS_KEY": "s",
        "FLEET_CONFIG": "",
    }
    r = fleet("ls", "--label", f"case={label}", "--json", env=env)
    assert r.code == 0, r.err
    (row,) = json.loads(r.out)
    return dict(row)


def test_an_unreachable_store_costs_no_tenant(
    tenants: Tenants, store: OwnStore, tmp_path: Path
) -> None:
    case = uuid.uuid4().hex[:8]
    tenant = tenants.start("healing_app.py", lease_ttl=TTL, labels={"litefleet.label.case": case})
    long_run = tenant.submit("ticks", {"n": 150, "pause": 0.2})
    until(lambda: len(completed_steps(tenant, long_run)) >= 3, 30, "steps before the outage")
    until(lambda: state_of(tenant.container)["replication"] == "running", 30, "replicating")
    before = started(tenant.container)

    with Load(tenant) as load:
        time.sleep(2)
        with cut_off(store):
            cut_at = time.time()
            # Reads keep answering all along; the lease is unconfirmed by one ttl at the latest.
            with tenant.http() as http:
                until(lambda: http.get("/healthz").json()["status"] == "degraded", TTL + 3,
                      "degraded")  # fmt: skip
                degraded_at = time.time()
                assert degraded_at - cut_at <= TTL + 1.0
                body = http.get("/healthz").json()
                assert body["lease"]["state"] in ("unconfirmed", "expired"), body
                assert http.get("/v1/runs").status_code == 200
                assert http.get(f"/v1/runs/{long_run}/events").status_code == 200
                until(lambda: state_of(tenant.container)["lease"] == "unconfirmed", 5, "state")
                row = fleet_ls(store, case)
                assert row["lease"]["state"] == "unconfirmed", row
                assert row["replication"]["store"] == "unreachable", row
                assert row["replication"]["store_unreachable_since"], row
                time.sleep(max(0.0, cut_at + 3 * TTL - time.time()))  # well past a takeover
                assert started(tenant.container) == before  # never exited
                assert http.get("/v1/runs").status_code == 200
            back_at = time.time()
        until(lambda: tenant.http().get("/healthz").json()["status"] == "ok", 30, "ok again")
        time.sleep(2)

    assert started(tenant.container) == before, "the container exited during the outage"
    assert not load.errors, load.errors[:3]
    refused = [r for r in load.refused if cut_at < r[0] < back_at + 2]
    assert refused and all(code == 503 and after for _, code, after in refused), refused
    assert len(load.refused) == len(refused), load.refused  # none outside the outage

    with tenant.http() as http:
        for run_id in [*load.acked, long_run]:
            run = wait_run(http, run_id, timeout=120)
            assert run["status"] == "completed", run
    # No step ran while a contender could have held the lease, none was recorded twice.
    quiet_from, quiet_to = cut_at + TTL, back_at
    for run_id in [*load.acked, long_run]:
        steps = completed_steps(tenant, run_id)
        positions = [p for p, _ in steps]
        assert len(positions) == len(set(positions)), (run_id, steps)
        assert not [at for _, at in steps if quiet_from < at < quiet_to], (run_id, steps)

    # The replica caught up: a plain restore has every acknowledged run, completed.
    out = tmp_path / "restored.db"

    def restored() -> bool:
        proc = litestream_restore(store, tenant.name, out)
        if proc.returncode != 0:
            return False
        done = query(out, "SELECT id FROM runs WHERE status = 'completed'")
        return {*load.acked, long_run} <= {r[0] for r in done}

    until(restored, 60, "the replica has every acknowledged run", every=1.0)
    assert query(out, "PRAGMA integrity_check") == [("ok",)]


def test_a_lease_taken_over_during_an_outage_stops_the_tenant_for_good(
    tenants: Tenants, store: OwnStore
) -> None:
    tenant = tenants.start("healing_app.py", lease_ttl=TTL)
    run_id = tenant.submit("ticks", {"n": 5, "pause": 0.1})
    with tenant.http() as http:
        wait_run(http, run_id)
    until(lambda: state_of(tenant.container)["replication"] == "running", 30, "replicating")
    with cut_off(store):
        # Another container (here: the test) watches the lease for a full ttl and takes it.
        contender = lease.Contender(store.for_host, tenant.name, lease.Holder("b", "other"), TTL)
        won = until(lambda: _try_take(contender), 3 * TTL, "takeover")
        assert won.lease.holder == "b/other"
        assert tenant.container.status == "running"
    tenant.container.wait(timeout=60)
    tenant.container.reload()
    state = tenant.container.attrs["State"]
    assert state["ExitCode"] == exits.DOWN, state
    logs = tenant.container.logs().decode(errors="replace")
    assert "stopped: the lease was taken over" in logs and "kept in /data/taken-over-" in logs
    time.sleep(3)
    tenant.container.reload()
    assert tenant.container.status == "exited"  # the engine does not bring it back


def _try_take(contender: lease.Contender) -> lease.Held | None:
    try:
        return contender.try_take()
    except lease.LeaseHeld:
        return None


# -- crashes


@pytest.mark.parametrize("victim", ["runtime", "keeper"])
def test_a_killed_process_brings_the_tenant_back(
    tenants: Tenants, docker_client: Any, victim: str
) -> None:
    """kill -9 of the runtime or the keeper (PID 1): the engine restarts the container with
    backoff, the run continues where it was, no step recorded twice."""
    tenant = tenants.start("healing_app.py")
    run_id = tenant.submit("ticks", {"n": 40, "pause": 0.1})
    until(lambda: len(completed_steps(tenant, run_id)) >= 5, 30, "steps before the kill")
    _, restarts = started(tenant.container)
    os.kill(host_pids(tenant.container)[victim], signal.SIGKILL)
    until(lambda: started(tenant.container)[1] > restarts, 60, "restarted by the engine")
    wait_healthy(tenant, timeout=90)
    with tenant.http() as http:
        run = wait_run(http, run_id, timeout=90)
    assert run["status"] == "completed" and run["result"] == 40
    positions = [p for p, _ in completed_steps(tenant, run_id)]
    assert sorted(positions) == sorted(set(positions)) and len(positions) == 40
    if victim != "keeper":  # the keeper itself recorded why
        assert "killed by SIGKILL" in (state_of(tenant.container)["restarts"][-1][1])


def test_a_killed_litestream_is_restarted_in_place(
    tenants: Tenants, store: OwnStore, tmp_path: Path
) -> None:
    tenant = tenants.start("healing_app.py")
    pids = host_pids(tenant.container)
    before = started(tenant.container)
    os.kill(pids["litestream"], signal.SIGKILL)
    until(lambda: host_pids(tenant.container).get("litestream") not in (None, pids["litestream"]),
          30, "Litestream restarted")  # fmt: skip
    assert started(tenant.container) == before  # the runtime kept running
    assert host_pids(tenant.container)["runtime"] == pids["runtime"]
    run_id = tenant.submit("ticks", {"n": 3, "pause": 0})
    with tenant.http() as http:
        wait_run(http, run_id)
    out = tmp_path / "after.db"

    def replicated() -> bool:
        if litestream_restore(store, tenant.name, out).returncode != 0:
            return False
        return query(out, "SELECT status FROM runs WHERE id = ?", run_id) == [("completed",)]

    until(replicated, 60, "replicated after the restart", every=1.0)
    assert "Litestream ended (killed by SIGKILL)" in state_of(tenant.container)["restarts"][-1][1]


def test_the_oom_killer_costs_a_restart_not_the_run(tenants: Tenants) -> None:
    tenant = tenants.start("healing_app.py", memory="160m")
    _, restarts = started(tenant.container)
    run_id = tenant.submit("hog", {"mb": 400})
    until(lambda: started(tenant.container)[1] > restarts, 60, "restarted after the OOM kill")
    wait_healthy(tenant, timeout=90)
    with tenant.http() as http:
        run = wait_run(http, run_id, timeout=60)
    assert run["status"] == "completed" and run["result"] == "survived"
    why = state_of(tenant.container)["restarts"][-1][1]
    assert "killed by SIGKILL (out of memory)" in why, why


def test_a_tenant_that_keeps_crashing_gives_up_and_says_why(tenants: Tenants) -> None:
    tenant = tenants.create("crashing_app.py")
    tenant.container.start()

    def gave_up() -> bool:
        tenant.container.reload()
        logs = tenant.container.logs(tail=5).decode(errors="replace")
        return tenant.container.status == "exited" and "stopped: gave up" in logs

    until(gave_up, 180, "gave up", every=1.0)
    state = tenant.container.attrs["State"]
    assert state["ExitCode"] == exits.DOWN, state
    assert tenant.container.attrs["RestartCount"] >= 4
    logs = tenant.container.logs().decode(errors="replace")
    assert "stopped: gave up after 5 crashes" in logs and "killed by SIGKILL" in logs, logs[-2000:]
    time.sleep(3)
    tenant.container.reload()
    assert tenant.container.status == "exited"  # stays down


def test_docker_kill_is_a_manual_stop_and_fleet_up_resumes(
    tenants: Tenants, store: OwnStore
) -> None:
    """`docker kill` is the engine's manual stop: it cancels the restart policy (Docker does
    this for any policy; checked on 20.10). The tenant comes back at the next engine start
    (tests/test_engine_restart.py) or with `fleet up`, its runs continuing."""
    tenant = tenants.start("healing_app.py")
    run_id = tenant.submit("ticks", {"n": 30, "pause": 0.1})
    until(lambda: len(completed_steps(tenant, run_id)) >= 3, 30, "steps before the kill")
    tenant.container.kill()
    time.sleep(3)
    tenant.container.reload()
    assert tenant.container.status == "exited"
    assert tenant.container.attrs["State"]["ExitCode"] == 137
    tenant.container.start()  # what `fleet up` of a stopped tenant does
    wait_healthy(tenant, timeout=90)
    with tenant.http() as http:
        assert wait_run(http, run_id, timeout=60)["status"] == "completed"


def test_a_killed_runner_costs_nothing_and_the_tenant_still_stops_cleanly(
    tenants: Tenants, store: OwnStore, tmp_path: Path
) -> None:
    """The runner's reader of the keeper's pipe (agent code may kill it: same uid) is only
    needed to ask the runtime to drain. Without it the tenant runs on; a stop for good lets
    the runtime's lease gate lapse instead, makes the final sync and exits 0."""
    tenant = tenants.start("healing_app.py")
    run_id = tenant.submit("ticks", {"n": 2, "pause": 0})
    with tenant.http() as http:
        wait_run(http, run_id)
    before = started(tenant.container)
    os.kill(host_pids(tenant.container)["runner"], signal.SIGKILL)
    time.sleep(2)
    assert started(tenant.container) == before  # nothing restarted
    more = tenant.submit("ticks", {"n": 2, "pause": 0})
    with tenant.http() as http:
        assert wait_run(http, more)["status"] == "completed"
    tenant.container.kill(signal="SIGUSR1")  # what `fleet down` sends, then the engine's stop
    tenant.container.stop(timeout=40)
    tenant.container.reload()
    logs = tenant.container.logs().decode(errors="replace")
    assert tenant.container.attrs["State"]["ExitCode"] == exits.DOWN, logs[-2000:]
    assert "letting its lease gate lapse" in logs and "shutdown sync" not in logs
    out = tmp_path / "after.db"
    assert litestream_restore(store, tenant.name, out).returncode == 0
    assert query(out, "SELECT status FROM runs WHERE id = ?", more) == [("completed",)]


# -- a full volume


def test_a_full_volume_answers_507_and_recovers(
    tenants: Tenants, docker_client: Any, store: OwnStore, tmp_path: Path
) -> None:
    """The volume (a 12 MiB tmpfs here) filled to the last byte by something of the tenant's
    uid: writes answer 507, Litestream and the keeper live through it, and once space is freed
    runs are accepted and replicated again, with no restart."""
    volume = f"litefleet-test-full-{uuid.uuid4().hex[:8]}"
    docker_client.volumes.create(
        volume,
        driver="local",
        driver_opts={
            "type": "tmpfs",
            "device": "tmpfs",
            "o": "size=12m,uid=10001,gid=10002,mode=3770",
        },
    )
    tenant = tenants.start(volume=volume)
    pids, before = host_pids(tenant.container), started(tenant.container)
    agent = "10002:10002"
    code, out = tenant.container.exec_run(
        ["sh", "-c", "dd if=/dev/zero of=/data/filler bs=64k 2>&1; sync"], user=agent
    )
    assert b"No space left" in out, out
    with tenant.http() as http:
        until(lambda: _refused_507(http), 60, "507 on a full volume")
        time.sleep(5)  # Litestream and the keeper live through it
        assert host_pids(tenant.container) == pids and started(tenant.container) == before
        code, out = tenant.container.exec_run(["rm", "-f", "/data/filler"], user=agent)
        assert code == 0, out
        run_id = until(lambda: _accepted(http), 60, "writes accepted again")
        assert wait_run(http, run_id, timeout=60)["status"] == "completed"
    assert host_pids(tenant.container) == pids and started(tenant.container) == before
    out_db = tmp_path / "full.db"

    def replicated() -> bool:
        if litestream_restore(store, tenant.name, out_db).returncode != 0:
            return False
        try:
            rows = query(out_db, "SELECT status FROM runs WHERE id = ?", run_id)
        except apsw.SQLError:  # still the empty database
            return False
        return rows == [("completed",)]

    try:
        until(replicated, 60, "replicated after space came back", every=1.0)
    except AssertionError:
        raise AssertionError(tenant.container.logs(tail=40).decode(errors="replace")) from None


def _refused_507(http: httpx.Client) -> bool:
    r = http.post("/v1/runs", json={"workflow": "echo", "input": {"message": "x"}})
    return r.status_code == 507


def _accepted(http: httpx.Client) -> str | None:
    r = http.post("/v1/runs", json={"workflow": "steps", "input": {"n": 2}})
    return str(r.json()["id"]) if r.status_code == 201 else None
