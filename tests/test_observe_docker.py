"""`fleet fork`, `fleet watch` and `fleet inspect --follow` against a real Docker engine, the
tenant image and the embedded store, driven as a user would (the installed console script)."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import pytest

from agent_runtime import open_copy
from fleet.storage.embedded import EmbeddedStore as ObjectStore
from fleet.storage.embedded import client as s3_client
from fleet.storage.s3 import client as s3_settings_client
from fleet.storage.s3 import iam_client
from fleet.supervisor.s3 import S3Settings
from tests.docker_fixtures import TEST_BUCKET
from tests.test_fleet_docker import _ok

from .fleet_support import FLEET, Result, cli_env, fleet, one_line_error

pytestmark = pytest.mark.docker

Fleet = Callable[..., Result]


@pytest.fixture
def env(tenant_image: str, object_store: ObjectStore) -> dict[str, str]:
    return cli_env(tenant_image, TEST_BUCKET)


@pytest.fixture
def run(env: dict[str, str]) -> Iterator[Fleet]:
    """``run(*args)`` with the test settings; every tenant it saw made (up, fork) is removed
    with its backup at the end."""
    made: list[str] = []

    def call(*args: str, **kw: Any) -> Result:
        if args and args[0] == "up":
            made.append(args[1])
        if args and args[0] == "fork":
            made.append(args[2])
        return fleet(*args, env={**env, **kw.pop("env", {})}, **kw)

    yield call
    for name in made:
        fleet("rm", name, "--purge", "--yes", env=env)


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _ls(run: Fleet, label: str) -> dict[str, dict[str, Any]]:
    """`fleet ls` of this test's tenants only (others' tenants come and go meanwhile)."""
    return {t["tenant"]: t for t in json.loads(_ok(run("ls", "--json", "-l", label)).out)}


def _wait_replicated(run: Fleet, tenant: str, label: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        rep = _ls(run, label)[tenant]["replication"]
        if rep["local_txid"] and rep["lag_txns"] == 0:
            return
        assert time.monotonic() < deadline, rep
        time.sleep(0.5)


def _runs(run: Fleet, tenant: str) -> dict[str, str]:
    return {r["id"]: r["status"] for r in json.loads(_ok(run("runs", tenant, "--json")).out)}


def _keys(store: ObjectStore, prefix: str) -> set[str]:
    s3 = s3_client(store)
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=TEST_BUCKET, Prefix=prefix)
    return {o["Key"] for page in pages for o in page.get("Contents", [])}


def _lease(store: ObjectStore, tenant: str) -> dict[str, Any]:
    s3 = s3_client(store)
    body = s3.get_object(Bucket=TEST_BUCKET, Key=f"leases/{tenant}.json")["Body"].read()
    return dict(json.loads(body))


def _container(docker_client: Any, tenant: str) -> Any:
    return docker_client.containers.get(f"litefleet-{tenant}")


def _token(container: Any) -> str:
    variables = dict(e.partition("=")[::2] for e in container.attrs["Config"]["Env"])
    return variables["AGENT_RUNTIME_TOKEN"]


def _key_of(container: Any) -> S3Settings:
    variables = dict(e.partition("=")[::2] for e in container.attrs["Config"]["Env"])
    return S3Settings.from_env(variables)


def _readers_of(store: ObjectStore, src: str) -> list[str]:
    """Throwaway read-only users of forks (TenantKeys.reader) on ``src`` that still exist."""
    iam = iam_client(store.for_fleet(), store.host_endpoint)
    found = []
    for user in iam.list_users(PathPrefix="/litefleet/")["Users"]:
        name = user["UserName"]
        if not name.startswith("lfread-"):
            continue
        for policy in iam.list_user_policies(UserName=name)["PolicyNames"]:
            doc = iam.get_user_policy(UserName=name, PolicyName=policy)["PolicyDocument"]
            if f"tenants/{src}/" in json.dumps(doc):
                found.append(name)
    return found


def _refused(key: S3Settings, store: ObjectStore, src: str, where: str) -> None:
    """``key`` (a tenant's own) can neither read nor overwrite ``src``'s backup at ``where``."""
    import botocore.exceptions

    mine = s3_settings_client(key.with_endpoint(store.host_endpoint))
    for attempt in (
        lambda: mine.get_object(Bucket=TEST_BUCKET, Key=where),
        lambda: mine.put_object(Bucket=TEST_BUCKET, Key=f"tenants/{src}/x", Body=b"x"),
        lambda: mine.get_object(Bucket=TEST_BUCKET, Key=f"leases/{src}.json"),
    ):
        with pytest.raises(botocore.exceptions.ClientError) as refused:
            attempt()
        assert refused.value.response["Error"]["Code"] == "AccessDenied"


def _wait_status(run: Fleet, tenant: str, run_id: str, status: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while (got := _runs(run, tenant).get(run_id)) != status:
        assert time.monotonic() < deadline, f"{tenant}/{run_id} is {got}, not {status}"
        time.sleep(0.3)


def test_fork_at_a_time_between_two_runs(
    run: Fleet, object_store: ObjectStore, docker_client: Any, tmp_path: Path
) -> None:
    src, new, latest = _name("fsrc"), _name("fnew"), _name("flat")
    case = _name("case")
    label = f"case={case}"
    _ok(run("up", src, "--label", label))
    # The first run waits for a signal: it is unfinished at the fork's time.
    _ok(run("run", src, "research", "-i", '{"topic": "forks"}', "--id", "first"))
    _wait_status(run, src, "first", "waiting")
    _wait_replicated(run, src, label)
    time.sleep(2)
    between = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    time.sleep(2)
    _ok(run("run", src, "echo", "-i", '{"message": "second"}', "--id", "second", "--wait"))
    _wait_replicated(run, src, label)
    src_before = _container(docker_client, src).attrs
    backup_before = _keys(object_store, f"tenants/{src}/")

    out = _ok(run("fork", src, new, "--at", between, "--label", "purpose=try")).out.strip()
    assert re.fullmatch(rf"forked {src} at {between} \(txid \d+\) into {new}", out), out
    assert _runs(run, new) == {"first": "waiting"}  # the first run, not the second
    assert _runs(run, src) == {"first": "waiting", "second": "completed"}
    row = _ls(run, label)[new]
    assert row["labels"] == {"case": case, "purpose": "try", "litefleet.forked-from": src}

    # NEW is its own tenant: token, lease, replica path; its unfinished run continues there.
    forked = _container(docker_client, new)
    assert _token(forked) != _token(_container(docker_client, src))
    _ok(run("signal", new, "first", "approve", "--data", '{"approved": true}'))
    _wait_status(run, new, "first", "completed")
    _wait_replicated(run, new, label)
    assert _keys(object_store, f"tenants/{new}/")
    assert str(_lease(object_store, new)["container"]) in forked.id
    assert str(_lease(object_store, src)["container"]) not in forked.id

    # Per-tenant keys: NEW holds a key of its own that reaches none of SRC's objects, and the
    # read-only key the restore job used is gone.
    own = _key_of(forked)
    assert own.access_key_id not in (
        _key_of(_container(docker_client, src)).access_key_id,
        object_store.for_fleet().access_key_id,
    )
    _refused(own, object_store, src, sorted(_keys(object_store, f"tenants/{src}/"))[0])
    assert _readers_of(object_store, src) == []

    # SRC and its backup were only read.
    assert _runs(run, src)["first"] == "waiting"
    src_after = _container(docker_client, src).attrs
    assert src_after["Created"] == src_before["Created"]
    assert src_after["State"]["StartedAt"] == src_before["State"]["StartedAt"]
    assert backup_before <= _keys(object_store, f"tenants/{src}/")

    # A stopped SRC forks too (default: its newest state), and stays stopped.
    _ok(run("down", src))
    out = _ok(run("fork", src, latest)).out
    assert re.search(r"\(txid \d+\) into " + latest, out), out
    assert _runs(run, latest) == {"first": "waiting", "second": "completed"}
    assert _container(docker_client, src).status == "exited"

    refused = run("fork", src, new)
    assert refused.code == 2 and "exists" in one_line_error(refused)
    # A time before its first backup: one line saying so (exit 5), for fork and pull alike.
    for argv in (["fork", src, _name("fold")], ["pull", src, "-o", str(tmp_path / "early.db")]):
        before = run(*argv, "--at", "2020-01-01T00:00:00Z")
        err = one_line_error(before)
        assert before.code == 5 and f"no backup of {src!r} as of 2020-01-01T00:00:00Z" in err, err
    missing = run("fork", _name("nosuch"), _name("fx"))
    assert missing.code in (3, 5) and one_line_error(missing)


class _Lines:
    """A subprocess's stdout, line by line, read by a thread (never blocks the test)."""

    def __init__(self, stream: IO[str]) -> None:
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.put(line.rstrip("\n"))

    def until(self, found: Callable[[str], bool], timeout: float) -> list[str]:
        """Lines up to and including the first one ``found`` accepts."""
        seen: list[str] = []
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            assert left > 0, f"not found in {timeout:g}s; got {seen}"
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            seen.append(line)
            if found(line):
                return seen


def _start(args: list[str], env: dict[str, str]) -> tuple[subprocess.Popen[str], _Lines]:
    proc = subprocess.Popen(
        [FLEET, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env={**os.environ, **env},
    )
    assert proc.stdout is not None
    return proc, _Lines(proc.stdout)


def _interrupt(proc: subprocess.Popen[str]) -> int:
    proc.send_signal(signal.SIGINT)
    try:
        return proc.wait(20)
    finally:
        if proc.poll() is None:
            proc.kill()


def _statuses(copy: Path) -> dict[str, str]:
    with open_copy(copy) as db:
        return db.statuses()


def test_watch_and_inspect_follow(
    run: Fleet,
    env: dict[str, str],
    tmp_path: Path,
    docker_client: Any,
) -> None:
    t = _name("watch")
    label = f"case={t}"
    _ok(run("up", t, "--label", label))
    _ok(run("run", t, "echo", "-i", '{"message": "before"}', "--id", "before", "--wait"))
    _wait_replicated(run, t, label)
    started = _container(docker_client, t).attrs["State"]["StartedAt"]
    copy = tmp_path / "followed.db"
    watch, watched = _start(["watch", t, "-o", str(copy)], env)
    follower: subprocess.Popen[str] | None = None
    try:
        first = watched.until(lambda line: True, 60)[0]
        assert first.startswith(f"watching {t}: {copy} at txid "), first
        assert _statuses(copy) == {"before": "completed"}
        follower, followed = _start(["inspect", str(copy), "--follow"], env)
        time.sleep(2)  # its first look: what comes after it is "new"
        _ok(run("run", t, "steps", "-i", '{"n": 3}', "--id", "after", "--wait"))
        committed = time.monotonic()
        while _statuses(copy).get("after") != "completed":
            assert time.monotonic() - committed < 15, "the copy did not get the run"
            time.sleep(0.1)
        lag = time.monotonic() - committed
        lines = followed.until(lambda line: " after " in line and "run_completed" in line, 15)
        printed = [line for line in lines if " after " in line]
        assert sum("step_completed" in line for line in printed) == 3, lines
        assert not [line for line in lines if " before " in line]  # only what came after
        assert _interrupt(follower) == 0
        assert _interrupt(watch) == 0
        assert watched.until(lambda line: "txid" in line, 5)  # it printed the updates
    finally:
        for proc in (watch, follower):
            if proc is not None and proc.poll() is None:
                proc.kill()
    assert lag < 8, f"the copy got a committed run after {lag:.1f}s"
    assert Path(f"{copy}-txid").exists()
    # The tenant was never touched.
    assert _container(docker_client, t).attrs["State"]["StartedAt"] == started
