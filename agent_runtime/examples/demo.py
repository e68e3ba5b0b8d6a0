"""Runtime demo: serve the examples, drive a research agent through the HTTP API, kill the
server with SIGKILL mid-run and show the run resume where it stopped.

    python -m agent_runtime.examples.demo
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Server:
    def __init__(self, db: Path) -> None:
        self.db = db
        self.port = _free_port()
        self.token = secrets.token_urlsafe(16)
        self.proc: subprocess.Popen[bytes] | None = None
        self.client = httpx.Client(
            base_url=f"http://127.0.0.1:{self.port}",
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=10,
        )

    def start(self) -> None:
        exe = Path(sys.executable).parent / "agent-runtime"
        self.proc = subprocess.Popen(
            [
                str(exe),
                "serve",
                "--db",
                str(self.db),
                "--app",
                "agent_runtime.examples",
                "--port",
                str(self.port),
                "--log-level",
                "warning",
            ],
            env={**os.environ, "AGENT_RUNTIME_TOKEN": self.token},
        )
        for _ in range(200):
            try:
                if self.client.get("/healthz").status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.05)
        raise SystemExit("demo: agent-runtime did not start")

    def call(self, method: str, path: str, **kw: Any) -> Any:
        r = self.client.request(method, path, **kw)
        r.raise_for_status()
        return r.json()

    def wait(self, run_id: str, *statuses: str, timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run: dict[str, Any] = self.call("GET", f"/v1/runs/{run_id}")
            if run["status"] in statuses:
                return run
            time.sleep(0.05)
        raise SystemExit(f"demo: run {run_id} did not reach {statuses}")


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="agent-runtime-demo-") as tmp:
        db = Path(tmp) / "tenant.db"
        srv = _Server(db)
        print(f"1. agent-runtime serve --db {db} --app agent_runtime.examples")
        srv.start()
        run = srv.call(
            "POST", "/v1/runs", json={"workflow": "research", "input": {"topic": "durable agents"}}
        )
        print(f"2. POST /v1/runs research -> {run['id']} ({run['status']})")
        srv.wait(run["id"], "waiting")
        print("3. the agent planned and called its tools; it now waits for a human: status=waiting")
        srv.call("POST", f"/v1/runs/{run['id']}/signals/approve", json={"approved": True})
        done = srv.wait(run["id"], "completed")
        print(f"4. signal approve -> {done['status']}: {done['result']['report'][:70]}...")

        long = srv.call(
            "POST", "/v1/runs", json={"workflow": "steps", "input": {"n": 20, "sleep": 0.1}}
        )
        time.sleep(1.0)
        before = [
            e
            for e in srv.call("GET", f"/v1/runs/{long['id']}/events")["events"]
            if e["kind"] == "step_completed"
        ]
        assert srv.proc is not None
        srv.proc.send_signal(signal.SIGKILL)
        srv.proc.wait()
        print(f"5. steps run {long['id']}: {len(before)}/20 steps done, then kill -9 the server")
        srv.start()
        done = srv.wait(long["id"], "completed")
        after = [
            e
            for e in srv.call("GET", f"/v1/runs/{long['id']}/events")["events"]
            if e["kind"] == "step_completed"
        ]
        same = all(a == b for a, b in zip(before, after, strict=False))
        print(
            f"6. restarted: run {done['status']} with result {done['result']}; "
            f"{len(after)} steps recorded once each, the {len(before)} from before the "
            f"kill unchanged: {same}"
        )
        print("\nTimeline of the research run:")
        for e in srv.call("GET", f"/v1/runs/{run['id']}/events")["events"]:
            label = e["name"] or ""
            print(f"  {e['seq']:>4}  {e['at'][11:23]}  {e['kind']:<20} {label}")
        assert srv.proc is not None
        srv.proc.send_signal(signal.SIGTERM)
        code = srv.proc.wait(30)
        print(f"\nSIGTERM -> drained and exited {code}")
        return 0 if same and code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
