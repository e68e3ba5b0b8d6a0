"""`fleet inspect`: runs and step timelines from a tenant database copy (read-only, never the
live file), through agent_runtime's own reader: fleet holds no SQL of the runtime's schema.
``--follow`` polls the copy for new events, e.g. one `fleet watch` keeps up to date.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from fleet.core.errors import FleetError, InvalidArgument

# The JSON of `fleet inspect --json`: these keys, in this order.
RUN_FIELDS = ("id", "workflow", "status", "input", "result", "error", "created_at", "updated_at")
EVENT_FIELDS = ("seq", "run_id", "position", "kind", "name", "attempt", "data", "created_at")


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
    from agent_runtime import AgentRuntimeError, RunNotFound, open_copy

    if not path.is_file():
        raise InvalidArgument(f"no such database file: {path}")
    hint = "pass a file written by agent-runtime, e.g. from `fleet pull`"
    try:
        with open_copy(path) as db:
            if db.schema_version == 0:
                raise FleetError(f"{path} is not a litefleet tenant database (no schema)", hint)
            report = Report(
                path=str(path),
                schema_version=db.schema_version,
                counts=db.count_by_status(),
                runs=[_run(asdict(r)) for r in db.recent_runs(limit)],
            )
            if run_id is not None:
                report.run = _run(asdict(db.run(run_id)))
                report.events = [_event(run_id, asdict(e)) for e in db.history(run_id)]
    except RunNotFound:
        raise InvalidArgument(f"no run {run_id!r} in {path}") from None
    except AgentRuntimeError as exc:
        raise FleetError(f"{path}: {exc}", hint) from None
    return report


def follow(
    path: Path, *, run_id: str | None = None, interval: float = 0.5
) -> Iterator[dict[str, Any]]:
    """Events of the copy at ``path`` as they arrive, in the order they were recorded: with
    ``run_id`` that run's whole history, then its new events; otherwise the events recorded
    after following began. Runs until the caller stops iterating."""
    from agent_runtime import AgentRuntimeError, open_copy

    if not path.is_file():
        raise InvalidArgument(
            f"no such database file: {path}", "`fleet watch TENANT -o PATH` keeps one"
        )
    seen: dict[str, int] | None = {} if run_id is not None else None
    while True:
        try:
            with open_copy(path) as db:
                latest = db.latest_seqs()
                if run_id is not None:
                    latest = {run_id: latest[run_id]} if run_id in latest else {}
                if seen is None:  # the first look: only what comes after it
                    seen = latest
                new = [
                    _event(run, asdict(e))
                    for run, seq in latest.items()
                    if seq > seen.get(run, 0)
                    for e in db.history(run, after=seen.get(run, 0))
                ]
        except AgentRuntimeError as exc:
            raise FleetError(f"{path}: {exc}") from None
        seen.update(latest)
        yield from sorted(new, key=lambda e: (e["created_at"], e["seq"]))
        time.sleep(interval)


def _run(d: dict[str, Any]) -> dict[str, Any]:
    return {k: d[k] for k in RUN_FIELDS}


def _event(run_id: str, d: dict[str, Any]) -> dict[str, Any]:
    return {k: run_id if k == "run_id" else d[k] for k in EVENT_FIELDS}
