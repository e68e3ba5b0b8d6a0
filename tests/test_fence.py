"""One writer per tenant: the lease (fleet/supervisor/lease.py) against a real S3 HTTP endpoint
(moto server), and the fence on real engines: a second `up` elsewhere is refused, a direct second
container waits and gives up, --force-takeover stops the old holder without a final sync and
the backup stays restorable."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fleet.supervisor import lease
from tests.fleet_support import Result, fleet, free_port, one_line_error

MOTO = str(Path(sys.executable).with_name("moto_server"))


@pytest.fixture(scope="module")
def s3() -> Iterator[lease.S3Conf]:
    """A moto S3 server on a free loopback port, with a bucket."""
    port = free_port()
    proc = subprocess.Popen(
        [MOTO, "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with httpx.Client(trust_env=False) as h:
                    h.put(f"{url}/fence-test").raise_for_status()  # create the bucket
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "moto_server did not start"
                time.sleep(0.2)
        yield lease.S3Conf(url, "fence-test", "us-east-1", "AKIDEXAMPLE", "not-a-secret")
    finally:
        proc.terminate()
        proc.wait(10)


def _tenant() -> str:
    return f"f-{uuid.uuid4().hex[:8]}"


def test_sigv4_matches_botocore() -> None:
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    conf = lease.S3Conf("http://127.0.0.1:9000", "b", "eu-west-1", "AKID", "s" * 80)
    body = b'{"x": 1}'
    req = AWSRequest(
        method="PUT",
        url="http://127.0.0.1:9000/b/leases/t%20x.json",
        data=body,
        headers={"if-match": '"abc"'},
    )
    S3SigV4Auth(Credentials("AKID", "s" * 80), "s3", "eu-west-1").add_auth(req)
    now = dt.datetime.strptime(req.headers["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
    mine = lease.sign_v4(conf, "PUT", "/b/leases/t x.json", {"if-match": '"abc"'}, body, now)
    assert mine["authorization"] == req.headers["Authorization"]


def test_lease_lifecycle(s3: lease.S3Conf) -> None:
    t = _tenant()
    a, b = lease.Holder("a", "c1"), lease.Holder("b", "c2")
    assert lease.read(s3, t) is None
    held = lease.acquire(s3, t, a, ttl=30)
    assert held.generation == 1 and held.live()
    with pytest.raises(lease.LeaseHeld, match="held by host a"):
        lease.acquire(s3, t, b)
    assert lease.acquire(s3, t, a).generation == 2  # the same holder restarting: a new term
    held = lease.read(s3, t)
    assert held is not None
    renewed = lease.renew(s3, held, ttl=30)
    assert renewed.generation == 2 and renewed.etag != held.etag
    with pytest.raises(lease.LeaseLost):
        lease.renew(s3, held)  # a stale version cannot renew
    before, after = lease.revoke(s3, t, by="test")
    assert before is not None and before.holder == "a/c1"
    assert after.generation == 3 and after.holder is None and not after.live()
    with pytest.raises(lease.LeaseLost):
        lease.renew(s3, renewed)  # the old holder learns it lost the lease
    mine = lease.acquire(s3, t, b, ttl=30)
    assert mine.generation == 4 and lease.release(s3, mine)
    free = lease.read(s3, t)
    assert free is not None and free.holder is None and free.generation == 4
    assert not lease.release(s3, mine)  # released already: not ours any more


def test_expired_lease_is_taken(s3: lease.S3Conf) -> None:
    t = _tenant()
    lease.acquire(s3, t, lease.Holder("a", "dead"), ttl=0.5)
    time.sleep(0.7)
    assert lease.acquire(s3, t, lease.Holder("b", "new")).holder == "b/new"


def test_only_one_of_many_contenders_wins(s3: lease.S3Conf) -> None:
    t = _tenant()
    won: list[str] = []
    barrier = threading.Barrier(8)

    def contend(i: int) -> None:
        barrier.wait()
        with contextlib.suppress(lease.LeaseHeld):
            won.append(lease.acquire(s3, t, lease.Holder(f"h{i}", "c")).holder or "")

    threads = [threading.Thread(target=contend, args=(i,)) for i in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    current = lease.read(s3, t)
    assert len(won) == 1 and current is not None and current.holder == won[0]


def _keeper(s3: lease.S3Conf, tenant: str, *cmd: str, wait: str = "20") -> subprocess.Popen[str]:
    """`python -m fleet.supervisor.lease hold -- CMD` as the container runs it (fast renewals)."""
    env = {
        "PATH": "/usr/bin:/bin",
        "TENANT": tenant,
        "LITEFLEET_HOST": "a",
        "LITEFLEET_S3_ENDPOINT": s3.endpoint,
        "LITEFLEET_S3_BUCKET": s3.bucket,
        "LITEFLEET_S3_REGION": s3.region,
        "LITESTREAM_ACCESS_KEY_ID": s3.access_key_id,
        "LITESTREAM_SECRET_ACCESS_KEY": s3.secret_access_key,
        "LITEFLEET_LEASE_TTL": "3",
        "LITEFLEET_LEASE_RENEW": "0.5",
        "LITEFLEET_LEASE_WAIT": wait,  # for another holder's lease to lapse
    }
    return subprocess.Popen(
        [sys.executable, "-m", "fleet.supervisor.lease", "hold", "--", *cmd],
        env=env,
        cwd=Path(__file__).parents[1],
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_held(s3: lease.S3Conf, tenant: str) -> None:
    deadline = time.monotonic() + 10
    while (cur := lease.read(s3, tenant)) is None or not cur.live():
        assert time.monotonic() < deadline, "the keeper did not take the lease"
        time.sleep(0.05)


def test_keeper_kills_its_child_when_taken_over(s3: lease.S3Conf) -> None:
    """The keeper SIGKILLs the whole child process group at once (no final sync)."""
    t = _tenant()
    # The child ignores SIGTERM: only a SIGKILL stops it in time.
    proc = _keeper(s3, t, "bash", "-c", "trap '' TERM; sleep 60 & wait")
    _wait_held(s3, t)
    time.sleep(0.3)  # the child runs
    t0 = time.monotonic()
    lease.revoke(s3, t, by="test")
    assert proc.wait(10) == lease.EXIT_LEASE
    assert time.monotonic() - t0 < 2.0  # within one renewal period
    assert "without a final sync" in (proc.stderr.read() if proc.stderr else "")
    found = subprocess.run(["pgrep", "-f", "sleep 60"], capture_output=True, text=True)
    assert str(proc.pid) not in found.stdout


def test_keeper_renews_then_releases_after_a_clean_exit(s3: lease.S3Conf) -> None:
    t = _tenant()
    proc = _keeper(s3, t, "bash", "-c", "sleep 4; exit 3")  # longer than the 3 s TTL
    _wait_held(s3, t)
    first = lease.read(s3, t)
    assert proc.wait(15) == 3  # the child's exit status passes through
    assert first is not None and first.renewed_at > 0
    now = lease.read(s3, t)
    assert now is not None and now.holder is None and now.generation == first.generation


def test_keeper_refuses_a_live_lease(s3: lease.S3Conf) -> None:
    t = _tenant()
    lease.acquire(s3, t, lease.Holder("other", "c9"), ttl=60)
    proc = _keeper(s3, t, "true", wait="1.5")
    proc.wait(20)
    assert proc.returncode == lease.EXIT_LEASE
    assert "not starting" in (proc.stderr.read() if proc.stderr else "")


# -- on real engines


def _ok(r: Result) -> Result:
    assert r.code == 0, f"exit {r.code}\nstdout: {r.out}\nstderr: {r.err}"
    return r


@pytest.mark.docker
def test_fence_on_two_hosts(
    two_hosts: dict[str, str], second_engine: str, object_store: Any, tmp_path: Path
) -> None:
    import docker

    from fleet.engine.container_spec import tenant_container_config
    from fleet.storage.embedded import ensure_tenant_network

    env = two_hosts
    t = f"h-{uuid.uuid4().hex[:8]}"
    # An operator who only sees host b (and the same object storage, as an external endpoint).
    only_b = {
        **env,
        "FLEET_HOSTS": env["FLEET_HOSTS"].split(",")[1],
        "FLEET_S3_ENDPOINT": object_store.host_endpoint,
        "FLEET_S3_TENANT_ENDPOINT": object_store.tenant_endpoint,
        "FLEET_S3_ACCESS_KEY_ID": object_store.access_key_id,
        "FLEET_S3_SECRET_ACCESS_KEY": object_store.secret_access_key,
    }
    try:
        _ok(fleet("up", t, "--host", "a", env=env))
        ids = [
            json.loads(_ok(fleet("run", t, "echo", "-i", '{"message": "x"}', "--json", "--wait",
                                 env=env)).out)["id"]
            for _ in range(3)
        ]  # fmt: skip

        # The fleet refuses a second `up` of the live tenant elsewhere: one line, exit 8.
        r = fleet("up", t, env=only_b)
        assert r.code == 8 and "lease" in one_line_error(r) and "host a" in r.err

        # A container started behind the fleet's back (here on host a, which has the image) is
        # fenced by its own keeper: it waits for the lease (2 s here), then gives up.
        b = docker.DockerClient(second_engine)
        a = docker.from_env()
        tenant_env = dict(
            e.partition("=")[::2] for e in a.containers.get(f"litefleet-{t}").attrs["Config"]["Env"]
        )
        from fleet.engine.container_spec import S3Target

        s3 = S3Target(
            tenant_env["LITEFLEET_S3_ENDPOINT"],
            tenant_env["LITEFLEET_S3_BUCKET"],
            tenant_env["LITEFLEET_S3_REGION"],
            tenant_env["LITESTREAM_ACCESS_KEY_ID"],
            tenant_env["LITESTREAM_SECRET_ACCESS_KEY"],
        )
        rogue = a.containers.create(
            **tenant_container_config(
                tenant=t,
                image=env["FLEET_IMAGE"],
                volume=f"rogue-{t}",
                s3=s3,
                token="x",
                network=ensure_tenant_network(a),
                name=f"rogue-{t}",
                env={"LITEFLEET_LEASE_WAIT": "2"},
            )
        )
        rogue.start()
        assert rogue.wait(timeout=60)["StatusCode"] == lease.EXIT_LEASE
        assert "not starting" in rogue.logs().decode()
        rogue.remove(force=True)
        a.volumes.get(f"rogue-{t}").remove(force=True)

        # --force-takeover: the old holder stops replicating at once, without a final sync.
        # (b gets the image from a first: the b-only operator has nowhere to copy it from.)
        from fleet.core.context import Fleet
        from fleet.core.settings import FleetSettings
        from fleet.engine.image_transfer import ensure_image_on

        both = Fleet.from_settings(FleetSettings(hosts=env["FLEET_HOSTS"]))
        ensure_image_on(both, both.hosts[1], env["FLEET_IMAGE"])
        both.close()
        old = a.containers.get(f"litefleet-{t}")
        _ok(fleet("up", t, "--force-takeover", env=only_b))
        old.reload()
        assert old.status == "exited" and old.attrs["State"]["ExitCode"] == lease.EXIT_LEASE
        assert "without a final sync" in old.logs().decode()
        old.remove(force=True)
        a.volumes.get(f"litefleet-{t}-data").remove(force=True)

        # The new holder serves every run and its backup restores cleanly.
        runs = json.loads(_ok(fleet("runs", t, "--json", env=only_b)).out)
        assert set(ids) <= {x["id"] for x in runs}
        more = json.loads(
            _ok(fleet("run", t, "echo", "-i", '{"message": "y"}', "--json", "--wait",
                      env=only_b)).out
        )["id"]  # fmt: skip
        time.sleep(2.0)
        out = tmp_path / "after.db"
        r = _ok(fleet("pull", t, "-o", str(out), env=only_b))
        assert "integrity ok" in r.out
        import apsw

        conn = apsw.Connection(str(out), flags=apsw.SQLITE_OPEN_READONLY)
        got = {row[0] for row in conn.execute("SELECT id FROM runs")}
        conn.close()
        assert {*ids, more} <= got
        a.close()
        b.close()
    finally:
        fleet("rm", t, "--purge", "--yes", env=env)
