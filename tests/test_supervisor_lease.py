"""One writer per tenant: the lease protocol (fleet/supervisor/lease.py), the SigV4 signer
(s3.py) and the keeper (keeper.py) against a real S3 HTTP endpoint (moto server on loopback),
no Docker."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fleet.supervisor import exits, lease
from fleet.supervisor.entrypoint import EXIT_USAGE
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
    assert held.generation == 1 and held.live() and held.ttl == 30
    with pytest.raises(lease.LeaseHeld, match="held by host a"):
        lease.acquire(s3, t, b)
    assert lease.acquire(s3, t, a).generation == 2  # the same holder restarting: a new term
    current = lease.read(s3, t)
    assert current is not None
    mine = lease.Held(current, time.monotonic())
    renewed = lease.renew(s3, mine)
    assert renewed.lease.generation == 2 and renewed.lease.etag != current.etag
    with pytest.raises(lease.LeaseLost):
        lease.renew(s3, mine)  # a stale version cannot renew
    before, after = lease.revoke(s3, t, by="test")
    assert before is not None and before.holder == "a/c1"
    assert after.generation == 3 and after.holder is None and not after.live()
    with pytest.raises(lease.LeaseLost):
        lease.renew(s3, renewed)  # the old holder learns it lost the lease
    taken = lease.acquire(s3, t, b, ttl=30)  # revoked means free
    assert taken.generation == 4 and lease.release(s3, taken)
    free = lease.read(s3, t)
    assert free is not None and free.holder is None and free.generation == 4
    assert not lease.release(s3, taken)  # released already: not ours any more


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_contender_trusts_only_what_it_saw_for_a_full_ttl(s3: S3Settings) -> None:
    """Wall clocks do not matter: a lease whose expires_at lies far in the past (the holder's
    clock behind) is not taken while it keeps changing, and one whose expires_at lies far in
    the future (the holder's clock ahead) is taken once it stayed the same for a ttl."""
    t = _tenant()
    holder = lease.Holder("a", "c1")
    first = lease.acquire(s3, t, holder, ttl=10)
    skewed = lease.Held(first.replace(expires_at=time.time() - 3600), time.monotonic())
    clock = FakeClock()
    contender = lease.Contender(s3, t, lease.Holder("b", "c2"), ttl=10, clock=clock)
    alive = lease.renew(s3, lease.Held(first, time.monotonic()))
    for _ in range(4):  # the holder renews every 5 s of the contender's clock
        clock.now += 5
        with pytest.raises(lease.LeaseHeld, match="in 10s"):
            contender.try_take()
        alive = lease.renew(s3, alive)
    del skewed
    # The holder dies with a clock 1 h ahead: expires_at says "an hour left".
    lease._write(s3, alive.lease.replace(expires_at=time.time() + 3600), if_match=alive.lease.etag)
    clock.now += 1
    with pytest.raises(lease.LeaseHeld, match="in 10s"):
        contender.try_take()  # first sight of this version
    clock.now += 9.5
    with pytest.raises(lease.LeaseHeld):
        contender.try_take()
    clock.now += 0.5
    won = contender.try_take()
    assert won.lease.holder == "b/c2" and won.lease.generation == first.generation + 1


def test_the_holder_stops_before_any_contender_can_take_over(s3: S3Settings) -> None:
    """The holder's deadline counts from the moment it sent its write, the contender's ttl
    from the moment it first saw that version: the first always ends earlier."""
    t = _tenant()
    before_send = time.monotonic()
    held = lease.Contender(s3, t, lease.Holder("a", "c1"), ttl=10).try_take()
    first_seen = time.monotonic()  # a contender reading right now
    assert held.valid_until <= before_send + 10 - lease.fence_margin(10) + (
        first_seen - before_send
    )
    assert held.valid_until < first_seen + 10


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


def test_a_request_never_outlasts_its_deadline_dns_included() -> None:
    """A resolver that does not answer cannot stretch a request past its timeout."""
    import socket as _socket

    from fleet.supervisor import s3 as s3mod

    real = _socket.getaddrinfo

    def slow(*args: object, **kw: object) -> object:
        time.sleep(5)
        return real(*args, **kw)  # type: ignore[arg-type]

    _socket.getaddrinfo = slow  # type: ignore[assignment]
    try:
        t0 = time.monotonic()
        with pytest.raises(s3mod.S3Failure, match="DNS lookup"):
            s3mod.request(S3Settings("http://store.invalid:9", "b", "r", "k", "s"), "GET", "x",
                          timeout=0.5)  # fmt: skip
        assert time.monotonic() - t0 < 1.5
    finally:
        _socket.getaddrinfo = real


def _env(s3: S3Settings, tenant: str, wait: str = "20") -> dict[str, str]:
    return {
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


def _keeper(
    s3: S3Settings, tenant: str, *cmd: str, wait: str = "20", run_dir: Path | None = None
) -> subprocess.Popen[str]:
    """`python -I -m fleet.supervisor hold -- CMD` (fast renewals): CMD stands for Litestream."""
    opts = ["--run-dir", str(run_dir)] if run_dir else []
    return subprocess.Popen(
        [sys.executable, "-I", "-m", "fleet.supervisor", "hold", *opts, "--", *cmd],
        env=_env(s3, tenant, wait),
        cwd=Path(__file__).parents[1],
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_held(s3: S3Settings, tenant: str) -> lease.Lease:
    deadline = time.monotonic() + 10
    while (cur := lease.read(s3, tenant)) is None or not cur.live():
        assert time.monotonic() < deadline, "the keeper did not take the lease"
        time.sleep(0.05)
    return cur


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def _proc_state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def test_keeper_kills_its_child_when_taken_over_and_stays_down(s3: S3Settings) -> None:
    """The keeper SIGKILLs the child's whole process group at once (no final sync)."""
    t = _tenant()
    # The child ignores SIGTERM: only a SIGKILL stops it in time.
    proc = _keeper(s3, t, "bash", "-c", "trap '' TERM; sleep 60 & wait")
    _wait_held(s3, t)
    time.sleep(0.3)  # the child runs
    t0 = time.monotonic()
    lease.revoke(s3, t, by="test")
    assert proc.wait(10) == exits.DOWN
    assert time.monotonic() - t0 < 2.0  # within one renewal period
    err = proc.stderr.read() if proc.stderr else ""
    assert "without a final sync" in err and "stopped: the lease was taken over" in err
    found = subprocess.run(["pgrep", "-f", "sleep 60"], capture_output=True, text=True)
    assert str(proc.pid) not in found.stdout


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGUSR1, 0)])
def test_keeper_stops_its_child_then_releases(s3: S3Settings, sig: int, code: int) -> None:
    """SIGTERM (the engine) and SIGUSR1 (fleet down): the child gets SIGTERM (Litestream's
    final sync), then the lease is released; only the exit status differs."""
    t = _tenant()
    proc = _keeper(s3, t, "bash", "-c", "trap 'echo synced >&2; exit 0' TERM; sleep 60 & wait")
    first = _wait_held(s3, t)
    time.sleep(4)  # longer than the 3 s ttl: renewals keep it
    assert (cur := lease.read(s3, t)) is not None and cur.etag != first.etag and cur.live()
    proc.send_signal(sig)
    assert proc.wait(15) == code
    err = proc.stderr.read() if proc.stderr else ""
    assert "synced" in err and "released" in err
    now = lease.read(s3, t)
    assert now is not None and now.holder is None and now.generation == first.generation


