"""One group-commit transaction of the Postgres writer, in a few statements whatever its size.

Per operation, ``op_append`` costs three statements awaited in turn (lock, insert, update):
a batch of 100 appends was 300 round trips. Here a batch of appends costs, in all:

1. one ``SELECT ... FOR UPDATE`` locking every run of the batch (in id order, like
   ``op_renew`` and every other writer: no deadlocks), sent in one pipeline with
2. one ``SELECT`` of the terminal events already stored at the positions the batch closes;
3. one multi-row ``INSERT`` of all events and
4. one ``UPDATE runs`` for all runs, both pipelined too (rows go as one JSON parameter).

A batch of one operation keeps ``op_append``'s three statements: fewer than four.

The fence and the results stay per operation: an append whose run is not RUNNING under its
owner writes nothing and yields None; a terminal event whose position is already closed is
not inserted, the stored one is returned in its place and takes no seq. Both are decided in
memory from the locked rows, so later operations of the same batch see earlier ones.

Other operations (``take_signal``) keep their own per-operation code. Operations on one run
run in queue order: the batch goes in waves (the k-th operation of every run), and a run
touched by such an operation has its remaining appends done by ``op_append`` as well, after
the staged rows are written.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from . import _postgres_ops as ops
from ._codec import EVENT_COLUMNS, dumps, dumps_opt, event_from_row
from ._postgres_ops import Conn
from ._store import Event, RunStatus, Transition


@dataclasses.dataclass(frozen=True, slots=True)
class Append:
    """The arguments of one ``Store.append``."""

    run_id: str
    owner: str
    events: Sequence[Event]
    transition: Transition | None


Work = Append | Callable[[Conn], Awaitable[Any]]

_LOCK = "SELECT id, status, owner, last_seq FROM runs WHERE id = ANY(%s) ORDER BY id FOR UPDATE"
# Rows travel as one JSON array of arrays per statement: one C-encoded text parameter instead
# of psycopg adapting a Python list per column (measured: that adaptation cost more than the
# round trips it saved).
_TERMINALS = (
    f"SELECT run_id, {EVENT_COLUMNS} FROM events WHERE terminal AND (run_id, position) IN"
    " (SELECT k->>0, (k->>1)::int FROM json_array_elements(%s::json) k)"
)
_INSERT = (
    "INSERT INTO events (run_id, seq, kind, position, name, attempt, terminal, data, created_at)"
    " SELECT r->>0, (r->>1)::bigint, r->>2, (r->>3)::int, r->>4, (r->>5)::int, (r->>6)::bool,"
    " r->>7, (r->>8)::float8 FROM json_array_elements(%s::json) r"
)
_UPDATE = (
    "UPDATE runs AS r SET last_seq = v.last_seq, updated_at = v.now,"
    " status = CASE WHEN v.has_t THEN v.status ELSE r.status END,"
    " result = CASE WHEN v.has_t THEN v.result ELSE r.result END,"
    " error = CASE WHEN v.has_t THEN v.error ELSE r.error END,"
    " wake_at = CASE WHEN v.has_t THEN v.wake_at ELSE r.wake_at END,"
    " owner = CASE WHEN v.release THEN NULL ELSE r.owner END,"
    " lease_until = CASE WHEN v.release THEN NULL ELSE r.lease_until END"
    " FROM (SELECT u->>0 AS id, (u->>1)::bigint AS last_seq, (u->>2)::float8 AS now,"
    " (u->>3)::bool AS has_t, u->>4 AS status, u->>5 AS result, u->>6 AS error,"
    " (u->>7)::float8 AS wake_at, (u->>8)::bool AS release"
    " FROM json_array_elements(%s::json) u) AS v"
    " WHERE r.id = v.id"
)


def _rows(rows: list[tuple[Any, ...]]) -> str:
    # Floats encode as repr: they read back exactly. Event data is already JSON text (ASCII).
    return json.dumps(rows, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


@dataclasses.dataclass(slots=True)
class _RunState:
    """A locked run as the batch has left it so far."""

    status: str
    owner: str | None
    last_seq: int
    transition: Transition | None = None  # the newest one staged
    release: bool = False
    touched: bool = False  # has a staged UPDATE


class _Batch:
    def __init__(self, conn: Conn, now: float) -> None:
        self.conn = conn
        self.now = now
        self.runs: dict[str, _RunState] = {}
        self.closed: dict[tuple[str, int], Event] = {}  # (run, position) -> terminal event
        self.rows: list[tuple[Any, ...]] = []  # staged event rows
        self.notify = False

    async def load(self, run_ids: list[str], appends: list[Append]) -> None:
        """Lock the runs and read the stored terminal events the appends could hit: two
        statements, one round trip."""
        keys = sorted(
            {(a.run_id, e.position) for a in appends for e in a.events
             if e.terminal and e.position is not None}
        )  # fmt: skip
        locked = await self.conn.execute(_LOCK, (run_ids,))
        found = None
        if keys:
            found = await self.conn.execute(_TERMINALS, (_rows(keys),))
        for run_id, status, owner, last_seq in await locked.fetchall():
            self.runs[run_id] = _RunState(status, owner, last_seq)
        if found is not None:
            for row in await found.fetchall():
                ev = event_from_row(row[1:])
                assert ev.position is not None
                self.closed[(row[0], ev.position)] = ev

    def append(self, a: Append) -> list[Event] | None:
        """Stage one append against the in-memory state of its run (``ops.op_append``'s
        semantics, statement for statement)."""
        st = self.runs.get(a.run_id)
        if st is None or st.status != RunStatus.RUNNING or st.owner != a.owner:
            return None
        stored: list[Event] = []
        for ev in a.events:
            new = dataclasses.replace(ev, seq=st.last_seq + 1, created_at=ev.created_at or self.now)
            if new.terminal and new.position is not None:
                old = self.closed.get((a.run_id, new.position))
                if old is not None:
                    stored.append(old)
                    continue
                self.closed[(a.run_id, new.position)] = new
            row = (a.run_id, new.seq, str(new.kind), new.position, new.name, new.attempt,
                   new.terminal, dumps(new.data), new.created_at)  # fmt: skip
            self.rows.append(row)
            st.last_seq = new.seq
            stored.append(new)
        st.touched = True
        t = a.transition
        if t is not None:
            st.transition = t
            st.status = str(t.status)
            if t.release:
                st.release = True
                st.owner = None
            if t.status == RunStatus.PENDING:
                self.notify = True
        return stored

    async def flush(self) -> None:
        """Send the staged INSERT and UPDATE (results are read at the next sync)."""
        if self.rows:
            await self.conn.execute(_INSERT, (_rows(self.rows),))
            self.rows = []
        touched = [(run_id, st) for run_id, st in self.runs.items() if st.touched]
        if touched:
            updates: list[tuple[Any, ...]] = []
            for run_id, st in touched:
                t = st.transition
                updates.append(
                    (run_id, st.last_seq, self.now, t is not None,
                     None if t is None else str(t.status),
                     None if t is None else dumps_opt(t.result),
                     None if t is None else dumps_opt(t.error),
                     None if t is None else t.wake_at,
                     st.release)
                )  # fmt: skip
                st.touched, st.transition, st.release = False, None, False
            await self.conn.execute(_UPDATE, (_rows(updates),))
        if self.notify:
            await ops.notify_work(self.conn)
            self.notify = False


def _waves(works: Sequence[tuple[str, Work]]) -> list[list[int]]:
    """Indexes of ``works`` in waves: wave k holds the k-th operation of every run."""
    seen: dict[str, int] = {}
    waves: list[list[int]] = []
    for i, (run_id, _) in enumerate(works):
        k = seen.get(run_id, 0)
        seen[run_id] = k + 1
        if k == len(waves):
            waves.append([])
        waves[k].append(i)
    return waves


async def op_write_batch(conn: Conn, works: Sequence[tuple[str, Work]]) -> list[Any]:
    """Do ``works`` (run id, operation) in the caller's transaction; one result each. Best
    inside a pipeline (``conn.pipeline()``) when there are several: the statements then share
    round trips."""
    if len(works) == 1:
        # A lone operation: its own three statements cost less than the batch's four.
        return [await _one(conn, works[0][1])]
    batch = _Batch(conn, time.time())
    await batch.load(sorted({run_id for run_id, _ in works}),
                     [w for _, w in works if isinstance(w, Append)])  # fmt: skip
    results: list[Any] = [None] * len(works)
    apart: set[str] = set()  # runs whose state only the database knows now
    for wave in _waves(works):
        for i in wave:
            run_id, work = works[i]
            if isinstance(work, Append) and run_id not in apart:
                results[i] = batch.append(work)
                continue
            await batch.flush()
            results[i] = await _one(conn, work)
            apart.add(run_id)
    await batch.flush()
    return results


async def _one(conn: Conn, work: Work) -> Any:
    if isinstance(work, Append):
        return await ops.op_append(conn, work.run_id, work.owner, work.events, work.transition)
    return await work(conn)
