"""The Store contract (agent_runtime/_store.py), one suite run against every backend.

Each test gets a fresh store: SQLite in a tmp_path file, PostgreSQL in a database of its own
(tests/pg_fixtures.py). Where backends legitimately differ (``exclusive``), the test says so.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from agent_runtime._errors import InvalidInput
from agent_runtime._store import Event, EventKind, RunStatus, Store, Transition
from tests.pg_fixtures import pg_dsn, pg_server  # noqa: F401  (fixtures)

pytestmark = pytest.mark.anyio

FAR = 10_000.0  # seconds: a "now" that is past every lease and deadline of the test


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def store(request: pytest.FixtureRequest, tmp_path: object) -> AsyncIterator[Store]:
    s: Store
    if request.param == "sqlite":
        from agent_runtime._sqlite import SQLiteStore

        s = SQLiteStore(str(tmp_path) + "/contract.db")
    else:
        from agent_runtime._postgres import PostgresStore

        s = PostgresStore(request.getfixturevalue("pg_dsn"))
    await s.open()
    try:
        yield s
    finally:
        await s.close()


async def running(store: Store, run_id: str, owner: str = "w1", input: object = None) -> None:
    """Create ``run_id`` and claim it for ``owner``."""
    await store.create_run(run_id, "wf", {"i": input})
    claimed = await store.claim(owner, time.time(), 100, 30.0)
    assert run_id in [r.id for r in claimed]


def sleep_until(wake: float) -> Transition:
    return Transition(RunStatus.SLEEPING, wake_at=wake, release=True)


def step_done(position: int, result: object) -> Event:
    return Event(EventKind.STEP_COMPLETED, position, "s", 1, {"result": result}, True)


class TestStoreContract:
    # -- runs

    async def test_create_run_is_idempotent(self, store: Store) -> None:
        data = {"a": [1, "é"]}
        run, created = await store.create_run("r1", "wf", data)
        assert created
        assert (run.id, run.workflow, run.status, run.input) == ("r1", "wf", "pending", data)
        assert run.created_at > 0 and run.owner is None and run.result is None

        again, created = await store.create_run("r1", "other", {"b": 2})
        assert not created
        assert (again.workflow, again.input, again.created_at) == ("wf", data, run.created_at)
        history = await store.history("r1")
        assert [(e.kind, e.data) for e in history] == [("run_submitted", {"input": data})]

    async def test_get_run(self, store: Store) -> None:
        assert await store.get_run("nope") is None
        await store.create_run("r1", "wf", {})
        got = await store.get_run("r1")
        assert got is not None and got.id == "r1" and got.status == RunStatus.PENDING

    async def test_list_runs_filters_and_pages_newest_first(self, store: Store) -> None:
        for i in range(7):
            await store.create_run(f"r{i}", "even" if i % 2 == 0 else "odd", {"i": i})
        await store.cancel("r2")
        await store.cancel("r3")

        everything = await store.list_runs()
        assert [r.id for r in everything.runs] == [f"r{i}" for i in reversed(range(7))]
        assert everything.next_cursor is None

        assert [r.id for r in (await store.list_runs(status="cancelled")).runs] == ["r3", "r2"]
        even = await store.list_runs(workflow="even")
        assert [r.id for r in even.runs] == ["r6", "r4", "r2", "r0"]
        both = await store.list_runs(status="pending", workflow="even")
        assert [r.id for r in both.runs] == ["r6", "r4", "r0"]

        seen: list[str] = []
        cursor: str | None = None
        pages = 0
        while True:
            page = await store.list_runs(limit=3, cursor=cursor)
            assert len(page.runs) <= 3
            seen += [r.id for r in page.runs]
            pages += 1
            cursor = page.next_cursor
            if cursor is None:
                break
        assert seen == [r.id for r in everything.runs] and pages == 3

        # Paging composes with filters; a page that ends exactly at the end has no cursor.
        first = await store.list_runs(workflow="even", limit=2)
        assert [r.id for r in first.runs] == ["r6", "r4"] and first.next_cursor is not None
        rest = await store.list_runs(workflow="even", limit=2, cursor=first.next_cursor)
        assert [r.id for r in rest.runs] == ["r2", "r0"] and rest.next_cursor is None

        with pytest.raises(InvalidInput):
            await store.list_runs(cursor="not a cursor")

    async def test_count_by_status(self, store: Store) -> None:
        assert await store.count_by_status() == {}
        for i in range(4):
            await store.create_run(f"r{i}", "wf", {})
        await store.cancel("r0")
        await store.claim("w1", time.time(), 1, 30.0)
        assert await store.count_by_status() == {"pending": 2, "running": 1, "cancelled": 1}

    # -- history

    async def test_history_is_ordered_and_events_get_seq_and_time(self, store: Store) -> None:
        await running(store, "r1")
        before = time.time()
        stored = await store.append(
            "r1",
            "w1",
            [
                Event(EventKind.STEP_ATTEMPT_FAILED, 0, "s", 1, {"error": "x"}),
                step_done(0, "a"),
                Event(EventKind.VALUE_RECORDED, 1, "now", None, {"value": 5}, True, 0, 123.5),
            ],
        )
        assert stored is not None and len(stored) == 3
        assert stored[0].seq < stored[1].seq < stored[2].seq
        assert stored[0].created_at >= before - 1 and stored[2].created_at == 123.5
        more = await store.append("r1", "w1", [step_done(2, {"k": [1, None]})])
        assert more is not None

        history = await store.history("r1")
        assert [e.kind for e in history] == [
            "run_submitted", "step_attempt_failed", "step_completed", "value_recorded",
            "step_completed",
        ]  # fmt: skip
        seqs = [e.seq for e in history]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
        assert history[2].seq == stored[1].seq and history[4].data == {"result": {"k": [1, None]}}
        assert (history[4].position, history[4].name, history[4].attempt, history[4].terminal) == (
            2, "s", 1, True,
        )  # fmt: skip
        assert history[1].terminal is False and history[1].position == 0
        assert await store.history("missing") == []

    async def test_terminal_event_is_unique_per_position(self, store: Store) -> None:
        await running(store, "r1")
        first = await store.append("r1", "w1", [step_done(0, "first")])
        assert first is not None
        second = await store.append("r1", "w1", [step_done(0, "second")])
        assert second is not None and second[0].data == {"result": "first"}
        assert second[0].seq == first[0].seq

        # Non-terminal events may repeat; a duplicate inside one append also yields the first.
        out = await store.append(
            "r1",
            "w1",
            [
                Event(EventKind.STEP_ATTEMPT_FAILED, 1, "s", 1),
                Event(EventKind.STEP_ATTEMPT_FAILED, 1, "s", 2),
                step_done(1, "x"),
                Event(EventKind.STEP_FAILED, 1, "s", 3, {"error": "late"}, True),
            ],
        )
        assert out is not None and out[3].kind == "step_completed" and out[3].seq == out[2].seq
        history = await store.history("r1")
        terminal = [(e.position, e.data) for e in history if e.terminal]
        assert terminal == [(0, {"result": "first"}), (1, {"result": "x"})]
        assert sum(e.kind == "step_attempt_failed" for e in history) == 2

    # -- the owner fence

    async def test_owner_fence(self, store: Store) -> None:
        await store.create_run("r1", "wf", {})
        ev = [step_done(0, 1)]
        assert await store.append("r1", "w1", ev) is None  # pending: nobody owns it
        assert await store.append("nope", "w1", ev) is None

        assert [r.id for r in await store.claim("w1", time.time(), 10, 30.0)] == ["r1"]
        assert await store.append("r1", "w2", ev, Transition(RunStatus.COMPLETED)) is None
        assert await store.take_signal("r1", "w2", 0, "go", None, time.time()) is None
        run = await store.get_run("r1")
        assert run is not None and (run.status, run.owner) == ("running", "w1")

        assert await store.append("r1", "w1", [], sleep_until(time.time() + 60)) == []
        assert await store.append("r1", "w1", ev) is None  # released
        assert await store.take_signal("r1", "w1", 0, "go", None, time.time()) is None

        await store.cancel("r1")
        assert await store.append("r1", "w1", ev) is None
        kinds = [e.kind for e in await store.history("r1")]
        assert kinds == ["run_submitted", "run_cancelled"]

    # -- transitions

    async def test_transitions(self, store: Store) -> None:
        await running(store, "done")
        before = await store.get_run("done")
        assert before is not None
        out = await store.append(
            "done", "w1", [Event(EventKind.RUN_COMPLETED)],
            Transition(RunStatus.COMPLETED, result={"n": 5}, release=True),
        )  # fmt: skip
        assert out is not None
        run = await store.get_run("done")
        assert run is not None
        assert (run.status, run.result, run.error, run.owner) == ("completed", {"n": 5}, None, None)
        assert run.updated_at >= before.updated_at

        await running(store, "bad")
        err = {"type": "ValueError", "message": "boom"}
        await store.append("bad", "w1", [], Transition(RunStatus.FAILED, error=err, release=True))
        run = await store.get_run("bad")
        assert run is not None and (run.status, run.error, run.owner) == ("failed", err, None)

        await running(store, "nap")
        wake = time.time() + 500
        await store.append("nap", "w1", [], sleep_until(wake))
        run = await store.get_run("nap")
        assert run is not None and (run.status, run.wake_at, run.owner) == ("sleeping", wake, None)

        # Without release the owner keeps the run (and may go on writing).
        await running(store, "keep")
        await store.append("keep", "w1", [], Transition(RunStatus.RUNNING))
        run = await store.get_run("keep")
        assert run is not None and (run.status, run.owner) == ("running", "w1")
        assert await store.append("keep", "w1", [step_done(0, 1)]) is not None

        # A released pending run is claimable again.
        await store.append("keep", "w1", [], Transition(RunStatus.PENDING, release=True))
        assert [r.id for r in await store.claim("w2", time.time(), 10, 30.0)] == ["keep"]

    # -- claim

    async def test_claim_takes_pending_runs_oldest_first(self, store: Store) -> None:
        for i in range(5):
            await store.create_run(f"r{i}", "wf", {})
        now = time.time()
        first = await store.claim("w1", now, 2, 30.0)
        assert [r.id for r in first] == ["r0", "r1"]
        assert all(r.status == "running" and r.owner == "w1" for r in first)
        rest = await store.claim("w1", now, 10, 30.0)
        assert [r.id for r in rest] == ["r2", "r3", "r4"]
        assert await store.claim("w1", now, 10, 30.0) == []
        assert await store.claim("w1", now, 0, 30.0) == []

    async def test_claim_wakes_sleeping_and_waiting_runs_when_due(self, store: Store) -> None:
        now = time.time()
        await running(store, "nap")
        await store.append("nap", "w1", [], sleep_until(now + 100))
        await running(store, "wait")
        assert await store.take_signal("wait", "w1", 0, "go", now + 200, now) is not None
        await running(store, "forever")
        assert await store.take_signal("forever", "w1", 0, "go", None, now) is not None

        assert await store.claim("w2", now + 50, 10, 30.0) == []
        assert [r.id for r in await store.claim("w2", now + 150, 10, 30.0)] == ["nap"]
        claimed = await store.claim("w2", now + 250, 10, 30.0)
        assert [r.id for r in claimed] == ["wait"] and claimed[0].owner == "w2"
        # A wait without deadline wakes only on its signal.
        assert await store.claim("w2", now + FAR, 10, 30.0) == []

    async def test_claim_of_running_runs_respects_leases(self, store: Store) -> None:
        await running(store, "r1", owner="w1")
        now = time.time()
        if store.exclusive:
            # One process owns the whole database: a run held by another owner is an orphan
            # of a previous process and is taken back at once.
            assert [r.id for r in await store.claim("w2", now, 10, 30.0)] == ["r1"]
            return
        assert await store.claim("w2", now + 10, 10, 30.0) == []
        assert await store.claim("w1", now + FAR, 10, 30.0) == []  # never from itself
        await store.renew("w1", ["r1"], 100.0)
        assert await store.claim("w2", now + 60, 10, 30.0) == []  # renewed past now+60
        await store.renew("w2", ["r1"], 1000.0)  # not the owner: no effect
        taken = await store.claim("w2", now + 200, 10, 30.0)
        assert [r.id for r in taken] == ["r1"] and taken[0].owner == "w2"
        assert await store.append("r1", "w1", [step_done(0, 1)]) is None  # w1 is fenced out
        assert await store.append("r1", "w2", [step_done(0, 2)]) is not None

    async def test_two_owners_never_claim_the_same_run(self, store: Store) -> None:
        if store.exclusive:
            pytest.skip("exclusive store: one owner per database, others' runs are orphans")
        for i in range(40):
            await store.create_run(f"r{i:02}", "wf", {})
        now = time.time()

        async def claimer(owner: str) -> list[str]:
            got: list[str] = []
            for _ in range(30):
                got += [r.id for r in await store.claim(owner, now, 3, 30.0)]
            return got

        a, b, c = await asyncio.gather(claimer("w1"), claimer("w2"), claimer("w3"))
        assert len(a) + len(b) + len(c) == 40
        assert set(a) | set(b) | set(c) == {f"r{i:02}" for i in range(40)}
        for run in (await store.list_runs(limit=100)).runs:
            assert run.owner == ("w1" if run.id in a else "w2" if run.id in b else "w3")

    # -- signals

    async def test_signals_buffered_before_the_wait_are_consumed_once_oldest_first(
        self, store: Store
    ) -> None:
        await store.create_run("r1", "wf", {})
        assert await store.send_signal("nope", "go", 1) is None
        sent = await store.send_signal("r1", "go", {"n": 1})
        assert sent is not None and sent.status == "pending"
        await store.send_signal("r1", "other", "x")
        await store.send_signal("r1", "go", {"n": 2})
        await store.claim("w1", time.time(), 10, 30.0)

        now = time.time()
        one = await store.take_signal("r1", "w1", 0, "go", None, now)
        assert one is not None and one.found and one.payload == {"n": 1}
        two = await store.take_signal("r1", "w1", 1, "go", None, now)
        assert two is not None and two.found and two.payload == {"n": 2}
        # Position 0 is closed: the stored event comes back and nothing more is consumed.
        again = await store.take_signal("r1", "w1", 0, "go", None, now)
        assert again is not None and again.stored is not None
        assert again.stored.kind == "signal_received" and again.stored.data == {"payload": {"n": 1}}

        received = [e for e in await store.history("r1") if e.kind == "signal_received"]
        assert [(e.position, e.name, e.data, e.terminal) for e in received] == [
            (0, "go", {"payload": {"n": 1}}, True),
            (1, "go", {"payload": {"n": 2}}, True),
        ]
        # Both "go" signals are used up: the next wait waits.
        three = await store.take_signal("r1", "w1", 2, "go", None, now)
        assert three is not None and not three.found
        run = await store.get_run("r1")
        assert run is not None and (run.status, run.owner, run.wake_at) == ("waiting", None, None)

    async def test_waiting_run_becomes_pending_on_its_signal(self, store: Store) -> None:
        await running(store, "r1")
        now = time.time()
        out = await store.take_signal("r1", "w1", 0, "approve", now + 300, now)
        assert out is not None and not out.found and out.stored is None
        run = await store.get_run("r1")
        assert run is not None and run.status == "waiting"
        assert (run.wake_at, run.owner) == (now + 300, None)
        waits = [e for e in await store.history("r1") if e.kind == "signal_wait_started"]
        assert [(e.position, e.name, e.data, e.terminal) for e in waits] == [
            (0, "approve", {"deadline": now + 300}, False)
        ]

        other = await store.send_signal("r1", "unrelated", 1)
        assert other is not None and other.status == "waiting"
        woken = await store.send_signal("r1", "approve", {"ok": True})
        assert woken is not None and woken.status == "pending"
        assert await store.next_wake_at() is None

        claimed = await store.claim("w2", time.time(), 10, 30.0)
        assert [r.id for r in claimed] == ["r1"]
        got = await store.take_signal("r1", "w2", 0, "approve", now + 300, time.time())
        assert got is not None and got.found and got.payload == {"ok": True}

    async def test_signal_wait_is_recorded_once_and_deadline_is_left_to_the_caller(
        self, store: Store
    ) -> None:
        await running(store, "r1")
        now = time.time()
        deadline = now + 100
        await store.take_signal("r1", "w1", 0, "go", deadline, now)
        # Woken early (a claim with a clock past wake_at), it waits again: one wait event.
        assert [r.id for r in await store.claim("w1", deadline + 1, 10, 30.0)] == ["r1"]
        await store.take_signal("r1", "w1", 0, "go", deadline, now)
        history = await store.history("r1")
        assert sum(e.kind == "signal_wait_started" for e in history) == 1
        run = await store.get_run("r1")
        assert run is not None and run.status == "waiting"

        # Past the deadline with no signal: nothing written, the run stays with its owner.
        assert [r.id for r in await store.claim("w1", deadline + 1, 10, 30.0)] == ["r1"]
        late = await store.take_signal("r1", "w1", 0, "go", deadline, deadline + 1)
        assert late is not None and not late.found and late.stored is None
        assert await store.history("r1") == history
        run = await store.get_run("r1")
        assert run is not None and (run.status, run.owner) == ("running", "w1")
        timed_out = Event(EventKind.SIGNAL_TIMED_OUT, 0, "go", None, {"timeout": 100}, True)
        assert await store.append("r1", "w1", [timed_out]) is not None
        closed = await store.take_signal("r1", "w1", 0, "go", deadline, deadline + 1)
        assert closed is not None and closed.stored is not None
        assert closed.stored.kind == "signal_timed_out" and not closed.found

    async def test_signal_to_terminal_run_is_not_stored(self, store: Store) -> None:
        await running(store, "r1")
        await store.append("r1", "w1", [], Transition(RunStatus.COMPLETED, result=1, release=True))
        run = await store.send_signal("r1", "go", 1)
        assert run is not None and run.status == "completed"
        # A signal to a running run is buffered and changes nothing else.
        await running(store, "r2")
        run = await store.send_signal("r2", "go", 2)
        assert run is not None and (run.status, run.owner) == ("running", "w1")
        got = await store.take_signal("r2", "w1", 0, "go", None, time.time())
        assert got is not None and got.found and got.payload == 2

    # -- cancel

    async def test_cancel(self, store: Store) -> None:
        assert await store.cancel("nope") is None
        await store.create_run("p", "wf", {})
        run = await store.cancel("p")
        assert run is not None and run.status == "cancelled"
        again = await store.cancel("p")
        assert again is not None and again.status == "cancelled"
        cancelled = [e for e in await store.history("p") if e.kind == "run_cancelled"]
        assert len(cancelled) == 1 and cancelled[0].data == {"from": "pending"}

        await running(store, "r")
        run = await store.cancel("r")
        assert run is not None and (run.status, run.owner) == ("cancelled", None)
        assert await store.append("r", "w1", [step_done(0, 1)]) is None

        await running(store, "w")
        await store.take_signal("w", "w1", 0, "go", time.time() + 50, time.time())
        run = await store.cancel("w")
        assert run is not None and (run.status, run.wake_at) == ("cancelled", None)
        assert await store.next_wake_at() is None
        assert await store.claim("w1", time.time() + FAR, 10, 30.0) == []

        await running(store, "c")
        await store.append("c", "w1", [], Transition(RunStatus.COMPLETED, result=7, release=True))
        run = await store.cancel("c")
        assert run is not None and (run.status, run.result) == ("completed", 7)
        assert [e.kind for e in await store.history("c")] == ["run_submitted"]

    # -- timers

    async def test_next_wake_at(self, store: Store) -> None:
        assert await store.next_wake_at() is None
        await store.create_run("pending", "wf", {})
        assert await store.next_wake_at() is None
        now = time.time()
        for run_id, wake in (("a", now + 100), ("b", now + 50)):
            await running(store, run_id)
            await store.append(run_id, "w1", [], sleep_until(wake))
        assert await store.next_wake_at() == now + 50
        await running(store, "c")
        await store.take_signal("c", "w1", 0, "go", now + 30, now)
        assert await store.next_wake_at() == now + 30
        await store.claim("w1", now + 60, 10, 30.0)  # wakes c and b
        assert await store.next_wake_at() == now + 100

    # -- the commit guard (the lease gate)

    async def test_commit_guard_refuses_writes_and_nothing_is_stored(self, store: Store) -> None:
        await running(store, "g")

        def refuse() -> None:
            raise RuntimeError("no lease")

        store.commit_guard = refuse
        try:
            with pytest.raises(RuntimeError, match="no lease"):
                await store.append("g", "w1", [step_done(0, "late")])
            with pytest.raises(RuntimeError, match="no lease"):
                await store.create_run("h", "wf", {})
            with pytest.raises(RuntimeError, match="no lease"):
                await store.cancel("g")
        finally:
            store.commit_guard = None
        assert [e.kind for e in await store.history("g")] == ["run_submitted"]
        assert await store.get_run("h") is None
        run = await store.get_run("g")
        assert run is not None and run.status == "running"
        stored = await store.append("g", "w1", [step_done(0, "on time")])
        assert stored is not None and stored[0].data == {"result": "on time"}
