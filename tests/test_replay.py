"""``agent-runtime replay`` (issue 10): recorded histories replayed against new code, no
step executed, the database only read. Real SQLite files (and PostgreSQL), real apps
written to files, the real command."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import apsw
import pytest

from agent_runtime import Runtime
from agent_runtime._loader import load_app
from agent_runtime._reader import open_reader
from agent_runtime._replay import ReplayResult, replay
from agent_runtime._runtime import collect_workflows
from tests.pg_fixtures import pg_dsn, pg_server  # noqa: F401  (fixtures)

BIN = str(Path(sys.executable).parent / "agent-runtime")

V1 = """
from agent_runtime import now, sleep, step, wait_for_signal, workflow, RetryPolicy
import asyncio, os

CALLS = []

@step
async def fetch(x: int) -> int:
    CALLS.append("fetch")
    return x + 1

@step
def summarize(x: int) -> str:
    CALLS.append("summarize")
    return f"sum {x}"

@step(retry=RetryPolicy(max_attempts=5, initial_interval=3600, max_interval=3600))
async def flaky() -> str:
    CALLS.append("flaky")
    raise ConnectionError("down")

@workflow
async def triage(x: int) -> dict:
    a = await fetch(x)
    b = await summarize(a)
    t = await now()
    v = await wait_for_signal("approve")
    return {"a": a, "b": b, "v": v}

@workflow
async def napper() -> str:
    await fetch(1)
    await sleep(3600)
    return "woke"

@workflow
async def retrier() -> str:
    await fetch(2)
    return await flaky()

@workflow
async def fanout() -> list:
    a, b = await asyncio.gather(fetch(3), wait_for_signal("go"))
    return [a, b]

@workflow
async def quick(x: int) -> int:
    return await fetch(x)
"""

REORDERED = V1.replace(
    "    a = await fetch(x)\n    b = await summarize(a)\n",
    "    b = await summarize(x)\n    a = await fetch(x)\n",
)
WITH_NEW_WORKFLOW = (
    V1
    + """
@workflow
async def brand_new() -> int:
    return await fetch(0)
