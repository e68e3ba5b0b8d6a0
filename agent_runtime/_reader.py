"""A read-only view of a runtime database: its runs, their histories and steps, never written.

For tools that look at a database a runtime owns or owned (``agent-runtime replay``; a copy
pulled from object storage, ``fleet pull`` / ``fleet inspect``; the volume of a stopped
tenant, ``fleet migrate``; a copy inside a new image): it takes no lock, runs no migration
and writes nothing, on SQLite (a file path) or PostgreSQL (a ``postgresql://`` URL, in
read-only transactions). Callers need no SQL of the runtime's schema.

``open_reader`` is for databases a runtime has migrated (it refuses one without schema);
``open_copy`` reads any SQLite file a runtime wrote or was given, including one the runtime
never migrated (``schema_version`` 0: no runs), and checks its integrity.

SQLite opens the file with ``mode=ro``. A WAL database in a directory this process cannot
write (a read-only mount) cannot be opened that way without its ``-shm`` file: then, if
there is no write-ahead log to read, the file is opened as immutable; if there is one, the
database and its log are copied to a private temporary directory and read there, so that
no committed transaction is missed.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

import apsw

from ._codec import (
    EVENT_COLUMNS,
    RUN_COLUMNS,
    event_from_row,
    list_runs_query,
    page_from_rows,
    run_from_row,
)
from ._errors import InvalidInput, RunNotFound, StorageError
from ._sqlite_schema import SCHEMA_VERSION
from ._store import TERMINAL_STATUSES, Event, EventKind, Run, RunPage

_TERMINAL = ", ".join(f"'{s}'" for s in sorted(TERMINAL_STATUSES))


class DatabaseReader(Protocol):
    def unfinished_runs(self) -> list[Run]: ...
    def run(self, run_id: str) -> Run: ...
    def history(self, run_id: str, after: int = 0) -> list[Event]: ...
    def steps(self, run_id: str) -> list[Event]: ...
    def recent_runs(self, limit: int | None = None) -> list[Run]: ...
    def list_runs(
        self,
        *,
        status: str | None = None,
        workflow: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> RunPage: ...
    def latest_seqs(self) -> dict[str, int]: ...
    def statuses(self) -> dict[str, str]: ...
    def count_by_status(self) -> dict[str, int]: ...
    def close(self) -> None: ...


class DatabaseCopy(DatabaseReader, Protocol):
    """A SQLite file read by ``open_copy``."""

    schema_version: int  # 0: the runtime never migrated it (no runs)

    def integrity_check(self) -> str: ...
    def __enter__(self) -> DatabaseCopy: ...
    def __exit__(self, *exc: object) -> None: ...


def open_reader(db: str) -> DatabaseReader:
    """A reader for a SQLite path or a ``postgresql://`` URL; ``InvalidInput`` (one line)
    when ``db`` is not an agent-runtime database."""
    if db.startswith(("postgresql://", "postgres://")):
        return _PostgresReader(db)
    if "=" in db:
        raise InvalidInput("--db takes a SQLite path or a postgresql:// URL, not a key=value DSN")
    reader = _SQLiteReader(db)
    if reader.schema_version == 0:
        reader.close()
        raise InvalidInput("the file is not an agent-runtime database (no schema)")
    return reader


def open_copy(path: str | os.PathLike[str]) -> DatabaseCopy:
    """A reader of the SQLite file at ``path`` (``with open_copy(p) as db: ...``);
    InvalidInput when it is missing or not a database, StorageError when its schema is
    newer than this runtime reads."""
    return _SQLiteReader(os.fspath(path))


class _Queries:
    """The reads, shared by both backends (``mark`` is the driver's placeholder)."""

    mark = "?"

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[Sequence[Any]]:
        raise NotImplementedError

    def unfinished_runs(self) -> list[Run]:
        sql = f"SELECT {RUN_COLUMNS} FROM runs WHERE status NOT IN ({_TERMINAL}) ORDER BY num"
        return [run_from_row(r) for r in self._rows(sql)]

    def run(self, run_id: str) -> Run:
        rows = self._rows(f"SELECT {RUN_COLUMNS} FROM runs WHERE id = {self.mark}", (run_id,))
        if not rows:
            raise RunNotFound(run_id)
        return run_from_row(rows[0])

    def history(self, run_id: str, after: int = 0) -> list[Event]:
        """The run's events in order; with ``after``, only those with a higher ``seq``."""
        sql = (
            f"SELECT {EVENT_COLUMNS} FROM events WHERE run_id = {self.mark} AND seq > {self.mark}"
            " ORDER BY seq"
        )
        return [event_from_row(r) for r in self._rows(sql, (run_id, after))]

    def steps(self, run_id: str) -> list[Event]:
        """The recorded outcome of each step of the run (completed, or failed for good)."""
        done = (EventKind.STEP_COMPLETED, EventKind.STEP_FAILED)
        return [e for e in self.history(run_id) if e.kind in done]

    def recent_runs(self, limit: int | None = None) -> list[Run]:
        """Newest first; every run without ``limit``."""
        sql = f"SELECT {RUN_COLUMNS} FROM runs ORDER BY num DESC"
        if limit is None:
            return [run_from_row(r) for r in self._rows(sql)]
        return [run_from_row(r) for r in self._rows(f"{sql} LIMIT {self.mark}", (limit,))]

    def list_runs(
        self,
        *,
        status: str | None = None,
        workflow: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> RunPage:
        """A page of runs, newest first, as the runtime's ``GET /v1/runs`` pages them."""
        sql, params = list_runs_query(status, workflow, limit, cursor, self.mark)
        return page_from_rows(self._rows(sql, params), limit)

    def latest_seqs(self) -> dict[str, int]:
        """The ``seq`` of each run's newest event (runs without events are left out): what
        a follower compares to find runs with new events."""
        rows = self._rows("SELECT run_id, max(seq) FROM events GROUP BY run_id")
        return {str(r): int(s) for r, s in rows}

    def statuses(self) -> dict[str, str]:
        """Every run's status by id."""
        return {str(i): str(s) for i, s in self._rows("SELECT id, status FROM runs")}

    def count_by_status(self) -> dict[str, int]:
        rows = self._rows("SELECT status, count(*) FROM runs GROUP BY status ORDER BY status")
        return {str(s): int(n) for s, n in rows}


class _SQLiteReader(_Queries):
    def __init__(self, path: str) -> None:
        if not os.path.isfile(path):
            raise InvalidInput(f"database {path} does not exist")
        self._tmp: str | None = None
        self._conn = self._open(os.path.abspath(path))
        self.schema_version = _schema_version(self._conn)

    def __enter__(self) -> _SQLiteReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def integrity_check(self) -> str:
        """``ok``, or the first problem SQLite's integrity_check finds."""
        return str(self._rows("PRAGMA integrity_check")[0][0])

    def statuses(self) -> dict[str, str]:
        return super().statuses() if self.schema_version else {}

    def count_by_status(self) -> dict[str, int]:
        return super().count_by_status() if self.schema_version else {}

    def recent_runs(self, limit: int | None = None) -> list[Run]:
        return super().recent_runs(limit) if self.schema_version else []

    def list_runs(
        self,
        *,
        status: str | None = None,
        workflow: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> RunPage:
        if not self.schema_version:
            return RunPage([])
        return super().list_runs(status=status, workflow=workflow, limit=limit, cursor=cursor)

    def latest_seqs(self) -> dict[str, int]:
        return super().latest_seqs() if self.schema_version else {}

    def _open(self, path: str) -> apsw.Connection:
        try:
            return _checked(_connect(path))
        except (apsw.CantOpenError, apsw.ReadOnlyError):
            pass  # a WAL database in a directory we cannot write: see the module doc
        wal = Path(path + "-wal")
        if not wal.exists() or wal.stat().st_size == 0:
            return _checked(_connect(path, immutable=True))
        self._tmp = tempfile.mkdtemp(prefix="agent-runtime-read-")
        copy = os.path.join(self._tmp, "copy.db")
        shutil.copyfile(path, copy)
        shutil.copyfile(wal, copy + "-wal")
        return _checked(_connect(copy))

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[Sequence[Any]]:
        return list(self._conn.execute(sql, tuple(params)).fetchall())

    def close(self) -> None:
        self._conn.close()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)


def _connect(path: str, immutable: bool = False) -> apsw.Connection:
    uri = f"file:{quote(path)}?mode=ro" + ("&immutable=1" if immutable else "")
    conn = apsw.Connection(uri, flags=apsw.SQLITE_OPEN_URI | apsw.SQLITE_OPEN_READONLY)
    # A copy that `litestream restore -f` keeps up to date is locked (SQLite's exclusive
    # lock) while each update is written: wait for it instead of failing the read.
    conn.setbusytimeout(5000)
    return conn


def _schema_version(conn: apsw.Connection) -> int:
    row = conn.execute("PRAGMA user_version").fetchone()
    return int(row[0]) if row else 0


def _checked(conn: apsw.Connection) -> apsw.Connection:
    """``conn`` once its schema is one this runtime reads (opening is lazy: this first
    read is where a file that cannot be read fails). Version 0 (never migrated) passes:
    ``open_reader`` refuses it, ``open_copy`` reads it as holding no runs."""
    try:
        version = _schema_version(conn)
    except (apsw.CantOpenError, apsw.ReadOnlyError):
        conn.close()
        raise
    except apsw.Error as exc:
        conn.close()
        raise InvalidInput(f"cannot read the database: {exc}") from None
    if version > SCHEMA_VERSION:
        conn.close()
        raise StorageError(
            f"database schema version {version} is newer than this agent-runtime "
            f"reads ({SCHEMA_VERSION})",
            hint="use the agent-runtime version that wrote it",
        )
    return conn


class _PostgresReader(_Queries):
    mark = "%s"

    def __init__(self, dsn: str) -> None:
        try:
            import psycopg
        except ImportError:
            raise InvalidInput("reading PostgreSQL needs psycopg (pip install psycopg)") from None
        from ._postgres import redacted

        try:
            self._conn = psycopg.connect(
                dsn, connect_timeout=10, application_name="agent_runtime_reader"
            )
        except psycopg.Error as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise StorageError(f"PostgreSQL at {redacted(dsn)} failed: {reason}") from None
        # One read-only snapshot for every read: runs and histories agree with each other.
        self._conn.read_only = True
        self._conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        if not self._rows("SELECT to_regclass('runs') IS NOT NULL")[0][0]:
            self.close()
            raise InvalidInput(f"{redacted(dsn)} holds no agent-runtime database (no runs table)")

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[Sequence[Any]]:
        return list(self._conn.execute(sql, tuple(params)).fetchall())

    def close(self) -> None:
        self._conn.close()
