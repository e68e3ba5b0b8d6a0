"""How runs and events are encoded in database rows, shared by both backends so that a
run's history reads the same whichever database holds it.

Rows are selected in the column order the functions below expect:
runs ``id, workflow, status, input, result, error, created_at, updated_at, wake_at, owner``;
events ``seq, kind, position, name, attempt, terminal, data, created_at``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ._errors import InvalidInput
from ._store import Event, Run, RunPage


def dumps(value: Any) -> str:
    # The last guard: NaN/Infinity written here would fail every later read of the row
    # (values are checked long before, see _limits).
    return json.dumps(value, separators=(",", ":"), allow_nan=False)


def loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def dumps_opt(value: Any) -> str | None:
    """``dumps`` for a nullable column: None stays NULL."""
    return None if value is None else dumps(value)


def parse_cursor(cursor: str) -> int:
    """A list cursor is the creation number of the last run seen, as decimal text."""
    if not (cursor.isascii() and cursor.isdigit() and len(cursor) <= 18):
        raise InvalidInput(f"invalid cursor {cursor[:40]!r}")
    return int(cursor)


RUN_COLUMNS = "id, workflow, status, input, result, error, created_at, updated_at, wake_at, owner"
EVENT_COLUMNS = "seq, kind, position, name, attempt, terminal, data, created_at"


def list_runs_query(
    status: str | None, workflow: str | None, limit: int, cursor: str | None, mark: str
) -> tuple[str, list[Any]]:
    """The run listing both backends run (newest first, one row more than ``limit`` to know
    whether a next page exists); ``mark`` is the driver's placeholder (``?`` or ``%s``)."""
    where: list[str] = []
    params: list[Any] = []
    if status is not None:
        where.append(f"status = {mark}")
        params.append(status)
    if workflow is not None:
        where.append(f"workflow = {mark}")
        params.append(workflow)
    if cursor is not None:
        where.append(f"num < {mark}")
        params.append(parse_cursor(cursor))
    sql = f"SELECT {RUN_COLUMNS}, num FROM runs"
    if where:
        sql += " WHERE " + " AND ".join(where)
    return sql + f" ORDER BY num DESC LIMIT {mark}", [*params, limit + 1]


def page_from_rows(rows: Sequence[Sequence[Any]], limit: int) -> RunPage:
    """A page from ``list_runs_query`` rows; the cursor is the last run's ``num``."""
    more = len(rows) > limit
    rows = rows[:limit]
    return RunPage([run_from_row(r) for r in rows], str(rows[-1][10]) if more and rows else None)


def run_from_row(row: Sequence[Any]) -> Run:
    return Run(
        id=row[0],
        workflow=row[1],
        status=row[2],
        input=json.loads(row[3]),
        result=loads(row[4]),
        error=loads(row[5]),
        created_at=row[6],
        updated_at=row[7],
        wake_at=row[8],
        owner=row[9],
    )


def event_from_row(row: Sequence[Any]) -> Event:
    return Event(
        seq=row[0],
        kind=row[1],
        position=row[2],
        name=row[3],
        attempt=row[4],
        terminal=bool(row[5]),
        data=loads(row[6]),
        created_at=row[7],
    )
