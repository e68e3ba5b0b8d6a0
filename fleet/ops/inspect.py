"""Read runs and step timelines from a tenant database copy (read-only, never the live file).

The schema is agent_runtime's (agent_runtime/_sqlite_schema.py): tables ``runs`` and
``events``. Unknown extra columns are ignored, so newer schema versions stay readable.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import apsw

from fleet.core.errors import FleetError, InvalidArgument

RUN_COLUMNS = ("id", "workflow", "status", "input", "result", "error", "created_at", "updated_at")
EVENT_COLUMNS = ("seq", "run_id", "position", "kind", "name", "attempt", "data", "created_at")


@dataclass
class Report:
    path: str
    schema_version: int
    counts: dict[str, int]
    runs: list[dict[str, Any]]
    run: dict[str, Any] | None = None
    events: list[dict[str, Any]] = field(default_factory=list)


def inspect(path: Path, *, run_id: str | None = None, limit: int = 50) -> Report:
    """Newest ``limit`` runs (and with ``run_id`` that run's history) from the file at path."""
    if not path.is_file():
        raise InvalidArgument(f"no such database file: {path}")
    try:
        conn = apsw.Connection(
            f"file:{path}?mode=ro", flags=apsw.SQLITE_OPEN_URI | apsw.SQLITE_OPEN_READONLY
        )
    except apsw.Error as exc:
        raise FleetError(f"cannot open {path}: {exc}") from None
    try:
        return _read(conn, str(path), run_id, limit)
    except apsw.SQLError as exc:
        raise FleetError(
            f"{path} is not a litefleet tenant database ({exc})",
            "pass a file written by agent-runtime, e.g. from `fleet pull`",
        ) from None
    except apsw.Error as exc:
        raise FleetError(f"cannot read {path}: {exc}") from None
    finally:
        conn.close()


def _read(conn: apsw.Connection, path: str, run_id: str | None, limit: int) -> Report:
    version = int(_scalar(conn, "PRAGMA user_version"))
    counts = {
        str(s): int(n)
        for s, n in conn.execute(
            "SELECT status, count(*) FROM runs GROUP BY status ORDER BY status"
        )
    }
    cols = ", ".join(RUN_COLUMNS)
    runs = [
        _row(RUN_COLUMNS, r)
        for r in conn.execute(
            f"SELECT {cols} FROM runs ORDER BY created_at DESC, rowid DESC LIMIT ?", (limit,)
        )
    ]
    report = Report(path=path, schema_version=version, counts=counts, runs=runs)
    if run_id is not None:
        row = conn.execute(f"SELECT {cols} FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise InvalidArgument(f"no run {run_id!r} in {path}")
        report.run = _row(RUN_COLUMNS, row)
        ecols = ", ".join(EVENT_COLUMNS)
        report.events = [
            _row(EVENT_COLUMNS, e)
            for e in conn.execute(
                f"SELECT {ecols} FROM events WHERE run_id = ? ORDER BY seq", (run_id,)
            )
        ]
    return report


def _scalar(conn: apsw.Connection, sql: str) -> Any:
    row = conn.execute(sql).fetchone()
    return None if row is None else row[0]


def _row(columns: tuple[str, ...], values: Any) -> dict[str, Any]:
    row = dict(zip(columns, values, strict=True))
    for key in ("input", "result", "error", "data"):
        if isinstance(row.get(key), str):
            with contextlib.suppress(ValueError):  # else shown as stored
                row[key] = json.loads(row[key])
    return row
