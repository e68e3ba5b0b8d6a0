"""Keeping the event loop responsive: the HTTP API and every run share one loop.

- ``Pacer``: workflow code yields the loop at least every ``SLICE`` seconds. A run whose
  steps need no I/O (no-op steps, replay of a long history, commits done inline on the
  loop thread when it is the only run) would otherwise never give the loop back until it
  finishes or sleeps. A time slice rather than a yield per step: a yield costs a loop
  iteration (a few microseconds), a slice bounds the added latency all the same.
- ``LoopWatchdog``: a thread that notices when the loop did not run a callback for longer
  than a threshold (an ``async`` step or workflow doing CPU work or a blocking call without
  ``await``: a user error, but one that silences the API). It logs ``event_loop_blocked``
  naming the run, workflow and step found on the loop thread's stack, and counts it in
  ``agent_runtime_event_loop_blocked_seconds``. It only pings the loop while runs are
  active, so an idle runtime pays nothing.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections.abc import Callable
from types import CodeType, FrameType
from typing import Any

import structlog

from . import _metrics

log = structlog.get_logger("agent_runtime")

SLICE = 0.002  # seconds of workflow code between two yields of the loop, at most
BLOCK_THRESHOLD = 0.1  # seconds without a loop iteration before the watchdog speaks


class Pacer:
    """Shared by every run of a runtime: whoever notices the slice is over yields."""

    __slots__ = ("_next",)

    def __init__(self) -> None:
        self._next = 0.0

    async def pace(self) -> None:
        if time.monotonic() >= self._next:
            await asyncio.sleep(0)
            self._next = time.monotonic() + SLICE


# What was running when the loop was found blocked: run_id, workflow, step, "in".
Culprit = dict[str, Any]


class LoopWatchdog:
    """Pings the loop from a thread every ``threshold`` seconds while ``armed``."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        threshold: float,
        culprit: Callable[[asyncio.Task[Any] | None, FrameType | None], Culprit],
    ) -> None:
        self._loop = loop
        self._threshold = threshold
        self._culprit = culprit
        self._armed = threading.Event()
        self._stopped = False
        self._loop_thread = threading.get_ident()
        self._thread = threading.Thread(target=self._run, name="agent-runtime-watchdog")
        self._thread.daemon = True

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped = True
        self._armed.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def arm(self, on: bool) -> None:
        """On while runs are active (only run code can block the loop for long)."""
        if on != self._armed.is_set():
            (self._armed.set if on else self._armed.clear)()

    def _run(self) -> None:
        while True:
            self._armed.wait()
            if self._stopped:
                return
            pong = threading.Event()
            sent = time.monotonic()
            try:
                self._loop.call_soon_threadsafe(pong.set)
            except RuntimeError:  # the loop is closed
                return
            if not pong.wait(self._threshold):
                self._report(pong, sent)
            if self._stopped:
                return
            time.sleep(self._threshold)

    def _report(self, pong: threading.Event, sent: float) -> None:
        # Read from this thread while the loop thread is stuck: a dict lookup and the
        # frame chain, under the GIL (no frame's locals are touched, the loop not entered).
        task = asyncio.current_task(self._loop)
        where = self._culprit(task, sys._current_frames().get(self._loop_thread))
        still = self._threshold * 10  # an endless loop is reported at 10x, 100x... too
        while not pong.wait(max(0.0, sent + still - time.monotonic())):
            if self._stopped:
                return
            blocked = time.monotonic() - sent
            log.warning("event_loop_blocked", blocked_s=round(blocked, 3), still=True, **where)
            still *= 10
        blocked = time.monotonic() - sent
        log.warning("event_loop_blocked", blocked_s=round(blocked, 3), **where)
        _metrics.LOOP_BLOCKED.observe(blocked)


def on_stack(frame: FrameType | None, code: CodeType | None) -> bool:
    """Whether a frame running ``code`` is on the stack that ends at ``frame``."""
    while frame is not None:
        if frame.f_code is code:
            return True
        frame = frame.f_back
    return False
