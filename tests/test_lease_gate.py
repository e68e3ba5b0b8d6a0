"""The lease gate: steps run and commits happen only while the lease file confirms the
tenant's lease; writes get 503, reads keep working, /healthz says degraded; execution
resumes by itself, without a repeated or lost recorded step. On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from agent_runtime import Runtime, step, workflow
from agent_runtime._http import build_app
from agent_runtime._lease_gate import MARGIN, NEAR, POLL, LeaseGate, LeaseUnconfirmed
from tests.pg_fixtures import pg_dsn, pg_server  # noqa: F401  (fixtures)


def write_lease(path: Path, state: str, valid_for: float, reason: str = "renewed") -> None:
    """As the supervisor does: a temporary file, then rename over the lease file."""
    body = {
        "valid_until": time.monotonic() + valid_for,
        "state": state,
        "since": time.time(),
        "reason": reason,
    }
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(body))
    os.replace(tmp, path)


class Clock:
    def __init__(self) -> None:
        self.now = time.monotonic()

    def __call__(self) -> float:
        return self.now


# -- the gate alone, on a clock the test moves ----------------------------------------


def test_gate_follows_the_file_and_its_deadline(tmp_path: Path) -> None:
    path, clock = tmp_path / "lease.json", Clock()
    gate = LeaseGate(str(path), clock=clock)
    assert not gate.allows() and gate.state().state == "missing"
    with pytest.raises(LeaseUnconfirmed, match="no lease file"):
        gate.check()

    clock.now += 1
    path.write_text(json.dumps({"valid_until": clock.now + 10, "state": "held", "since": 1.0}))
    assert gate.allows() and gate.state().state == "held" and gate.state().held
    clock.now += 10 - MARGIN  # within the margin of valid_until: closed
    assert not gate.allows()
    expired = gate.state()
    assert expired.state == "expired" and not expired.held and "deadline" in expired.reason

    clock.now += 1
    path.write_text("{not json")
    assert not gate.allows() and gate.state().state == "unreadable"
    clock.now += 1
    path.write_text(json.dumps({"valid_until": "soon", "state": "held"}))
    assert not gate.allows() and "valid_until" in gate.state().reason
    clock.now += 1
    path.write_text(json.dumps({"valid_until": clock.now + 10, "state": "taken"}))
    assert not gate.allows() and "state" in gate.state().reason


def test_gate_rereads_only_near_the_deadline_and_at_a_bounded_rate(tmp_path: Path) -> None:
    path, clock = tmp_path / "lease.json", Clock()
    path.write_text(json.dumps({"valid_until": clock.now + 60, "state": "held", "since": 1.0}))
    gate = LeaseGate(str(path), clock=clock)
    assert gate.allows()
    # The supervisor writes "unconfirmed": the cached deadline stands until NEAR of it
    # (valid_until is a promise), then the file is read again.
    path.write_text(json.dumps({"valid_until": 0, "state": "unconfirmed", "since": 2.0}))
    clock.now += 60 - MARGIN - NEAR - 1
    assert gate.allows()
    clock.now += 1
    assert not gate.allows() and gate.state().state == "unconfirmed"
    # Held again: seen at the next read, not before POLL has passed.
    path.write_text(
        json.dumps({"valid_until": clock.now + 60, "state": "held", "since": 3.0, "x": 1})
    )
    assert not gate.allows()
    clock.now += POLL
    assert gate.allows() and gate.state().since == 3.0


# -- the runtime behind the gate ------------------------------------------------------

CALLS: Counter[int] = Counter()
EVENTS: dict[str, asyncio.Event] = {}


@step
async def work(i: int) -> int:
    CALLS[i] += 1
    if i == 2 and CALLS[i] == 1:
        EVENTS["in_flight"].set()
        await EVENTS["release"].wait()  # finishes after the lease is gone
    return i * 10


@workflow
async def leased(n: int) -> list[int]:
    return [await work(i) for i in range(n)]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "gate.db")
    return str(request.getfixturevalue("pg_dsn"))


async def _until(condition: Any, what: str) -> None:
    for _ in range(3000):  # bounded: 30 s
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never happened: {what}")


def test_no_step_without_the_lease_and_resumption_by_itself(db: str, tmp_path: Path) -> None:
    lease = tmp_path / "lease.json"

    async def main() -> None:
        CALLS.clear()
        EVENTS.update(in_flight=asyncio.Event(), release=asyncio.Event())
        # Valid for a few seconds only, so that the gate reads the file at each POLL.
        write_lease(lease, "held", NEAR + MARGIN)
        rt = Runtime(db=db, app=[leased], lease_file=str(lease))
        transport = httpx.ASGITransport(app=build_app(rt))
        async with rt, httpx.AsyncClient(transport=transport, base_url="http://rt") as api:
            r = await api.post("/v1/runs", json={"workflow": "leased", "input": {"n": 5}})
            assert r.status_code == 201, r.text
            run_id = r.json()["id"]
            await EVENTS["in_flight"].wait()  # steps 0 and 1 recorded, step 2 running

            write_lease(lease, "unconfirmed", 0, reason="store unreachable")
            await _until(lambda: not rt.lease().held, "the gate closed")  # type: ignore[union-attr]
            EVENTS["release"].set()  # step 2 finishes late: discarded, run interrupted
            await _until(lambda: run_id not in rt._active, "the run was interrupted")

            health = await api.get("/healthz")
            assert health.status_code == 200
            body = health.json()
            assert body["status"] == "degraded"
            assert body["lease"]["state"] == "unconfirmed"
            assert body["lease"]["reason"] == "store unreachable" and body["lease"]["since"]
            for path, payload in [
                ("/v1/runs", {"workflow": "leased", "input": {"n": 1}}),
                (f"/v1/runs/{run_id}/signals/go", {}),
                (f"/v1/runs/{run_id}/cancel", None),
            ]:
                refused = await api.post(path, json=payload)
                assert refused.status_code == 503, (path, refused.text)
                assert (
                    int(refused.headers["Retry-After"]) > 0 and "lease" in refused.json()["error"]
                )
            run = (await api.get(f"/v1/runs/{run_id}")).json()
            assert run["status"] == "running"  # interrupted, not failed
            events = (await api.get(f"/v1/runs/{run_id}/events")).json()["events"]
            assert [e["position"] for e in events if e["kind"] == "step_completed"] == [0, 1]
            assert "agent_runtime_lease_held 0" in (await api.get("/metrics")).text

            write_lease(lease, "held", 60)  # confirmed again: resumes with no restart
            done = await rt.wait(run_id, timeout=30)
            assert done.status == "completed" and done.result == [0, 10, 20, 30, 40]
            history = await rt.history(run_id)
            outcomes = [e.position for e in history if e.kind == "step_completed"]
            assert outcomes == [0, 1, 2, 3, 4]  # each recorded once, none lost
            assert not [e for e in history if e.kind in ("step_failed", "run_failed")]
            assert CALLS[2] == 2 and CALLS[3] == 1  # the late step ran again, once
            assert (await api.get("/healthz")).json()["status"] == "ok"
            assert "agent_runtime_lease_held 1" in (await api.get("/metrics")).text

    asyncio.run(main())


def test_no_lease_file_changes_nothing(tmp_path: Path) -> None:
    async def main() -> None:
        CALLS.clear()
        EVENTS.update(in_flight=asyncio.Event(), release=asyncio.Event())
        EVENTS["release"].set()
        rt = Runtime(db=str(tmp_path / "plain.db"), app=[leased])
        transport = httpx.ASGITransport(app=build_app(rt))
        async with rt, httpx.AsyncClient(transport=transport, base_url="http://rt") as api:
            assert (await api.get("/healthz")).json() == {"status": "ok", "backend": "sqlite"}
            r = await api.post("/v1/runs", json={"workflow": "leased", "input": {"n": 3}})
            assert (await rt.wait(r.json()["id"], timeout=30)).result == [0, 10, 20]
            assert "agent_runtime_lease" not in (await api.get("/metrics")).text

    asyncio.run(main())


def test_a_runtime_starts_without_a_confirmed_lease_and_waits(tmp_path: Path) -> None:
    lease = tmp_path / "lease.json"

    async def main() -> None:
        CALLS.clear()
        EVENTS.update(in_flight=asyncio.Event(), release=asyncio.Event())
        EVENTS["release"].set()
        async with Runtime(db=str(tmp_path / "w.db"), app=[leased]) as rt:
            run = await rt.submit("leased", {"n": 3})  # written while unleased: none yet
            await rt.wait(run.id, timeout=30)
        write_lease(lease, "unconfirmed", 0, reason="starting")
        async with Runtime(db=str(tmp_path / "w.db"), app=[leased], lease_file=str(lease)) as rt:
            assert rt.lease() is not None and not rt.lease().held  # type: ignore[union-attr]
            with pytest.raises(LeaseUnconfirmed):
                await rt.submit("leased", {"n": 1})
            write_lease(lease, "held", 60)
            await _until(lambda: rt.lease().held, "the gate opened")  # type: ignore[union-attr]
            second = await rt.submit("leased", {"n": 2})
            assert (await rt.wait(second.id, timeout=30)).result == [0, 10]

    asyncio.run(main())
