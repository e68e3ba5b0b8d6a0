"""`agent-runtime` as a user runs it: help, clean one-line errors, no tracebacks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BIN = str(Path(sys.executable).parent / "agent-runtime")


def cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([BIN, *args], capture_output=True, text=True, timeout=timeout)


def test_help_describes_every_option() -> None:
    out = cli("serve", "--help")
    assert out.returncode == 0
    for flag in ("--db", "--app", "--host", "--port", "--token", "--concurrency"):
        assert flag in out.stdout


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--app", "no_such_module_xyz"], "cannot import app module"),
        (["--app", "./missing.py"], "does not exist"),
        (["--app", "json"], "defines no @workflow"),
        (["--app", "agent_runtime.examples", "--port", "0"], "--port"),
        (["--app", "agent_runtime.examples", "--concurrency", "0"], "concurrency"),
        (["--app", "agent_runtime.examples", "--lease-seconds", "0"], "--lease-seconds"),
    ],
)
def test_bad_input_is_one_line(tmp_path: Path, args: list[str], needle: str) -> None:
    out = cli("serve", "--db", str(tmp_path / "x.db"), *args)
    assert out.returncode != 0
    assert needle in out.stderr
    assert "Traceback" not in out.stderr + out.stdout
    assert len(out.stderr.strip().splitlines()) == 1


def test_missing_directory_and_locked_database(tmp_path: Path) -> None:
    out = cli("serve", "--db", str(tmp_path / "nope" / "x.db"), "--app", "agent_runtime.examples")
    assert out.returncode == 1 and "does not exist" in out.stderr
    assert "Traceback" not in out.stderr

    db = tmp_path / "x.db"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT);"
            " fcntl.flock(fd, fcntl.LOCK_EX); print('locked', flush=True); time.sleep(30)",
            str(db) + ".lock",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        out = cli("serve", "--db", str(db), "--app", "agent_runtime.examples", "--port", "18999")
        assert out.returncode == 1
        assert "in use by another agent-runtime process" in out.stderr
        assert "Traceback" not in out.stderr
    finally:
        holder.kill()
        holder.wait()


def test_token_is_never_logged(tmp_path: Path) -> None:
    secret = "s3cr3t-token-value"
    proc = subprocess.Popen(
        [
            BIN,
            "serve",
            "--db",
            str(tmp_path / "t.db"),
            "--app",
            "agent_runtime.examples",
            "--port",
            "18998",
            "--token",
            secret,
            "--log-level",
            "debug",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        import httpx

        for _ in range(100):
            try:
                httpx.get("http://127.0.0.1:18998/healthz", timeout=0.5)
                break
            except httpx.HTTPError:
                import time

                time.sleep(0.05)
        httpx.get("http://127.0.0.1:18998/v1/runs", headers={"Authorization": "Bearer wrong"})
    finally:
        proc.terminate()
        output, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0
    assert secret not in output
