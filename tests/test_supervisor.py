"""fleet/supervisor without Docker: what it may import, the behind-the-replica decision, the
environments, Litestream's JSON, and the volume preparation with the real Litestream binary
against a real S3 endpoint (moto server on loopback)."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleet.supervisor import environments as envs
from fleet.supervisor import volume
from fleet.supervisor.layout import tracking_dir
from fleet.supervisor.litestream import max_txid
from fleet.supervisor.s3 import S3Settings

from .moto_support import clean_env, moto_s3

PACKAGE = Path(__file__).resolve().parents[1] / "fleet" / "supervisor"
STDLIB_LATER = {"_sha2"}  # CPython 3.12's name of _sha256 (s3.py tries both)


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
    return found


def test_supervisor_imports_only_the_standard_library_and_itself() -> None:
    modules = sorted(PACKAGE.glob("*.py"))
    assert len(modules) >= 8
    for path in modules:
        for name in _imports(path):
            top = name.split(".")[0]
            stdlib = top in sys.stdlib_module_names or top in STDLIB_LATER
            ok = stdlib or name.startswith("fleet.supervisor")
            assert ok, f"{path.name} imports {name}: the supervisor is stdlib-only"


def test_keeper_loads_nothing_heavy() -> None:
    """What keeps the keeper at ~11 MB RSS: no OpenSSL (hashlib, hmac, ssl), no typing,
    dataclasses or inspect, no subprocess."""
    probe = (
        "import sys, fleet.supervisor.__main__, fleet.supervisor.keeper\n"
        "print(' '.join(sorted(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-I", "-c", probe], capture_output=True, text=True, check=True
    ).stdout.split()
    heavy = {"hashlib", "hmac", "ssl", "typing", "dataclasses", "inspect", "subprocess"}
    assert not heavy & set(out), heavy & set(out)


def test_the_s3_key_from_a_secret_file(tmp_path: Path) -> None:
    """On Swarm the key is a secret file (the service's spec holds no key): read into the
    keeper's and Litestream's environment; the file's name goes to no process."""
    key_file = tmp_path / "litefleet-s3-key"
    key_file.write_text("from-the-file\n")
    given = {k: v for k, v in CONTAINER_ENV.items() if k != "LITESTREAM_SECRET_ACCESS_KEY"}
    env = envs.with_key_file({**given, "LITESTREAM_SECRET_ACCESS_KEY_FILE": str(key_file)})
    assert envs.keeper_env(env)["LITESTREAM_SECRET_ACCESS_KEY"] == "from-the-file"
    assert envs.litestream_env(env)["LITESTREAM_SECRET_ACCESS_KEY"] == "from-the-file"
    assert not any(k.startswith("LITESTREAM_SECRET") for k in envs.runtime_env(env))
    assert envs.with_key_file(CONTAINER_ENV) == CONTAINER_ENV  # the key itself: as it is
    with pytest.raises(OSError):
        envs.with_key_file({**given, "LITESTREAM_SECRET_ACCESS_KEY_FILE": str(tmp_path / "no")})


@pytest.mark.parametrize(
    ("db_exists", "replicated_before", "local", "replica", "action"),
    [
        (False, False, 0, 0, volume.RESTORE),  # empty volume
        (False, True, 0, 9, volume.RESTORE),  # tracking left without a database
        (True, False, 3, 9, volume.USE),  # just restored (maybe to a point in time): keep
        (True, True, 9, 9, volume.USE),  # in step with the replica
        (True, True, 10, 9, volume.USE),  # ahead (the final sync had not finished)
        (True, True, 0, 0, volume.USE),  # never reached the replica
        (True, True, 8, 9, volume.SET_ASIDE),  # behind: would rewind the backup
        (True, True, 0, 9, volume.SET_ASIDE),  # its txid unreadable counts as 0: behind
    ],
)
def test_behind_the_replica_decision(
    db_exists: bool, replicated_before: bool, local: int, replica: int, action: str
) -> None:
    got = volume.decide(
        db_exists=db_exists,
        replicated_before=replicated_before,
        local_txid=local,
        replica_txid=replica,
    )
    assert got == action


def test_max_txid_reads_litestream_json() -> None:
    status = json.dumps([{"database": "/data/tenant.db", "local_txid": "00000000000000ff"}])
    assert max_txid(status, "local_txid") == 255
    ltx = json.dumps([{"max_txid": "0000000000000003"}, {"max_txid": "0000000000000011"}])
    assert max_txid(ltx, "max_txid") == 17
    for nothing in ("", "[]", "null", "not json", '{"x": 1}', '[{"max_txid": "zz"}]'):
        assert max_txid(nothing, "max_txid") is None, nothing


CONTAINER_ENV = {
    "PATH": "/opt/litefleet/bin:/usr/bin",
    "HOME": "/tmp",
    "TENANT": "acme",
    "LITEFLEET_S3_ENDPOINT": "http://10.0.0.1:9000",
    "LITEFLEET_S3_BUCKET": "b",
    "LITESTREAM_ACCESS_KEY_ID": "AKID",
    "LITESTREAM_SECRET_ACCESS_KEY": "s3cret",
    "LITEFLEET_HOST": "a",
    "AGENT_RUNTIME_TOKEN": "tok",
    "AGENT_RUNTIME_APP": "my.app",
    "AWS_CA_BUNDLE": "/etc/x.pem",
    "APP_SETTING": "x1",
}


def test_each_process_gets_its_own_environment() -> None:
    env = envs.with_defaults(CONTAINER_ENV)
    assert env["LITEFLEET_S3_REGION"] == "us-east-1"
    runtime, litestream, keeper = (
        envs.runtime_env(env),
        envs.litestream_env(env),
        envs.keeper_env(env),
    )
    assert not {"LITESTREAM_ACCESS_KEY_ID", "LITESTREAM_SECRET_ACCESS_KEY"} & set(runtime)
    assert {"APP_SETTING", "AGENT_RUNTIME_TOKEN", "AWS_CA_BUNDLE"} <= set(runtime)
    assert set(litestream) == {
        "PATH", "HOME", "TENANT", "LITEFLEET_S3_ENDPOINT", "LITEFLEET_S3_BUCKET",
        "LITEFLEET_S3_REGION", "LITESTREAM_ACCESS_KEY_ID", "LITESTREAM_SECRET_ACCESS_KEY",
    }  # fmt: skip
    assert set(keeper) == set(litestream) | {"LITEFLEET_HOST"}
    assert envs.serve_command(runtime, "/data/tenant.db")[:6] == [
        "agent-runtime", "serve", "--db", "/data/tenant.db", "--app", "my.app",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"TENANT": ""}, "TENANT is not set"),
        ({"LITEFLEET_S3_BUCKET": ""}, "LITEFLEET_S3_BUCKET is not set"),
        ({"TENANT": "a_b"}, "invalid TENANT name"),  # the fleet's rule, no '_'
        ({"TENANT": "ab-"}, "invalid TENANT name"),
        ({"TENANT": "../x"}, "invalid TENANT name"),
        ({}, None),
    ],
)
def test_settings_are_checked_before_anything_starts(
    change: dict[str, str], problem: str | None
) -> None:
    got = envs.problem({**CONTAINER_ENV, **change})
    assert (got is None) if problem is None else (problem in (got or ""))


