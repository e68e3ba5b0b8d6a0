"""`agent-runtime` as a user runs it: help, clean one-line errors, no tracebacks."""

from __future__ import annotations

import os
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


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve_briefly(
    tmp_path: Path, *args: str, isolated: bool = False, env: dict[str, str] | None = None
) -> tuple[int, str, int]:
    """Start serve, wait until /healthz answers, SIGTERM it; (exit code, output, port)."""
    import os
    import time

    import httpx

    port = _free_port()
    cmd = [sys.executable, "-I", "-m", "agent_runtime"] if isolated else [BIN]
    proc = subprocess.Popen(
        [*cmd, "serve", "--db", str(tmp_path / "w.db"), "--port", str(port), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=tmp_path,
        env={**os.environ, **(env or {})},
    )
    try:
        for _ in range(200):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=0.5).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.05)
    finally:
        proc.terminate()
        output, _ = proc.communicate(timeout=20)
    return proc.returncode, output, port


@pytest.mark.parametrize(
    ("host", "token", "warned"),
    [("0.0.0.0", None, True), ("0.0.0.0", "t0k3n-value", False), ("127.0.0.1", None, False)],
)
def test_no_token_on_a_non_loopback_address_warns_once(
    tmp_path: Path, host: str, token: str | None, warned: bool
) -> None:
    args = ["--app", "agent_runtime.examples", "--host", host]
    code, output, _ = _serve_briefly(tmp_path, *args, *(["--token", token] if token else []))
    assert code == 0, output
    warnings = [line for line in output.splitlines() if "serving_without_token" in line]
    assert len(warnings) == (1 if warned else 0), output
    if warned:
        assert '"level": "warning"' in warnings[0] and host in warnings[0]
    if token:
        assert token not in output


def test_database_files_it_creates_are_private(tmp_path: Path) -> None:
    code, output, port = _serve_briefly(tmp_path, "--app", "agent_runtime.examples")
    assert code == 0, output
    created = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("w.db"))
    assert "w.db" in created and "w.db.lock" in created
    for name in created:
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o600, name

    import os

    import httpx

    db = tmp_path / "w.db"
    proc = subprocess.Popen(
        [BIN, "serve", "--db", str(db), "--app", "agent_runtime.examples", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:  # while it runs, the write-ahead log and its index exist: private too
        for _ in range(200):
            try:
                r = httpx.post(
                    f"http://127.0.0.1:{port}/v1/runs", json={"workflow": "echo",
                    "input": {"message": "m"}}, timeout=0.5,
                )  # fmt: skip
                if r.status_code in (200, 201):
                    break
            except httpx.HTTPError:
                import time

                time.sleep(0.05)
        for suffix in ("-wal", "-shm"):
            path = Path(str(db) + suffix)
            assert path.exists() and os.stat(path).st_mode & 0o777 == 0o600, suffix
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_serve_runs_under_isolated_python_and_ignores_the_working_directory(
    tmp_path: Path,
) -> None:
    """``python3 -I -m agent_runtime serve`` needs nothing from the working directory, and
    neither it nor a file app imports modules planted in the cwd or beside the app."""
    marker = tmp_path / "planted"
    plant = f"open({str(marker)!r}, 'a').write(__name__)\n"
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    (app_dir / "agents.py").write_text(
        "import helpers\nfrom agent_runtime import workflow\n"
        "@workflow\nasync def hello() -> str:\n    return helpers.GREETING\n"
    )
    (app_dir / "helpers.py").write_text("GREETING = 'hi'\n")
    for directory in (tmp_path, app_dir):
        for name in ("json", "structlog", "uvicorn", "uvloop", "httptools", "email"):
            (directory / f"{name}.py").write_text(plant)
    for isolated in (True, False):
        code, output, _ = _serve_briefly(
            tmp_path, "--app", str(app_dir / "agents.py"), isolated=isolated,
            env={"PYTHONPATH": str(tmp_path)} if isolated else None,
        )  # fmt: skip
        assert code == 0, output
        assert "runtime_started" in output and "hello" in output
    assert not marker.exists()


def test_token_file_guards_the_api_and_bad_files_are_one_line(tmp_path: Path) -> None:
    """--token-file (a Swarm secret's path): the API wants that token; a missing or empty
    file is a one-line error before anything starts."""
    import time

    import httpx

    from tests.fleet_support import free_port

    missing = cli("serve", "--db", str(tmp_path / "a.db"), "--app", "agent_runtime.examples",
                  "--token-file", str(tmp_path / "nope"))  # fmt: skip
    assert missing.returncode != 0 and "cannot read the token file" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1
    (tmp_path / "empty").write_text("\n")
    empty = cli("serve", "--db", str(tmp_path / "a.db"), "--app", "agent_runtime.examples",
                "--token-file", str(tmp_path / "empty"))  # fmt: skip
    assert empty.returncode != 0 and "is empty" in empty.stderr

    (tmp_path / "token").write_text("file-token-123\n")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENT_RUNTIME")}
    env["AGENT_RUNTIME_TOKEN_FILE"] = str(tmp_path / "token")
    proc = subprocess.Popen(
        [BIN, "serve", "--db", str(tmp_path / "t.db"), "--app", "agent_runtime.examples",
         "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(200):
            try:
                httpx.get(f"{base}/healthz", timeout=0.5, trust_env=False)
                break
            except httpx.HTTPError:
                time.sleep(0.05)
        assert httpx.get(f"{base}/v1/runs", trust_env=False).status_code == 401
        ok = httpx.get(
            f"{base}/v1/runs", headers={"Authorization": "Bearer file-token-123"}, trust_env=False
        )
        assert ok.status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_workflows_lists_what_an_app_registers(tmp_path: Path) -> None:
    import json

    app = tmp_path / "agents.py"
    app.write_text(
        "from agent_runtime import workflow\n"
        "print('hello from import')\n"
        "@workflow\nasync def triage(x: int) -> int:\n    return x\n"
        "@workflow(name='b-report')\nasync def report() -> None:\n    return None\n"
    )
    out = cli("workflows", "--app", str(app), "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"app": str(app), "workflows": ["b-report", "triage"]}
    assert "hello from import" in out.stderr  # printed, but kept off the JSON
    assert cli("workflows", "--app", str(app)).stdout.split() == ["b-report", "triage"]


@pytest.mark.parametrize(
    ("source", "needle"),
    [
        ("import no_such_dependency_xyz\n", "No module named 'no_such_dependency_xyz'"),
        ("raise RuntimeError('needs a key')\n", "RuntimeError: needs a key"),
        ("def f(:\n", "SyntaxError"),
        ("x = 1\n", "defines no @workflow"),
    ],
)
def test_workflows_names_why_an_app_is_refused(tmp_path: Path, source: str, needle: str) -> None:
    app = tmp_path / "agents.py"
    app.write_text(source)
    out = cli("workflows", "--app", str(app), "--json")
    assert out.returncode == 2 and out.stdout == ""
    assert needle in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