def test_keeper_restarts_a_child_that_dies(s3: S3Settings, tmp_path: Path) -> None:
    t = _tenant()
    runs = tmp_path / "runs"
    script = f"echo x >> {runs}; [ $(wc -l < {runs}) -ge 2 ] && exec sleep 60; exit 3"
    proc = _keeper(s3, t, "bash", "-c", script)
    deadline = time.monotonic() + 15
    while not runs.exists() or len(runs.read_text().split()) < 2:
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(15) == exits.ENGINE_STOP
    assert "ended (exit 3)" in (proc.stderr.read() if proc.stderr else "")


def test_keeper_stays_down_when_the_tenant_is_live_elsewhere(s3: S3Settings) -> None:
    t = _tenant()
    other = lease.Contender(s3, t, lease.Holder("other", "c9"), ttl=3).try_take()
    proc = _keeper(s3, t, "true", wait="4")
    deadline = time.monotonic() + 30
    while proc.poll() is None:  # the other holder keeps renewing
        other = lease.renew(s3, other)
        assert time.monotonic() < deadline
        time.sleep(0.5)
    assert proc.returncode == exits.DOWN
    assert "stopped: the tenant is live elsewhere" in (proc.stderr.read() if proc.stderr else "")


def test_keeper_takes_over_a_dead_holder_after_a_ttl(s3: S3Settings) -> None:
    t = _tenant()
    # A dead holder whose clock was an hour ahead: by wall clock its lease looks live.
    dead = lease.acquire(s3, t, lease.Holder("other", "dead"), ttl=3)
    lease._write(s3, dead.replace(expires_at=time.time() + 3600), if_match=dead.etag)
    t0 = time.monotonic()
    proc = _keeper(s3, t, "sleep", "60")
    try:
        deadline = time.monotonic() + 15
        while (cur := lease.read(s3, t)) is None or cur.holder != "a/" + cur.container:
            assert time.monotonic() < deadline, "not taken over"
            time.sleep(0.1)
        assert time.monotonic() - t0 >= 3.0  # not before it saw the same version for a ttl
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)


