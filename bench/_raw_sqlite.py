"""Part (a): the floor every durable step pays, one fsynced SQLite commit.

APSW (the driver agent_runtime uses), WAL, synchronous=FULL, one INSERT + COMMIT per
iteration. The row is about the size of a recorded no-op step.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import apsw


def run(db_path: Path, commits: int) -> dict[str, Any]:
    conn = apsw.Connection(str(db_path))
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute(
            "CREATE TABLE events (id INTEGER PRIMARY KEY, run_id TEXT, position INTEGER,"
            " kind TEXT, data TEXT, created_at REAL)"
        )
        data = json.dumps({"result": 0})
        t0 = time.perf_counter()
        for i in range(commits):
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(
                "INSERT INTO events (run_id, position, kind, data, created_at)"
                " VALUES (?, ?, ?, ?, ?)",
                ("bench-run", i, "step_completed", data, time.time()),
            )
            conn.execute("COMMIT")
        elapsed = time.perf_counter() - t0
        (count,) = next(conn.execute("SELECT count(*) FROM events"))
        if count != commits:
            raise RuntimeError(f"expected {commits} rows, found {count}")
    finally:
        conn.close()
    return {
        "value": commits / elapsed,
        "unit": "commits/s",
        "elapsed_s": elapsed,
        "commits": commits,
        "sqlite": apsw.sqlite_lib_version(),
    }
