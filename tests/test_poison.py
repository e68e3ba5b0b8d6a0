"""Poisoned input and poisoned values (issue 11, item 5): whatever a client sends and
whatever workflow code produces, nothing stored may make a later read fail. After every
poisoned attempt, every stored run, its events and every list page still answer 200.
On SQLite and on PostgreSQL."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import apsw
import pytest
from starlette.testclient import TestClient

from agent_runtime import Runtime, sleep, step, wait_for_signal, workflow
from agent_runtime._http import build_app
from agent_runtime._limits import (
    MAX_BUFFERED_SIGNAL_BYTES,
    MAX_BUFFERED_SIGNALS,
    MAX_DEPTH,
    MAX_VALUE_BYTES,
)
from tests.pg_fixtures import pg_dsn, pg_server  # noqa: F401  (fixtures)


def nested(depth: int) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = [value]
    return value


class Opaque:
    pass


POISON: dict[str, Any] = {
    "surrogate": "\ud800",
    "surrogate_key": {"\udfff": 1},
    "nan": math.nan,
    "inf": math.inf,
    "deep": nested(1000),
    "just_too_deep": nested(MAX_DEPTH + 1),
    "opaque": Opaque(),
    "huge": "x" * (MAX_VALUE_BYTES + 1),
}


@step
async def produce(kind: str) -> Any:
    return POISON[kind]


@step
async def raise_poison(kind: str) -> None:
    if kind == "surrogate":
        raise ValueError("bad \ud800 text")
    raise ValueError("x" * 1_000_000)


@workflow
async def step_returns(kind: str) -> str:
    await produce(kind)
    return "unreachable"


@workflow
async def workflow_returns(kind: str) -> Any:
    return POISON[kind]


@workflow
async def step_raises(kind: str) -> None:
    await raise_poison(kind)


@workflow
async def sleeps(seconds: Any) -> str:
    await sleep(float(seconds) if isinstance(seconds, str) else seconds)
    return "woke"


@workflow
async def waits(name: str, timeout: Any = None) -> Any:
    return await wait_for_signal(name, timeout=float(timeout) if timeout else None)


@workflow
async def bad_step_name() -> Any:
    return await step(name="bad\ud800")(produce.fn)("surrogate")


@workflow
async def fine(deep: int = MAX_DEPTH) -> Any:
    return nested(deep)


APP = [step_returns, workflow_returns, step_raises, sleeps, waits, bad_step_name, fine]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def client(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TestClient]:
    db = str(tmp_path / "p.db") if request.param == "sqlite" else request.getfixturevalue("pg_dsn")
    with TestClient(build_app(Runtime(db=db, app=APP)), raise_server_exceptions=False) as c:
        yield c


def wait_status(client: TestClient, run_id: str, *statuses: str) -> dict[str, Any]:
    deadline = time.monotonic() + 15
    run: dict[str, Any] = {}
    while time.monotonic() < deadline:
        r = client.get(f"/v1/runs/{run_id}")
        assert r.status_code == 200, r.text
        run = r.json()
        if run["status"] in statuses:
            return run
        time.sleep(0.02)
    raise AssertionError(f"run {run_id} never reached {statuses}: {run}")


def assert_all_readable(client: TestClient) -> list[str]:
    """Every list page (two runs a page), every run and its events answer 200."""
    ids: list[str] = []
    cursor = None
    while True:
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        page = client.get("/v1/runs", params=params)
        assert page.status_code == 200, page.text
        ids += [r["id"] for r in page.json()["runs"]]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    for run_id in ids:
        assert client.get(f"/v1/runs/{run_id}").status_code == 200
        assert client.get(f"/v1/runs/{run_id}/events").status_code == 200
    assert client.get("/metrics").status_code == 200
    return ids


def submit(client: TestClient, workflow: str, input: dict[str, Any], run_id: str) -> None:
    r = client.post("/v1/runs", json={"workflow": workflow, "input": input, "id": run_id})
    assert r.status_code == 201, r.text


LONE = b'"\\ud800"'
BAD_BODIES = [
    (b'{"workflow": "fine", "id": "s1", "input": {"deep": 1, "x": ' + LONE + b"}}", "surrogate"),
    (b'{"workflow": "fine", "id": "s2", "input": {' + LONE + b": 1}}", "surrogate"),
    (b'{"workflow": "fine", "id": "s3\\udc00"}', "surrogate"),
    (b'{"workflow": "fine\\ud800"}', "surrogate"),
    *[
        (b'{"workflow": "fine", "id": "d", "input": {"x": %s}}' % (b"[" * n + b"]" * n), "nested")
        for n in (MAX_DEPTH + 1, 961, 964, 967, 5000)
    ],
    (b'{"workflow": "fine", "input": {"x": 1e400}}', "Infinity"),
    (b'{"workflow": "fine", "input": {"x": -1e400}}', "Infinity"),
    (b'{"workflow": "fine", "input": {"x": NaN}}', "NaN"),
    (b'{"workflow": "fine", "input": {"x": Infinity}}', "Infinity"),
    (b'{"workflow": "fine", "input": {"x": ' + b"9" * 5000 + b"}}", "not valid JSON"),
    (b'{"workflow": "fine", "input": {"x": "\xff"}}', "not valid JSON"),
    (b'{"workflow": "fine", "id": "x/events"}', "run id"),
    (b'{"workflow": "fine", "id": ".."}', "run id"),
    (b'{"workflow": "fine", "id": "."}', "run id"),
    (b'{"workflow": "fine", "id": "a b"}', "run id"),
    (b'{"workflow": "fine", "id": "-a"}', "run id"),
    (b'{"workflow": "fine", "id": "' + b"a" * 201 + b'"}', "run id"),
    (b'{"workflow": "fine", "id": "a\\u0000"}', "run id"),
    (b'{"workflow": "fine", "id": "caf\\u00e9"}', "run id"),
]


@pytest.mark.parametrize(("body", "needle"), BAD_BODIES, ids=range(len(BAD_BODIES)))
def test_poisoned_submissions_are_refused_and_store_nothing(
    client: TestClient, body: bytes, needle: str
) -> None:
    submit(client, "fine", {"deep": 3}, "ok1")
    r = client.post("/v1/runs", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code in (400, 404, 422), r.text
    assert needle in r.json()["error"]
    assert "Traceback" not in r.text
    assert assert_all_readable(client) == ["ok1"]


def test_poisoned_signals_are_refused(client: TestClient) -> None:
    submit(client, "waits", {"name": "go"}, "w")
    wait_status(client, "w", "waiting")
    for body in (LONE, b"[" * 961 + b"]" * 961, b"1e400", b"NaN", b'{"a": [' + LONE + b"]}"):
        r = client.post("/v1/runs/w/signals/go", content=body)
        assert r.status_code == 400, r.text
        assert_all_readable(client)
    for name in ("%20x", "a%00", "%ED%A0%80", "..%2E", "caf%C3%A9"):
        r = client.post(f"/v1/runs/w/signals/{name}", json=1)
        assert r.status_code in (404, 422), (name, r.text)
    assert wait_status(client, "w", "waiting")
    assert client.post("/v1/runs/w/signals/go", json={"ok": "\u00e9\U0001f600"}).status_code == 202
    done = wait_status(client, "w", "completed")
    assert done["result"] == {"ok": "\u00e9\U0001f600"}
    assert_all_readable(client)


@pytest.mark.parametrize("kind", sorted(POISON))
def test_a_step_returning_a_poisoned_value_fails_the_run_cleanly(
    client: TestClient, kind: str
) -> None:
    submit(client, "step_returns", {"kind": kind}, f"s-{kind}")
    run = wait_status(client, f"s-{kind}", "failed")
    assert run["error"]["type"] == "StepFailed"
    assert "UnstorableValue" in run["error"]["message"]
    events = client.get(f"/v1/runs/s-{kind}/events").json()["events"]
    failed = [e for e in events if e["kind"] == "step_failed"]
    # The same value again would not help: failed at once, not retried.
    assert len(failed) == 1 and failed[0]["attempt"] == 1
    assert not [e for e in events if e["kind"] == "step_attempt_failed"]

    submit(client, "workflow_returns", {"kind": kind}, f"w-{kind}")
    run = wait_status(client, f"w-{kind}", "failed")
    assert (
        run["error"]["type"] == "UnstorableValue" and "workflow result" in (run["error"]["message"])
    )
    assert_all_readable(client)


def test_poisoned_error_messages_are_stored_as_text(client: TestClient) -> None:
    submit(client, "step_raises", {"kind": "surrogate"}, "e1")
    run = wait_status(client, "e1", "failed")
    assert "bad \\ud800 text" in run["error"]["message"]
    submit(client, "step_raises", {"kind": "huge"}, "e2")
    run = wait_status(client, "e2", "failed")
    assert len(run["error"]["message"]) < 10_000 and "truncated" in run["error"]["message"]
    assert_all_readable(client)


@pytest.mark.parametrize(
    ("workflow", "input", "needle"),
    [
        ("sleeps", {"seconds": 1e300}, "sleep() duration must be a finite number"),
        ("sleeps", {"seconds": "inf"}, "sleep() duration must be a finite number"),
        ("sleeps", {"seconds": "nan"}, "sleep() duration must be a finite number"),
        ("sleeps", {"seconds": "-inf"}, "sleep() duration must be a finite number"),
        ("sleeps", {"seconds": 10**400}, "sleep() duration must be a finite number"),
        ("sleeps", {"seconds": "1e300"}, "sleep() duration must be a finite number"),
        ("sleeps", {"seconds": True}, "sleep() duration must be a number"),
        ("waits", {"name": "go", "timeout": "inf"}, "timeout must be a finite number"),
        ("waits", {"name": "go", "timeout": "1e300"}, "timeout must be a finite number"),
        ("waits", {"name": "a/b"}, "signal name must be"),
        ("waits", {"name": ".."}, "signal name must be"),
        ("bad_step_name", {}, "step name must be"),
    ],
)
def test_poisoned_durations_and_names_in_workflows_fail_the_run(
    client: TestClient, workflow: str, input: dict[str, Any], needle: str
) -> None:
    submit(client, workflow, input, "p")
    run = wait_status(client, "p", "failed")
    assert needle in run["error"]["message"], run["error"]
    assert run["wake_at"] is None
    assert_all_readable(client)


def test_a_negative_sleep_is_no_sleep(client: TestClient) -> None:
    submit(client, "sleeps", {"seconds": -5}, "neg")
    assert wait_status(client, "neg", "completed")["result"] == "woke"


def test_values_at_the_depth_limit_are_kept(client: TestClient) -> None:
    submit(client, "fine", {"deep": MAX_DEPTH}, "edge")
    run = wait_status(client, "edge", "completed")
    assert run["result"] == nested(MAX_DEPTH)
    body = {"workflow": "fine", "id": "in", "input": {"deep": 1, "x": nested(MAX_DEPTH - 2)}}
    r = client.post("/v1/runs", json=body)
    assert r.status_code == 422 and "does not fit" in r.json()["error"]  # depth was fine


def test_signals_buffered_per_run_are_capped(client: TestClient) -> None:
    submit(client, "waits", {"name": "go"}, "cap")
    wait_status(client, "cap", "waiting")
    for i in range(MAX_BUFFERED_SIGNALS):
        assert client.post("/v1/runs/cap/signals/other", json=i).status_code == 202
    r = client.post("/v1/runs/cap/signals/other", json=0)
    assert r.status_code == 429 and "signals" in r.json()["error"]
    assert_all_readable(client)

    submit(client, "waits", {"name": "go"}, "bytes")
    wait_status(client, "bytes", "waiting")
    chunk = "x" * (MAX_BUFFERED_SIGNAL_BYTES // 5)  # each under the 1 MiB body limit
    for _ in range(4):
        assert client.post("/v1/runs/bytes/signals/other", json=chunk).status_code == 202
    r = client.post("/v1/runs/bytes/signals/other", json=chunk)
    assert r.status_code == 429 and "bytes" in r.json()["error"]
    # a signal that is consumed frees its place: the run still takes the one it waits for
    assert client.post("/v1/runs/bytes/signals/go", json="small").status_code == 202
    assert wait_status(client, "bytes", "completed")["result"] == "small"
    assert_all_readable(client)


def test_an_unexpected_error_is_json_500_without_a_trace(tmp_path: Path) -> None:
    rt = Runtime(db=str(tmp_path / "x.db"), app=APP)
    with TestClient(build_app(rt), raise_server_exceptions=False) as c:
        submit(c, "fine", {"deep": 1}, "r")
        c.portal.call(rt.store.close)  # the database goes away under the API
        r = c.get("/v1/runs/r")
        assert r.status_code == 500
        assert r.json() == {"error": "internal error (see the runtime's log)"}
        assert "Traceback" not in r.text and "store is not open" not in r.text


def test_values_written_by_an_older_runtime_are_served(tmp_path: Path) -> None:
    """A database from before these checks may hold a lone surrogate, Infinity or a wake
    time past year 9999: reads of it answer 200 (escaped, null), not 500."""
    db = tmp_path / "old.db"
    with TestClient(build_app(Runtime(db=str(db), app=APP))) as c:
        submit(c, "waits", {"name": "go"}, "old")
        wait_status(c, "old", "waiting")
    conn = apsw.Connection(str(db))
    conn.execute(
        "UPDATE runs SET input = ?, result = ?, wake_at = 1e300 WHERE id = 'old'",
        ('{"name":"\\ud800"}', '{"x":Infinity,"y":NaN}'),
    )
    conn.close()
    with TestClient(build_app(Runtime(db=str(db), app=APP))) as c:
        r = c.get("/v1/runs/old")
        assert r.status_code == 200, r.text
        assert r.json()["input"] == {"name": "\ud800"} and r.json()["wake_at"] is None
        assert r.json()["result"] == {"x": None, "y": None}
        assert c.get("/v1/runs").status_code == 200
