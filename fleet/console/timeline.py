"""A run's history as a waterfall: one row per step attempt, durable timer, signal wait,
recorded value and outcome, each placed on the run's time axis.

The history records when things ended, not when a step attempt began: an attempt is drawn
from the previous record of the run (the command before it, or the run's submission) or,
for a retry, from the time the retry was due. A runtime that was down meanwhile makes that
bar longer: it shows the wait as well as the work.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agent_runtime import Event, Run

STEP_EVENTS = ("step_attempt_failed", "step_completed", "step_failed")
OUTCOMES = {"run_completed": "ok", "run_failed": "failed", "run_cancelled": "cancelled"}


@dataclass
class Row:
    kind: str  # submitted | step | timer | signal | value | outcome
    label: str
    position: int | None
    start: float
    end: float | None  # None: still open (a timer not fired, a signal not received)
    state: str  # ok | failed | retried | open | cancelled
    attempt: int | None = None
    error: str | None = None
    detail: Any = None  # a signal's payload, a recorded value, a result
    deadline: float | None = None  # a timer's wake time, a signal wait's timeout
    left: float = 0.0  # % of the axis (set by ``timeline``)
    width: float = 0.0

    @property
    def duration(self) -> float | None:
        return None if self.end is None else max(0.0, self.end - self.start)


@dataclass
class Timeline:
    start: float
    end: float
    rows: list[Row]
    finished: bool

    @property
    def span(self) -> float:
        return self.end - self.start


def timeline(run: Run, events: list[Event], now: float | None = None) -> Timeline:
    """The rows of ``run``'s history, with their place on a common axis (percent)."""
    from agent_runtime import RunStatus

    now = time.time() if now is None else now
    finished = run.status in {s.value for s in RunStatus if s.terminal}
    rows = _rows(run, events)
    start = min([run.created_at, *(r.start for r in rows)] if run.created_at else [now])
    ends = [r.end if r.end is not None else now for r in rows]
    end = max([*ends, run.updated_at]) if finished else max([*ends, now])
    span = max(end - start, 1e-3)
    for r in rows:
        stop = r.end if r.end is not None else end
        r.left = round(100.0 * (r.start - start) / span, 3)
        r.width = round(max(100.0 * (stop - r.start) / span, 0.25), 3)
    return Timeline(start, end, rows, finished)


def _rows(run: Run, events: list[Event]) -> list[Row]:
    rows: list[Row] = []
    open_rows: dict[tuple[str, int | None], Row] = {}  # timers and signal waits by position
    last = run.created_at or (events[0].created_at if events else 0.0)
    retry_at: dict[int | None, float] = {}
    for e in events:
        row = _row(e, last, retry_at, open_rows)
        if row is not None:
            rows.append(row)
        last = e.created_at
    return rows


def _row(
    e: Event,
    last: float,
    retry_at: dict[int | None, float],
    open_rows: dict[tuple[str, int | None], Row],
) -> Row | None:
    data = e.data if isinstance(e.data, dict) else {}
    if e.kind == "run_submitted":
        return Row("submitted", "submitted", None, e.created_at, e.created_at, "ok")
    if e.kind in STEP_EVENTS:
        return _attempt(e, data, last, retry_at)
    if e.kind in ("timer_started", "signal_wait_started"):
        kind = "timer" if e.kind == "timer_started" else "signal"
        due = data.get("wake_at" if kind == "timer" else "deadline")
        row = Row(kind, e.name or kind, e.position, e.created_at, None, "open")
        row.deadline = float(due) if isinstance(due, int | float) else None
        open_rows[(kind, e.position)] = row
        return row
    if e.kind in ("timer_fired", "signal_received", "signal_timed_out"):
        return _close(e, data, open_rows)
    if e.kind == "value_recorded":
        row = Row("value", e.name or "value", e.position, e.created_at, e.created_at, "ok")
        row.detail = data.get("value")
        return row
    if e.kind in OUTCOMES:
        outcome = e.kind.removeprefix("run_")
        row = Row("outcome", outcome, None, e.created_at, e.created_at, OUTCOMES[e.kind])
        row.detail = data.get("result")
        row.error = _error_text(data.get("error"))
        return row
    return None


def _attempt(e: Event, data: dict[str, Any], last: float, retry_at: dict[int | None, float]) -> Row:
    start = retry_at.pop(e.position, last)
    state = {"step_completed": "ok", "step_failed": "failed"}.get(e.kind, "retried")
    row = Row("step", e.name or "step", e.position, min(start, e.created_at), e.created_at, state)
    row.attempt = e.attempt
    row.error = _error_text(data.get("error"))
    row.detail = data.get("result")
    if e.kind == "step_attempt_failed" and isinstance(data.get("retry_at"), int | float):
        retry_at[e.position] = float(data["retry_at"])
    return row


def _close(
    e: Event, data: dict[str, Any], open_rows: dict[tuple[str, int | None], Row]
) -> Row | None:
    kind = "timer" if e.kind == "timer_fired" else "signal"
    row = open_rows.pop((kind, e.position), None)
    if row is None:  # a signal that was there before the wait: no wait was recorded
        row = Row(kind, e.name or kind, e.position, e.created_at, None, "open")
        new: Row | None = row
    else:
        new = None
    row.end = e.created_at
    row.state = "failed" if e.kind == "signal_timed_out" else "ok"
    if e.kind == "signal_received":
        row.detail = data.get("payload")
    if e.kind == "signal_timed_out":
        row.error = f"timed out after {data.get('timeout')} s"
    return new


def _error_text(err: Any) -> str | None:
    if err is None:
        return None
    if isinstance(err, dict):
        kind, message = err.get("type"), err.get("message")
        return f"{kind}: {message}" if kind else str(message)
    return str(err)
