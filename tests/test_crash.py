"""Crash recovery: `agent-runtime serve` as a subprocess, SIGKILLed at random moments while
200 runs of `steps` are in flight, restarted each time. Every run must complete with the
right result, and no step result recorded before a crash may ever change. Runs on both
backends (a SQLite file; a PostgreSQL database, with short leases so that a killed
runtime's runs move to its successor quickly)."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import apsw
import httpx
import pytest

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent / "agent-runtime"
RUNS = 200
STEPS = 8


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "crash.db")
    return str(request.getfixturevalue("pg_dsn"))


class Server:
    def __init__(
        self,
        db: str,
        log: Path,
        env: dict[str, str] | None = None,
        app: str = "agent_runtime.examples",
    ) -> None:
        self.db, self.log, self.app, self.port = db, log, app, free_port()
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, extra_env: dict[str, str] | None = None) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [
                    str(BIN),
                    "serve",
                    "--db",
                    self.db,
                    "--app",
                    self.app,
                    "--port",
                    str(self.port),
                    "--log-level",
                    "warning",
                    "--lease-seconds",
                    "3",
                ],
                stdout=out,
                stderr=out,
                env={**self.env, **(extra_env or {})},
            )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return  # died at once (a fault point can fire during recovery)
            try:
                if httpx.get(f"{self.url}/healthz", timeout=0.5).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.05)
        raise AssertionError(f"server did not come up; log:\n{self.log.read_text()[-3000:]}")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(30)


def recorded_steps(db: str) -> dict[tuple[str, int], Any]:
    """Every recorded step outcome, read straight from the database while the server is down."""
    if db.startswith("postgresql://"):
        return _recorded_steps_pg(db)
    conn = apsw.Connection(db, flags=apsw.SQLITE_OPEN_READONLY)
    try:
        rows = conn.execute(
            "SELECT run_id, position, kind, data FROM events"
            " WHERE terminal = 1 AND kind LIKE 'step_%'"
        ).fetchall()
        dupes = conn.execute(
            "SELECT count(*) FROM (SELECT run_id, position FROM events WHERE terminal = 1"
            " GROUP BY run_id, position HAVING count(*) > 1)"
        ).fetchone()[0]
    finally:
        conn.close()
    assert dupes == 0
    return {(r[0], r[1]): (r[2], json.loads(r[3])) for r in rows}


def _recorded_steps_pg(dsn: str) -> dict[tuple[str, int], Any]:
    import psycopg

    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT run_id, position, kind, data FROM events WHERE terminal AND kind LIKE 'step_%'"
        ).fetchall()
        dupes = conn.execute(
            "SELECT count(*) FROM (SELECT run_id, position FROM events WHERE terminal"
            " GROUP BY run_id, position HAVING count(*) > 1) d"
        ).fetchone()
    assert dupes is not None and dupes[0] == 0
    return {(r[0], r[1]): (r[2], json.loads(r[3])) for r in rows}


def check_unchanged(before: dict[tuple[str, int], Any], after: dict[tuple[str, int], Any]) -> None:
    lost = [k for k in before if k not in after]
    changed = [k for k in before if k in after and after[k] != before[k]]
    assert not lost, f"recorded step results disappeared: {lost[:5]}"
    assert not changed, f"recorded step results changed: {changed[:5]}"


def submit_all(server: Server) -> list[str]:
    ids = [f"crash-{i:03d}" for i in range(RUNS)]
    with httpx.Client(base_url=server.url, timeout=10) as c:
        for rid in ids:
            r = c.post(
                "/v1/runs",
                json={"workflow": "steps", "id": rid, "input": {"n": STEPS, "sleep": 0.05}},
            )
            assert r.status_code in (200, 201), r.text
    return ids


def wait_all_done(server: Server, ids: list[str], timeout: float = 120) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=server.url, timeout=10) as c:
        while True:
            runs = [c.get(f"/v1/runs/{rid}").json() for rid in ids]
            if all(r["status"] in ("completed", "failed", "cancelled") for r in runs):
                return runs
            if time.monotonic() > deadline:
                pending = [r["id"] for r in runs if r["status"] not in ("completed",)]
                raise AssertionError(f"runs not finished: {pending[:10]}")
            time.sleep(0.2)


def assert_all_completed(db: str, runs: list[dict[str, Any]]) -> None:
    assert [r["status"] for r in runs] == ["completed"] * RUNS, {r["status"] for r in runs}
    assert all(r["result"] == STEPS for r in runs)
    steps = recorded_steps(db)
    for r in runs:
        got = sorted(pos for (rid, pos) in steps if rid == r["id"])
        assert got == list(range(0, 2 * STEPS - 1, 2)), (r["id"], got)  # step, sleep, step...


def test_sigkill_at_random_moments(tmp_path: Path, db: str) -> None:
    rng = random.Random(os.environ.get("CRASH_SEED", "1234"))
    server = Server(db, tmp_path / "server.log")
    server.start()
    ids = submit_all(server)
    seen: dict[tuple[str, int], Any] = {}
    kills = 0
    for _ in range(12):
        time.sleep(rng.uniform(0.05, 0.6))
        server.kill()
        kills += 1
        now = recorded_steps(db)
        check_unchanged(seen, now)
        seen = now
        server.start()
    runs = wait_all_done(server, ids)
    assert server.stop() == 0  # SIGTERM drains and exits 0
    check_unchanged(seen, recorded_steps(db))
    assert_all_completed(db, runs)
    assert kills >= 10
    assert len(seen) > 0, "the kills all happened before any step was recorded"


def _exit_or_all_done(server: Server, ids: list[str], timeout: float) -> int | None:
    """The server's exit status once its fault point fires; None when every run has
    finished first (nothing left to crash on). The bound is for a loaded machine: 25 passes
    usually come within a second or two, but a fixed 15 s wait once ended the loop early."""
    assert server.proc is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            return server.proc.wait(1)
        except subprocess.TimeoutExpired:
            pass
        try:
            page = httpx.get(f"{server.url}/v1/runs", params={"limit": len(ids)}, timeout=5)
            statuses = {r["status"] for r in page.json()["runs"]}
        except (httpx.HTTPError, ValueError, KeyError):
            continue  # starting, or dying: ask again
        if statuses <= {"completed", "failed", "cancelled"}:
            return None
    raise AssertionError(f"neither crashed nor finished within {timeout:g}s")


@pytest.mark.parametrize("point", ["step.before_commit", "step.after_commit"])
def test_named_fault_points(tmp_path: Path, db: str, point: str) -> None:
    """Crash exactly before / after a step's commit, repeatedly, then recover."""
    server = Server(db, tmp_path / "server.log")
    server.start()
    ids = submit_all(server)
    server.stop()
    seen: dict[tuple[str, int], Any] = {}
    crashes = 0
    for _ in range(8):
        server.start({"AGENT_RUNTIME_FAULTS": f"{point}=25"})  # die at the 25th pass
        assert server.proc is not None
        code = _exit_or_all_done(server, ids, 90)
        if code is None:
            break  # nothing left to crash on: all runs reached the end
        if code != 137:
            break
        crashes += 1
        now = recorded_steps(db)
        check_unchanged(seen, now)
        seen = now
    if server.proc is not None and server.proc.poll() is None:
        server.stop()
    assert crashes >= 3
    server.start()
    runs = wait_all_done(server, ids)
    server.stop()
    check_unchanged(seen, recorded_steps(db))
    assert_all_completed(db, runs)