def test_an_unreachable_store_pauses_the_child_and_closes_the_gate(
    s3: S3Settings, tmp_path: Path
) -> None:
    """Cut off from the store, the keeper neither exits nor lets its child write: at the
    deadline it pauses the child (SIGSTOP) and marks the gate unconfirmed; when the store
    answers again, the same lease is renewed, the child resumes and the gate says held."""
    from .cut_proxy import cut_proxy

    t = _tenant()
    with cut_proxy(s3.endpoint) as proxy:
        via = s3.with_endpoint(proxy.url)
        proc = _keeper(via, t, "sleep", "60", run_dir=tmp_path)
        try:
            _wait_held(s3, t)
            gate = tmp_path / "lease.json"
            _until(lambda: json.loads(gate.read_text())["state"] == "held")
            held = json.loads(gate.read_text())
            assert 2.0 < held["valid_until"] - time.monotonic() <= 3.0
            (child,) = _children(proc.pid)
            proxy.cut.set()
            cut_at = time.monotonic()
            _until(lambda: json.loads(gate.read_text())["state"] == "unconfirmed", 10)
            # Not after the deadline the gate had promised; the child stopped by then.
            assert time.monotonic() <= held["valid_until"] + 3.5
            assert _proc_state(child) == "T"
            state = json.loads((tmp_path / "state.json").read_text())
            assert state["lease"] == "unconfirmed" and state["store"] == "unreachable"
            assert "object store" in json.loads(gate.read_text())["reason"]
            time.sleep(max(0.0, cut_at + 6 - time.monotonic()))  # well past the ttl
            assert proc.poll() is None
            proxy.cut.clear()
            _until(lambda: json.loads(gate.read_text())["state"] == "held", 10)
            assert _proc_state(child) in ("S", "R")
            assert json.loads((tmp_path / "state.json").read_text())["store"] == "reachable"
            assert _children(proc.pid) == [child]  # the same process, resumed
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(15)


def _until(ok: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if ok():
                return
        except (OSError, ValueError, KeyError):
            pass
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def test_keeper_needs_a_command_and_its_settings(s3: S3Settings) -> None:
    proc = _keeper(s3, _tenant())  # no command
    assert proc.wait(10) == EXIT_USAGE and "usage" in (proc.stderr.read() if proc.stderr else "")
