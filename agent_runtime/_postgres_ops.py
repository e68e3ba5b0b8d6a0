"""The Postgres store's database operations: each ``op_*(conn, ...)`` runs inside a
transaction its caller opened (``PostgresStore._call`` or the group-commit writer), so
they compose and retry as a whole. Semantics mirror ``_sqlite.py`` operation by operation.

Every write to a run first locks its row (``_lock_run``): that lock is the owner fence, it
serialises appends, signals and cancellation of one run, and makes ``events.seq`` a plain
per-run counter (``runs.last_seq``).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from typing import Any

from psycopg import AsyncConnection

from ._codec import EVENT_COLUMNS as _EVENT_COLS
from ._codec import RUN_COLUMNS as _RUN_COLS
from ._codec import dumps as _dumps
from ._codec import dumps_opt as _dumps_opt
from ._codec import event_from_row as _event
from ._codec import list_runs_query, page_from_rows
from ._codec import loads as _loads
from ._codec import run_from_row as _run
from ._errors import StorageError
from ._limits import check_signal_buffer
from ._postgres_schema import DDL, SCHEMA_LOCK_KEY, SCHEMA_VERSION, WORK_CHANNEL
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

Conn = AsyncConnection[tuple[Any, ...]]

# Row layout of _lock_run: the run columns, then these.
_STATUS, _OWNER, _LAST_SEQ, _WAITING_ON = 2, 9, 10, 11


async def notify_work(conn: Conn) -> None:
    """Wake the runtimes LISTENing for new work (runs, signals)."""
    # Delivered at commit; identical notifications of one transaction fold into one.
    await conn.execute("SELECT pg_notify(%s, '')", (WORK_CHANNEL,))


async def op_schema(conn: Conn) -> None:
    await conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK_KEY,))
    await conn.execute(DDL)
    row = await (await conn.execute("SELECT max(version) FROM schema_version")).fetchone()
    found = row[0] if row else None
    if found is None:
        await conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (SCHEMA_VERSION,))
    elif found > SCHEMA_VERSION:
        raise StorageError(
            f"database schema version {found} is newer than this agent-runtime supports "
            f"({SCHEMA_VERSION})",
            hint="upgrade litefleet",
        )


async def _lock_run(conn: Conn, run_id: str) -> tuple[Any, ...] | None:
    cur = await conn.execute(
        f"SELECT {_RUN_COLS}, last_seq, waiting_on FROM runs WHERE id = %s FOR UPDATE",
        (run_id,),
    )
    return await cur.fetchone()


def _owns(row: tuple[Any, ...] | None, owner: str) -> bool:
    return row is not None and row[_STATUS] == RunStatus.RUNNING and row[_OWNER] == owner


async def _stored_terminal(conn: Conn, run_id: str, position: int) -> Event | None:
    cur = await conn.execute(
        f"SELECT {_EVENT_COLS} FROM events WHERE run_id = %s AND position = %s AND terminal",
        (run_id, position),
    )
    row = await cur.fetchone()
    return None if row is None else _event(row)


_INSERT_EVENT = (
    "INSERT INTO events (run_id, seq, kind, position, name, attempt, terminal, data, created_at)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
)


async def _insert_events(
    conn: Conn, run_id: str, last_seq: int, events: Sequence[Event], now: float
) -> tuple[list[Event], int]:
    """Insert events after ``last_seq`` (run row locked); returns them and the new last seq.
    A terminal event for an already closed position is dropped; the stored one is returned
    in its place. The caller writes ``runs.last_seq``."""
    stored: list[Event] = []
    for ev in events:
        new = dataclasses.replace(ev, seq=last_seq + 1, created_at=ev.created_at or now)
        params = (run_id, new.seq, str(new.kind), new.position, new.name, new.attempt,
                  new.terminal, _dumps(new.data), new.created_at)  # fmt: skip
        if new.terminal and new.position is not None:
            cur = await conn.execute(
                _INSERT_EVENT + " ON CONFLICT (run_id, position) WHERE terminal DO NOTHING"
                " RETURNING seq",
                params,
            )
            if await cur.fetchone() is None:
                old = await _stored_terminal(conn, run_id, new.position)
                assert old is not None  # it is what we conflicted with
                stored.append(old)
                continue
        else:
            await conn.execute(_INSERT_EVENT, params)
        last_seq = new.seq
        stored.append(new)
    return stored, last_seq


# -- runs


async def op_create_run(
    conn: Conn, run_id: str, workflow: str, input: dict[str, Any]
) -> tuple[Run, bool]:
    now = time.time()
    cur = await conn.execute(
        "INSERT INTO runs (id, workflow, status, input, created_at, updated_at, last_seq)"
        " VALUES (%s, %s, 'pending', %s, %s, %s, 1)"
        f" ON CONFLICT (id) DO NOTHING RETURNING {_RUN_COLS}",
        (run_id, workflow, _dumps(input), now, now),
    )
    row = await cur.fetchone()
    if row is None:
        existing = await op_get_run(conn, run_id)
        assert existing is not None  # runs are never deleted
        return existing, False
    submitted = Event(EventKind.RUN_SUBMITTED, data={"input": input}, seq=1, created_at=now)
    await conn.execute(
        _INSERT_EVENT,
        (run_id, 1, str(submitted.kind), None, None, None, False, _dumps(submitted.data), now),
    )
    await notify_work(conn)
    return _run(row), True


async def op_get_run(conn: Conn, run_id: str) -> Run | None:
    cur = await conn.execute(f"SELECT {_RUN_COLS} FROM runs WHERE id = %s", (run_id,))
    row = await cur.fetchone()
    return None if row is None else _run(row)


async def op_list_runs(
    conn: Conn, status: str | None, workflow: str | None, limit: int, cursor: str | None
) -> RunPage:
    sql, params = list_runs_query(status, workflow, limit, cursor, "%s")
    rows = await (await conn.execute(sql.encode(), params)).fetchall()
    return page_from_rows(rows, limit)


async def op_count_by_status(conn: Conn) -> dict[str, int]:
    cur = await conn.execute("SELECT status, count(*) FROM runs GROUP BY status")
    return {status: n for status, n in await cur.fetchall()}


async def op_history(conn: Conn, run_id: str) -> list[Event]:
    cur = await conn.execute(
        f"SELECT {_EVENT_COLS} FROM events WHERE run_id = %s ORDER BY seq", (run_id,)
    )
    return [_event(r) for r in await cur.fetchall()]


async def op_next_wake_at(conn: Conn) -> float | None:
    cur = await conn.execute(
        "SELECT min(wake_at) FROM runs WHERE wake_at IS NOT NULL"
        " AND status IN ('sleeping', 'waiting')"
    )
    row = await cur.fetchone()
    return None if row is None or row[0] is None else float(row[0])


# -- execution


async def op_claim(conn: Conn, owner: str, now: float, limit: int, lease_s: float) -> list[Run]:
    # SKIP LOCKED: concurrent claimers take different runs and never wait for each other;
    # a run whose row another transaction holds is simply not claimable right now.
    queries: list[tuple[str, tuple[Any, ...]]] = [
        ("SELECT id FROM runs WHERE status = 'pending' ORDER BY num", ()),
        (
            "SELECT id FROM runs WHERE wake_at <= %s AND status IN ('sleeping', 'waiting')"
            " ORDER BY wake_at",
            (now,),
        ),
        (
            "SELECT id FROM runs WHERE status = 'running' AND owner IS DISTINCT FROM %s"
            " AND (lease_until IS NULL OR lease_until < %s) ORDER BY num",
            (owner, now),
        ),
    ]
    ids: list[str] = []
    for sql, params in queries:
        if len(ids) >= limit:
            break
        cur = await conn.execute(
            (sql + " LIMIT %s FOR UPDATE SKIP LOCKED").encode(), (*params, limit - len(ids))
        )
        ids += [r[0] for r in await cur.fetchall()]
    if not ids:
        return []
    cur = await conn.execute(
        "UPDATE runs SET status = 'running', owner = %s, lease_until = %s, wake_at = NULL,"
        f" waiting_on = NULL, updated_at = %s WHERE id = ANY(%s) RETURNING {_RUN_COLS}",
        (owner, now + lease_s, now, ids),
    )
    by_id = {r[0]: _run(r) for r in await cur.fetchall()}
    return [by_id[i] for i in ids]


async def op_renew(conn: Conn, owner: str, run_ids: list[str], lease_s: float) -> None:
    # Lock in id order, like the writer's batches: the two cannot deadlock.
    await conn.execute(
        "UPDATE runs SET lease_until = %s WHERE id IN ("
        " SELECT id FROM runs WHERE id = ANY(%s) AND owner = %s AND status = 'running'"
        " ORDER BY id FOR UPDATE)",
        (time.time() + lease_s, run_ids, owner),
    )


async def op_append(
    conn: Conn,
    run_id: str,
    owner: str,
    events: Sequence[Event],
    transition: Transition | None,
) -> list[Event] | None:
    row = await _lock_run(conn, run_id)
    if row is None or not _owns(row, owner):
        return None
    now = time.time()
    stored, last_seq = await _insert_events(conn, run_id, row[_LAST_SEQ], events, now)
    t = transition
    if t is None:
        await conn.execute(
            "UPDATE runs SET last_seq = %s, updated_at = %s WHERE id = %s",
            (last_seq, now, run_id),
        )
        return stored
    await conn.execute(
        "UPDATE runs SET last_seq = %s, status = %s, result = %s, error = %s, wake_at = %s,"
        " updated_at = %s, owner = CASE WHEN %s THEN NULL ELSE owner END,"
        " lease_until = CASE WHEN %s THEN NULL ELSE lease_until END WHERE id = %s",
        (
            last_seq,
            str(t.status),
            _dumps_opt(t.result),
            _dumps_opt(t.error),
            t.wake_at,
            now,
            t.release,
            t.release,
            run_id,
        ),
    )
    if t.status == RunStatus.PENDING:
        await notify_work(conn)
    return stored


# -- signals and cancellation


async def op_send_signal(conn: Conn, run_id: str, name: str, payload: Any) -> Run | None:
    row = await _lock_run(conn, run_id)
    if row is None or row[_STATUS] in TERMINAL_STATUSES:
        return None if row is None else _run(row)
    now = time.time()
    text = _dumps(payload)
    cur = await conn.execute(
        "SELECT count(*), coalesce(sum(length(payload)), 0) FROM signals"
        " WHERE run_id = %s AND consumed_at IS NULL",
        (run_id,),
    )
    buffered = await cur.fetchone()
    assert buffered is not None
    check_signal_buffer(int(buffered[0]), int(buffered[1]), len(text))
    await conn.execute(
        "INSERT INTO signals (run_id, name, payload, created_at) VALUES (%s, %s, %s, %s)",
        (run_id, name, text, now),
    )
    if row[_STATUS] != RunStatus.WAITING or row[_WAITING_ON] != name:
        return _run(row)
    cur = await conn.execute(
        "UPDATE runs SET status = 'pending', wake_at = NULL, waiting_on = NULL, updated_at = %s"
        f" WHERE id = %s RETURNING {_RUN_COLS}",
        (now, run_id),
    )
    changed = await cur.fetchone()
    assert changed is not None
    await notify_work(conn)
    return _run(changed)


async def op_take_signal(
    conn: Conn,
    run_id: str,
    owner: str,
    position: int,
    name: str,
    deadline: float | None,
    now: float,
) -> SignalOutcome | None:
    row = await _lock_run(conn, run_id)
    if row is None or not _owns(row, owner):
        return None
    closed = await _stored_terminal(conn, run_id, position)
    if closed is not None:
        return SignalOutcome(found=False, stored=closed)
    cur = await conn.execute(
        "SELECT id, payload FROM signals WHERE run_id = %s AND name = %s AND consumed_at IS NULL"
        " ORDER BY id LIMIT 1",
        (run_id, name),
    )
    sig = await cur.fetchone()  # no row lock needed: consumers hold the run's row lock
    if sig is not None:
        payload = _loads(sig[1])
        await conn.execute("UPDATE signals SET consumed_at = %s WHERE id = %s", (now, sig[0]))
        ev = Event(EventKind.SIGNAL_RECEIVED, position, name, None, {"payload": payload}, True)
        _, last_seq = await _insert_events(conn, run_id, row[_LAST_SEQ], [ev], now)
        await conn.execute(
            "UPDATE runs SET last_seq = %s, updated_at = %s WHERE id = %s",
            (last_seq, now, run_id),
        )
        return SignalOutcome(found=True, payload=payload)
    if deadline is not None and deadline <= now:
        return SignalOutcome(found=False)
    last_seq = row[_LAST_SEQ]
    cur = await conn.execute(
        "SELECT 1 FROM events WHERE run_id = %s AND position = %s AND kind = %s",
        (run_id, position, EventKind.SIGNAL_WAIT_STARTED.value),
    )
    if await cur.fetchone() is None:
        ev = Event(EventKind.SIGNAL_WAIT_STARTED, position, name, None, {"deadline": deadline})
        _, last_seq = await _insert_events(conn, run_id, last_seq, [ev], now)
    await conn.execute(
        "UPDATE runs SET last_seq = %s, status = 'waiting', wake_at = %s, waiting_on = %s,"
        " owner = NULL, lease_until = NULL, updated_at = %s WHERE id = %s",
        (last_seq, deadline, name, now, run_id),
    )
    return SignalOutcome(found=False)


async def op_cancel(conn: Conn, run_id: str) -> Run | None:
    row = await _lock_run(conn, run_id)
    if row is None or row[_STATUS] in TERMINAL_STATUSES:
        return None if row is None else _run(row)
    now = time.time()
    ev = Event(EventKind.RUN_CANCELLED, data={"from": row[_STATUS]})
    _, last_seq = await _insert_events(conn, run_id, row[_LAST_SEQ], [ev], now)
    cur = await conn.execute(
        "UPDATE runs SET last_seq = %s, status = 'cancelled', owner = NULL, lease_until = NULL,"
        f" wake_at = NULL, waiting_on = NULL, updated_at = %s WHERE id = %s RETURNING {_RUN_COLS}",
        (last_seq, now, run_id),
    )
    changed = await cur.fetchone()
    assert changed is not None
    return _run(changed)
