"""PostgreSQL backend of the Store protocol (see ``_store.py`` for the contract).

Several runtime processes may share one database (``exclusive = False``): runs are handed
out by ``claim`` with a lease (``FOR UPDATE SKIP LOCKED``), and every executor write is
fenced by the run's ``owner`` under a row lock, so two processes never advance one run.

Layout: the operations live in ``_postgres_ops`` as ``op_*(conn, ...)`` functions that run
inside a transaction they are given. ``_call`` runs one in a transaction of its own and
retries it on serialization failures, deadlocks and lost connections. Fenced executor
writes (``append``, ``take_signal``) instead go to one writer task that commits everything
queued at that moment in a single transaction (group commit: one WAL flush for many runs),
in a few pipelined statements for the whole batch (``_postgres_batch``).
Runnable work is announced with NOTIFY; ``wait_for_work`` LISTENs for it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager, nullcontext, suppress
from typing import Any, Concatenate, ParamSpec, TypeVar

import psycopg
import structlog
from psycopg import AsyncConnection
from psycopg.conninfo import conninfo_to_dict
from psycopg.pq import TransactionStatus

from . import _metrics
from . import _postgres_ops as ops
from ._errors import InvalidInput, StorageError
from ._postgres_batch import Append, Work, op_write_batch
from ._postgres_ops import Conn
from ._postgres_schema import WORK_CHANNEL
from ._store import Event, Run, RunPage, SignalOutcome, Transition

log = structlog.get_logger("agent_runtime")

P = ParamSpec("P")
T = TypeVar("T")

_ATTEMPTS = 6  # per operation; backoff 20 ms doubling to 1 s (~2.3 s in all)
_MAX_BATCH = 512  # jobs per group-commit transaction


def redacted(dsn: str) -> str:
    """``host:port/dbname`` of a DSN, for messages (never the password)."""
    try:
        info = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "<invalid DSN>"
    return f"{info.get('host', 'localhost')}:{info.get('port', 5432)}/{info.get('dbname', '')}"


async def _connect(dsn: str) -> Conn:
    connecting = asyncio.ensure_future(
        AsyncConnection.connect(
            dsn, autocommit=True, connect_timeout=10, application_name="agent_runtime"
        )
    )
    try:
        conn: Conn = await asyncio.shield(connecting)
    except asyncio.CancelledError:
        # A connect cut off mid-handshake leaves a server backend waiting for the client
        # until authentication_timeout (60 s by default), and DROP DATABASE waits for it:
        # let the handshake finish, then close the connection properly.
        with suppress(Exception):
            await (await connecting).close()
        raise
    return conn


class _Pool:
    """A few reusable autocommit connections; broken ones are dropped, not returned."""

    def __init__(self, dsn: str, size: int) -> None:
        self._dsn = dsn
        self._idle: list[Conn] = []
        self._slots = asyncio.Semaphore(size)

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Conn]:
        async with self._slots:
            conn = self._idle.pop() if self._idle else await _connect(self._dsn)
            try:
                yield conn
            finally:
                if conn.closed or conn.info.transaction_status != TransactionStatus.IDLE:
                    await conn.close()
                else:
                    self._idle.append(conn)

    def put(self, conn: Conn) -> None:
        self._idle.append(conn)

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            await conn.close()


def _storage_error(dsn: str, exc: Exception) -> StorageError:
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return StorageError(
        f"PostgreSQL at {redacted(dsn)} failed: {reason}",
        hint="is the server up and the DSN right? `make postgres` starts a local one",
    )


# -- group commit ----------------------------------------------------------------------------


@dataclasses.dataclass(slots=True)
class _Job:
    run_id: str
    work: Work
    future: asyncio.Future[Any]


class _Writer:
    """One connection committing whatever is queued when it becomes free, in ONE
    transaction. A lone job waits for nobody; under load many share a WAL flush. A job's
    future resolves only after COMMIT returned."""

    def __init__(self, dsn: str, name: str, guard: Callable[[], Callable[[], None] | None]) -> None:
        self._dsn = dsn
        self._guard = guard  # the store's current commit guard
        self._queue: asyncio.Queue[_Job | None] = asyncio.Queue()
        self._conn: Conn | None = None
        self._task = asyncio.create_task(self._loop(), name=name)

    def submit(self, job: _Job) -> None:
        if self._task.done():
            raise StorageError("the store is not open")
        self._queue.put_nowait(job)

    async def close(self) -> None:
        if not self._task.done():
            self._queue.put_nowait(None)
            await self._task
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    async def _loop(self) -> None:
        while True:
            job = await self._queue.get()
            if job is None:
                return
            batch = [job]
            stop = False
            while len(batch) < _MAX_BATCH and not self._queue.empty():
                nxt = self._queue.get_nowait()
                if nxt is None:
                    stop = True
                    break
                batch.append(nxt)
            await self._commit(batch)
            if stop:
                return

    async def _commit(self, batch: list[_Job]) -> None:
        # One lock order (run id) in every batch of every writer and process: no deadlocks.
        batch.sort(key=lambda j: j.run_id)
        delay = 0.02
        for attempt in range(1, _ATTEMPTS + 1):
            started = time.perf_counter()
            try:
                if self._conn is None or self._conn.closed or self._conn.broken:
                    self._conn = await _connect(self._dsn)
                # Several jobs: pipelined, the batch's few statements share round trips.
                piped = self._conn.pipeline() if len(batch) > 1 else nullcontext()
                async with piped, self._conn.transaction():
                    results = await op_write_batch(self._conn, [(j.run_id, j.work) for j in batch])
                    guard = self._guard()
                    if guard is not None:
                        guard()  # raising rolls the transaction back
            except psycopg.OperationalError as exc:
                if attempt == _ATTEMPTS:
                    for job in batch:
                        if not job.future.done():
                            job.future.set_exception(_storage_error(self._dsn, exc))
                    return
                log.warning(
                    "postgres_retry", op="group_commit", jobs=len(batch), attempt=attempt,
                    error=str(exc),
                )  # fmt: skip
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
                continue
            except Exception as exc:
                if len(batch) > 1:
                    # Commit the jobs one by one so a faulty one cannot fail the others.
                    for job in batch:
                        await self._commit([job])
                elif not batch[0].future.done():
                    batch[0].future.set_exception(exc)
                return
            _metrics.COMMIT_SECONDS.observe(time.perf_counter() - started)
            _metrics.BATCH_SIZE.observe(len(batch))
            for job, result in zip(batch, results, strict=True):
                if not job.future.done():
                    job.future.set_result(result)
            return


# -- the store -------------------------------------------------------------------------------


class PostgresStore:
    """Store on PostgreSQL (psycopg 3, async). ``dsn``: ``postgresql://user:pw@host:port/db``.

    ``writers``: group-commit connections side by side (a run always maps to the same one,
    so its writes stay in order). One is the default: measured here, four gave no more
    steps/s, the client's per-statement cost being the limit, not the commit."""

    backend = "postgres"
    exclusive = False

    def __init__(self, dsn: str, pool_size: int = 4, writers: int = 1) -> None:
        self.dsn = dsn
        self._pool = _Pool(dsn, pool_size)
        self._n_writers = max(1, writers)
        self._writers: list[_Writer] = []
        self._listener: asyncio.Task[None] | None = None
        self._work = asyncio.Event()
        self.commit_guard: Callable[[], None] | None = None

    def __repr__(self) -> str:
        return f"<PostgresStore {redacted(self.dsn)}>"

    # -- plumbing

    def _error(self, exc: Exception) -> StorageError:
        return _storage_error(self.dsn, exc)

    async def _call(
        self, op: Callable[Concatenate[Conn, P], Awaitable[T]], *args: P.args, **kw: P.kwargs
    ) -> T:
        """Run ``op`` in a transaction of its own, retrying transient failures (serialization
        failure, deadlock, lost connection: all ``OperationalError``)."""
        delay = 0.02
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                async with self._pool.connection() as conn, conn.transaction():
                    return await op(conn, *args, **kw)
            except psycopg.OperationalError as exc:
                if attempt == _ATTEMPTS:
                    raise self._error(exc) from exc
                log.warning("postgres_retry", op=op.__name__, attempt=attempt, error=str(exc))
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
        raise AssertionError("unreachable")

    def _guard(self) -> None:
        # Writes in a transaction of their own are checked before they start (those of the
        # group-commit writer right before COMMIT).
        if self.commit_guard is not None:
            self.commit_guard()

    async def _write(self, run_id: str, work: Work) -> Any:
        """Queue a fenced write for its group-commit writer and wait for the commit."""
        if not self._writers:
            raise StorageError("the store is not open")
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._writers[hash(run_id) % len(self._writers)].submit(_Job(run_id, work, fut))
        return await fut

    async def _listen_loop(self) -> None:
        delay = 0.1
        while True:
            try:
                conn = await _connect(self.dsn)
                async with conn:
                    await conn.execute(f"LISTEN {WORK_CHANNEL}")
                    # Whatever happened while nobody listened is unknown: look once.
                    self._work.set()
                    delay = 0.1
                    async for _ in conn.notifies():
                        self._work.set()
            except psycopg.OperationalError as exc:
                log.warning("postgres_listen_lost", error=str(exc))
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    # -- lifecycle

    async def open(self) -> None:
        try:
            # One plain attempt first: a wrong DSN or password fails at once, unretried.
            self._pool.put(await _connect(self.dsn))
            await self._call(ops.op_schema)
        except StorageError:
            raise
        except psycopg.Error as exc:
            raise self._error(exc) from exc
        self._writers = [
            _Writer(self.dsn, f"postgres-writer-{i}", lambda: self.commit_guard)
            for i in range(self._n_writers)
        ]

    async def close(self) -> None:
        writers, self._writers = self._writers, []
        for writer in writers:
            await writer.close()
        if self._listener is not None:
            self._listener.cancel()
            with suppress(asyncio.CancelledError):
                await self._listener
            self._listener = None
        await self._pool.close()

    async def wait_for_work(self, timeout: float) -> None:
        """Return when a run may have become runnable (NOTIFY from any process sharing the
        database: new run, signal, run released as pending) or after ``timeout`` seconds."""
        if self._listener is None:
            self._listener = asyncio.create_task(self._listen_loop(), name="postgres-listen")
        if not self._work.is_set():
            with suppress(TimeoutError):
                await asyncio.wait_for(self._work.wait(), timeout)
        self._work.clear()

    # -- runs

    async def create_run(
        self, run_id: str, workflow: str, input: dict[str, Any], *, solo: bool = False
    ) -> tuple[Run, bool]:
        self._guard()
        return await self._call(ops.op_create_run, run_id, workflow, input)

    async def get_run(self, run_id: str) -> Run | None:
        return await self._call(ops.op_get_run, run_id)

    async def list_runs(
        self,
        *,
        status: str | None = None,
        workflow: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> RunPage:
        if limit < 1:
            raise InvalidInput(f"limit must be >= 1, got {limit}")
        return await self._call(ops.op_list_runs, status, workflow, limit, cursor)

    async def count_by_status(self) -> dict[str, int]:
        return await self._call(ops.op_count_by_status)

    # -- history

    async def history(self, run_id: str) -> list[Event]:
        return await self._call(ops.op_history, run_id)

    # -- execution

    async def claim(self, owner: str, now: float, limit: int, lease_s: float) -> list[Run]:
        if limit < 1:
            return []
        self._guard()
        return await self._call(ops.op_claim, owner, now, limit, lease_s)

    async def renew(self, owner: str, run_ids: Sequence[str], lease_s: float) -> None:
        if run_ids:
            self._guard()
            await self._call(ops.op_renew, owner, sorted(run_ids), lease_s)

    async def append(
        self,
        run_id: str,
        owner: str,
        events: Sequence[Event],
        transition: Transition | None = None,
        *,
        solo: bool = False,  # a latency hint for SQLite; batching serves both cases here
    ) -> list[Event] | None:
        stored: list[Event] | None = await self._write(
            run_id, Append(run_id, owner, list(events), transition)
        )
        return stored

    # -- signals

    async def send_signal(self, run_id: str, name: str, payload: Any) -> Run | None:
        self._guard()
        return await self._call(ops.op_send_signal, run_id, name, payload)

    async def take_signal(
        self,
        run_id: str,
        owner: str,
        position: int,
        name: str,
        deadline: float | None,
        now: float,
    ) -> SignalOutcome | None:
        outcome: SignalOutcome | None = await self._write(
            run_id, lambda c: ops.op_take_signal(c, run_id, owner, position, name, deadline, now)
        )
        return outcome

    async def cancel(self, run_id: str) -> Run | None:
        self._guard()
        return await self._call(ops.op_cancel, run_id)

    async def next_wake_at(self) -> float | None:
        return await self._call(ops.op_next_wake_at)
