"""One writer thread that commits queued operations together (group commit).

Each operation is a function ``op(conn, *args)`` that runs inside a transaction. The writer
takes whatever is queued when it becomes free and runs it all in ONE transaction: under
load, many runs share one fsync, and a lone request waits for nobody (no timer, no added
latency). A caller's future resolves only after COMMIT returned, so nothing is reported
done before it is durable.

When the caller knows nobody else is writing (a single active run; a submission to an idle
writer, at most one per loop iteration), ``try_inline`` commits on the caller's thread while
the writer is idle: a sequential workflow then skips two thread hand-offs per step. It
blocks the caller for the fsync, so it is for those cases only.

If a batch fails (a bug in one op, a constraint we did not expect), it is rolled back and
each op is retried in a transaction of its own, so one bad op cannot fail its neighbours.
A full disk fails each op with ``StorageFull`` (the transaction is rolled back: nothing is
half-written). ``guard``, when set, runs right before each COMMIT and aborts the
transaction by raising (the lease gate: no commit once the tenant's lease is unconfirmed).
``SQLITE_BUSY`` (for example Litestream holding the lock during a checkpoint) is retried
with backoff by ``call_with_retry``.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, cast

import apsw

from . import _metrics
from ._errors import StorageFull

MAX_BATCH = 512
BUSY = object()  # try_inline: the writer is busy, submit instead
_BUSY_RETRIES = 8

Op = Callable[..., Any]
_Item = tuple[Op, tuple[Any, ...], "asyncio.Future[Any]", asyncio.AbstractEventLoop]


def call_with_retry(fn: Callable[[], Any]) -> Any:
    """The one retrying caller for database work: retries while the database is busy."""
    delay = 0.005
    for attempt in range(_BUSY_RETRIES):
        try:
            return fn()
        except (apsw.BusyError, apsw.LockedError):
            if attempt == _BUSY_RETRIES - 1:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.5)
    raise AssertionError("unreachable")


class GroupCommitWriter:
    def __init__(self, connect: Callable[[], apsw.Connection], name: str = "sqlite-writer"):
        self._connect = connect
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._conn: apsw.Connection | None = None
        self._busy = threading.Lock()  # held while a transaction is in progress
        self.guard: Callable[[], None] | None = None  # raises to refuse a COMMIT

    def start(self) -> None:
        self._thread.start()
        self._started.wait()
        if self._error is not None:
            raise self._error

    def stop(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    def submit(self, op: Op, *args: Any) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        self._queue.put((op, args, fut, loop))
        return fut

    def try_inline(self, op: Op, *args: Any) -> Any:
        """Run ``op`` in a transaction on this thread if the writer is idle; return
        ``BUSY`` (and do nothing) otherwise."""
        if self._conn is None or not self._queue.empty() or not self._busy.acquire(False):
            return BUSY
        try:
            item = cast(_Item, (op, args, None, None))
            ((ok, value),) = self._commit(self._conn, [item])
        finally:
            self._busy.release()
        if not ok:
            raise value
        return value

    # -- writer thread

    def _run(self) -> None:
        try:
            conn = self._connect()
        except BaseException as exc:
            self._error = exc
            self._started.set()
            return
        self._conn = conn
        self._started.set()
        try:
            while True:
                item = self._queue.get()
                if item is None:
                    return
                batch = [item]
                stop = False
                while len(batch) < MAX_BATCH:
                    try:
                        nxt = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if nxt is None:
                        stop = True
                        break
                    batch.append(nxt)
                with self._busy:
                    results = self._commit(conn, batch)
                self._deliver(batch, results)
                if stop:
                    return
        finally:
            self._conn = None
            conn.close()

    def _commit(self, conn: apsw.Connection, batch: list[_Item]) -> list[tuple[bool, Any]]:
        started = time.perf_counter()
        try:
            results: list[tuple[bool, Any]] = call_with_retry(
                lambda: _transaction(conn, batch, self.guard)
            )
        except Exception:  # each op again in its own transaction: only the bad one fails
            results = [_one(conn, item, self.guard) for item in batch]
        _metrics.COMMIT_SECONDS.observe(time.perf_counter() - started)
        _metrics.BATCH_SIZE.observe(len(batch))
        return results

    @staticmethod
    def _deliver(batch: list[_Item], results: list[tuple[bool, Any]]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], bool, Any]]] = {}
        for (_, _, fut, loop), (ok, value) in zip(batch, results, strict=True):
            by_loop.setdefault(loop, []).append((fut, ok, value))
        for loop, items in by_loop.items():
            # One wake-up of the event loop per batch, not per future. A closed loop
            # (RuntimeError) means nobody is waiting any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_resolve, items)


def _transaction(
    conn: apsw.Connection, batch: list[_Item], guard: Callable[[], None] | None
) -> list[tuple[bool, Any]]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        results = [(True, op(conn, *args)) for op, args, _, _ in batch]
        if guard is not None:
            guard()
        conn.execute("COMMIT")
    except BaseException:
        if not conn.getautocommit():
            conn.execute("ROLLBACK")
        raise
    return results


def _one(conn: apsw.Connection, item: _Item, guard: Callable[[], None] | None) -> tuple[bool, Any]:
    try:
        results: list[tuple[bool, Any]] = call_with_retry(lambda: _transaction(conn, [item], guard))
        return results[0]
    except Exception as exc:
        return (False, full_as_storage_full(exc))


_SHM_SIZE = apsw.mapping_extended_result_codes["SQLITE_IOERR_SHMSIZE"]


def full_as_storage_full(exc: Exception) -> Exception:
    """SQLITE_FULL (or a WAL index that cannot grow) as ``StorageFull``; others as they are."""
    if isinstance(exc, apsw.FullError) or (
        isinstance(exc, apsw.IOError) and getattr(exc, "extendedresult", None) == _SHM_SIZE
    ):
        return StorageFull(f"the database's disk is full ({exc})")
    return exc


def _resolve(items: list[tuple[asyncio.Future[Any], bool, Any]]) -> None:
    for fut, ok, value in items:
        if fut.done():
            continue
        if ok:
            fut.set_result(value)
        else:
            fut.set_exception(value)
