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
        (["--app", "agent_runtime.examples", "--db", "host=db password=x"], "key=value DSN"),
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


def test_sigterm_does_not_wait_past_grace_for_a_plain_step(tmp_path: Path) -> None:
    """A plain (threaded) step still running after --grace is abandoned, not awaited."""
    import time

    import httpx

    app = tmp_path / "slowapp.py"
    app.write_text(
        "import time\n"
        "from agent_runtime import step, workflow\n"
        "@step\n"
        "def slow() -> str:\n"
        "    time.sleep(30)\n"
        "    return 'done'\n"
        "@workflow\n"
        "async def slowflow() -> str:\n"
        "    return str(await slow())\n"
    )
    proc = subprocess.Popen(
        [
            BIN,
            "serve",
            "--db",
            str(tmp_path / "s.db"),
            "--app",
            str(app),
            "--port",
            "18997",
            "--grace",
            "1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            try:
                httpx.post("http://127.0.0.1:18997/v1/runs", json={"workflow": "slowflow"})
                break
            except httpx.HTTPError:
                time.sleep(0.05)
        time.sleep(0.5)
        t0 = time.monotonic()
        proc.terminate()
        assert proc.wait(15) == 0
        assert time.monotonic() - t0 < 6  # grace 1 s + shutdown, not the step's 30 s
    finally:
        proc.kill()