def test_postgres_tenants_are_recognised() -> None:
    assert envs.uses_postgres({"AGENT_RUNTIME_DB": "postgresql://u@h/db"})
    assert envs.uses_postgres({"AGENT_RUNTIME_DB": "postgres://u@h/db"})
    assert not envs.uses_postgres({"AGENT_RUNTIME_DB": "/data/x.db"})
    assert not envs.uses_postgres({})


# -- the volume, with the real Litestream binary and a real S3 endpoint


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Settings]:
    with moto_s3("volume-test") as s3:
        yield s3


class Tenant:
    """One tenant's database, Litestream config and environment in a temp directory."""

    def __init__(self, root: Path, s3: S3Settings, name: str) -> None:
        self.name, self.db, self.config = name, root / "tenant.db", root / "litestream.yml"
        self.config.write_text(
            f"dbs:\n  - path: {self.db}\n    monitor-interval: 100ms\n    replica:\n"
            f"      type: s3\n      bucket: {s3.bucket}\n      path: tenants/{name}\n"
            f"      endpoint: {s3.endpoint}\n      region: {s3.region}\n"
            "      force-path-style: true\n      sync-interval: 100ms\n"
        )
        bin_dir = str(Path(sys.executable).parent)
        self.env = envs.litestream_env(
            {
                **clean_env(),
                "PATH": f"{bin_dir}:{os.environ.get('PATH', '/usr/bin')}",
                "LITESTREAM_ACCESS_KEY_ID": s3.access_key_id,
                "LITESTREAM_SECRET_ACCESS_KEY": s3.secret_access_key,
            }
        )
        self.logs: list[str] = []

    def prepare(self) -> None:
        volume.prepare(self.env, self.name, self.logs.append, str(self.db), str(self.config))

    def write(self, value: str) -> None:
        import apsw  # the runtime's SQLite: what writes tenant databases

        conn = apsw.Connection(str(self.db))
        conn.execute("CREATE TABLE IF NOT EXISTS t (v TEXT)")
        conn.execute("INSERT INTO t VALUES (?)", (value,))
        conn.close()

    def values(self) -> list[str]:
        import apsw

        conn = apsw.Connection(str(self.db), flags=apsw.SQLITE_OPEN_READONLY)
        try:
            return [str(r[0]) for r in conn.execute("SELECT v FROM t ORDER BY rowid")]
        finally:
            conn.close()

    def replicate(self, *values: str) -> None:
        """Litestream replicates while ``values`` are written, then stops (final sync)."""
        proc = subprocess.Popen(
            ["litestream", "replicate", "-config", str(self.config)],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            time.sleep(1.0)  # attached on its first monitor tick
            for v in values:
                self.write(v)
            time.sleep(1.5)
        finally:
            proc.terminate()
            proc.wait(30)


def test_an_empty_volume_without_replica_gets_an_empty_database(
    s3: S3Settings, tmp_path: Path
) -> None:
    t = Tenant(tmp_path, s3, "empty-vol")
    t.prepare()
    assert t.db.exists() and "no replica at tenants/empty-vol" in t.logs[-1]
    import sqlite3

    conn = sqlite3.connect(t.db)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_a_volume_behind_the_replica_is_set_aside_and_restored(
    s3: S3Settings, tmp_path: Path
) -> None:
    (tmp_path / "a").mkdir()
    t = Tenant(tmp_path / "a", s3, "behind-vol")
    t.prepare()  # empty database
    t.replicate("one")
    stale = tmp_path / "stale"
    stale.mkdir()
    for p in tmp_path.joinpath("a").iterdir():  # an old copy of the volume
        subprocess.run(["cp", "-a", str(p), str(stale)], check=True)
    t.prepare()  # in step: used as it is
    assert "using" in t.logs[-1] and "replica" in t.logs[-1], t.logs
    t.replicate("two", "three")

    old = Tenant(stale, s3, "behind-vol")
    assert Path(tracking_dir(str(old.db))).is_dir() and old.values() == ["one"]
    old.prepare()
    assert "behind the replica" in old.logs[0], old.logs
    assert "restored" in old.logs[-1], old.logs
    assert old.values() == ["one", "two", "three"]  # the backup was not rewound
    aside = [p for p in stale.iterdir() if p.name.startswith("behind-replica-")]
    assert len(aside) == 1 and (aside[0] / "tenant.db").exists()


def test_a_restored_database_is_used_as_it_is(s3: S3Settings, tmp_path: Path) -> None:
    """No tracking directory: `fleet restore` just put it there (maybe to a point in time)."""
    t = Tenant(tmp_path, s3, "restored-vol")
    t.write("x")
    t.prepare()
    assert t.logs == [f"using {t.db} from the volume (restored, not yet replicated)"]
    assert t.values() == ["x"]