"""
)


def write_app(directory: Path, name: str, source: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.py"
    path.write_text(textwrap.dedent(source))
    return path


def cli(
    *args: str, cwd: Path | None = None, isolated: bool = False
) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-I", "-m", "agent_runtime"] if isolated else [BIN]
    return subprocess.run(
        [*cmd, *args], capture_output=True, text=True, timeout=60, cwd=cwd, check=False
    )


async def _until(rt: Runtime, run_id: str, *statuses: str) -> None:
    for _ in range(300):
        if (await rt.get(run_id)).status in statuses:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{run_id} never reached {statuses}: {(await rt.get(run_id)).status}")


def record(db: str, app: Path, runs: list[tuple[str, str, dict[str, Any], str]]) -> None:
    """Run the v1 app until each run reaches the given status, then stop it."""

    async def main() -> None:
        async with Runtime(db=db, app=load_app(str(app))) as rt:
            for run_id, wf, input, _ in runs:
                await rt.submit(wf, input, id=run_id)
            for run_id, _, _, status in runs:
                await _until(rt, run_id, status)
            await asyncio.sleep(0.2)  # the retrier's first failure is recorded
            await rt.stop(grace=0.1)

    asyncio.run(main())


@pytest.fixture
def recorded(tmp_path: Path) -> tuple[str, Path]:
    """A database with a run waiting for a signal (r1) recorded by v1."""
    v1 = write_app(tmp_path / "v1", "agents", V1)
    db = str(tmp_path / "t.db")
    record(db, v1, [("r1", "triage", {"x": 1}, "waiting")])
    return db, v1


def digest(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_v2_reordering_steps_is_reported_and_v2_adding_a_workflow_replays(
    recorded: tuple[str, Path], tmp_path: Path
) -> None:
    db, v1 = recorded
    before = digest(db)
    same = cli("replay", "--db", db, "--app", str(v1))
    assert same.returncode == 0, same.stderr
    assert "r1  triage  ok" in same.stdout and "all replay" in same.stdout

    v2 = write_app(tmp_path / "v2", "agents", REORDERED)
    broken = cli("replay", "--db", db, "--app", str(v2), "--json")
    assert broken.returncode == 9, broken.stderr
    assert json.loads(broken.stdout) == [
        {
            "run": "r1",
            "workflow": "triage",
            "ok": False,
            "position": 0,
            "recorded": "step 'fetch'",
            "called": "step 'summarize'",
            "error": "non-determinism at position 0: history records step 'fetch', "
            "but the workflow now calls step 'summarize'",
        }
    ]
    text = cli("replay", "--db", db, "--app", str(v2))
    assert (
        text.returncode == 9 and "r1  triage  FAILS: non-determinism at position 0" in text.stdout
    )

    v3 = write_app(tmp_path / "v3", "agents", WITH_NEW_WORKFLOW)
    added = cli("replay", "--db", db, "--app", str(v3), "--json")
    assert added.returncode == 0, added.stderr
    assert [r["ok"] for r in json.loads(added.stdout)] == [True]
    assert digest(db) == before  # read, never written


def run_replay(
    db: str, app: Path | ModuleType, run_id: str | None = None, timeout: float = 5.0
) -> list[ReplayResult]:
    module = app if isinstance(app, ModuleType) else load_app(str(app))
    reader = open_reader(db)
    try:
        return asyncio.run(replay(reader, collect_workflows(module), run_id, timeout))
    finally:
        reader.close()


def test_the_end_of_history_is_where_replay_stops(tmp_path: Path) -> None:
    """A durable sleep still sleeping, a step waiting to retry, a signal awaited beside a
    finished branch: each is the end of its recorded history, and nothing executes."""
    v1 = write_app(tmp_path / "v1", "agents", V1)
    db = str(tmp_path / "t.db")
    record(
        db,
        v1,
        [
            ("sleeping", "napper", {}, "sleeping"),
            ("retrying", "retrier", {}, "running"),
            ("branches", "fanout", {}, "waiting"),
            ("waiting", "triage", {"x": 5}, "waiting"),
        ],
    )
    history = {r: [e.kind for e in _history(db, r)] for r in ("retrying", "branches")}
    assert "step_attempt_failed" in history["retrying"]
    assert "step_completed" in history["branches"]

    module = load_app(str(v1))
    module.CALLS.clear()
    results = run_replay(db, module)
    assert {r.run: r.ok for r in results} == dict.fromkeys(
        ("sleeping", "retrying", "branches", "waiting"), True
    )
    assert module.CALLS == []  # no step ran


def test_a_step_due_again_is_not_run(tmp_path: Path) -> None:
    """A retry whose time has come and a timer already due would run at once in a resumed
    run: replay stops there without running or recording anything."""
    v1 = write_app(tmp_path / "v1", "agents", V1)
    db = str(tmp_path / "t.db")
    record(db, v1, [("retrying", "retrier", {}, "running"), ("sleeping", "napper", {}, "sleeping")])
    conn = apsw.Connection(db)  # age the history: the retry and the timer are both due
    conn.execute(
        "UPDATE events SET data = json_set(data, '$.retry_at', 0)"
        " WHERE kind = 'step_attempt_failed'"
    )
    conn.execute(
        "UPDATE events SET data = json_set(data, '$.wake_at', 0) WHERE kind = 'timer_started'"
    )
    conn.close()
    before = digest(db)
    module = load_app(str(v1))
    module.CALLS.clear()
    assert [r.ok for r in run_replay(db, module)] == [True, True]
    assert module.CALLS == []
    assert digest(db) == before


def _history(db: str, run_id: str) -> list[Any]:
    reader = open_reader(db)
    try:
        return reader.history(run_id)
    finally:
        reader.close()


@pytest.mark.parametrize(
    ("old", "new", "position", "what", "called"),
    [
        ('wait_for_signal("approve")', 'wait_for_signal("approval")', 3,
         "wait_for_signal 'approve'", "wait_for_signal 'approval'"),
        ("    t = await now()\n", "", 2, "value 'now'", "wait_for_signal 'approve'"),
        ("    b = await summarize(a)\n", "    return {'a': a}\n", 1, "step 'summarize'",
         "returns before calling it"),
        ("    b = await summarize(a)\n", "    raise ValueError('nope')\n", 1, "step 'summarize'",
         "raises ValueError: nope before calling it"),
        ("    b = await summarize(a)\n", "    await fetch(9)\n    b = await summarize(a)\n", 1,
         "step 'summarize'", "step 'fetch'"),
        ("    a = await fetch(x)\n",
         "    try:\n        a = await summarize(x)\n    except Exception:\n        a = 0\n",
         0, "step 'fetch'", "step 'summarize'"),
    ],
)  # fmt: skip
def test_incompatible_changes_name_position_and_both_sides(
    recorded: tuple[str, Path], tmp_path: Path, old: str, new: str, position: int, what: str,
    called: str,
) -> None:  # fmt: skip
    db, _ = recorded
    assert old in V1
    app = write_app(tmp_path / "changed", "agents", V1.replace(old, new))
    (result,) = run_replay(db, app)
    assert (result.ok, result.position, result.recorded, result.called) == (
        False, position, what, called,
    )  # fmt: skip
    assert result.error and str(position) in result.error


def test_runs_that_cannot_start_are_reported(recorded: tuple[str, Path], tmp_path: Path) -> None:
    db, _ = recorded
    gone = write_app(tmp_path / "gone", "agents", V1.replace("async def triage(", "async def t2("))
    (result,) = run_replay(db, gone)
    assert not result.ok and "workflow 'triage' is not in the app" in (result.error or "")
    needs_more = write_app(
        tmp_path / "more", "agents", V1.replace("def triage(x: int)", "def triage(x: int, y: int)")
    )
    (result,) = run_replay(db, needs_more)
    assert not result.ok and "input does not fit" in (result.error or "")


def test_code_stuck_on_something_not_durable_is_reported(
    recorded: tuple[str, Path], tmp_path: Path
) -> None:
    db, _ = recorded
    stuck = write_app(
        tmp_path / "stuck",
        "agents",
        V1.replace("    b = await summarize(a)\n", "    await asyncio.sleep(3600)\n    b = 0\n"),
    )
    (result,) = run_replay(db, stuck, timeout=0.3)
    assert not result.ok and result.position == 1
    assert result.called is not None and "no progress for 0.3 s" in result.called


def test_one_run_finished_or_not(tmp_path: Path) -> None:
    v1 = write_app(tmp_path / "v1", "agents", V1)
    db = str(tmp_path / "t.db")
    record(db, v1, [("done", "quick", {"x": 1}, "completed"), ("w", "triage", {"x": 1}, "waiting")])
    everything = cli("replay", "--db", db, "--app", str(v1), "--json")
    assert [r["run"] for r in json.loads(everything.stdout)] == ["w"]  # unfinished only
    one = cli("replay", "--db", db, "--app", str(v1), "--run", "done", "--json")
    assert one.returncode == 0 and json.loads(one.stdout)[0]["run"] == "done"
    changed = write_app(tmp_path / "v2", "agents", V1.replace("return await fetch(x)", "return x"))
    one = cli("replay", "--db", db, "--app", str(changed), "--run", "done", "--json")
    assert (
        one.returncode == 9 and json.loads(one.stdout)[0]["called"] == "returns before calling it"
    )
    missing = cli("replay", "--db", db, "--app", str(v1), "--run", "nope")
    assert missing.returncode == 2 and "no run with id 'nope'" in missing.stderr


def test_app_as_package_directory_and_module_dir(
    recorded: tuple[str, Path], tmp_path: Path
) -> None:
    db, _ = recorded
    pkg = tmp_path / "pkgapp" / "myagents"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("from .flows import *  # noqa\n")
    (pkg / "flows.py").write_text(textwrap.dedent(V1))
    assert cli("replay", "--db", db, "--app", str(pkg)).returncode == 0
    holder = tmp_path / "holder"
    write_app(holder, "agents", V1)
    (holder / "requirements.txt").write_text("")
    assert cli("replay", "--db", db, "--app", str(holder) + "/").returncode == 0
    write_app(holder, "other", "x = 1\n")
    two = cli("replay", "--db", db, "--app", str(holder))
    assert two.returncode == 2 and "exactly one module" in two.stderr


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--db", "{tmp}/missing.db", "--app", "{v1}"], "does not exist"),
        (["--db", "{tmp}/garbage.db", "--app", "{v1}"], "cannot read the database"),
        (["--db", "{tmp}/empty.db", "--app", "{v1}"], "not an agent-runtime database"),
        (["--db", "{db}", "--app", "{tmp}/nope.py"], "does not exist"),
        (["--db", "{db}", "--app", "no_such_module_xyz"], "cannot import app module"),
        (["--db", "{db}", "--app", "{tmp}/broken.py"], "failed to import: ZeroDivisionError"),
        (["--db", "{db}", "--app", "json"], "defines no @workflow"),
        (["--db", "host=x password=y", "--app", "{v1}"], "key=value DSN"),
        (["--app", "{v1}"], "the following arguments are required: --db"),
        (["--db", "{db}", "--app", "{v1}", "--bogus"], "unrecognized arguments"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    recorded: tuple[str, Path], tmp_path: Path, args: list[str], needle: str
) -> None:
    db, v1 = recorded
    (tmp_path / "garbage.db").write_bytes(b"not a database at all" * 100)
    (tmp_path / "empty.db").write_bytes(b"")
    (tmp_path / "broken.py").write_text("1 / 0\n")
    filled = [a.format(tmp=tmp_path, v1=v1, db=db) for a in args]
    out = cli("replay", *filled)
    assert out.returncode == 2, out
    assert needle in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr
    assert out.stdout == ""


def test_isolated_python_and_no_shadowing_by_files_beside_the_app(
    recorded: tuple[str, Path], tmp_path: Path
) -> None:
    """Under ``python3 -I`` the command needs nothing from the working directory, and a
    file beside the app named like a module the runtime uses is never imported."""
    db, v1 = recorded
    marker = tmp_path / "planted"
    plant = f"open({str(marker)!r}, 'a').write(__name__)\n"
    for directory in (tmp_path, v1.parent):
        for name in ("json", "structlog", "apsw", "asyncio", "uvloop"):
            (directory / f"{name}.py").write_text(plant)
    out = cli("replay", "--db", db, "--app", str(v1), "--json", cwd=tmp_path, isolated=True)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)[0]["ok"] is True
    assert not marker.exists()


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory another user can reach (pytest's own tmp_path is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="lf-replay-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        for p in (path, *path.rglob("*")):
            if p.is_dir():
                p.chmod(0o755)
        shutil.rmtree(path)


def as_nobody(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", BIN, *args],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")
@pytest.mark.parametrize("with_wal", [True, False])
def test_a_copy_in_a_read_only_directory(shared_dir: Path, with_wal: bool) -> None:
    """A copy taken while the runtime was live (database + write-ahead log, no -shm) in a
    directory the reader cannot write: every committed run is seen, nothing is created."""
    v1 = write_app(shared_dir / "v1", "agents", V1)
    db = str(shared_dir / "live.db")
    copy_dir = shared_dir / "copy"
    copy_dir.mkdir()

    async def main() -> None:
        async with Runtime(db=db, app=load_app(str(v1))) as rt:
            await rt.submit("triage", {"x": 1}, id="r1")
            await _until(rt, "r1", "waiting")
            shutil.copyfile(db, copy_dir / "t.db")
            if with_wal:
                shutil.copyfile(db + "-wal", copy_dir / "t.db-wal")
            await rt.stop(grace=0.1)

    asyncio.run(main())
    for f in (*copy_dir.iterdir(), *v1.parent.iterdir()):
        f.chmod(0o444)
    copy_dir.chmod(0o555)
    listing = sorted(os.listdir(copy_dir))
    out = as_nobody("replay", "--db", str(copy_dir / "t.db"), "--app", str(v1), "--json")
    assert out.returncode == 0, out.stderr
    runs = json.loads(out.stdout)
    if with_wal:
        assert [(r["run"], r["ok"]) for r in runs] == [("r1", True)]
    else:  # the main file alone holds what was checkpointed when it was copied
        assert all(r["ok"] for r in runs)
    assert sorted(os.listdir(copy_dir)) == listing


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")
def test_an_unreadable_app_is_one_line(recorded: tuple[str, Path], shared_dir: Path) -> None:
    db, _ = recorded
    app = write_app(shared_dir / "app", "agents", V1)
    app.chmod(0o600)
    copy = shared_dir / "t.db"
    shutil.copyfile(db, copy)
    copy.chmod(0o644)
    out = as_nobody("replay", "--db", str(copy), "--app", str(app))
    assert out.returncode == 2 and "Permission denied" in out.stderr
    assert len(out.stderr.splitlines()) == 1 and "Traceback" not in out.stderr


@pytest.mark.postgres
def test_replay_on_postgresql(pg_dsn: str, tmp_path: Path) -> None:  # noqa: F811
    v1 = write_app(tmp_path / "v1", "agents", V1)
    record(pg_dsn, v1, [("r1", "triage", {"x": 1}, "waiting")])
    ok = cli("replay", "--db", pg_dsn, "--app", str(v1), "--json")
    assert ok.returncode == 0 and json.loads(ok.stdout)[0]["ok"] is True
    v2 = write_app(tmp_path / "v2", "agents", REORDERED)
    broken = cli("replay", "--db", pg_dsn, "--app", str(v2), "--json")
    assert broken.returncode == 9 and json.loads(broken.stdout)[0]["position"] == 0
    assert pg_dsn.split("@")[0].split(":")[-1] not in broken.stdout + broken.stderr
