"""GET /v1/activity on both backends: idle time, runs executing, the earliest durable deadline."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from agent_runtime import Runtime, sleep, step, wait_for_signal, workflow
from agent_runtime._http import build_app

TOKEN = "activity-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
release = threading.Event()


@step
def block() -> str:
    release.wait(20)
    return "done"


@workflow
async def busy() -> str:
    return await block()


@workflow
async def nap(seconds: float) -> str:
    await sleep(seconds)
    return "awake"


@workflow
async def ask(timeout: float) -> object:
    return await wait_for_signal("go", timeout=timeout)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def client(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TestClient]:
    db = str(tmp_path / "a.db") if request.param == "sqlite" else request.getfixturevalue("pg_dsn")
    release.clear()
    rt = Runtime(db=db, app=[busy, nap, ask])
    with TestClient(build_app(rt, token=TOKEN)) as c:
        yield c
    release.set()


def activity(c: TestClient) -> dict[str, object]:
    r = c.get("/v1/activity", headers=AUTH)
    assert r.status_code == 200, r.text
    return dict(r.json())


def wait_for(c: TestClient, pred: object, timeout: float = 10.0) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while True:
        a = activity(c)
        if pred(a):  # type: ignore[operator]
            return a
        assert time.monotonic() < deadline, a
        time.sleep(0.05)


def test_needs_the_token_and_probes_do_not_count(client: TestClient) -> None:
    assert client.get("/v1/activity").status_code == 401
    first = activity(client)
    assert first["last_request_at"] is None and first["executing"] == 0
    assert first["next_wake_at"] is None and first["pending"] == 0
    client.get("/healthz")
    client.get("/metrics", headers=AUTH)
    client.get("/v1/runs", headers={"Authorization": "Bearer wrong"})  # 401: not activity
    time.sleep(0.05)
    second = activity(client)
    assert second["last_request_at"] is None
    assert float(second["idle_seconds"]) > float(first["idle_seconds"])  # type: ignore[arg-type]
    before = time.time()
    client.get("/v1/runs", headers=AUTH)
    third = activity(client)
    assert float(third["last_request_at"]) >= before - 0.5  # type: ignore[arg-type]
    assert float(third["idle_seconds"]) < 1.0  # type: ignore[arg-type]


def test_executing_counts_running_steps_not_sleeping_or_waiting_runs(client: TestClient) -> None:
    t0 = time.time()
    client.post("/v1/runs", json={"workflow": "nap", "input": {"seconds": 300}}, headers=AUTH)
    client.post("/v1/runs", json={"workflow": "ask", "input": {"timeout": 120}}, headers=AUTH)
    # Both started (pending 0): until "ask" waits, only the nap's wake time is known.
    a = wait_for(
        client,
        lambda a: a["next_wake_at"] is not None and a["executing"] == 0 and a["pending"] == 0,
    )
    wake = float(a["next_wake_at"])  # type: ignore[arg-type]
    assert t0 + 119 <= wake <= time.time() + 121  # the signal timeout comes first
    client.post("/v1/runs", json={"workflow": "busy", "id": "b1"}, headers=AUTH)
    wait_for(client, lambda a: a["executing"] == 1)
    release.set()
    wait_for(client, lambda a: a["executing"] == 0 and a["pending"] == 0)
    assert client.get("/v1/runs/b1", headers=AUTH).json()["status"] == "completed"
