"""SQLite backend (APSW): one file per runtime, WAL, group commit, Litestream-safe.

Writes go through one ``GroupCommitWriter`` thread; each write is a ``_*_txn(conn, ...)``
function below. Reads use a second connection on the caller's thread (WAL readers never
block the writer). A lock file next to the database keeps a second runtime process off it.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import time
from collections.abc import Callable, Sequence
from typing import Any, cast

import apsw

from ._codec import EVENT_COLUMNS as _EVENT_COLS
from ._codec import RUN_COLUMNS as _RUN_COLS
from ._codec import dumps as _dumps
from ._codec import event_from_row as _event
from ._codec import list_runs_query, page_from_rows
from ._codec import loads as _loads
from ._codec import run_from_row as _run
from ._errors import InvalidInput, StorageError
from ._group_commit import BUSY, GroupCommitWriter, call_with_retry
from ._limits import check_signal_buffer
from ._sqlite_schema import migrate
from ._store import (
    TERMINAL_STATUSES,
    Event,
    EventKind,
    Run,
    RunPage,
    RunStatus,
    SignalOutcome,
    Transition,
)

MIN_SQLITE = (3, 51, 3)  # WAL-reset corruption bug fixed in 3.51.3
SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")
BUSY_TIMEOUT_MS = 5000


def check_sqlite_version() -> None:
    version = apsw.sqlite_lib_version()
    if tuple(int(p) for p in version.split(".")[:3]) < MIN_SQLITE:
        raise StorageError(
            f"SQLite {version} has the WAL-reset corruption bug (fixed in 3.51.3)",
            hint="install a newer apsw wheel (pip install -U apsw)",
        )


# -- operations: each runs inside the writer's transaction ------------------------------


def _get_run(conn: apsw.Connection, run_id: str) -> Run | None:
    row = conn.execute(f"SELECT {_RUN_COLS} FROM runs WHERE id = ?", (run_id,)).fetchone()
    return None if row is None else _run(row)


class SeqCounter:
    """Each run's last event ``seq``, kept by the single writer so that appending an event
    reads nothing: the first use for a run scans the run's events once. After a
    rolled-back batch the counter may be ahead of the table; seq only needs to grow."""

    MAX_RUNS = 100_000

    def __init__(self) -> None:
        self._last: dict[str, int] = {}

    def next(self, conn: apsw.Connection, run_id: str) -> int:
        last = self._last.get(run_id)
        if last is None:
            if len(self._last) >= self.MAX_RUNS:
                self._last.clear()
            row = conn.execute(
                "SELECT coalesce(max(seq), 0) FROM events WHERE run_id = ?", (run_id,)
            ).fetchone()
            last = int(row[0]) if row else 0
        self._last[run_id] = last + 1
        return last + 1

    def forget(self, run_id: str) -> None:
        self._last.pop(run_id, None)


def _insert_event(
    conn: apsw.Connection, seqs: SeqCounter, run_id: str, ev: Event, now: float
) -> Event:
    """Insert one event; a terminal event for a closed position returns the stored one."""
    created = ev.created_at or now
    seq = seqs.next(conn, run_id)
    key = ev.position if ev.terminal and ev.position is not None else -seq
    inserted = conn.execute(
        "INSERT INTO events"
        " (run_id, key, seq, position, kind, name, attempt, terminal, data, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING RETURNING seq",
        (run_id, key, seq, ev.position, str(ev.kind), ev.name, ev.attempt,
         int(ev.terminal), _dumps(ev.data), created),
    ).fetchone()  # fmt: skip
    if inserted is not None:
        return Event(ev.kind, ev.position, ev.name, ev.attempt, ev.data, ev.terminal, seq, created)
    stored = conn.execute(
        f"SELECT {_EVENT_COLS} FROM events WHERE run_id = ? AND key = ?", (run_id, key)
    ).fetchone()
    assert stored is not None  # the conflict means this row exists
    return _event(stored)


def _create_run_txn(
    conn: apsw.Connection, seqs: SeqCounter, run_id: str, workflow: str, input: dict[str, Any]
) -> tuple[Run, bool]:
    now = time.time()
    existing = _get_run(conn, run_id)
    if existing is not None:
        return existing, False
    conn.execute(
        "INSERT INTO runs (id, workflow, status, input, created_at, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (run_id, workflow, RunStatus.PENDING.value, _dumps(input), now, now),
    )
    _insert_event(conn, seqs, run_id, Event(EventKind.RUN_SUBMITTED, data={"input": input}), now)
    return Run(run_id, workflow, RunStatus.PENDING, input, created_at=now, updated_at=now), True


def _owns(conn: apsw.Connection, run_id: str, owner: str) -> bool:
    row = conn.execute("SELECT status, owner FROM runs WHERE id = ?", (run_id,)).fetchone()
    return row is not None and row[0] == RunStatus.RUNNING and row[1] == owner


def _apply(conn: apsw.Connection, run_id: str, t: Transition, now: float) -> None:
    conn.execute(
        "UPDATE runs SET status = ?, result = ?, error = ?, wake_at = ?, updated_at = ?,"
        " owner = CASE WHEN ? THEN NULL ELSE owner END,"
        " lease_until = CASE WHEN ? THEN NULL ELSE lease_until END WHERE id = ?",
        (
            str(t.status),
            None if t.result is None else _dumps(t.result),
            None if t.error is None else _dumps(t.error),
            t.wake_at,
            now,
            t.release,
            t.release,
            run_id,
        ),
    )


def _append_txn(
    conn: apsw.Connection,
    seqs: SeqCounter,
    run_id: str,
    owner: str,
    events: Sequence[Event],
    transition: Transition | None,
) -> list[Event] | None:
    if not _owns(conn, run_id, owner):
        return None
    now = time.time()
    stored = [_insert_event(conn, seqs, run_id, ev, now) for ev in events]
    # updated_at moves with status changes only: rewriting the runs row on every step
    # would add a page to every step's commit.
    if transition is not None:
        _apply(conn, run_id, transition, now)
        if transition.status in TERMINAL_STATUSES:
            seqs.forget(run_id)
    return stored


def _claim_txn(
    conn: apsw.Connection, owner: str, now: float, limit: int, lease_s: float, exclusive: bool
) -> list[Run]:
    ids: list[str] = []
    queries = [
        ("SELECT id FROM runs WHERE status = 'pending' ORDER BY num LIMIT ?", ()),
        (
            "SELECT id FROM runs WHERE wake_at <= ? AND status IN ('sleeping', 'waiting')"
            " ORDER BY wake_at LIMIT ?",
            (now,),
        ),
        (
            "SELECT id FROM runs WHERE status = 'running' AND owner IS NOT ? "
            + ("" if exclusive else "AND (lease_until IS NULL OR lease_until < ?) ")
            + "ORDER BY num LIMIT ?",
            (owner,) if exclusive else (owner, now),
        ),
    ]
    for sql, params in queries:
        if len(ids) >= limit:
            break
        ids += [r[0] for r in conn.execute(sql, (*params, limit - len(ids)))]
    runs = []
    for run_id in ids:
        conn.execute(
            "UPDATE runs SET status = 'running', owner = ?, lease_until = ?, wake_at = NULL,"
            " waiting_on = NULL, updated_at = ? WHERE id = ?",
            (owner, now + lease_s, now, run_id),
        )
        run = _get_run(conn, run_id)
        assert run is not None
        runs.append(run)
    return runs


def _renew_txn(conn: apsw.Connection, owner: str, run_ids: Sequence[str], lease_s: float) -> None:
    until = time.time() + lease_s
    for run_id in run_ids:
        conn.execute(
            "UPDATE runs SET lease_until = ? WHERE id = ? AND owner = ? AND status = 'running'",
            (until, run_id, owner),
        )


def _send_signal_txn(conn: apsw.Connection, run_id: str, name: str, payload: Any) -> Run | None:
    run = _get_run(conn, run_id)
    if run is None or run.status in TERMINAL_STATUSES:
        return run
    now = time.time()
    text = _dumps(payload)
    buffered = conn.execute(
        "SELECT count(*), coalesce(sum(length(payload)), 0) FROM signals"
        " WHERE run_id = ? AND consumed_at IS NULL",
        (run_id,),
    ).fetchone()
    assert buffered is not None  # an aggregate always yields a row
    check_signal_buffer(buffered[0], buffered[1], len(text))
    conn.execute(
        "INSERT INTO signals (run_id, name, payload, created_at) VALUES (?, ?, ?, ?)",
        (run_id, name, text, now),
    )
    conn.execute(
        "UPDATE runs SET status = 'pending', wake_at = NULL, waiting_on = NULL, updated_at = ?"
        " WHERE id = ? AND status = 'waiting' AND waiting_on = ?",
        (now, run_id, name),
    )
    return _get_run(conn, run_id)


def _take_signal_txn(
    conn: apsw.Connection,
    seqs: SeqCounter,
    run_id: str,
    owner: str,
    position: int,
    name: str,
    deadline: float | None,
    now: float,
) -> SignalOutcome | None:
    if not _owns(conn, run_id, owner):
        return None
    closed = conn.execute(
        f"SELECT {_EVENT_COLS} FROM events WHERE run_id = ? AND key = ?", (run_id, position)
    ).fetchone()
    if closed is not None:
        return SignalOutcome(found=False, stored=_event(closed))
    sig = conn.execute(
        "SELECT seq, payload FROM signals WHERE run_id = ? AND name = ? AND consumed_at IS NULL"
        " ORDER BY seq LIMIT 1",
        (run_id, name),
    ).fetchone()
    if sig is not None:
        payload = _loads(sig[1])
        conn.execute("UPDATE signals SET consumed_at = ? WHERE seq = ?", (now, sig[0]))
        ev = Event(EventKind.SIGNAL_RECEIVED, position, name, None, {"payload": payload}, True)
        _insert_event(conn, seqs, run_id, ev, now)
        conn.execute("UPDATE runs SET updated_at = ? WHERE id = ?", (now, run_id))
        return SignalOutcome(found=True, payload=payload)
    if deadline is not None and deadline <= now:
        return SignalOutcome(found=False)
    started = conn.execute(
        "SELECT 1 FROM events WHERE run_id = ? AND position = ? AND kind = ?",
        (run_id, position, EventKind.SIGNAL_WAIT_STARTED.value),
    ).fetchone()
    if started is None:
        ev = Event(EventKind.SIGNAL_WAIT_STARTED, position, name, None, {"deadline": deadline})
        _insert_event(conn, seqs, run_id, ev, now)
    conn.execute(
        "UPDATE runs SET status = 'waiting', wake_at = ?, waiting_on = ?, owner = NULL,"
        " lease_until = NULL, updated_at = ? WHERE id = ?",
        (deadline, name, now, run_id),
    )
    return SignalOutcome(found=False)


def _cancel_txn(conn: apsw.Connection, seqs: SeqCounter, run_id: str) -> Run | None:
    run = _get_run(conn, run_id)
    if run is None or run.status in TERMINAL_STATUSES:
        return run
    now = time.time()
    cancelled = Event(EventKind.RUN_CANCELLED, data={"from": run.status})
    _insert_event(conn, seqs, run_id, cancelled, now)
    seqs.forget(run_id)
    conn.execute(
        "UPDATE runs SET status = 'cancelled', owner = NULL, lease_until = NULL, wake_at = NULL,"
        " waiting_on = NULL, updated_at = ? WHERE id = ?",
        (now, run_id),
    )
    return _get_run(conn, run_id)


def _create_private(path: str) -> None:
    """Create a missing database file readable by its owner only (0600). SQLite gives the
    -wal and -shm files the database file's mode; a file that exists keeps its own (an
    entrypoint may prepare it with the group access a replicator needs)."""
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


# -- the store --------------------------------------------------------------------------


class SQLiteStore:
    backend = "sqlite"
    exclusive = True

    def __init__(self, path: str, synchronous: str = "FULL") -> None:
        synchronous = synchronous.upper()
        if synchronous not in SYNCHRONOUS:
            raise InvalidInput(f"synchronous must be one of {', '.join(SYNCHRONOUS)}")
        self.path = path
        self.synchronous = synchronous
        self._writer = GroupCommitWriter(self._connect)
        self._seqs = SeqCounter()  # used by the writer only
        self._reader: apsw.Connection | None = None
        self._lock_fd: int | None = None
        self._inlined_this_turn = False

    def _connect(self) -> apsw.Connection:
        conn = apsw.Connection(self.path)
        conn.setbusytimeout(BUSY_TIMEOUT_MS)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {self.synchronous}")
        return conn

    async def open(self) -> None:
        check_sqlite_version()
        directory = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(directory):
            raise StorageError(f"directory {directory} does not exist")
        self._lock_fd = os.open(self.path + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            self._lock_fd = None
            raise StorageError(
                f"database {self.path} is in use by another agent-runtime process",
                hint="stop the other process first; one runtime owns one SQLite file",
            ) from None
        try:
            _create_private(self.path)
            conn = self._connect()
            try:
                call_with_retry(lambda: migrate(conn))
            finally:
                conn.close()
            self._writer.start()
            self._reader = self._connect()
        except StorageError:
            await self.close()
            raise
        except apsw.Error as exc:
            await self.close()
            raise StorageError(f"cannot open {self.path}: {exc}") from None

    async def close(self) -> None:
        self._writer.stop()
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    @property
    def commit_guard(self) -> Callable[[], None] | None:
        return self._writer.guard

    @commit_guard.setter
    def commit_guard(self, guard: Callable[[], None] | None) -> None:
        self._writer.guard = guard

    def _read(self) -> apsw.Connection:
        if self._reader is None:
            raise StorageError("store is not open")
        return self._reader

    # -- runs

    async def create_run(
        self, run_id: str, workflow: str, input: dict[str, Any], *, solo: bool = False
    ) -> tuple[Run, bool]:
        # With nothing executing, a submission commits on the loop thread: the two thread
        # hand-offs cost about as much as the commit itself on an idle server. Only one per
        # loop iteration, so that a burst of submissions still shares one group commit.
        if solo and not self._inlined_this_turn:
            done = self._writer.try_inline(_create_run_txn, self._seqs, run_id, workflow, input)
            if done is not BUSY:
                self._inlined_this_turn = True
                asyncio.get_running_loop().call_soon(self._next_turn)
                return cast(tuple[Run, bool], done)
        result: tuple[Run, bool] = await self._writer.submit(
            _create_run_txn, self._seqs, run_id, workflow, input
        )
        return result

    def _next_turn(self) -> None:
        self._inlined_this_turn = False

    async def get_run(self, run_id: str) -> Run | None:
        run: Run | None = call_with_retry(lambda: _get_run(self._read(), run_id))
        return run

    async def list_runs(
        self,
        *,
        status: str | None = None,
        workflow: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> RunPage:
        sql, params = list_runs_query(status, workflow, limit, cursor, "?")
        rows = call_with_retry(lambda: self._read().execute(sql, params).fetchall())
        return page_from_rows(rows, limit)

    async def count_by_status(self) -> dict[str, int]:
        rows = self._read().execute("SELECT status, count(*) FROM runs GROUP BY status")
        return {status: n for status, n in rows}

    async def history(self, run_id: str) -> list[Event]:
        rows = call_with_retry(
            lambda: (
                self._read()
                .execute(
                    f"SELECT {_EVENT_COLS} FROM events WHERE run_id = ? ORDER BY seq", (run_id,)
                )
                .fetchall()
            )
        )
        return [_event(r) for r in rows]

    # -- execution

    async def claim(self, owner: str, now: float, limit: int, lease_s: float) -> list[Run]:
        runs: list[Run] = await self._writer.submit(
            _claim_txn, owner, now, limit, lease_s, self.exclusive
        )
        return runs

    async def renew(self, owner: str, run_ids: Sequence[str], lease_s: float) -> None:
        await self._writer.submit(_renew_txn, owner, list(run_ids), lease_s)

    async def append(
        self,
        run_id: str,
        owner: str,
        events: Sequence[Event],
        transition: Transition | None = None,
        *,
        solo: bool = False,
    ) -> list[Event] | None:
        if solo:
            done = self._writer.try_inline(
                _append_txn, self._seqs, run_id, owner, events, transition
            )
            if done is not BUSY:
                return cast(list[Event] | None, done)
        stored: list[Event] | None = await self._writer.submit(
            _append_txn, self._seqs, run_id, owner, events, transition
        )
        return stored

    # -- signals and cancellation

    async def send_signal(self, run_id: str, name: str, payload: Any) -> Run | None:
        run: Run | None = await self._writer.submit(_send_signal_txn, run_id, name, payload)
        return run

    async def take_signal(
        self,
        run_id: str,
        owner: str,
        position: int,
        name: str,
        deadline: float | None,
        now: float,
    ) -> SignalOutcome | None:
        outcome: SignalOutcome | None = await self._writer.submit(
            _take_signal_txn, self._seqs, run_id, owner, position, name, deadline, now
        )
        return outcome

    async def cancel(self, run_id: str) -> Run | None:
        run: Run | None = await self._writer.submit(_cancel_txn, self._seqs, run_id)
        return run

    async def next_wake_at(self) -> float | None:
        row = (
            self._read()
            .execute(
                "SELECT min(wake_at) FROM runs WHERE wake_at IS NOT NULL"
                " AND status IN ('sleeping', 'waiting')"
            )
            .fetchone()
        )
        return None if row is None or row[0] is None else float(row[0])
