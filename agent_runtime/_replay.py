"""Replay recorded histories against (new) workflow code without executing anything: would
each run still resume, or fail with ``NonDeterminismError``?

A run is replayed as a resumed run is executed, with every command answered from its
history: a recorded step returns (or raises) its recorded outcome, a fired timer returns,
a received signal returns its payload, a recorded ``now()``/``random()``/``uuid4()`` its
value. A command the history has not closed (a step that was in flight or is the next one,
a durable sleep still sleeping, a signal still awaited, a value not yet recorded) is where
the recorded history ends: the replay waits there and never does the work. Concurrent
branches (``asyncio.gather``) go on meanwhile, so their recorded commands are checked too.

A run replays when every command its history records is called again, at the same
position, with the same kind and name. It does not when the code calls something else
(``NonDeterminismError``, even if workflow code catches it), or stops before the history
does (returns, raises, or waits at an earlier position), or cannot start (its workflow is
gone, its input no longer fits).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any, NoReturn, cast

from ._context import _FAMILY, WorkflowContext, reset_context, set_context
from ._definitions import Step, Workflow
from ._errors import NonDeterminismError, SignalTimeout
from ._limits import check_duration, check_identifier
from ._reader import DatabaseReader
from ._store import Event, EventKind, Run, Store

REPLAY_TIMEOUT = 5.0  # seconds a replay may wait for workflow code between two commands


@dataclass(slots=True)
class ReplayResult:
    """One run's replay; the fields of ``agent-runtime replay --json``."""

    run: str
    workflow: str
    ok: bool
    position: int | None = None
    recorded: str | None = None
    called: str | None = None
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


class _NoStore:
    """Replay never touches a store: any use is a bug, and says so."""

    def __getattr__(self, name: str) -> NoReturn:
        raise AssertionError(f"replay must not use the store (store.{name})")


