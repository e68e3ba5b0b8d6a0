"""``agent-runtime serve`` in a child process on loopback, for benchmarks that go over HTTP.

The server gets a fresh database in the caller's directory and a random token; it is
stopped with SIGTERM (then killed) when the ``with`` block ends.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Server:
    url: str
    token: str
    pid: int
    ready_s: float  # from spawning to the first /healthz answer

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def serve_command() -> list[str]:
    exe = Path(sys.executable).with_name("agent-runtime")
    if exe.exists():
        return [str(exe)]
    # Without the console script, run the same entry point; the process is the same.
    return [sys.executable, "-c", "from agent_runtime._cli import main; main()"]


def _wait_healthy(proc: subprocess.Popen[bytes], url: str, log_path: Path) -> None:
    deadline = time.perf_counter() + 30.0
    while True:
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace")[-400:].strip()
            raise RuntimeError(f"agent-runtime serve exited {proc.returncode}: {tail}")
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        if time.perf_counter() > deadline:
            raise RuntimeError("agent-runtime serve did not answer /healthz within 30 s")
        time.sleep(0.05)


@contextlib.contextmanager
def serving(
    db_path: Path,
    log_path: Path,
    app: str = "agent_runtime.examples",
    extra: Sequence[str] = (),
) -> Iterator[Server]:
    port = free_port()
    token = secrets.token_hex(16)
    env = {**os.environ, "AGENT_RUNTIME_TOKEN": token}
    cmd = [*serve_command(), "serve", "--db", str(db_path), "--app", app]
    cmd += ["--host", "127.0.0.1", "--port", str(port), *extra]
    url = f"http://127.0.0.1:{port}"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        t0 = time.perf_counter()
        _wait_healthy(proc, url, log_path)
        yield Server(url, token, proc.pid, time.perf_counter() - t0)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
