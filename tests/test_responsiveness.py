"""The API and other runs are served while a run is busy; a blocked loop is reported.

No clocks: the busy run is long (40,000 steps) and the test checks the order in which
things finished, by the store's own record; the blocking step blocks until the watchdog
has spoken.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
from structlog.testing import capture_logs

from agent_runtime import Runtime, _metrics, step, workflow
from agent_runtime._http import build_app

HOT_STEPS = 40_000
HOT_STARTED: list[asyncio.Event] = []


@step
async def tick(i: int) -> int:
    if i == 100:
        HOT_STARTED[-1].set()
    return i


@workflow
async def hot_loop(n: int) -> int:
    for i in range(n):
        await tick(i)
    return n


@workflow
async def small() -> str:
    for i in range(3):
        await tick(-1 - i)
    return "small"


LOGS: list[list[dict[str, Any]]] = []  # the list capture_logs fills, for the step below


def still_blocked_reported() -> bool:
    return any(e.get("event") == "event_loop_blocked" and e.get("still") for e in LOGS[-1])


@step
async def hog() -> str:
    # Blocking without await, as a careless agent would write it: holds the loop until the
    # watchdog has reported it (bounded, so a broken watchdog fails the test, not hangs it).
    deadline = time.monotonic() + 60
    while not still_blocked_reported() and time.monotonic() < deadline:
        time.sleep(0.01)
    return "done"


@workflow
async def hogs_the_loop() -> str:
    return str(await hog())


def test_a_run_submitted_beside_a_hot_run_completes_first(tmp_path: Path) -> None:
    async def main() -> None:
        HOT_STARTED.append(asyncio.Event())
        rt = Runtime(db=str(tmp_path / "hot.db"), app=[hot_loop, small])
        transport = httpx.ASGITransport(app=build_app(rt))
        async with rt, httpx.AsyncClient(transport=transport, base_url="http://rt") as api:
            r = await api.post("/v1/runs", json={"workflow": "hot_loop", "input": {"n": HOT_STEPS}})
            hot = r.json()["id"]
            await HOT_STARTED[-1].wait()  # the hot run executes its steps now
            assert (await api.get("/healthz")).status_code == 200
            r = await api.post("/v1/runs", json={"workflow": "small"})
            assert r.status_code == 201
            side = await rt.wait(r.json()["id"], timeout=600)
            assert side.status == "completed"
            assert (await rt.get(hot)).status == "running"  # still busy
            done = await rt.wait(hot, timeout=600)
            assert done.status == "completed" and done.result == HOT_STEPS
            assert side.updated_at < done.updated_at

    asyncio.run(main())


def test_a_blocked_loop_is_reported_with_workflow_and_step(tmp_path: Path) -> None:
    async def main() -> tuple[str, list[dict[str, Any]]]:
        async with Runtime(
            db=str(tmp_path / "hog.db"), app=[hogs_the_loop], loop_block_threshold=0.05
        ) as rt:
            with capture_logs() as logs:
                LOGS.append(logs)
                run = await rt.submit("hogs_the_loop")
                done = await rt.wait(run.id, timeout=120)
                # The final report is written by the watchdog's thread once the loop is back.
                while not any(e.get("blocked_s", 0) and not e.get("still") for e in logs):
                    await asyncio.sleep(0.01)
            assert done.status == "completed"
            return run.id, logs

    blocked_before = _metrics.LOOP_BLOCKED.count
    run_id, logs = asyncio.run(main())
    warnings = [e for e in logs if e["event"] == "event_loop_blocked"]
    assert warnings, logs
    for w in warnings:
        assert w["log_level"] == "warning"
        assert (w["run_id"], w["workflow"], w["step"], w["in"]) == (
            run_id,
            "hogs_the_loop",
            "hog",
            "step",
        )
        assert "test_responsiveness.py" in w["at"]
    final = [w for w in warnings if not w.get("still")]
    assert len(final) == 1 and final[0]["blocked_s"] >= 0.05
    assert _metrics.LOOP_BLOCKED.count == blocked_before + 1
    exposed = _metrics.render({}, [])
    assert f"agent_runtime_event_loop_blocked_seconds_count {blocked_before + 1}" in exposed
