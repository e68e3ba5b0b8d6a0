"""The per-run workflow context: replays recorded commands, records new ones.

A workflow is re-executed from the top each time an executor picks its run up. Every
command it issues (a step call, a sleep, a signal wait, a recorded value) takes the next
*position*; if the run's history already closes that position, the recorded outcome is
returned without doing the work again. A command that does not match its recorded kind
and name fails the run with ``NonDeterminismError``.

A run that must wait (durable sleep, signal) records why, releases itself in the store
and unwinds with ``Suspend``: a sleeping run holds no task and no thread.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import random as _random
import time
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

import structlog

from . import _faults, _metrics
from ._errors import (
    NonDeterminismError,
    SignalTimeout,
    StepFailed,
    StepTimeout,
    UnstorableValue,
    error_dict,
)
from ._limits import check_duration, check_identifier, check_name
from ._limits import to_json_value as to_json_value  # re-exported for _runtime
from ._loop_guard import Pacer
from ._store import Event, EventKind, RunStatus, Store, Transition

log = structlog.get_logger("agent_runtime")
T = TypeVar("T")

if TYPE_CHECKING:
    from ._definitions import Step

_current: ContextVar[WorkflowContext | None] = ContextVar("agent_runtime_workflow", default=None)

# Which command family each event kind belongs to (for replay matching).
_FAMILY = {
    EventKind.STEP_ATTEMPT_FAILED: "step",
    EventKind.STEP_COMPLETED: "step",
    EventKind.STEP_FAILED: "step",
    EventKind.TIMER_STARTED: "sleep",
    EventKind.TIMER_FIRED: "sleep",
    EventKind.SIGNAL_WAIT_STARTED: "wait_for_signal",
    EventKind.SIGNAL_RECEIVED: "wait_for_signal",
    EventKind.SIGNAL_TIMED_OUT: "wait_for_signal",
    EventKind.VALUE_RECORDED: "value",
}


class Suspend(BaseException):
    """Unwinds a workflow that now waits (sleeping/waiting); its state is in the store."""


class Fenced(BaseException):
    """The run is no longer ours (cancelled, or taken over): stop without writing."""


class Draining(BaseException):
    """The runtime is shutting down: stop before starting another step."""


class StoreUnavailable(BaseException):
    """The store failed to record something (connection lost, disk full, busy for too
    long). Not the workflow's fault: the run is interrupted and retried from its history,
    never failed, and workflow code's ``except Exception`` cannot swallow it."""


async def _stored(call: Awaitable[T]) -> T:
    try:
        return await call
    except Exception as exc:
        raise StoreUnavailable(f"{type(exc).__name__}: {exc}") from exc


def current_context() -> WorkflowContext | None:
    return _current.get()


def set_context(ctx: WorkflowContext | None) -> Any:
    return _current.set(ctx)


def reset_context(token: Any) -> None:
    _current.reset(token)


