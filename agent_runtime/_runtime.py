"""``Runtime``: the engine. Claims runnable runs from the store and executes them.

One scheduler task claims work whenever something may have become runnable (a submit, a
signal, a freed slot, a timer coming due) and otherwise sleeps until the earliest timer.
Each claimed run executes as one asyncio task (``--concurrency`` caps how many at once);
sleeping and waiting runs hold no task. On start every unfinished run is recovered.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from types import FrameType, ModuleType
from typing import Any

import structlog

from . import _faults
from ._context import (
    Draining,
    Fenced,
    StoreUnavailable,
    Suspend,
    WorkflowContext,
    reset_context,
    set_context,
    to_json_value,
)
from ._definitions import Workflow
from ._errors import InvalidInput, RunNotFound, WorkflowNotFound, error_dict
from ._lease_gate import POLL as LEASE_POLL
from ._lease_gate import LeaseGate, LeaseState
from ._limits import check_identifier, check_name, check_run_ref, json_text
from ._loop_guard import BLOCK_THRESHOLD, LoopWatchdog, Pacer, on_stack
from ._store import Event, EventKind, Run, RunPage, RunStatus, Store, Transition

log = structlog.get_logger("agent_runtime")


def open_store(db: str | Store, synchronous: str = "FULL") -> Store:
    """A store for a database path or URL (``postgresql://...`` selects PostgreSQL)."""
    if not isinstance(db, str):
        return db
    if "=" in db and not db.startswith(("postgresql://", "postgres://")):
        # A libpq key=value DSN would otherwise become a SQLite file named after it.
        raise InvalidInput("--db takes a SQLite path or a postgresql:// URL, not a key=value DSN")
    if db.startswith(("postgresql://", "postgres://")):
        from ._postgres import PostgresStore

        return PostgresStore(db)
    from ._sqlite import SQLiteStore

    return SQLiteStore(db, synchronous=synchronous)


def collect_workflows(app: ModuleType | Iterable[Workflow]) -> dict[str, Workflow]:
    items: Iterable[Any] = vars(app).values() if isinstance(app, ModuleType) else app
    found: dict[str, Workflow] = {}
    for obj in items:
        if isinstance(obj, Workflow):
            if obj.name in found and found[obj.name] is not obj:
                raise InvalidInput(f"two workflows are named {obj.name!r}")
            found[obj.name] = obj
    return found


class Runtime:
    """The durable workflow engine, embeddable in any asyncio program.

    ``async with Runtime(db="agent.db", app=my_module) as rt: run = await rt.submit(...)``
    """

    def __init__(
        self,
        db: str | Store,
        app: ModuleType | Iterable[Workflow],
        *,
        concurrency: int = 100,
        synchronous: str = "FULL",
        lease_seconds: float = 30.0,
        poll_seconds: float | None = None,
        loop_block_threshold: float = BLOCK_THRESHOLD,
        lease_file: str | None = None,
    ) -> None:
        if concurrency < 1:
            raise InvalidInput("concurrency must be >= 1")
        self.store = open_store(db, synchronous)
        self.workflows = collect_workflows(app)
        self.concurrency = concurrency
        self.owner = f"{uuid.uuid4().hex[:12]}"
        self._lease = lease_seconds
        # An exclusive store sees every change through this process; a shared one
        # (PostgreSQL) may get work from elsewhere, so look more often.
        self._poll = poll_seconds or (5.0 if self.store.exclusive else 1.0)
        self._active: dict[str, asyncio.Task[None]] = {}
        self._kick = asyncio.Event()
        self._maybe_runnable = True
        self._timers: list[float] = []
        self._done = asyncio.Condition()
        self._draining = False
        self._scheduler: asyncio.Task[None] | None = None
        self._orphans: set[str] = set()
        self._executor: ThreadPoolExecutor | None = None
        self._renewer: asyncio.Task[None] | None = None
        self._started = False
        self._pacer = Pacer()
        self._block_threshold = loop_block_threshold
        self._watchdog: LoopWatchdog | None = None
        self._contexts: dict[str, tuple[str, WorkflowContext]] = {}  # run id: workflow, ctx
        # Steps run and commits happen only while the tenant's lease is confirmed.
        self._gate = LeaseGate(lease_file) if lease_file else None

    # -- lifecycle

    async def start(self) -> None:
        if self._started:
            return
        await self.store.open()
        if self._gate is not None:
            self.store.commit_guard = self._gate.check
        self._executor = ThreadPoolExecutor(
            max_workers=min(32, self.concurrency + 4), thread_name_prefix="agent-runtime-step"
        )
        self._started = True
        self._draining = False
        self._watchdog = LoopWatchdog(
            asyncio.get_running_loop(), self._block_threshold, self._culprit
        )
        self._watchdog.start()
        self._scheduler = asyncio.create_task(self._schedule(), name="agent-runtime-scheduler")
        if not self.store.exclusive:
            self._renewer = asyncio.create_task(self._renew_leases(), name="agent-runtime-leases")
        log.info("runtime_started", backend=self.store.backend, workflows=sorted(self.workflows))

    async def stop(self, grace: float = 10.0) -> None:
        """Stop taking work, let in-flight steps finish (up to ``grace`` s), then close.
        Runs stopped here stay ``running`` and are recovered by the next start."""
        if not self._started:
            return
        self._draining = True
        for task in (self._scheduler, self._renewer):
            if task is not None:
                task.cancel()
        tasks = list(self._active.values())
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=1.0)
        await asyncio.gather(
            *(t for t in (self._scheduler, self._renewer) if t is not None),
            return_exceptions=True,
        )
        await self.store.close()
        if self._watchdog is not None:
            self._watchdog.stop()
            self._watchdog = None
        if self._executor is not None:
            # Plain steps still running past the grace period are abandoned, not awaited:
            # their results are not recorded and they run again after a restart.
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
        self._started = False
        log.info("runtime_stopped", interrupted=len([t for t in tasks if t.cancelled()]))

    async def __aenter__(self) -> Runtime:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- client API

    async def submit(
        self, workflow: str, input: dict[str, Any] | None = None, *, id: str | None = None
    ) -> Run:
        """Start a run of ``workflow`` (idempotent on ``id``) and return it."""
        run, _ = await self.submit_run(workflow, input, id=id)
        return run

    async def submit_run(
        self, workflow: str, input: dict[str, Any] | None = None, *, id: str | None = None
    ) -> tuple[Run, bool]:
        """Like ``submit``; also says whether the run was created (False: ``id`` existed)."""
        self._require_lease()
        wf = self.workflows.get(workflow)
        if wf is None:
            raise WorkflowNotFound(workflow)
        input = {} if input is None else input
        if not isinstance(input, dict):
            raise InvalidInput("input must be a JSON object")
        if id is not None:
            check_identifier(id, "run id")
        json_text(input, "input")
        try:
            wf.signature.bind(**input)
        except TypeError as exc:
            raise InvalidInput(f"input does not fit workflow {workflow!r}: {exc}") from None
        run, created = await self.store.create_run(
            id or uuid.uuid4().hex, workflow, input, solo=not self._active
        )
        if created:
            self._wake()
            log.info("run_submitted", run_id=run.id, workflow=workflow)
        return run, created

    async def get(self, run_id: str) -> Run:
        run = await self.store.get_run(check_run_ref(run_id))
        if run is None:
            raise RunNotFound(run_id)
        return run

    async def list_runs(
        self,
        *,
        status: str | None = None,
        workflow: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> RunPage:
        if status is not None and status not in RunStatus.__members__.values():
            raise InvalidInput(f"unknown status {status!r}")
        if not 1 <= limit <= 1000:
            raise InvalidInput("limit must be between 1 and 1000")
        if workflow is not None:
            check_name(workflow, "workflow")
        return await self.store.list_runs(
            status=status, workflow=workflow, limit=limit, cursor=cursor
        )

    @property
    def executing(self) -> int:
        """Runs this process is executing now (sleeping and waiting runs hold no task)."""
        return len(self._active)

    async def history(self, run_id: str) -> list[Event]:
        await self.get(run_id)
        return await self.store.history(run_id)

    async def signal(self, run_id: str, name: str, payload: Any = None) -> Run:
        self._require_lease()
        check_identifier(name, "signal name")
        json_text(payload, "signal payload")
        run = await self.store.send_signal(check_run_ref(run_id), name, payload)
        if run is None:
            raise RunNotFound(run_id)
        if run.status == RunStatus.PENDING:
            self._wake()
        log.info("signal_sent", run_id=run_id, signal=name)
        return run

    async def cancel(self, run_id: str) -> Run:
        self._require_lease()
        run = await self.store.cancel(check_run_ref(run_id))
        if run is None:
            raise RunNotFound(run_id)
        task = self._active.get(run_id)
        if task is not None:
            task.cancel()
        await self._notify_done()
        log.info("run_cancelled", run_id=run_id)
        return run

    async def wait(self, run_id: str, timeout: float | None = None) -> Run:
        """Wait until the run is completed, failed or cancelled, and return it."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            run = await self.get(run_id)
            if RunStatus(run.status).terminal:
                return run
            left = 1.0 if deadline is None else min(1.0, deadline - time.monotonic())
            if left <= 0:
                raise TimeoutError(f"run {run_id} is still {run.status} after {timeout:g} s")
            async with self._done:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._done.wait(), left)

    async def result(self, run_id: str, timeout: float | None = None) -> Any:
        """The run's result once completed; raises if it failed or was cancelled."""
        run = await self.wait(run_id, timeout)
        if run.status != RunStatus.COMPLETED:
            detail = (run.error or {}).get("message", run.status)
            raise RuntimeError(f"run {run_id} {run.status}: {detail}")
        return run.result

    def lease(self) -> LeaseState | None:
        """The tenant's lease as the gate sees it (None: no lease file, no gate)."""
        return None if self._gate is None else self._gate.state()

    def lease_metrics(self) -> tuple[bool, float] | None:
        """(held, seconds of validity left) for /metrics; None without a gate."""
        if self._gate is None:
            return None
        return self._gate.state().held, self._gate.valid_seconds()

    def _require_lease(self) -> None:
        if self._gate is not None:
            self._gate.check()

    def _lease_held(self) -> bool:
        return self._gate is None or self._gate.allows()

    async def _await_lease(self) -> None:
        """Hold the scheduler (no claim, no release, so no write) until the lease is back."""
        lease = self.lease()
        log.warning("lease_unconfirmed", **(lease.as_json() if lease else {}))
        while not self._draining and not self._lease_held():
            await asyncio.sleep(LEASE_POLL)
        if not self._draining:
            log.info("lease_confirmed")
            self._maybe_runnable = True

    # -- scheduling

    def _wake(self) -> None:
        self._maybe_runnable = True
        self._kick.set()

    def _on_wait(self, wake_at: float | None) -> None:
        if wake_at is not None:
            self._timers.append(wake_at)
            self._kick.set()

    async def _schedule(self) -> None:
        while not self._draining:
            try:
                await self._schedule_loop()
            except Exception as exc:  # the store may be briefly unavailable: keep going
                log.warning("scheduler_error", error=f"{type(exc).__name__}: {exc}")
                self._maybe_runnable = True
                await asyncio.sleep(0.5)

    async def _schedule_loop(self) -> None:
        next_poll = 0.0
        while not self._draining:
            if not self._lease_held():
                await self._await_lease()
                continue
            if self._orphans:
                await self._release_orphans()
            now = time.time()
            due = [t for t in self._timers if t <= now]
            if due or self._maybe_runnable or time.monotonic() >= next_poll:
                self._timers = [t for t in self._timers if t > now]
                if time.monotonic() >= next_poll:
                    next_poll = time.monotonic() + self._poll
                    wake = await self.store.next_wake_at()
                    if wake is not None:
                        self._timers.append(wake)
                await self._claim(now)
            timeout = next_poll - time.monotonic()
            if self._timers:
                timeout = min(timeout, min(self._timers) - time.time())
            wait = getattr(self.store, "wait_for_work", None)
            try:
                if wait is not None and not self._kick.is_set():
                    kick = asyncio.ensure_future(self._kick.wait())
                    ext = asyncio.ensure_future(wait(max(timeout, 0.0)))
                    done, pending = await asyncio.wait(
                        {kick, ext}, timeout=max(timeout, 0.0), return_when=asyncio.FIRST_COMPLETED
                    )
                    for p in pending:
                        p.cancel()
                    if ext in done:
                        self._maybe_runnable = True
                else:
                    await asyncio.wait_for(self._kick.wait(), max(timeout, 0.0))
            except TimeoutError:
                pass
            self._kick.clear()

    async def _release_orphans(self) -> None:
        """Hand back runs whose execution broke off for a reason that is not theirs (the
        store failed mid-run, the task crashed): they are still ``running`` and ours, and
        would otherwise never be claimed again by this process."""
        for run_id in list(self._orphans):
            if run_id in self._active:
                continue
            pending = Transition(RunStatus.PENDING, release=True)
            await self.store.append(run_id, self.owner, [], pending)  # None: no longer ours
            self._orphans.discard(run_id)
            self._maybe_runnable = True

    async def _claim(self, now: float) -> None:
        free = self.concurrency - len(self._active)
        if free <= 0:
            return  # a finishing run kicks us again
        self._maybe_runnable = False
        try:
            runs = await self.store.claim(self.owner, now, free, self._lease)
        except Exception as exc:  # the store may be briefly unavailable: retry soon
            log.warning("claim_failed", error=str(exc))
            self._maybe_runnable = True
            await asyncio.sleep(0.5)
            return
        if len(runs) == free:
            self._maybe_runnable = True  # there may be more
        for run in runs:
            self._active[run.id] = asyncio.create_task(self._execute(run), name=f"run-{run.id}")
        if runs and self._watchdog is not None:
            self._watchdog.arm(True)

    async def _renew_leases(self) -> None:
        while True:
            await asyncio.sleep(self._lease / 3)
            if self._active and self._lease_held():
                try:
                    await self.store.renew(self.owner, list(self._active), self._lease)
                except Exception as exc:
                    log.warning("lease_renewal_failed", error=str(exc))

    def _culprit(self, task: asyncio.Task[Any] | None, frame: FrameType | None) -> dict[str, Any]:
        """What a blocked loop was running (called from the watchdog's thread)."""
        where: dict[str, Any] = {"in": "runtime"}
        for run_id, (workflow, ctx) in list(self._contexts.items()):
            step = ctx.step_in(task)
            if step is not None or (task is not None and self._active.get(run_id) is task):
                where.update(run_id=run_id, workflow=workflow, step=step)
                where["in"] = "workflow code" if step is None else "step"
                break
        if frame is not None:
            code = frame.f_code
            where["at"] = f"{code.co_filename}:{frame.f_lineno} {code.co_qualname}"
            if on_stack(frame, getattr(type(self.store).append, "__code__", None)):
                where["in"] = "store"  # a commit on the loop thread (a slow disk), not user code
        return where

    async def _notify_done(self) -> None:
        async with self._done:
            self._done.notify_all()

    # -- execution

    async def _execute(self, run: Run) -> None:
        bound = log.bind(run_id=run.id, workflow=run.workflow)
        try:
            await self._drive(run, bound)
        except (Exception, StoreUnavailable) as exc:  # never let a run's task die silently
            bound.error("run_interrupted", error=f"{type(exc).__name__}: {exc}")
            self._orphans.add(run.id)  # released and retried from its history
        finally:
            self._active.pop(run.id, None)
            if not self._active and self._watchdog is not None:
                self._watchdog.arm(False)
            self._maybe_runnable = True
            self._kick.set()
            await self._notify_done()

    async def _drive(self, run: Run, bound: Any) -> None:
        wf = self.workflows.get(run.workflow)
        if wf is None:
            err = {
                "type": "WorkflowNotFound",
                "message": f"workflow {run.workflow!r} is not registered in this app",
            }
            await self._finish(
                run,
                Event(EventKind.RUN_FAILED, data={"error": err}),
                Transition(RunStatus.FAILED, error=err, release=True),
            )
            return
        history = await self.store.history(run.id)
        ctx = WorkflowContext(
            store=self.store,
            run_id=run.id,
            owner=self.owner,
            history=history,
            draining=lambda: self._draining,
            lease_held=self._lease_held,
            solo=lambda: len(self._active) == 1,
            on_wait=self._on_wait,
            executor=self._executor,
            pacer=self._pacer,
        )
        token = set_context(ctx)
        self._contexts[run.id] = (run.workflow, ctx)
        try:
            result = to_json_value(await wf.fn(**run.input), "workflow result")
        except Suspend:
            bound.debug("run_suspended")
            await ctx.cancel_steps()
            return
        except (Fenced, Draining):
            await ctx.cancel_steps()
            return
        except StoreUnavailable:
            await ctx.cancel_steps()
            raise
        except asyncio.CancelledError:
            return  # cancelled by the API (already recorded) or by shutdown (recovered later)
        except Exception as exc:
            err = error_dict(exc)
            bound.info("run_failed", error=err["message"], error_type=err["type"])
            await self._finish(
                run,
                Event(EventKind.RUN_FAILED, data={"error": err}),
                Transition(RunStatus.FAILED, error=err, release=True),
            )
            return
        finally:
            reset_context(token)
            self._contexts.pop(run.id, None)
        _faults.fault_point("run.before_complete")
        await self._finish(
            run,
            Event(EventKind.RUN_COMPLETED, data={"result": result}),
            Transition(RunStatus.COMPLETED, result=result, release=True),
        )
        bound.info("run_completed")

    async def _finish(self, run: Run, event: Event, transition: Transition) -> None:
        await self.store.append(run.id, self.owner, [event], transition)
