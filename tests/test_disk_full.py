"""A full disk under the database: writes answer 507, runs are interrupted (not failed), the
database stays intact, and everything recovers by itself once space is freed.

On a real small filesystem (a tmpfs the test mounts, as root), filled to the last byte by
a file of its own, not with PRAGMA max_page_count: SQLite meets ENOSPC as it would on a
tenant's volume.
"""

from __future__ import annotations

import asyncio
import errno
import os
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import apsw
import httpx
import pytest

from agent_runtime import Runtime, step, workflow
from agent_runtime._http import build_app


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs mounted for the test."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small filesystem needs root")
    mnt = tmp_path / "vol"
    mnt.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", str(mnt)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip() or mounted.returncode}")
    try:
        yield mnt
    finally:
        if subprocess.run(["umount", str(mnt)], capture_output=True, check=False).returncode:
            subprocess.run(["umount", "-l", str(mnt)], capture_output=True, check=False)


def fill(path: Path) -> None:
    """Write ``path`` until the filesystem has not one byte left."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for chunk in (b"\0" * 65536, b"\0" * 4096, b"\0"):
            while True:
                try:
                    os.write(fd, chunk)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
    finally:
        os.close(fd)


def integrity(db: Path) -> str:
    conn = apsw.Connection(str(db), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        conn.close()


CALLS: Counter[int] = Counter()
EVENTS: dict[str, asyncio.Event] = {}


@step
async def note(i: int) -> str:
    CALLS[i] += 1
    if i == 1 and CALLS[i] == 1:
        EVENTS["in_flight"].set()
        await EVENTS["release"].wait()  # returns once the disk is full
    return f"note {i} " + "x" * 2000


@workflow
async def notes(n: int) -> int:
    for i in range(n):
        await note(i)
    return n


async def _until(condition: Any, what: str) -> None:
    for _ in range(3000):  # bounded: 30 s
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never happened: {what}")


def test_full_disk_507_interrupts_runs_and_recovers(small_fs: Path) -> None:
    db, filler = small_fs / "tenant.db", small_fs / "filler"

    async def main() -> None:
        CALLS.clear()
        EVENTS.update(in_flight=asyncio.Event(), release=asyncio.Event())
        rt = Runtime(db=str(db), app=[notes])
        transport = httpx.ASGITransport(app=build_app(rt))
        async with rt, httpx.AsyncClient(transport=transport, base_url="http://rt") as api:
            r = await api.post("/v1/runs", json={"workflow": "notes", "input": {"n": 4}})
            run_id = r.json()["id"]
            await EVENTS["in_flight"].wait()  # step 0 recorded, step 1 running

            fill(filler)
            EVENTS["release"].set()  # step 1's result cannot be written
            await _until(lambda: run_id not in rt._active, "the run was interrupted")

            refused = await api.post("/v1/runs", json={"workflow": "notes", "input": {"n": 1}})
            assert refused.status_code == 507, refused.text
            assert "disk is full" in refused.json()["error"]
            signal = await api.post(f"/v1/runs/{run_id}/signals/go", json={"a": "b" * 5000})
            assert signal.status_code == 507, signal.text
            run = (await api.get(f"/v1/runs/{run_id}")).json()
            assert run["status"] == "running"  # interrupted, not failed
            events = (await api.get(f"/v1/runs/{run_id}/events")).json()["events"]
            assert [e["position"] for e in events if e["kind"] == "step_completed"] == [0]
            assert (await api.get("/healthz")).status_code == 200
            assert integrity(db) == "ok"

            filler.unlink()  # space again: everything resumes by itself
            done = await rt.wait(run_id, timeout=60)
            assert done.status == "completed" and done.result == 4
            history = await rt.history(run_id)
            steps = [e.position for e in history if e.kind == "step_completed"]
            assert steps == [0, 1, 2, 3] and CALLS[1] == 2
            again = await api.post("/v1/runs", json={"workflow": "notes", "input": {"n": 1}})
            assert again.status_code == 201
            assert (await rt.wait(again.json()["id"], timeout=60)).status == "completed"
        assert integrity(db) == "ok"

    asyncio.run(main())