class WorkflowContext:
    def __init__(
        self,
        *,
        store: Store,
        run_id: str,
        owner: str,
        history: list[Event],
        draining: Callable[[], bool],
        solo: Callable[[], bool] = lambda: False,
        on_wait: Callable[[float | None], None],
        executor: Executor | None = None,
        pacer: Pacer | None = None,
        lease_held: Callable[[], bool] = lambda: True,
    ) -> None:
        self.store = store
        self.run_id = run_id
        self.owner = owner
        self._draining = draining
        self._solo = solo
        self._on_wait = on_wait
        self._executor = executor
        self._pacer = pacer or Pacer()
        self._lease_held = lease_held
        self._step_tasks: dict[asyncio.Task[Any], str] = {}  # tasks inside _run_step: step
        self._next = 0
        self._events: dict[int, list[Event]] = {}
        for ev in history:
            if ev.position is not None:
                self._events.setdefault(ev.position, []).append(ev)

    # -- replay bookkeeping

    def _take(self, family: str, name: str) -> tuple[int, list[Event]]:
        check_name(name, f"{family} name")  # stored with the event: it must read back
        pos = self._next
        self._next += 1
        recorded = self._events.get(pos, ())
        for ev in recorded:
            rec_family = _FAMILY.get(EventKind(ev.kind), ev.kind)
            if rec_family != family or ev.name != name:
                raise NonDeterminismError(pos, f"{rec_family} {ev.name!r}", f"{family} {name!r}")
        return pos, list(recorded)

    def step_in(self, task: asyncio.Task[Any] | None) -> str | None:
        """The step ``task`` is executing for this run, if any."""
        return None if task is None else self._step_tasks.get(task)

    @staticmethod
    def _terminal(events: list[Event]) -> Event | None:
        return next((e for e in events if e.terminal), None)

    async def _append(self, event: Event, transition: Transition | None = None) -> Event:
        stored = await _stored(
            self.store.append(self.run_id, self.owner, [event], transition, solo=self._solo())
        )
        if stored is None:
            raise Fenced()
        return stored[0]

    # -- steps

    def call_step(self, step: Step, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        # Allocate the position now, at call time, so concurrent steps started in a
        # deterministic order get deterministic positions.
        pos, recorded = self._take("step", step.name)
        return self._run_step(pos, recorded, step, args, kwargs)

    async def _run_step(
        self,
        pos: int,
        recorded: list[Event],
        step: Step,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        await self._pacer.pace()
        done = self._terminal(recorded)
        if done is not None:
            return self._step_outcome(step, done)
        task = asyncio.current_task()
        if task is not None:
            self._step_tasks[task] = step.name
        try:
            return await self._execute_step(pos, recorded, step, args, kwargs)
        finally:
            if task is not None:
                self._step_tasks.pop(task, None)

    async def cancel_steps(self) -> None:
        """Cancel steps still running beside a branch that suspended or lost the run
        (``asyncio.gather``): otherwise they would run on while the run is re-executed."""
        me = asyncio.current_task()
        others = [t for t in self._step_tasks if t is not me and not t.done()]
        for t in others:
            t.cancel()
        if others:
            await asyncio.gather(*others, return_exceptions=True)

    async def _execute_step(
        self,
        pos: int,
        recorded: list[Event],
        step: Step,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        failures = [e for e in recorded if e.kind == EventKind.STEP_ATTEMPT_FAILED]
        attempt = len(failures) + 1
        if failures:  # resumed mid-backoff: honour the recorded retry time
            wait = float(failures[-1].data.get("retry_at", 0)) - time.time()
            if wait > 0:
                await asyncio.sleep(wait)
        policy = step.retry
        while True:
            if self._draining():
                raise Draining()
            if not self._lease_held():
                # No step starts without the tenant's lease: the run is interrupted and
                # continues from its history once the lease is confirmed again.
                raise StoreUnavailable("the tenant's lease is not confirmed")
            try:
                result = to_json_value(await self._invoke(step, args, kwargs), "step result")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                final = attempt >= policy.max_attempts or not policy.retryable(exc)
                if isinstance(exc, UnstorableValue):
                    final = True  # the same value again: retrying cannot help
                err = error_dict(exc)
                if final:
                    _faults.fault_point("step.before_commit")
                    ev = Event(EventKind.STEP_FAILED, pos, step.name, attempt, {"error": err}, True)
                    stored = await self._append(ev)
                    _faults.fault_point("step.after_commit")
                    _metrics.STEPS_COMMITTED.inc()
                    log.warning(
                        "step_failed",
                        run_id=self.run_id,
                        step=step.name,
                        attempt=attempt,
                        error=err["message"],
                    )
                    return self._step_outcome(step, stored)
                delay = policy.delay(attempt)
                log.info(
                    "step_attempt_failed",
                    run_id=self.run_id,
                    step=step.name,
                    attempt=attempt,
                    error=err["message"],
                    retry_in=round(delay, 3),
                )
                await self._append(
                    Event(
                        EventKind.STEP_ATTEMPT_FAILED,
                        pos,
                        step.name,
                        attempt,
                        {"error": err, "retry_at": time.time() + delay},
                    )
                )
                await asyncio.sleep(delay)
                attempt += 1
                continue
            _faults.fault_point("step.before_commit")
            ev = Event(EventKind.STEP_COMPLETED, pos, step.name, attempt, {"result": result}, True)
            stored = await self._append(ev)
            _faults.fault_point("step.after_commit")
            _metrics.STEPS_COMMITTED.inc()
            return self._step_outcome(step, stored)

    @staticmethod
    def _step_outcome(step: Step, ev: Event) -> Any:
        if ev.kind == EventKind.STEP_COMPLETED:
            return ev.data["result"]
        err = ev.data["error"]
        raise StepFailed(step.name, err["type"], err["message"], ev.attempt or 1)

    async def _invoke(self, step: Step, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        # Inside a step, steps are plain calls: only the outermost call is recorded.
        token = _current.set(None)
        try:
            if step.is_async:
                aw = step.fn(*args, **kwargs)
            else:
                # On the runtime's own pool, so that shutting down does not wait for steps
                # still running past the grace period (their results are not recorded).
                call = functools.partial(contextvars.copy_context().run, step.fn, *args, **kwargs)
                aw = asyncio.get_running_loop().run_in_executor(self._executor, call)
            if step.timeout is None:
                return await aw
            try:
                return await asyncio.wait_for(aw, step.timeout)
            except TimeoutError:
                raise StepTimeout(
                    f"step {step.name!r} timed out after {step.timeout:g} s"
                ) from None
        finally:
            _current.reset(token)

    # -- durable timers

    async def sleep(self, seconds: float) -> None:
        seconds = check_duration(seconds, "sleep() duration")
        await self._pacer.pace()
        pos, recorded = self._take("sleep", "sleep")
        if self._terminal(recorded) is not None:
            return
        started = next((e for e in recorded if e.kind == EventKind.TIMER_STARTED), None)
        now = time.time()
        wake_at = float(started.data["wake_at"]) if started else now + seconds
        if wake_at <= now:
            await self._append(
                Event(EventKind.TIMER_FIRED, pos, "sleep", None, {"wake_at": wake_at}, True)
            )
            return
        # Woken early (clock skew, a stray claim): keep the recorded wake time.
        events = (
            []
            if started
            else [Event(EventKind.TIMER_STARTED, pos, "sleep", None, {"wake_at": wake_at})]
        )
        transition = Transition(RunStatus.SLEEPING, wake_at=wake_at, release=True)
        if await _stored(self.store.append(self.run_id, self.owner, events, transition)) is None:
            raise Fenced()
        _faults.fault_point("timer.after_commit")
        self._on_wait(wake_at)
        raise Suspend()

    # -- signals

    async def wait_for_signal(self, name: str, timeout: float | None) -> Any:
        check_identifier(name, "signal name")  # signals arrive through a URL path
        if timeout is not None:
            timeout = check_duration(timeout, "wait_for_signal() timeout")
        await self._pacer.pace()
        pos, recorded = self._take("wait_for_signal", name)
        done = self._terminal(recorded)
        if done is None:
            started = next((e for e in recorded if e.kind == EventKind.SIGNAL_WAIT_STARTED), None)
            now = time.time()
            if started is not None:
                deadline = started.data.get("deadline")
            else:
                deadline = None if timeout is None else now + timeout
            outcome = await _stored(
                self.store.take_signal(self.run_id, self.owner, pos, name, deadline, now)
            )
            if outcome is None:
                raise Fenced()
            if outcome.stored is not None:
                done = outcome.stored
            elif outcome.found:
                return outcome.payload
            elif deadline is not None and deadline <= now:
                done = await self._append(
                    Event(EventKind.SIGNAL_TIMED_OUT, pos, name, None, {"timeout": timeout}, True)
                )
            else:
                self._on_wait(deadline)
                raise Suspend()
        if done.kind == EventKind.SIGNAL_TIMED_OUT:
            raise SignalTimeout(name, float(done.data.get("timeout") or 0))
        return done.data["payload"]

    # -- recorded values

    async def record(self, name: str, produce: Callable[[], Any]) -> Any:
        await self._pacer.pace()
        pos, recorded = self._take("value", name)
        done = self._terminal(recorded)
        if done is None:
            value = to_json_value(produce(), name)
            done = await self._append(
                Event(EventKind.VALUE_RECORDED, pos, name, None, {"value": value}, True)
            )
        return done.data["value"]


# -- functions workflow code calls ------------------------------------------------------


async def sleep(seconds: float) -> None:
    """Durable sleep: survives restarts; the sleeping run holds no task or thread.
    Outside a workflow it is ``asyncio.sleep``."""
    ctx = _current.get()
    if ctx is None:
        await asyncio.sleep(seconds)
        return
    await ctx.sleep(seconds)


async def wait_for_signal(name: str, timeout: float | None = None) -> Any:
    """Wait until a signal ``name`` is sent to this run (a signal sent earlier is kept) and
    return its payload. Raises ``SignalTimeout`` after ``timeout`` seconds."""
    ctx = _current.get()
    if ctx is None:
        raise RuntimeError("wait_for_signal() can only be awaited inside a workflow run")
    return await ctx.wait_for_signal(name, timeout)


async def now() -> datetime:
    """The current UTC time, recorded: a replay returns the same instant."""
    ctx = _current.get()
    if ctx is None:
        return datetime.now(UTC)
    ts = await ctx.record("now", time.time)
    return datetime.fromtimestamp(float(ts), UTC)


async def random() -> float:
    """A random float in [0, 1), recorded: a replay returns the same number."""
    ctx = _current.get()
    if ctx is None:
        return _random.random()
    return float(await ctx.record("random", _random.random))


async def uuid4() -> str:
    """A random UUID string, recorded: a replay returns the same id."""
    ctx = _current.get()
    if ctx is None:
        return str(uuid.uuid4())
    return str(await ctx.record("uuid4", lambda: str(uuid.uuid4())))
