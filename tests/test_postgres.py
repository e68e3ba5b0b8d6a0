"""PostgreSQL-only behaviour: several stores and runtime processes sharing one database,
group commit, LISTEN/NOTIFY wake-ups, recovery from lost connections, clear errors.
The shared Store semantics are in test_store_contract.py."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psycopg
import pytest
import structlog

from agent_runtime import _metrics
from agent_runtime._errors import StorageError
from agent_runtime._postgres import PostgresStore
from agent_runtime._runtime import Runtime
from agent_runtime._store import Event, EventKind, RunStatus, Transition
from tests.pg_fixtures import pg_dsn, pg_server  # noqa: F401  (fixtures)

pytestmark = [pytest.mark.postgres, pytest.mark.anyio]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def quiet_logs() -> Iterator[None]:
    # Other tests may leave structlog writing to a stream pytest has closed since; the
    # retry paths here log warnings, so give them a live one.
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(40),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=False,
    )
    yield


@pytest.fixture
async def stores(pg_dsn: str) -> AsyncIterator[list[PostgresStore]]:  # noqa: F811
    """Three stores on one database: each has its own connections, like three processes."""
    opened = [PostgresStore(pg_dsn) for _ in range(3)]
    for s in opened:
        await s.open()
    try:
        yield opened
    finally:
        for s in opened:
            await s.close()


async def test_stores_sharing_a_database_never_claim_the_same_run(
    stores: list[PostgresStore],
) -> None:
    for i in range(150):
        await stores[0].create_run(f"r{i:03}", "wf", {})
    now = time.time()

    async def claimer(store: PostgresStore, owner: str) -> list[str]:
        got: list[str] = []
        for _ in range(40):
            got += [r.id for r in await store.claim(owner, now, 4, 30.0)]
        return got

    results = await asyncio.gather(
        *(claimer(s, f"w{i}{j}") for i, s in enumerate(stores) for j in range(2))
    )
    claimed = [run_id for got in results for run_id in got]
    assert sorted(claimed) == [f"r{i:03}" for i in range(150)]  # each exactly once
    assert sum(1 for got in results if got) >= 2  # they really competed


async def test_appends_of_concurrent_runs_share_a_transaction(
    stores: list[PostgresStore],
) -> None:
    store = stores[0]
    for i in range(40):
        await store.create_run(f"r{i}", "wf", {})
    runs = await store.claim("w1", time.time(), 100, 30.0)
    assert len(runs) == 40
    commits, jobs = _metrics.BATCH_SIZE.count, _metrics.BATCH_SIZE.sum
    step = Event(EventKind.STEP_COMPLETED, 0, "s", 1, {"result": 1}, True)
    out = await asyncio.gather(*(store.append(r.id, "w1", [step]) for r in runs))
    assert all(o is not None and o[0].data == {"result": 1} for o in out)
    assert _metrics.BATCH_SIZE.sum - jobs == 40
    assert _metrics.BATCH_SIZE.count - commits < 40 / 2  # far fewer commits than appends
    for r in runs:
        assert [e.kind for e in await store.history(r.id)] == ["run_submitted", "step_completed"]


def one_commit(before: tuple[float, float], jobs: int) -> bool:
    """Whether exactly one group commit of ``jobs`` operations happened since ``before``."""
    return (_metrics.BATCH_SIZE.count - before[0], _metrics.BATCH_SIZE.sum - before[1]) == (
        1,
        jobs,
    )


def batch_mark() -> tuple[float, float]:
    return _metrics.BATCH_SIZE.count, _metrics.BATCH_SIZE.sum


async def test_one_batch_keeps_fence_and_conflicts_per_operation(
    stores: list[PostgresStore],
) -> None:
    store = stores[0]
    for run_id in ("a", "b", "c", "d"):
        await store.create_run(run_id, "wf", {})
    assert len(await store.claim("w1", time.time(), 10, 30.0)) == 4
    stored_c = await store.append("c", "w1", [step_at(0, "old")])
    assert stored_c is not None
    sleep = Transition(RunStatus.SLEEPING, wake_at=time.time() + 60, release=True)

    mark = batch_mark()
    a1, a2, b, c, d1, d2 = await asyncio.gather(
        store.append("a", "w1", [step_at(0, "first")]),
        store.append("a", "w1", [step_at(0, "again"), Event(EventKind.TIMER_STARTED, 1, "t")]),
        store.append("b", "intruder", [step_at(0, "fenced")]),
        store.append("c", "w1", [step_at(0, "new"), step_at(1, "one")]),
        store.append("d", "w1", [], sleep),
        store.append("d", "w1", [step_at(0, "after release")]),
    )
    assert one_commit(mark, 6)

    # a: the second append's terminal event meets the first's (same batch): it gets that one
    # back and takes no seq; its other event follows on.
    assert a1 is not None and a2 is not None
    assert [e.data for e in a2] == [{"result": "first"}, None] and a2[1].seq == a1[0].seq + 1
    assert [(e.seq, e.kind, e.data) for e in await store.history("a")][1:] == [
        (2, "step_completed", {"result": "first"}),
        (3, "timer_started", None),
    ]
    # b: fenced, nothing written.
    assert b is None and [e.kind for e in await store.history("b")] == ["run_submitted"]
    # c: position 0 was closed before the batch: the stored event comes back.
    assert c is not None and c[0] == stored_c[0] and (c[1].seq, c[1].data) == (3, {"result": "one"})
    assert [e.seq for e in await store.history("c")] == [1, 2, 3]
    # d: the release of the first append fences the second.
    assert d1 == [] and d2 is None
    run_d = await store.get_run("d")
    assert run_d is not None and (run_d.status, run_d.owner) == ("sleeping", None)
    assert [e.kind for e in await store.history("d")] == ["run_submitted"]
    run_a = await store.get_run("a")
    assert run_a is not None and (run_a.status, run_a.owner) == ("running", "w1")


async def test_one_batch_keeps_the_order_of_a_runs_operations(
    stores: list[PostgresStore],
) -> None:
    store = stores[0]
    for run_id in ("a", "b"):
        await store.create_run(run_id, "wf", {})
    await store.claim("w1", time.time(), 10, 30.0)
    await store.send_signal("a", "go", {"n": 1})
    done = Transition(RunStatus.COMPLETED, result="ok", release=True)

    mark = batch_mark()
    results = await asyncio.gather(
        store.append("a", "w1", [step_at(0, 0)]),
        store.take_signal("a", "w1", 1, "go", None, time.time()),
        store.append("a", "w1", [step_at(1, "late")]),  # position 1 closed by the signal
        store.append("a", "w1", [step_at(2, 2)], done),
        store.append("b", "w1", [step_at(0, "b")]),
    )
    assert one_commit(mark, 5)
    first, signal_, late, last, other = results
    assert first is not None and first[0].seq == 2
    assert signal_ is not None and (signal_.found, signal_.payload) == (True, {"n": 1})
    assert late is not None and late[0].kind == "signal_received"
    assert last is not None and last[0].seq == 4
    assert [(e.seq, e.kind) for e in await store.history("a")] == [
        (1, "run_submitted"), (2, "step_completed"), (3, "signal_received"),
        (4, "step_completed"),
    ]  # fmt: skip
    run_a = await store.get_run("a")
    assert run_a is not None and (run_a.status, run_a.result, run_a.owner) == (
        "completed", "ok", None,
    )  # fmt: skip
    assert other is not None and other[0].seq == 2


async def test_a_faulty_operation_fails_alone(stores: list[PostgresStore]) -> None:
    store = stores[0]
    for run_id in ("a", "b"):
        await store.create_run(run_id, "wf", {})
    await store.claim("w1", time.time(), 10, 30.0)
    bad = Event(EventKind.STEP_COMPLETED, 0, "s", 1, {"result": object()}, True)
    good, failed = await asyncio.gather(
        store.append("a", "w1", [step_at(0, 1)]),
        store.append("b", "w1", [bad]),
        return_exceptions=True,
    )
    assert isinstance(failed, TypeError)
    assert isinstance(good, list) and good[0].seq == 2
    assert [e.kind for e in await store.history("b")] == ["run_submitted"]


def step_at(position: int, result: object) -> Event:
    return Event(EventKind.STEP_COMPLETED, position, "s", 1, {"result": result}, True)


async def test_wait_for_work_wakes_on_notify_from_another_store(
    stores: list[PostgresStore],
) -> None:
    waiter, other = stores[0], stores[1]
    await waiter.wait_for_work(5.0)  # returns once listening (work may have been missed)
    started = time.monotonic()
    await waiter.wait_for_work(0.3)
    assert time.monotonic() - started >= 0.25  # nothing happened: full timeout

    async def woken_by(action: object) -> float:
        task = asyncio.create_task(waiter.wait_for_work(10.0))
        await asyncio.sleep(0.1)
        assert not task.done()
        t0 = time.monotonic()
        await action  # type: ignore[misc]
        await asyncio.wait_for(task, 5.0)
        return time.monotonic() - t0

    assert await woken_by(other.create_run("r1", "wf", {})) < 2.0
    await other.claim("w1", time.time(), 10, 30.0)
    assert await other.take_signal("r1", "w1", 0, "go", None, time.time()) is not None
    assert await woken_by(other.send_signal("r1", "go", 1)) < 2.0


async def test_lost_connections_are_retried(stores: list[PostgresStore], pg_dsn: str) -> None:  # noqa: F811
    store = stores[0]
    await store.create_run("r1", "wf", {})
    await store.claim("w1", time.time(), 10, 30.0)
    assert await store.append("r1", "w1", [Event(EventKind.STEP_ATTEMPT_FAILED, 0)]) is not None
    with psycopg.connect(pg_dsn, autocommit=True) as admin:
        killed = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchone()
    assert killed is not None and killed[0] >= 2  # pool and writer connections
    run = await store.get_run("r1")
    assert run is not None and run.status == "running"
    done = Transition(RunStatus.COMPLETED, result=1, release=True)
    assert await store.append("r1", "w1", [], done) == []
    run = await store.get_run("r1")
    assert run is not None and run.status == "completed"


async def test_unreachable_server_is_one_clear_line_without_password() -> None:
    store = PostgresStore("postgresql://litefleet:s3cret-pw@127.0.0.1:1/nodb")
    with pytest.raises(StorageError) as info:
        await store.open()
    message = str(info.value)
    assert "127.0.0.1:1/nodb" in message and "\n" not in message
    assert "s3cret-pw" not in message + str(info.value.hint)
    await store.close()


async def test_runtime_runs_workflows_on_postgres(pg_dsn: str) -> None:  # noqa: F811
    from agent_runtime import examples

    async with Runtime(db=pg_dsn, app=examples) as rt:
        assert rt.store.backend == "postgres"
        runs = [await rt.submit("steps", {"n": 3, "sleep": 0.2}) for _ in range(5)]
        echo = await rt.submit("echo", {"message": "hi"})
        assert (await rt.wait(echo.id, timeout=20)).result == {"message": "hi"}
        for run in runs:
            done = await rt.wait(run.id, timeout=30)
            assert (done.status, done.result) == ("completed", 3)


# -- two runtime processes on one database ---------------------------------------------------

APP = """
import json, os, time
from agent_runtime import step, workflow

