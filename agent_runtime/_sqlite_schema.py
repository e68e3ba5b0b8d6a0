"""SQLite schema, versioned through ``PRAGMA user_version``.

Append a migration; never edit a shipped one. Nothing here rewrites the file in place
(no VACUUM): Litestream tracks the WAL and an in-place VACUUM breaks its tracking.
"""

from __future__ import annotations

from typing import Any

from ._errors import StorageError

MIGRATIONS: list[str] = [
    # 1: runs, their append-only history, buffered signals.
    """
    CREATE TABLE runs (
        num         INTEGER PRIMARY KEY,          -- creation order, used by list cursors
        id          TEXT NOT NULL UNIQUE,
        workflow    TEXT NOT NULL,
        status      TEXT NOT NULL,
        input       TEXT NOT NULL,
        result      TEXT,
        error       TEXT,
        created_at  REAL NOT NULL,
        updated_at  REAL NOT NULL,
        wake_at     REAL,
        waiting_on  TEXT,
        owner       TEXT,
        lease_until REAL
    ) STRICT;
    CREATE INDEX runs_status ON runs (status, num);
    CREATE INDEX runs_workflow ON runs (workflow, num);
    CREATE INDEX runs_wake ON runs (wake_at) WHERE wake_at IS NOT NULL;

    -- Clustered by run, and keyed so that the primary key is also the "one outcome per
    -- command" constraint: a command's outcome (terminal event) has key = its position,
    -- any other event key = -seq. A re-executed step cannot overwrite a recorded result,
    -- and recording a step writes one B-tree page, as a bare insert does.
    CREATE TABLE events (
        run_id      TEXT NOT NULL,
        key         INTEGER NOT NULL,
        seq         INTEGER NOT NULL,             -- 1, 2, 3... per run
        position    INTEGER,
        kind        TEXT NOT NULL,
        name        TEXT,
        attempt     INTEGER,
        terminal    INTEGER NOT NULL DEFAULT 0,
        data        TEXT,
        created_at  REAL NOT NULL,
        PRIMARY KEY (run_id, key)
    ) STRICT, WITHOUT ROWID;

    CREATE TABLE signals (
        seq         INTEGER PRIMARY KEY,
        run_id      TEXT NOT NULL,
        name        TEXT NOT NULL,
        payload     TEXT,
        created_at  REAL NOT NULL,
        consumed_at REAL
    ) STRICT;
    CREATE INDEX signals_pending ON signals (run_id, name, seq) WHERE consumed_at IS NULL;
    """,
]

SCHEMA_VERSION = len(MIGRATIONS)


def migrate(conn: Any) -> int:
    """Bring the schema up to date in one transaction; returns the version found."""
    found = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if found > SCHEMA_VERSION:
        raise StorageError(
            f"database schema version {found} is newer than this agent-runtime "
            f"supports ({SCHEMA_VERSION})",
            hint="upgrade litefleet (pip install -U litefleet)",
        )
    if found == SCHEMA_VERSION:
        return found
    with conn:  # one transaction for all pending migrations
        for version in range(found, SCHEMA_VERSION):
            conn.execute(MIGRATIONS[version])
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    return found
