"""Backups in a real S3 endpoint (moto server) written by the real Litestream binary:
list, pull (litestream restore), inspect, purge. No Docker needed."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleet.core.errors import BackupNotFound, InvalidArgument, ObjectStoreError
from fleet.ops.pull import pull
from fleet.storage.backups import backup_state, purge
from fleet.storage.litestream import litestream_binary
from fleet.supervisor.s3 import S3Settings

from .fleet_support import cli
from .moto_support import clean_env, moto_s3

BUCKET = "fleet-test"


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Settings]:
    with moto_s3(BUCKET) as target:
        yield target


async def _make_runs(db: Path, n: int) -> list[str]:
    import agent_runtime.examples as examples
    from agent_runtime import Runtime

    ids = []
    async with Runtime(db=str(db), app=examples) as rt:
        for i in range(n):
            run = await rt.submit("steps", {"n": 2 + i}, id=f"run-{i}")
            done = await rt.wait(run.id, timeout=30)
            assert done.status == "completed"
            ids.append(run.id)
    return ids


def _replicate(s3: S3Settings, tenant: str, db: Path) -> None:
    """Run the real Litestream until the bucket holds the database, then stop it."""
    cfg = db.with_suffix(".yml")
    cfg.write_text(
        f"dbs:\n  - path: {db}\n    replica:\n      type: s3\n      bucket: {s3.bucket}\n"
        f"      path: tenants/{tenant}\n      endpoint: {s3.endpoint}\n"
        f"      region: {s3.region}\n      sync-interval: 100ms\n"
    )
    env = {
        **clean_env(),
        "LITESTREAM_ACCESS_KEY_ID": s3.access_key_id,
        "LITESTREAM_SECRET_ACCESS_KEY": s3.secret_access_key,
    }
    proc = subprocess.Popen(
        [litestream_binary(), "replicate", "-config", str(cfg)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while backup_state(s3, tenant).txid == 0:
            assert proc.poll() is None, "litestream exited"
            assert time.monotonic() < deadline, "nothing replicated"
            time.sleep(0.2)
        time.sleep(1.0)  # let it ship the last WAL frames too
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def backed_up(s3: S3Settings, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, list[str]]:
    tenant = "backup-a"
    db = tmp_path_factory.mktemp("src") / "tenant.db"
    ids = asyncio.run(_make_runs(db, 4))
    _replicate(s3, tenant, db)
    return tenant, ids


def test_backup_state_reads_ltx_names(s3: S3Settings, backed_up: tuple[str, list[str]]) -> None:
    tenant, _ = backed_up
    state = backup_state(s3, tenant)
    assert state.objects > 0 and state.bytes > 0 and state.txid > 0
    assert state.last_upload is not None
    assert backup_state(s3, "nobody").txid == 0


def test_pull_gives_a_consistent_copy(
    s3: S3Settings, backed_up: tuple[str, list[str]], tmp_path: Path
) -> None:
    tenant, ids = backed_up
    out = tmp_path / "copy.db"
    res = pull(s3, tenant, out)
    assert res.integrity == "ok" and res.runs == len(ids)
    # Checked independently with the stdlib's SQLite, read-only.
    conn = sqlite3.connect(f"file:{out}?mode=ro", uri=True)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    got = {r[0]: r[1] for r in conn.execute("SELECT id, status FROM runs")}
    conn.close()
    assert got == {i: "completed" for i in ids}
    with pytest.raises(InvalidArgument, match="exists"):
        pull(s3, tenant, out)
    assert pull(s3, tenant, out, force=True).runs == len(ids)


def test_pull_errors(s3: S3Settings, backed_up: tuple[str, list[str]], tmp_path: Path) -> None:
    tenant, _ = backed_up
    with pytest.raises(BackupNotFound):
        pull(s3, "no-backup-here", tmp_path / "x.db")
    with pytest.raises(InvalidArgument, match="timestamp"):
        pull(s3, tenant, tmp_path / "x.db", at="yesterday")
    with pytest.raises(
        ObjectStoreError, match=f"no backup of '{tenant}' as of 2000-01-01T00:00:00Z"
    ):
        pull(s3, tenant, tmp_path / "x.db", at="2000-01-01T00:00:00Z")
    assert not (tmp_path / "x.db").exists()


def test_cli_pull_and_inspect(
    s3: S3Settings,
    backed_up: tuple[str, list[str]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import json

    tenant, ids = backed_up
    monkeypatch.setenv("FLEET_S3_ENDPOINT", s3.endpoint)
    monkeypatch.setenv("FLEET_S3_BUCKET", s3.bucket)
    monkeypatch.setenv("FLEET_S3_ACCESS_KEY_ID", s3.access_key_id)
    monkeypatch.setenv("FLEET_S3_SECRET_ACCESS_KEY", s3.secret_access_key)
    out = tmp_path / "pulled.db"
    r = cli(capsys, "pull", tenant, "-o", str(out))
    assert r.code == 0, r
    assert f"{len(ids)} runs" in r.out and "integrity ok" in r.out
    assert s3.secret_access_key not in r.out + r.err

    r = cli(capsys, "inspect", str(out), "--json")
    assert r.code == 0, r
    rep = json.loads(r.out)
    assert rep["counts"] == {"completed": len(ids)}
    assert {x["id"] for x in rep["runs"]} == set(ids)

    r = cli(capsys, "inspect", str(out), "--run", "run-1", "--json")
    events = json.loads(r.out)["events"]
    steps = [e for e in events if e["kind"] == "step_completed"]
    assert [e["position"] for e in steps] == [0, 1, 2]  # run-1 ran n=3 steps
    assert events[-1]["kind"] == "run_completed"

    r = cli(capsys, "inspect", str(out), "--run", "run-1")
    assert r.code == 0 and "step_completed" in r.out

    r = cli(capsys, "inspect", str(out), "--run", "nope")
    assert r.code == 2 and "no run 'nope'" in r.err

    r = cli(capsys, "inspect", tenant, "--json")  # a tenant name: pulled to a temp file first
    assert r.code == 0 and json.loads(r.out)["counts"] == {"completed": len(ids)}

    not_a_db = tmp_path / "junk.db"
    not_a_db.write_text("hello")
    r = cli(capsys, "inspect", str(not_a_db))
    assert r.code != 0 and "Traceback" not in r.err


def test_purge(s3: S3Settings, tmp_path: Path) -> None:
    tenant = "backup-purge"
    db = tmp_path / "tenant.db"
    asyncio.run(_make_runs(db, 1))
    _replicate(s3, tenant, db)
    before = backup_state(s3, tenant).objects
    assert purge(s3, tenant) == before > 0
    assert backup_state(s3, tenant).objects == 0
    assert backup_state(s3, "backup-a").objects > 0  # other tenants untouched