@step
def effect(key: str, i: int) -> int:
    start = time.time()
    time.sleep(0.02)
    with open(os.path.join(os.environ["EFFECTS_DIR"], f"{os.getpid()}.jsonl"), "a") as f:
        f.write(json.dumps([key, i, os.getpid(), start, time.time()]) + "\\n")
    return i

@workflow
async def job(key: str, n: int) -> str:
    total = 0
    for i in range(n):
        total += await effect(key, i)
    return f"{key}:{total}"
"""

RUNNER = """
import asyncio, signal, sys
import structlog
from agent_runtime._loader import load_app
from agent_runtime._runtime import Runtime

structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))

async def main() -> None:
    rt = Runtime(db=sys.argv[1], app=load_app(sys.argv[2]), concurrency=4,
                 lease_seconds=1.5, poll_seconds=0.2)
    await rt.start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print("ready", flush=True)
    await stop.wait()
    await rt.stop(grace=5)

asyncio.run(main())
"""


class Workers:
    def __init__(self, tmp: Path, dsn: str) -> None:
        self.dsn, self.effects = dsn, tmp / "effects"
        self.effects.mkdir()
        (tmp / "app.py").write_text(APP)
        (tmp / "runner.py").write_text(RUNNER)
        self.tmp = tmp
        self.procs: list[subprocess.Popen[str]] = []

    def start(self, count: int) -> None:
        env = {**os.environ, "EFFECTS_DIR": str(self.effects)}
        for i in range(count):
            log = (self.tmp / f"worker{i}.log").open("w")
            proc = subprocess.Popen(
                [sys.executable, str(self.tmp / "runner.py"), self.dsn, str(self.tmp / "app.py")],
                stdout=subprocess.PIPE, stderr=log, text=True, env=env,
            )  # fmt: skip
            self.procs.append(proc)
        for proc in self.procs:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "ready", self.logs()

    def logs(self) -> str:
        return "\n".join(p.read_text()[-2000:] for p in self.tmp.glob("worker*.log"))

    def records(self) -> list[tuple[str, int, int, float, float]]:
        out = []
        for path in self.effects.glob("*.jsonl"):
            out += [tuple(json.loads(line)) for line in path.read_text().splitlines()]
        return out

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


@pytest.fixture
def workers(tmp_path: Path, pg_dsn: str) -> Iterator[Workers]:  # noqa: F811
    w = Workers(tmp_path, pg_dsn)
    try:
        yield w
    finally:
        w.stop()


async def submit_and_wait(dsn: str, n_runs: int, steps: int, during: object = None) -> None:
    store = PostgresStore(dsn)
    await store.open()
    try:
        for i in range(n_runs):
            await store.create_run(f"k{i:02}", "job", {"key": f"k{i:02}", "n": steps})
        if during is not None:
            await during  # type: ignore[misc]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            counts = await store.count_by_status()
            if counts.get("completed", 0) == n_runs:
                break
            await asyncio.sleep(0.1)
        expected = sum(range(steps))
        for i in range(n_runs):
            run = await store.get_run(f"k{i:02}")
            assert run is not None and (run.status, run.result) == (
                "completed", f"k{i:02}:{expected}",
            ), run  # fmt: skip
    finally:
        await store.close()


def assert_no_run_ran_in_two_places_at_once(
    records: list[tuple[str, int, int, float, float]],
) -> None:
    by_run: dict[str, list[tuple[str, int, int, float, float]]] = {}
    for rec in records:
        by_run.setdefault(rec[0], []).append(rec)
    for key, recs in by_run.items():
        for a in recs:
            for b in recs:
                if a[2] != b[2]:  # two processes: their executions must not overlap in time
                    assert a[4] <= b[3] or b[4] <= a[3], (
                        f"run {key} ran in {a[2]} and {b[2]} at once"
                    )


@pytest.mark.slow
async def test_two_runtime_processes_execute_each_run_once(workers: Workers) -> None:
    workers.start(2)
    await submit_and_wait(workers.dsn, 40, 6)
    records = workers.records()
    assert_no_run_ran_in_two_places_at_once(records)
    steps = [(r[0], r[1]) for r in records]
    assert sorted(steps) == sorted({(f"k{i:02}", s) for i in range(40) for s in range(6)})
    pids_by_run: dict[str, set[int]] = {}
    for rec in records:
        pids_by_run.setdefault(rec[0], set()).add(rec[2])
    assert all(len(p) == 1 for p in pids_by_run.values())  # no run moved between processes
    assert len({r[2] for r in records}) == 2, "both processes should have executed runs"


@pytest.mark.slow
async def test_runs_of_a_killed_process_are_taken_over_after_its_lease(workers: Workers) -> None:
    workers.start(2)
    victim = workers.procs[0]

    async def kill_first_worker() -> None:
        # Kill it once it has runs under way (a fixed delay is not enough on a busy machine).
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if any(r[2] == victim.pid for r in workers.records()):
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.05)
        victim.send_signal(signal.SIGKILL)
        victim.wait(5)

    await submit_and_wait(workers.dsn, 30, 8, kill_first_worker())
    records = workers.records()
    assert_no_run_ran_in_two_places_at_once(records)
    survivor = workers.procs[1].pid
    moved = {r[0] for r in records if r[2] == victim.pid} & {
        r[0] for r in records if r[2] == survivor
    }
    assert moved, "the survivor should have finished runs the killed process had started"
    # Steps recorded before the kill are not executed again; at most the one in flight is.
    per_step: dict[tuple[str, int], int] = {}
    for rec in records:
        per_step[(rec[0], rec[1])] = per_step.get((rec[0], rec[1]), 0) + 1
    assert all(n <= 2 for n in per_step.values())
    assert sum(n - 1 for n in per_step.values()) <= 4  # victim had at most 4 runs in flight
