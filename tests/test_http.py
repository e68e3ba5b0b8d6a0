"""The HTTP API, driven as a client would (Starlette's TestClient runs the lifespan)."""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

import agent_runtime.examples as examples
from agent_runtime import Runtime
from agent_runtime._http import MAX_BODY, build_app

TOKEN = "test-token-123"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    rt = Runtime(db=str(tmp_path / "api.db"), app=examples)
    with TestClient(build_app(rt, token=TOKEN)) as c:
        c.headers.update(AUTH)
        yield c


def wait_status(client: TestClient, run_id: str, *statuses: str) -> dict:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        run = client.get(f"/v1/runs/{run_id}").json()
        if run["status"] in statuses:
            return run
        time.sleep(0.02)
    raise AssertionError(f"run {run_id} never reached {statuses}: {run}")


def test_healthz_needs_no_token_everything_else_does(client: TestClient) -> None:
    bare = TestClient(client.app)
    assert bare.get("/healthz").status_code == 200
    for path in ("/v1/runs", "/v1/workflows", "/metrics", "/v1/runs/x"):
        assert bare.get(path).status_code == 401
    wrong = bare.get("/v1/runs", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and "token" in wrong.json()["error"]
    assert TOKEN not in wrong.text


def test_submit_get_and_idempotent_id(client: TestClient) -> None:
    r = client.post("/v1/runs", json={"workflow": "echo", "input": {"message": "hi"}, "id": "e1"})
    assert r.status_code == 201
    body = r.json()
    assert set(body) >= {
        "id",
        "workflow",
        "status",
        "input",
        "result",
        "error",
        "created_at",
        "updated_at",
    }
    assert body["id"] == "e1" and body["status"] in ("pending", "running", "completed")
    done = wait_status(client, "e1", "completed")
    assert done["result"] == {"message": "hi"} and done["error"] is None
    again = client.post(
        "/v1/runs", json={"workflow": "echo", "input": {"message": "x"}, "id": "e1"}
    )
    assert again.status_code == 200 and again.json()["input"] == {"message": "hi"}
    listed = client.get("/v1/runs").json()["runs"]
    assert [r["id"] for r in listed] == ["e1"]


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        (b'{"workflow": "nope"}', 404, "unknown workflow"),
        (b"{not json", 400, "not valid JSON"),
        (b"", 422, "empty"),
        (b"[1, 2]", 422, "JSON object"),
        (b'{"workflow": 3}', 422, "workflow"),
        (b'{"workflow": "echo", "input": [1]}', 422, "input"),
        (b'{"workflow": "echo", "input": {"wrong": 1}}', 422, "does not fit"),
        (b'{"workflow": "echo", "extra": 1}', 422, "unknown field"),
        (b'{"workflow": "echo", "id": 5}', 422, "id"),
        (b'{"workflow": "echo", "input": {"message": NaN}}', 400, "NaN"),
        (b"[" * 100_000 + b"]" * 100_000, 400, "nested"),
    ],
)
def test_bad_submissions(client: TestClient, body: bytes, status: int, needle: str) -> None:
    r = client.post("/v1/runs", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == status, r.text
    assert needle in r.json()["error"]


def test_body_over_one_mib_is_413(client: TestClient) -> None:
    big = b'{"workflow": "echo", "input": {"message": "' + b"a" * MAX_BODY + b'"}}'
    r = client.post("/v1/runs", content=big)
    assert r.status_code == 413


def test_signal_cancel_events_and_errors(client: TestClient) -> None:
    client.post("/v1/runs", json={"workflow": "research", "input": {"topic": "sqlite"}, "id": "r"})
    wait_status(client, "r", "waiting")
    sig = client.post("/v1/runs/r/signals/approve", json={"approved": True})
    assert sig.status_code == 202
    done = wait_status(client, "r", "completed")
    assert done["result"]["approved"] is True and done["result"]["report"]
    events = client.get("/v1/runs/r/events").json()["events"]
    kinds = [e["kind"] for e in events]
    assert kinds[0] == "run_submitted" and kinds[-1] == "run_completed"
    assert "signal_wait_started" in kinds and "signal_received" in kinds
    assert [e["seq"] for e in events] == sorted(e["seq"] for e in events)
    # a finished run takes no more signals; unknown runs are 404
    assert client.post("/v1/runs/r/signals/approve", json=1).status_code == 409
    assert client.post("/v1/runs/zzz/signals/approve", json=1).status_code == 404
    assert client.get("/v1/runs/zzz").status_code == 404
    assert client.get("/v1/runs/zzz/events").status_code == 404
    assert client.post("/v1/runs/zzz/cancel").status_code == 404

    client.post("/v1/runs", json={"workflow": "steps", "input": {"n": 3, "sleep": 30}, "id": "c"})
    wait_status(client, "c", "sleeping")
    cancelled = client.post("/v1/runs/c/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"


def test_list_filters_paging_and_validation(client: TestClient) -> None:
    for i in range(3):
        client.post(
            "/v1/runs", json={"workflow": "echo", "input": {"message": str(i)}, "id": f"e{i}"}
        )
    client.post("/v1/runs", json={"workflow": "steps", "input": {"n": 1}, "id": "s"})
    for rid in ("e0", "e1", "e2", "s"):
        wait_status(client, rid, "completed")
    page = client.get("/v1/runs", params={"workflow": "echo", "limit": 2}).json()
    assert [r["id"] for r in page["runs"]] == ["e2", "e1"]
    rest = client.get("/v1/runs", params={"workflow": "echo", "cursor": page["next_cursor"]}).json()
    assert [r["id"] for r in rest["runs"]] == ["e0"] and rest["next_cursor"] is None
    assert len(client.get("/v1/runs", params={"status": "completed"}).json()["runs"]) == 4
    assert client.get("/v1/runs", params={"status": "nope"}).status_code == 422
    assert client.get("/v1/runs", params={"limit": "x"}).status_code == 422
    assert client.get("/v1/runs", params={"limit": "0"}).status_code == 422
    assert client.get("/v1/runs", params={"cursor": "abc"}).status_code == 422
    assert client.get("/v1/runs", params={"cursor": "9" * 30}).status_code == 422
    assert client.get("/v1/runs", params={"cursor": "\u00b2"}).status_code == 422
    assert client.get("/v1/runs", params={"limit": "\u00b2"}).status_code == 422


def test_workflows_and_metrics(client: TestClient) -> None:
    names = [w["name"] for w in client.get("/v1/workflows").json()["workflows"]]
    with_pai = ["research_pai"] if importlib.util.find_spec("pydantic_ai") else []
    assert names == ["echo", "research", *with_pai, "steps"]
    client.post("/v1/runs", json={"workflow": "steps", "input": {"n": 4}, "id": "m"})
    wait_status(client, "m", "completed")
    text = client.get("/metrics").text
    assert 'agent_runtime_runs{status="completed"} 1' in text
    for series in (
        "agent_runtime_steps_committed_total",
        "agent_runtime_commit_seconds_bucket",
        "agent_runtime_group_commit_batch_size_count",
    ):
        assert series in text
