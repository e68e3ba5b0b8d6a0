"""agent_runtime.open_copy: runs, histories and steps from a database file, read-only.
(agent_runtime.open_reader, the same reader for `agent-runtime replay`: tests/test_replay.py.)"""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
from pathlib import Path

import pytest

import agent_runtime.examples as examples
from agent_runtime import InvalidInput, RunNotFound, Runtime, open_copy


async def _runs(db: Path) -> list[str]:
    async with Runtime(db=str(db), app=examples) as rt:
        ids = []
        for i in range(3):
            run = await rt.submit("steps", {"n": 2 + i}, id=f"run-{i}")
            assert (await rt.wait(run.id, timeout=30)).status == "completed"
            ids.append(run.id)
        await rt.submit("echo", {"message": "later"}, id="run-3")
        await rt.wait("run-3", timeout=30)
        return ids


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("reader") / "tenant.db"
    asyncio.run(_runs(path))
    return path


def _digest(path: Path) -> str:
    """The database and its WAL (the -shm index is shared memory: readers mark it)."""
    files = [path, Path(f"{path}-wal")]
    return hashlib.sha256(b"".join(p.read_bytes() for p in files if p.exists())).hexdigest()


def test_runs_history_and_steps(db: Path) -> None:
    before = _digest(db)
    with open_copy(db) as r:
        assert r.schema_version >= 1 and r.integrity_check() == "ok"
        assert r.count_by_status() == {"completed": 4}
        assert [x.id for x in r.recent_runs()] == ["run-3", "run-2", "run-1", "run-0"]
        assert [x.id for x in r.recent_runs(limit=2)] == ["run-3", "run-2"]
        assert r.statuses() == {f"run-{i}": "completed" for i in range(4)}
        run = r.run("run-1")
        assert run.workflow == "steps" and run.result == 3
        with pytest.raises(RunNotFound):
            r.run("nope")
        history = r.history("run-1")
        assert history[0].kind == "run_submitted" and history[-1].kind == "run_completed"
        assert [e.seq for e in history] == sorted(e.seq for e in history)
        steps = r.steps("run-1")
        assert [e.position for e in steps if e.kind == "step_completed"] == [0, 1, 2]
    assert _digest(db) == before  # nothing written, not even a checkpoint


def test_pages_of_runs_and_newer_events(db: Path) -> None:
    """What the console pages through and `fleet inspect --follow` polls for."""
    with open_copy(db) as r:
        page = r.list_runs(limit=2)
        assert [x.id for x in page.runs] == ["run-3", "run-2"] and page.next_cursor
        rest = r.list_runs(limit=2, cursor=page.next_cursor)
        assert [x.id for x in rest.runs] == ["run-1", "run-0"] and rest.next_cursor is None
        assert [x.id for x in r.list_runs(workflow="echo").runs] == ["run-3"]
        assert r.list_runs(status="failed").runs == []
        seqs = r.latest_seqs()
        assert set(seqs) == {f"run-{i}" for i in range(4)}
        history = r.history("run-1")
        assert seqs["run-1"] == history[-1].seq
        assert r.history("run-1", after=history[1].seq) == history[2:]
        assert r.history("run-1", after=seqs["run-1"]) == []


def test_a_database_the_runtime_never_migrated(tmp_path: Path) -> None:
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).execute("PRAGMA journal_mode=WAL").fetchall()
    with open_copy(empty) as r:
        assert r.schema_version == 0 and r.statuses() == {} and r.recent_runs() == []
        assert r.count_by_status() == {} and r.integrity_check() == "ok"
        assert r.list_runs().runs == [] and r.latest_seqs() == {}


def test_a_file_that_is_no_database(tmp_path: Path) -> None:
    junk = tmp_path / "junk.db"
    junk.write_text("hello")
    with pytest.raises(InvalidInput, match="cannot read"):
        open_copy(junk)
    with pytest.raises(InvalidInput, match="does not exist"):
        open_copy(tmp_path / "missing.db")
