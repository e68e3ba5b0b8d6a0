"""A read-only view of a runtime database: its runs and their histories, never written.

For tools that look at a database a runtime owns or owned (``agent-runtime replay``; a copy
pulled from object storage; a copy inside a new image): it takes no lock, runs no
migration and writes nothing, on SQLite (a file path) or PostgreSQL (a ``postgresql://``
URL, in read-only transactions).

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

from ._codec import RUN_COLUMNS, event_from_row, run_from_row
from ._errors import InvalidInput, RunNotFound, StorageError
from ._sqlite_schema import SCHEMA_VERSION
from ._store import TERMINAL_STATUSES, Event, Run

_EVENT_COLUMNS = "seq, kind, position, name, attempt, terminal, data, created_at"
_TERMINAL = ", ".join(f"'{s}'" for s in sorted(TERMINAL_STATUSES))


class DatabaseReader(Protocol):
    def unfinished_runs(self) -> list[Run]: ...
    def run(self, run_id: str) -> Run: ...
    def history(self, run_id: str) -> list[Event]: ...
    def close(self) -> None: ...


def open_reader(db: str) -> DatabaseReader:
    """A reader for a SQLite path or a ``postgresql://`` URL; ``InvalidInput`` (one line)
    when ``db`` is not an agent-runtime database."""
    if db.startswith(("postgresql://", "postgres://")):
        return _PostgresReader(db)
    if "=" in db:
        raise InvalidInput("--db takes a SQLite path or a postgresql:// URL, not a key=value DSN")
    return _SQLiteReader(db)


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

    def history(self, run_id: str) -> list[Event]:
        sql = f"SELECT {_EVENT_COLUMNS} FROM events WHERE run_id = {self.mark} ORDER BY seq"
        return [event_from_row(r) for r in self._rows(sql, (run_id,))]


class _SQLiteReader(_Queries):
    def __init__(self, path: str) -> None:
        if not os.path.isfile(path):
            raise InvalidInput(f"database {path} does not exist")
        self._tmp: str | None = None
        self._conn = self._open(os.path.abspath(path))

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
    return apsw.Connection(uri, flags=apsw.SQLITE_OPEN_URI | apsw.SQLITE_OPEN_READONLY)


def _checked(conn: apsw.Connection) -> apsw.Connection:
    """``conn`` once its schema is one this runtime reads (opening is lazy: this first
    read is where a file that cannot be read fails)."""
    try:
        row = conn.execute("PRAGMA user_version").fetchone()
        version = int(row[0]) if row else 0
    except (apsw.CantOpenError, apsw.ReadOnlyError):
        conn.close()
        raise
    except apsw.Error as exc:
        conn.close()
        raise InvalidInput(f"cannot read the database: {exc}") from None
    if version == 0:
        conn.close()
        raise InvalidInput("the file is not an agent-runtime database (no schema)")
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