class ReplayContext(WorkflowContext):
    """A workflow context that answers every command from the recorded history and waits
    forever at the first command the history has not closed."""

    def __init__(self, run_id: str, history: list[Event]) -> None:
        super().__init__(
            store=cast(Store, _NoStore()),
            run_id=run_id,
            owner="replay",
            history=history,
            draining=lambda: False,
            on_wait=lambda _: None,
        )
        self.recorded_positions = {e.position for e in history if e.position is not None}
        self.taken: set[int] = set()
        self.mismatch: NonDeterminismError | None = None
        self.frontier: int | None = None  # earliest position where the history ends
        self.progress = asyncio.Event()

    def history_matched(self) -> bool:
        return self.recorded_positions <= self.taken

    def _take(self, family: str, name: str) -> tuple[int, list[Event]]:
        try:
            pos, recorded = super()._take(family, name)
        except NonDeterminismError as exc:
            self.mismatch = self.mismatch or exc
            self.progress.set()
            raise
        self.taken.add(pos)
        self.progress.set()
        return pos, recorded

    async def _end_of_history(self, pos: int) -> NoReturn:
        self.frontier = pos if self.frontier is None else min(self.frontier, pos)
        self.progress.set()
        await asyncio.get_running_loop().create_future()  # never resolves
        raise AssertionError("unreachable")

    async def _run_step(
        self,
        pos: int,
        recorded: list[Event],
        step: Step,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        done = self._terminal(recorded)
        if done is None:
            await self._end_of_history(pos)
        return self._step_outcome(step, done)

    async def sleep(self, seconds: float) -> None:
        check_duration(seconds, "sleep() duration")
        pos, recorded = self._take("sleep", "sleep")
        if self._terminal(recorded) is None:
            await self._end_of_history(pos)

    async def wait_for_signal(self, name: str, timeout: float | None) -> Any:
        check_identifier(name, "signal name")
        if timeout is not None:
            check_duration(timeout, "wait_for_signal() timeout")
        pos, recorded = self._take("wait_for_signal", name)
        done = self._terminal(recorded)
        if done is None:
            await self._end_of_history(pos)
        if done.kind == EventKind.SIGNAL_TIMED_OUT:
            raise SignalTimeout(name, float(done.data.get("timeout") or 0))
        return done.data["payload"]

    async def record(self, name: str, produce: Callable[[], Any]) -> Any:
        pos, recorded = self._take("value", name)
        done = self._terminal(recorded)
        if done is None:
            await self._end_of_history(pos)
        return done.data["value"]


async def replay_run(
    workflow: Workflow | None, run: Run, history: list[Event], timeout: float = REPLAY_TIMEOUT
) -> ReplayResult:
    """Replay one run's ``history`` against ``workflow`` (None: the app lacks it)."""
    if workflow is None:
        return ReplayResult(
            run.id, run.workflow, False, error=f"workflow {run.workflow!r} is not in the app"
        )
    try:
        inspect.signature(workflow.fn).bind(**run.input)
    except TypeError as exc:
        error = f"the run's input does not fit workflow {run.workflow!r} now: {exc}"
        return ReplayResult(run.id, run.workflow, False, error=error)
    ctx = ReplayContext(run.id, history)
    token = set_context(ctx)
    try:  # the task copies the context it is created in
        task = asyncio.ensure_future(workflow.fn(**run.input))
    finally:
        reset_context(token)
    try:
        await _settle(ctx, task, timeout)
    finally:
        task.cancel()
        await asyncio.wait({task}, timeout=1.0)
    verdict = _verdict(run, ctx, task, history, timeout)
    if task.done() and not task.cancelled():
        task.exception()  # retrieved: not reported again as "never retrieved"
    return verdict


async def _settle(ctx: ReplayContext, task: asyncio.Future[Any], timeout: float) -> None:
    """Let the workflow run until its history is matched, it diverges, it finishes, or it
    makes no progress for ``timeout`` seconds."""
    while True:
        ctx.progress.clear()
        if task.done() or ctx.mismatch is not None or ctx.history_matched():
            return
        progress = asyncio.ensure_future(ctx.progress.wait())
        try:
            done, _ = await asyncio.wait(
                {task, progress}, timeout=timeout, return_when="FIRST_COMPLETED"
            )
        finally:
            progress.cancel()
        if not done:
            return


def _verdict(
    run: Run, ctx: ReplayContext, task: asyncio.Future[Any], history: list[Event], timeout: float
) -> ReplayResult:
    if ctx.mismatch is not None:
        m = ctx.mismatch
        return ReplayResult(run.id, run.workflow, False, m.position, m.recorded, m.called, str(m))
    missing = sorted(ctx.recorded_positions - ctx.taken)
    if not missing:
        return ReplayResult(run.id, run.workflow, True)
    pos = missing[0]
    recorded = _describe(e for e in history if e.position == pos)
    called = _how_it_stopped(ctx, task, timeout)
    error = f"at position {pos} the history records {recorded}, but the workflow now {called}"
    return ReplayResult(run.id, run.workflow, False, pos, recorded, called, error)


def _describe(events: Iterable[Event]) -> str:
    ev = next(iter(events))
    return f"{_FAMILY.get(EventKind(ev.kind), ev.kind)} {ev.name!r}"


def _how_it_stopped(ctx: ReplayContext, task: asyncio.Future[Any], timeout: float) -> str:
    if ctx.frontier is not None:
        return f"waits at position {ctx.frontier} before calling it"
    if task.done() and not task.cancelled():
        exc = task.exception()
        if exc is None:
            return "returns before calling it"
        return f"raises {type(exc).__name__}: {exc} before calling it"
    return f"made no progress for {timeout:g} s (it awaits no step, sleep or signal)"


async def replay(
    reader: DatabaseReader,
    workflows: dict[str, Workflow],
    run_id: str | None = None,
    timeout: float = REPLAY_TIMEOUT,
) -> list[ReplayResult]:
    """Replay every unfinished run (or the run ``run_id``, finished or not) of the
    database ``reader`` reads against ``workflows``."""
    runs = [reader.run(run_id)] if run_id is not None else reader.unfinished_runs()
    return [
        await replay_run(workflows.get(run.workflow), run, reader.history(run.id), timeout)
        for run in runs
    ]
