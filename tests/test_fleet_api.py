"""fleet's runtime API client against a real `agent-runtime serve` on loopback (no Docker)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from fleet.core.errors import FleetTimeout, RuntimeApiError
from fleet.ops.api import RuntimeClient

from .fleet_support import free_port

TOKEN = "test-token-" + "x" * 20


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    db = tmp_path_factory.mktemp("api") / "tenant.db"
    port = free_port()
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("agent-runtime")),
            "serve",
            "--db",
            str(db),
            "--app",
            "agent_runtime.examples",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        env={**os.environ, "AGENT_RUNTIME_TOKEN": TOKEN},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if RuntimeClient(url, TOKEN).healthy():
                break
            assert proc.poll() is None, "agent-runtime serve exited"
            time.sleep(0.1)
        else:
            pytest.fail("agent-runtime serve did not become healthy")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_submit_wait_list(server: str) -> None:
    with RuntimeClient(server, TOKEN) as api:
        run = api.submit("steps", {"n": 3}, "api-steps-1")
        assert run["id"] == "api-steps-1"
        done = api.wait("api-steps-1", timeout=30)
        assert done["status"] == "completed" and done["result"] == 3
        # The id is an idempotency key: a second submit returns the same run.
        again = api.submit("steps", {"n": 3}, "api-steps-1")
        assert again["status"] == "completed"
        ids = [r["id"] for r in api.list_runs(status="completed")]
        assert "api-steps-1" in ids
        kinds = [e["kind"] for e in api.events("api-steps-1")]
        assert kinds.count("step_completed") == 3


def test_list_follows_cursors(server: str) -> None:
    with RuntimeClient(server, TOKEN) as api:
        for i in range(7):
            api.submit("echo", {"message": str(i)}, f"page-{i}")
        everything = api.list_runs(workflow="echo", limit=1000)
        assert {f"page-{i}" for i in range(7)} <= {r["id"] for r in everything}
        assert len(api.list_runs(workflow="echo", limit=3)) == 3


def test_signal_and_cancel(server: str) -> None:
    with RuntimeClient(server, TOKEN) as api:
        api.submit("research", {"topic": "x"}, "sig-1")
        deadline = time.monotonic() + 30
        while api.get("sig-1")["status"] != "waiting":
            assert time.monotonic() < deadline, api.get("sig-1")
            time.sleep(0.1)
        api.submit("steps", {"n": 2, "sleep": 60}, "cancel-1")
        cancelled = api.cancel("cancel-1")
        assert api.wait("cancel-1", 30)["status"] == "cancelled", cancelled
        with pytest.raises(RuntimeApiError, match="409"):
            api.signal("cancel-1", "approve", {"ok": True})


def test_errors_are_one_line(server: str) -> None:
    with RuntimeClient(server, "wrong-token") as api:
        with pytest.raises(RuntimeApiError, match="401") as info:
            api.get("nope")
        assert TOKEN not in info.value.line() and "wrong-token" not in info.value.line()
    with RuntimeClient(server, TOKEN) as api:
        with pytest.raises(RuntimeApiError, match="404"):
            api.get("no-such-run")
        with pytest.raises(RuntimeApiError, match="404"):
            api.submit("no-such-workflow", {})
        api.submit("steps", {"n": 1, "sleep": 0}, "slow-0")
        api.submit("steps", {"n": 2, "sleep": 30}, "slow-1")
        with pytest.raises(FleetTimeout):
            api.wait("slow-1", timeout=0.3)


def test_unreachable_is_mapped() -> None:
    from fleet.core.errors import translate

    with RuntimeClient(f"http://127.0.0.1:{free_port()}", TOKEN) as api:
        assert not api.healthy()
        with pytest.raises(httpx.ConnectError) as info:
            api.get("x")
    err = translate(info.value)
    assert err is not None and err.exit_code == 6
