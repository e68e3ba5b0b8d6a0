"""`fleet inspect`: runs and step timelines from a tenant database copy (read-only, never the
live file), through agent_runtime's own reader: fleet holds no SQL of the runtime's schema.
"""

from __future__ import annotations

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


def _run(d: dict[str, Any]) -> dict[str, Any]:
    return {k: d[k] for k in RUN_FIELDS}


def _event(run_id: str, d: dict[str, Any]) -> dict[str, Any]:
    return {k: run_id if k == "run_id" else d[k] for k in EVENT_FIELDS}
