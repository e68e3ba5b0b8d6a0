"""Engine semantics: replay, retries, timers, signals, cancel, idempotent ids,
non-determinism, recorded values. Real SQLite files, no mocks."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

import agent_runtime as ar
from agent_runtime import (
    NonDeterminismError,
    RetryPolicy,
    Runtime,
    SignalTimeout,
    StepFailed,
    sleep,
    step,
    wait_for_signal,
    workflow,
)
from tests.pg_fixtures import pg_dsn, pg_server  # noqa: F401  (fixtures)

CALLS: Counter[str] = Counter()


def run(coro: Awaitable[Any]) -> Any:
    return asyncio.run(coro)  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def _reset_calls() -> None:
    CALLS.clear()


@step
async def count(tag: str) -> str:
    CALLS[tag] += 1
    return f"{tag}-done"


@step
def blocking_double(x: int) -> int:
    CALLS["blocking"] += 1
    return x * 2


@workflow
async def two_steps_then_signal(x: int) -> dict[str, Any]:
    a = await count("a")
    b = await blocking_double(x)
    approval = await wait_for_signal("approve")
    c = await count("c")
    return {"a": a, "b": b, "approval": approval, "c": c}


FLAKY_FAILURES = {"left": 0}


@step(retry=RetryPolicy(max_attempts=5, initial_interval=0.01, backoff=2, max_interval=0.05))
async def flaky() -> str:
    CALLS["flaky"] += 1
    if FLAKY_FAILURES["left"] > 0:
        FLAKY_FAILURES["left"] -= 1
        raise ConnectionError("upstream hiccup")
    return "ok"


@workflow
async def uses_flaky() -> str:
    return str(await flaky())


@step(retry=RetryPolicy(max_attempts=5, initial_interval=0.01, non_retryable=(KeyError,)))
async def fails_permanently() -> None:
    CALLS["permanent"] += 1
    raise KeyError("no such account")


@workflow
async def catches_step_failure() -> dict[str, Any]:
    try:
        await fails_permanently()
    except StepFailed as exc:
        return {"caught": exc.error_type, "attempts": exc.attempts}
    return {"caught": None}


@step(retry=RetryPolicy(max_attempts=2, initial_interval=0.01))
async def always_fails() -> None:
    raise RuntimeError("boom")


@workflow
async def fails() -> None:
    await always_fails()


@workflow
async def sleeper(seconds: float) -> float:
    started = await ar.now()  # time.time() would be re-read on replay
    await count("before")
    await sleep(seconds)
    await count("after")
    return ((await ar.now()) - started).total_seconds()


@workflow
async def waits_with_timeout(timeout: float) -> str:
    try:
        return str(await wait_for_signal("go", timeout=timeout))
    except SignalTimeout:
        return "timed out"


@workflow
async def records_values() -> dict[str, Any]:
    t = await ar.now()
    r = await ar.random()
    u = await ar.uuid4()
    await wait_for_signal("continue")
    return {"now": t.isoformat(), "random": r, "uuid": u}


@step(timeout=0.05, retry=RetryPolicy(max_attempts=2, initial_interval=0.01))
async def too_slow() -> None:
    await asyncio.sleep(1)


@workflow
async def times_out() -> None:
    await too_slow()


@step
async def slow_step() -> str:
    await asyncio.sleep(5)
    return "finished"


@workflow
async def long_running() -> str:
    return str(await slow_step())


@workflow
async def parallel_steps() -> list[str]:
    return list(await asyncio.gather(count("p1"), count("p2"), count("p3")))


APP = [
    two_steps_then_signal,
    uses_flaky,
    catches_step_failure,
    fails,
    sleeper,
    waits_with_timeout,
    records_values,
    times_out,
    long_running,
    parallel_steps,
]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The same engine tests on each backend: a SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return str(tmp_path / "t.db")
    return str(request.getfixturevalue("pg_dsn"))


def with_runtime(
    db: Path | str, body: Callable[[Runtime], Awaitable[Any]], app: list[Any] = APP
) -> Any:
    async def main() -> Any:
        async with Runtime(db=str(db), app=app) as rt:
            return await body(rt)

    return run(main())


def kinds(events: list[ar.Event]) -> list[str]:
    return [e.kind for e in events]


def test_completed_steps_are_not_rerun_after_restart(db: str) -> None:
    async def first(rt: Runtime) -> str:
        r = await rt.submit("two_steps_then_signal", {"x": 21}, id="r1")
        for _ in range(100):
            if (await rt.get("r1")).status == "waiting":
                break
            await asyncio.sleep(0.02)
        return r.id

    with_runtime(db, first)
    assert CALLS == {"a": 1, "blocking": 1}

    async def second(rt: Runtime) -> ar.Run:
        await rt.signal("r1", "approve", {"by": "alice"})
        return await rt.wait("r1", timeout=10)

    done = with_runtime(db, second)
    assert done.status == "completed"
    assert done.result == {"a": "a-done", "b": 42, "approval": {"by": "alice"}, "c": "c-done"}
    assert CALLS == {"a": 1, "blocking": 1, "c": 1}  # a and b replayed, not re-executed


def test_history_is_ordered_and_complete(db: str) -> None:
    async def body(rt: Runtime) -> list[ar.Event]:
        await rt.submit("two_steps_then_signal", {"x": 1}, id="h")
        await rt.signal("h", "approve", True)  # sent before the wait: kept
        await rt.wait("h", timeout=10)
        return await rt.history("h")

    events = with_runtime(db, body)
    assert kinds(events) == [
        "run_submitted",
        "step_completed",
        "step_completed",
        "signal_received",
        "step_completed",
        "run_completed",
    ]
    assert [e.seq for e in events] == sorted(e.seq for e in events)
    assert [e.position for e in events[1:5]] == [0, 1, 2, 3]


def test_retry_records_every_attempt(db: str) -> None:
    FLAKY_FAILURES["left"] = 2

    async def body(rt: Runtime) -> tuple[ar.Run, list[ar.Event]]:
        r = await rt.submit("uses_flaky")
        return await rt.wait(r.id, timeout=10), await rt.history(r.id)

    done, events = with_runtime(db, body)
    assert done.result == "ok"
    assert CALLS["flaky"] == 3
    attempts = [(e.kind, e.attempt) for e in events if e.name and "flaky" in e.name]
    assert attempts == [
        ("step_attempt_failed", 1),
        ("step_attempt_failed", 2),
        ("step_completed", 3),
    ]
    first_failure = next(e for e in events if e.kind == "step_attempt_failed")
    assert first_failure.data["error"] == {"type": "ConnectionError", "message": "upstream hiccup"}
    # retry_at is set when the attempt fails, before the commit stamps created_at
    assert events[0].created_at <= first_failure.data["retry_at"]
    assert first_failure.data["retry_at"] <= first_failure.created_at + 0.05  # max_interval


def test_non_retryable_error_fails_the_step_at_once(db: str) -> None:
    async def body(rt: Runtime) -> ar.Run:
        r = await rt.submit("catches_step_failure")
        return await rt.wait(r.id, timeout=10)

    done = with_runtime(db, body)
    assert done.result == {"caught": "KeyError", "attempts": 1}
    assert CALLS["permanent"] == 1


def test_exhausted_retries_fail_the_run(db: str) -> None:
    async def body(rt: Runtime) -> ar.Run:
        r = await rt.submit("fails")
        return await rt.wait(r.id, timeout=10)

    done = with_runtime(db, body)
    assert done.status == "failed"
    assert done.error is not None
    assert done.error["type"] == "StepFailed"
    assert "after 2 attempt(s): RuntimeError: boom" in done.error["message"]


def test_step_timeout_is_a_retryable_failure(db: str) -> None:
    async def body(rt: Runtime) -> tuple[ar.Run, list[ar.Event]]:
        r = await rt.submit("times_out")
        return await rt.wait(r.id, timeout=10), await rt.history(r.id)

    done, events = with_runtime(db, body)
    assert done.status == "failed"
    assert [e.kind for e in events if e.kind.startswith("step")] == [
        "step_attempt_failed",
        "step_failed",
    ]
    assert "timed out after 0.05 s" in events[1].data["error"]["message"]


def test_durable_sleep_holds_no_task_and_survives_restart(db: str) -> None:
    async def first(rt: Runtime) -> None:
        await rt.submit("sleeper", {"seconds": 1.0}, id="s")
        for _ in range(100):
            if (await rt.get("s")).status == "sleeping":
                break
            await asyncio.sleep(0.01)
        run_ = await rt.get("s")
        assert run_.status == "sleeping"
        assert run_.wake_at is not None and run_.wake_at > time.time()
        assert "s" not in rt._active  # a sleeping run holds no task

    with_runtime(db, first)

    async def second(rt: Runtime) -> ar.Run:
        return await rt.wait("s", timeout=10)

    done = with_runtime(db, second)
    assert done.status == "completed"
    assert done.result >= 1.0
    assert CALLS == {"before": 1, "after": 1}


def test_signal_wait_timeout_raises_in_the_workflow(db: str) -> None:
    async def body(rt: Runtime) -> tuple[ar.Run, ar.Run]:
        a = await rt.submit("waits_with_timeout", {"timeout": 0.2})
        b = await rt.submit("waits_with_timeout", {"timeout": 30})
        await asyncio.sleep(0.1)
        await rt.signal(b.id, "go", "hello")
        return await rt.wait(a.id, timeout=10), await rt.wait(b.id, timeout=10)

    timed_out, signalled = with_runtime(db, body)
    assert timed_out.result == "timed out"
    assert signalled.result == "hello"


def test_signals_are_consumed_once_oldest_first(db: str) -> None:
    @workflow(name="two_waits")
    async def two_waits() -> list[Any]:
        return [await wait_for_signal("n"), await wait_for_signal("n")]

    async def body(rt: Runtime) -> ar.Run:
        r = await rt.submit("two_waits")
        await rt.signal(r.id, "n", 1)
        await rt.signal(r.id, "n", 2)
        await rt.signal(r.id, "n", 3)  # stays buffered
        return await rt.wait(r.id, timeout=10)

    done = with_runtime(db, body, app=[two_waits])
    assert done.result == [1, 2]


def test_signal_to_unknown_run(db: str) -> None:
    async def body(rt: Runtime) -> None:
        with pytest.raises(ar.RunNotFound):
            await rt.signal("nope", "x")

    with_runtime(db, body)


def test_cancel_waiting_and_running_runs(db: str) -> None:
    async def body(rt: Runtime) -> tuple[ar.Run, ar.Run, list[ar.Event]]:
        waiting = await rt.submit("two_steps_then_signal", {"x": 1})
        running = await rt.submit("long_running")
        await asyncio.sleep(0.3)
        assert (await rt.get(running.id)).status == "running"
        c1 = await rt.cancel(waiting.id)
        c2 = await rt.cancel(running.id)
        await asyncio.sleep(0.2)
        assert (await rt.cancel(running.id)).status == "cancelled"  # idempotent
        return c1, c2, await rt.history(running.id)

    c1, c2, events = with_runtime(db, body)
    assert (c1.status, c2.status) == ("cancelled", "cancelled")
    assert kinds(events) == ["run_submitted", "run_cancelled"]


def test_client_chosen_ids_are_idempotent(db: str) -> None:
    async def body(rt: Runtime) -> tuple[bool, bool, int]:
        _, created1 = await rt.submit_run("parallel_steps", {}, id="same")
        _, created2 = await rt.submit_run("parallel_steps", {}, id="same")
        await rt.wait("same", timeout=10)
        page = await rt.list_runs()
        return created1, created2, len(page.runs)

    created1, created2, n = with_runtime(db, body)
    assert (created1, created2, n) == (True, False, 1)
    assert CALLS == {"p1": 1, "p2": 1, "p3": 1}


def test_non_determinism_names_both_commands(db: str) -> None:
    @workflow(name="evolving")
    async def v1() -> str:
        await count("a")
        await wait_for_signal("go")
        return "v1"

    @step
    async def other() -> str:
        return "other"

    @workflow(name="evolving")
    async def v2() -> str:
        await other()
        await wait_for_signal("go")
        return "v2"

    async def first(rt: Runtime) -> None:
        await rt.submit("evolving", id="e")
        for _ in range(100):
            if (await rt.get("e")).status == "waiting":
                return
            await asyncio.sleep(0.01)

    with_runtime(db, first, app=[v1])

    async def second(rt: Runtime) -> ar.Run:
        await rt.signal("e", "go")
        return await rt.wait("e", timeout=10)

    done = with_runtime(db, second, app=[v2])
    assert done.status == "failed"
    assert done.error is not None and done.error["type"] == "NonDeterminismError"
    assert "step 'count'" in done.error["message"]
    assert "step 'other'" in done.error["message"]
    assert "position 0" in done.error["message"]
    assert issubclass(NonDeterminismError, ar.AgentRuntimeError)


def test_recorded_values_are_stable_across_replay(db: str) -> None:
    async def first(rt: Runtime) -> list[ar.Event]:
        await rt.submit("records_values", id="v")
        for _ in range(100):
            if (await rt.get("v")).status == "waiting":
                break
            await asyncio.sleep(0.01)
        return await rt.history("v")

    recorded = with_runtime(db, first)
    values = [e.data["value"] for e in recorded if e.kind == "value_recorded"]
    assert len(values) == 3

    async def second(rt: Runtime) -> ar.Run:
        await rt.signal("v", "continue")
        return await rt.wait("v", timeout=10)

    done = with_runtime(db, second)
    assert done.result["random"] == values[1]
    assert done.result["uuid"] == values[2]
    assert done.result["now"].startswith(time.strftime("%Y-%m-%d", time.gmtime(values[0])))


def test_concurrent_steps_get_deterministic_positions(db: str) -> None:
    async def body(rt: Runtime) -> tuple[ar.Run, list[ar.Event]]:
        r = await rt.submit("parallel_steps")
        return await rt.wait(r.id, timeout=10), await rt.history(r.id)

    done, events = with_runtime(db, body)
    assert done.result == ["p1-done", "p2-done", "p3-done"]
    assert sorted(e.position for e in events if e.kind == "step_completed") == [0, 1, 2]


def test_bad_submissions(db: str) -> None:
    async def body(rt: Runtime) -> None:
        with pytest.raises(ar.WorkflowNotFound):
            await rt.submit("missing")
        with pytest.raises(ar.InvalidInput, match="does not fit"):
            await rt.submit("sleeper", {"wrong": 1})
        with pytest.raises(ar.InvalidInput):
            await rt.submit("sleeper", [1, 2])  # type: ignore[arg-type]
        with pytest.raises(ar.InvalidInput):
            await rt.submit("parallel_steps", id="")
        with pytest.raises(ar.InvalidInput):
            await rt.list_runs(status="bogus")

    with_runtime(db, body)


def test_a_second_process_cannot_open_the_same_database(tmp_path: Path) -> None:
    db = tmp_path / "t.db"

    async def body(rt: Runtime) -> None:
        other = Runtime(db=str(db), app=APP)
        with pytest.raises(ar.StorageError, match="in use by another agent-runtime"):
            await other.start()

    with_runtime(db, body)


def test_list_paging_and_filters(db: str) -> None:
    async def body(rt: Runtime) -> None:
        ids = [(await rt.submit("parallel_steps", id=f"p{i}")).id for i in range(5)]
        waiting = await rt.submit("two_steps_then_signal", {"x": 1}, id="w")
        for i in ids:
            await rt.wait(i, timeout=10)
        first = await rt.list_runs(limit=2)
        assert [r.id for r in first.runs] == ["w", "p4"]
        assert first.next_cursor is not None
        second = await rt.list_runs(limit=2, cursor=first.next_cursor)
        assert [r.id for r in second.runs] == ["p3", "p2"]
        done = await rt.list_runs(status="completed", limit=100)
        assert {r.id for r in done.runs} == set(ids)
        assert done.next_cursor is None
        by_wf = await rt.list_runs(workflow="two_steps_then_signal")
        assert [r.id for r in by_wf.runs] == [waiting.id]

    with_runtime(db, body)


def test_refuses_sqlite_with_the_wal_reset_bug(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import apsw

    monkeypatch.setattr(apsw, "sqlite_lib_version", lambda: "3.40.1")
    rt = Runtime(db=str(tmp_path / "old.db"), app=APP)
    with pytest.raises(ar.StorageError, match=r"3\.40\.1 has the WAL-reset corruption bug"):
        run(rt.start())
    assert not (tmp_path / "old.db").exists()


def test_concurrent_runs_share_commits(db: str) -> None:
    from agent_runtime import _metrics

    ops_before, batches_before = _metrics.BATCH_SIZE.sum, _metrics.BATCH_SIZE.count

    async def body(rt: Runtime) -> list[ar.Run]:
        runs = [await rt.submit("parallel_steps") for _ in range(50)]
        return [await rt.wait(r.id, timeout=30) for r in runs]

    done = with_runtime(db, body)
    assert {r.status for r in done} == {"completed"}
    ops = _metrics.BATCH_SIZE.sum - ops_before
    batches = _metrics.BATCH_SIZE.count - batches_before
    assert ops >= 50 * 4  # 3 steps + completion per run, plus claims
    assert ops / batches > 2, f"{ops} operations in {batches} transactions: no group commit"
