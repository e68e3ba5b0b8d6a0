"""The storage interface every backend implements (SQLite, PostgreSQL).

Contract (tests/test_store_contract.py runs the same suite against each backend):

- Runs are identified by a client-chosen or generated id. ``create_run`` is idempotent:
  a second call with an existing id returns the stored run and ``created=False``.
- A run's history is an append-only list of events ordered by ``Event.seq``. Events that
  close a command (``terminal=True``: a step's result or final error, a fired timer, a
  consumed signal, a recorded value) are unique per (run, position): a second terminal
  event for the same position is dropped and the stored one wins. That unique constraint
  is what makes re-execution after a crash harmless.
- Every write that changes a run on behalf of an executor is fenced by ``owner``: it only
  applies while the run is ``running`` and claimed by that owner; otherwise it returns
  ``False``/``None`` and writes nothing.
- When an ``append`` returns, its events are durable (committed; fsynced at
  synchronous=FULL). Concurrent appends may share one transaction (group commit).
- ``commit_guard``, when set, is called before a write commits (right before COMMIT for
  group-committed writes): raising aborts the write, and nothing of it is stored.
- Timestamps are float seconds since the epoch (UTC).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol


class RunStatus(enum.StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SLEEPING = "sleeping"
    WAITING = "waiting"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in _TERMINAL


_TERMINAL = frozenset({RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED})
TERMINAL_STATUSES: frozenset[str] = frozenset(s.value for s in _TERMINAL)


class EventKind(enum.StrEnum):
    RUN_SUBMITTED = "run_submitted"
    STEP_ATTEMPT_FAILED = "step_attempt_failed"  # non-terminal: a retry follows
    STEP_COMPLETED = "step_completed"  # terminal
    STEP_FAILED = "step_failed"  # terminal: retries exhausted or non-retryable
    TIMER_STARTED = "timer_started"
    TIMER_FIRED = "timer_fired"  # terminal
    SIGNAL_WAIT_STARTED = "signal_wait_started"
    SIGNAL_RECEIVED = "signal_received"  # terminal: the payload the workflow got
    SIGNAL_TIMED_OUT = "signal_timed_out"  # terminal
    VALUE_RECORDED = "value_recorded"  # terminal: now(), random(), uuid()
    RUN_COMPLETED = "run_completed"
    RUN_FAILED = "run_failed"
    RUN_CANCELLED = "run_cancelled"


@dataclass(slots=True)
class Run:
    id: str
    workflow: str
    status: str
    input: dict[str, Any]
    result: Any = None
    error: dict[str, Any] | None = None
    created_at: float = 0.0
    updated_at: float = 0.0
    wake_at: float | None = None
    owner: str | None = None


@dataclass(slots=True)
class Event:
    """One entry of a run's history. ``position`` is the command index inside the workflow
    (None for run-level events); ``data`` is JSON-serialisable."""

    kind: str
    position: int | None = None
    name: str | None = None
    attempt: int | None = None
    data: Any = None
    terminal: bool = False
    seq: int = 0  # assigned by the store
    created_at: float = 0.0  # assigned by the store when 0


@dataclass(slots=True)
class Transition:
    """A status change applied atomically with an ``append``."""

    status: str
    result: Any = None
    error: dict[str, Any] | None = None
    wake_at: float | None = None
    release: bool = False  # drop ownership (sleeping/waiting/terminal runs hold no executor)


@dataclass(slots=True)
class RunPage:
    runs: list[Run]
    next_cursor: str | None = None


@dataclass(slots=True)
class SignalOutcome:
    """Result of ``take_signal``: the consumed payload, or ``found=False`` when the run is
    now ``waiting`` for it."""

    found: bool
    payload: Any = None
    stored: Event | None = field(default=None)


class Store(Protocol):
    """Durable state of one runtime. All methods are coroutine functions."""

    backend: str  # "sqlite" | "postgres"
    exclusive: bool  # True when one process owns the whole database (SQLite)
    commit_guard: Callable[[], None] | None  # raises to refuse a commit (the lease gate)

    async def open(self) -> None: ...
    async def close(self) -> None: ...

    # -- runs
    async def create_run(
        self, run_id: str, workflow: str, input: dict[str, Any], *, solo: bool = False
    ) -> tuple[Run, bool]:
        """``solo``: no run is executing (a latency hint, as for ``append``)."""
        ...

    async def get_run(self, run_id: str) -> Run | None: ...
    async def list_runs(
        self,
        *,
        status: str | None = None,
        workflow: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> RunPage: ...
    async def count_by_status(self) -> dict[str, int]: ...

    # -- history
    async def history(self, run_id: str) -> list[Event]: ...

    # -- execution (fenced by owner)
    async def claim(self, owner: str, now: float, limit: int, lease_s: float) -> list[Run]:
        """Take runnable runs: pending ones, sleeping/waiting ones whose ``wake_at`` passed,
        and running ones held by another owner whose lease expired (or, when
        ``exclusive``, any running one not owned by ``owner``: the previous process is
        gone). Marks them ``running`` and owned by ``owner``."""
        ...

    async def renew(self, owner: str, run_ids: Sequence[str], lease_s: float) -> None: ...

    async def append(
        self,
        run_id: str,
        owner: str,
        events: Sequence[Event],
        transition: Transition | None = None,
        *,
        solo: bool = False,
    ) -> list[Event] | None:
        """Append events (and apply ``transition``) if ``owner`` holds the running run.
        ``solo`` says the caller is the only run executing: a backend may then commit
        on the caller's thread instead of queueing for its writer (a latency hint).
        Returns, for each event in order, the stored event: the same one, or for a
        terminal event whose position was already closed, the one stored earlier.
        Returns None (nothing written) when the fence does not hold."""
        ...

    # -- signals
    async def send_signal(self, run_id: str, name: str, payload: Any) -> Run | None:
        """Buffer a signal for a non-terminal run (a terminal run is returned unchanged
        and nothing is stored). A run waiting on that name becomes ``pending``
        (runnable). Returns the run after the change, or None if it does not exist.
        Raises ``SignalBufferFull`` (nothing stored) when the run's unconsumed signals are
        at ``_limits.MAX_BUFFERED_SIGNALS`` or this payload's JSON would take them past
        ``MAX_BUFFERED_SIGNAL_BYTES``."""
        ...

    async def take_signal(
        self,
        run_id: str,
        owner: str,
        position: int,
        name: str,
        deadline: float | None,
        now: float,
    ) -> SignalOutcome | None:
        """Consume the oldest unconsumed signal ``name`` and record it as the terminal
        ``signal_received`` event at ``position`` (data ``{"payload": ...}``). If there is
        none and the deadline has not passed, record ``signal_wait_started`` (once per
        position, data ``{"deadline": ...}``) and move the run to ``waiting`` with
        ``wake_at=deadline``, releasing it. If there is none and the deadline passed,
        write nothing and return ``found=False`` (the caller records the timeout).
        If ``position`` is already closed, return ``found=False`` with the stored terminal
        event (received or timed out) in ``stored``, and consume nothing; ``stored`` is
        None whenever this call consumed a signal. None when the fence does not hold.
        Event ``seq`` values are ordered; whether they count per run or per database is
        the backend's choice."""
        ...

    async def cancel(self, run_id: str) -> Run | None:
        """Cancel a non-terminal run (records ``run_cancelled``). Returns the run after
        the change (unchanged if already terminal), None if it does not exist."""
        ...

    async def next_wake_at(self) -> float | None:
        """Earliest ``wake_at`` of a sleeping or waiting run."""
        ...
