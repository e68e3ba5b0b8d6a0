"""`fleet watch` and `fleet inspect --follow` without Docker: a real runtime writes a SQLite
file, a real `litestream replicate` ships it to a real S3 endpoint (moto's server), and the
installed `fleet` CLI follows it from there, as it would a tenant's backup.
(With real tenants: tests/test_observe_docker.py.)"""

from __future__ import annotations

import asyncio
import json
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

import agent_runtime.examples as examples
from agent_runtime import Runtime, open_copy
from fleet.storage.backups import backup_state
from fleet.supervisor.s3 import S3Settings

from .fleet_support import FLEET, fleet, one_line_error
from .moto_support import clean_env, moto_s3

LITESTREAM = str(Path(sys.executable).with_name("litestream"))
TENANT = "followed"


async def _run(db: Path, workflow: str, input: dict[str, object], run_id: str) -> None:
    async with Runtime(db=str(db), app=examples) as rt:
        await rt.submit(workflow, input, id=run_id)
        assert (await rt.wait(run_id, timeout=60)).status == "completed"


@pytest.fixture
def replicated(tmp_path: Path) -> Iterator[tuple[S3Settings, Path]]:
    """A runtime database under `litestream replicate` to tenants/followed/ in moto."""
    with moto_s3("watch-bucket") as s3:
        db = tmp_path / "source" / "tenant.db"
        db.parent.mkdir()
        asyncio.run(_run(db, "echo", {"message": "before"}, "before"))
        config = tmp_path / "replicate.yml"
        config.write_text(
            f"dbs:\n  - path: {db}\n    monitor-interval: 250ms\n    replica:\n"
            f"      type: s3\n      bucket: {s3.bucket}\n      path: tenants/{TENANT}\n"
            f"      endpoint: {s3.endpoint}\n      region: {s3.region}\n"
            "      force-path-style: true\n      sync-interval: 1s\n"
        )
        env = {
            **clean_env(),
            "LITESTREAM_ACCESS_KEY_ID": s3.access_key_id,
            "LITESTREAM_SECRET_ACCESS_KEY": s3.secret_access_key,
        }
        proc = subprocess.Popen(
            [LITESTREAM, "replicate", "-config", str(config)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 30
            while backup_state(s3, TENANT).txid == 0:
                assert time.monotonic() < deadline, "litestream replicated nothing"
                time.sleep(0.2)
            yield s3, db
        finally:
            proc.terminate()
            proc.wait(10)


def _env(s3: S3Settings) -> dict[str, str]:
    return {
        **clean_env(),
        "FLEET_CONFIG": "",
        "FLEET_S3_ENDPOINT": s3.endpoint,
        "FLEET_S3_BUCKET": s3.bucket,
        "FLEET_S3_REGION": s3.region,
        "FLEET_S3_ACCESS_KEY_ID": s3.access_key_id,
        "FLEET_S3_SECRET_ACCESS_KEY": s3.secret_access_key,
    }


class _Lines:
    def __init__(self, stream: IO[str]) -> None:
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.put(line.rstrip("\n"))

    def next(self, timeout: float) -> str:
        return self.lines.get(timeout=timeout)

    def rest(self) -> list[str]:
        """What is left, once the process has ended."""
        left = []
        while True:
            try:
                left.append(self.lines.get(timeout=1))
            except queue.Empty:
                return left


def _start(args: list[str], env: dict[str, str]) -> tuple[subprocess.Popen[str], _Lines]:
    proc = subprocess.Popen(
        [FLEET, *args],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    return proc, _Lines(proc.stdout)


def _stop(proc: subprocess.Popen[str]) -> int:
    proc.send_signal(signal.SIGINT)
    try:
        return proc.wait(20)
    finally:
        if proc.poll() is None:
            proc.kill()


def test_watch_keeps_a_copy_and_inspect_follow_prints_new_events(
    replicated: tuple[S3Settings, Path], tmp_path: Path
) -> None:
    s3, db = replicated
    env = _env(s3)
    copy = tmp_path / "copy.db"
    watch, watched = _start(["watch", TENANT, "-o", str(copy)], env)
    follower = None
    try:
        first = watched.next(60)
        assert first.startswith(f"watching {TENANT}: {copy} at txid "), first
        with open_copy(copy) as c:
            assert c.statuses() == {"before": "completed"}
        follower, followed = _start(["inspect", str(copy), "--follow", "--json"], env)
        time.sleep(1.5)  # its first look: what comes after it is new
        asyncio.run(_run(db, "steps", {"n": 2}, "after"))
        committed = time.monotonic()
        while True:
            with open_copy(copy) as c:
                if c.statuses().get("after") == "completed":
                    break
            assert time.monotonic() - committed < 15, "the copy never got the run"
            time.sleep(0.1)
        events = []
        while not events or events[-1]["kind"] != "run_completed":
            events.append(json.loads(followed.next(15)))
        assert [(e["run_id"], e["kind"]) for e in events] == [
            ("after", "run_submitted"),
            ("after", "step_completed"),
            ("after", "step_completed"),
            ("after", "run_completed"),
        ]
        assert _stop(follower) == 0 and _stop(watch) == 0
        newest = int(Path(f"{copy}-txid").read_text(), 16)
        assert watched.rest()[-1].endswith(f"txid {newest}")  # a line per update
    finally:
        for proc in (watch, follower):
            if proc is not None and proc.poll() is None:
                proc.kill()

    # Started again, the watch carries on from the copy it left; killed outright, it leaves
    # no Litestream follower behind.
    again, lines = _start(["watch", TENANT, "-o", str(copy)], env)
    try:
        assert lines.next(60).startswith(f"watching {TENANT}: {copy} at txid ")
        children = Path(f"/proc/{again.pid}/task/{again.pid}/children").read_text().split()
        assert len(children) == 1
    finally:
        again.kill()
        again.wait(10)
    deadline = time.monotonic() + 10
    while Path(f"/proc/{children[0]}").exists():
        assert time.monotonic() < deadline, "litestream outlived its watch"
        time.sleep(0.1)


def test_watch_and_follow_refuse_bad_input(
    replicated: tuple[S3Settings, Path], tmp_path: Path
) -> None:
    s3, _ = replicated
    env = _env(s3)
    missing = fleet("watch", "nobody", "-o", str(tmp_path / "x.db"), env=env)
    assert missing.code == 5 and "no backup" in one_line_error(missing)
    taken = tmp_path / "taken.db"
    taken.write_text("not a followed copy")
    refused = fleet("watch", TENANT, "-o", str(taken), env=env)
    assert refused.code == 2 and "is not a copy" in one_line_error(refused)
    nofile = fleet("inspect", str(tmp_path / "none.db"), "--follow", env=env)
    assert nofile.code == 2 and one_line_error(nofile)
