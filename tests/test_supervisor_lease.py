"""One writer per tenant: the lease protocol (fleet/supervisor/lease.py), the SigV4 signer
(s3.py) and the keeper (keeper.py) against a real S3 HTTP endpoint (moto server on loopback),
no Docker."""

from __future__ import annotations

import contextlib
import datetime as dt
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleet.supervisor import lease
from fleet.supervisor.keeper import EXIT_USAGE
from fleet.supervisor.s3 import S3Settings, sign_v4

from .moto_support import moto_s3


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Settings]:
    with moto_s3("fence-test", "AKIDEXAMPLE", "not-a-secret") as s3:
        yield s3


def _tenant() -> str:
    return f"f-{uuid.uuid4().hex[:8]}"


def test_sigv4_matches_botocore() -> None:
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    s3 = S3Settings("http://127.0.0.1:9000", "b", "eu-west-1", "AKID", "s" * 80)
    body = b'{"x": 1}'
    req = AWSRequest(
        method="PUT",
        url="http://127.0.0.1:9000/b/leases/t%20x.json",
        data=body,
        headers={"if-match": '"abc"'},
    )
    S3SigV4Auth(Credentials("AKID", "s" * 80), "s3", "eu-west-1").add_auth(req)
    now = dt.datetime.strptime(req.headers["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
    mine = sign_v4(s3, "PUT", "/b/leases/t x.json", {"if-match": '"abc"'}, body, now)
    assert mine["authorization"] == req.headers["Authorization"]


def test_lease_lifecycle(s3: S3Settings) -> None:
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


def test_expired_lease_is_taken(s3: S3Settings) -> None:
    t = _tenant()
    lease.acquire(s3, t, lease.Holder("a", "dead"), ttl=0.5)
    time.sleep(0.7)
    assert lease.acquire(s3, t, lease.Holder("b", "new")).holder == "b/new"


def test_only_one_of_many_contenders_wins(s3: S3Settings) -> None:
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


def _keeper(s3: S3Settings, tenant: str, *cmd: str, wait: str = "20") -> subprocess.Popen[str]:
    """`python -I -m fleet.supervisor hold -- CMD` as the container runs it (fast renewals)."""
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
        [sys.executable, "-I", "-m", "fleet.supervisor", "hold", "--", *cmd],
        env=env,
        cwd=Path(__file__).parents[1],
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_held(s3: S3Settings, tenant: str) -> None:
    deadline = time.monotonic() + 10
    while (cur := lease.read(s3, tenant)) is None or not cur.live():
        assert time.monotonic() < deadline, "the keeper did not take the lease"
        time.sleep(0.05)


def test_keeper_kills_its_child_when_taken_over(s3: S3Settings) -> None:
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


def test_keeper_renews_then_releases_after_a_clean_exit(s3: S3Settings) -> None:
    t = _tenant()
    proc = _keeper(s3, t, "bash", "-c", "sleep 4; exit 3")  # longer than the 3 s TTL
    _wait_held(s3, t)
    first = lease.read(s3, t)
    assert proc.wait(15) == 3  # the child's exit status passes through
    assert first is not None and first.renewed_at > 0
    now = lease.read(s3, t)
    assert now is not None and now.holder is None and now.generation == first.generation


def test_keeper_refuses_a_live_lease(s3: S3Settings) -> None:
    t = _tenant()
    lease.acquire(s3, t, lease.Holder("other", "c9"), ttl=60)
    proc = _keeper(s3, t, "true", wait="1.5")
    proc.wait(20)
    assert proc.returncode == lease.EXIT_LEASE
    assert "not starting" in (proc.stderr.read() if proc.stderr else "")


def test_keeper_needs_a_command_and_its_settings(s3: S3Settings) -> None:
    proc = _keeper(s3, _tenant())  # no command
    assert proc.wait(10) == EXIT_USAGE and "usage" in (proc.stderr.read() if proc.stderr else "")
