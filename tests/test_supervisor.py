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
from fleet.supervisor import exits, identity, layout, permissions, restarts, volume
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
    env = envs.with_defaults({**CONTAINER_ENV, "LD_PRELOAD": "/data/x.so", "BASH_ENV": "/data/x"})
    assert env["LITEFLEET_S3_REGION"] == "us-east-1"
    runtime, litestream, keeper = (
        envs.runtime_env(env),
        envs.litestream_env(env),
        envs.keeper_env(env),
    )
    # The runtime: the app's variables, its token and app, nothing of the supervisor's and
    # nothing that changes how programs load; PATH and HOME its own.
    assert set(runtime) == {"PATH", "HOME", "TENANT", "AGENT_RUNTIME_TOKEN", "AGENT_RUNTIME_APP",
                            "APP_SETTING"}  # fmt: skip
    assert runtime["PATH"] == envs.PATH and runtime["HOME"] == "/tmp"
    # Litestream and the keeper: only what they need, HOME and TMPDIR in the keeper's tmpfs
    # (Litestream's S3 client reads ~/.aws/config).
    assert set(litestream) == {
        "PATH", "HOME", "TMPDIR", "TENANT", "LITEFLEET_S3_ENDPOINT", "LITEFLEET_S3_BUCKET",
        "LITEFLEET_S3_REGION", "LITESTREAM_ACCESS_KEY_ID", "LITESTREAM_SECRET_ACCESS_KEY",
    }  # fmt: skip
    assert litestream["HOME"] == litestream["TMPDIR"] == "/run/litefleet/home"
    assert set(keeper) == set(litestream) | {"LITEFLEET_HOST"}
    argv = envs.serve_command(runtime, "/data/tenant.db", "/run/litefleet/lease.json")
    assert argv[1:4] == ["-I", "-u", "-m"] and argv[4:6] == ["agent_runtime", "serve"]
    assert argv[argv.index("--app") + 1] == "my.app"
    assert argv[-2:] == ["--lease-file", "/run/litefleet/lease.json"]


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
                "LITESTREAM_ACCESS_KEY_ID": s3.access_key_id,
                "LITESTREAM_SECRET_ACCESS_KEY": s3.secret_access_key,
            }
        )
        # Outside a container: this venv's litestream, a home of its own.
        self.env.update(PATH=f"{bin_dir}:{os.environ.get('PATH', '/usr/bin')}", HOME=str(root))
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


# -- the restart bound, the volume's permissions, who may switch uids


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_the_restart_bound_counts_crashes_in_a_window(tmp_path: Path) -> None:
    clock = Clock()
    rec = restarts.RestartRecord(str(tmp_path), clock)
    assert rec.begin() is None  # a first start
    for i in range(restarts.LIMIT - 1):  # each incarnation crashes; the next start counts it
        rec.exiting(f"the runtime killed by SIGKILL #{i}")
        clock.now += 5
        rec = restarts.RestartRecord(str(tmp_path), clock)
        assert rec.begin() is None
    rec = restarts.RestartRecord(str(tmp_path), clock)  # the supervisor itself was killed
    clock.now += 5
    why = rec.begin()
    assert why is not None and why.startswith(f"gave up after {restarts.LIMIT} crashes")
    assert restarts.UNSEEN in why
    rec.ended(stayed_down=True)
    # A person starts it again: the record starts afresh.
    assert restarts.RestartRecord(str(tmp_path), clock).begin() is None


def test_crashes_far_apart_never_reach_the_bound(tmp_path: Path) -> None:
    clock = Clock()
    rec = restarts.RestartRecord(str(tmp_path), clock)
    rec.begin()
    for _ in range(3 * restarts.LIMIT):
        clock.now += restarts.WINDOW_S / 2
        assert rec.crashed("Litestream ended (exit 1)") is None
    rec.ended(stayed_down=False)
    assert restarts.RestartRecord(str(tmp_path), clock).begin() is None  # a clean stop


def test_the_database_files_are_checked_and_set_up(tmp_path: Path) -> None:
    """As the supervisor's uid (here: this test's): the -wal and -shm are created, modes and
    group set; anything at those names that is not a regular file of ours is suspect."""
    data = tmp_path / "data"
    data.mkdir()
    db = data / "tenant.db"
    db.write_bytes(b"")
    assert permissions.suspicious(str(db)) is None
    if os.geteuid() == 0:
        permissions.secure_db_files(str(db))
        for f in permissions.db_files(str(db)):
            st = os.stat(f)
            assert (oct(st.st_mode & 0o777), st.st_gid) == ("0o660", layout.AGENT_GID)
    (data / "tenant.db-wal").unlink(missing_ok=True)
    os.symlink("/etc/passwd", data / "tenant.db-wal")
    assert "tenant.db-wal is not a regular file" in (permissions.suspicious(str(db)) or "")
    (data / "tenant.db-wal").unlink()
    os.link(db, data / "hardlink")  # a second name for the database
    assert "tenant.db is not a regular file" in (permissions.suspicious(str(db)) or "")


@pytest.mark.parametrize(
    ("uid", "cap_eff", "ok"),
    [(0, 0x1C0, True), (0, 0x1FFFFFFFFFF, True), (0, 0xC0, False), (10001, 0x1C0, False)],
)
def test_only_root_with_the_three_capabilities_may_start(uid: int, cap_eff: int, ok: bool) -> None:
    status = f"Name:\tpython3\nCapInh:\t0000000000000000\nCapEff:\t{cap_eff:016x}\n"
    why = identity.cannot_switch(uid, status)
    assert (why is None) == ok, why
    argv = identity.as_agent(["x"])
    assert "--reuid=10002" in argv and "--bounding-set=-all" in argv and argv[-1] == "x"
    assert "--groups=10002" in identity.as_supervisor(["x"])


def test_exit_statuses_in_words() -> None:
    assert exits.describe_code(137, oom=True) == "killed by SIGKILL (out of memory)"
    assert exits.describe_code(-9) == "killed by SIGKILL"
    assert exits.describe_code(2) == "exit 2"
    assert exits.ENGINE_STOP == 143 and exits.DOWN == 0
