"""The gateway's background work, one task: refresh what it knows, wake parked tenants before
their durable deadlines, park idle ones, renew its registration.

- Every ``REFRESH_S`` a survey of the engines and the manifests (one LIST; a manifest is read
  again only when its ETag changed).
- Every ``TICK_S`` the timers: a parked tenant is woken ``WAKE_LEAD_S`` before its earliest
  deadline, so the deadline finds it running (lateness = how much the wake takes longer).
- Restore drills (``--verify-every``): every ``min(VERIFY_CHECK_S, period)`` the tenants
  whose last drill (recorded in their manifests) is older than the period are verified,
  one at a time, oldest first (ops/verify.py); a restarted gateway goes on from the records.
- Idle tenants (``--idle-park``): the runtime is asked (``GET /v1/activity``) only once the
  gateway itself has passed it no request for the idle period, and at most every
  ``idle/4`` s (between 1 and 15 s); parked when its last request is older than the period
  and nothing executes or waits for a slot.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from typing import Any

import httpx

from fleet.core import names
from fleet.core.errors import FleetError
from fleet.core.log import log
from fleet.ops import verify
from fleet.storage.manifests import ManifestConflict

from . import registry
from .directory import RUNNING, Entry, survey
from .front import Gateway

REFRESH_S = 10.0
TICK_S = 0.5
RENEW_S = 5.0
VERIFY_CHECK_S = 60.0


class Upkeep:
    def __init__(
        self, gw: Gateway, reg: registry.Registration | None, verify_every: float | None = None
    ) -> None:
        self.gw = gw
        self.reg = reg
        self.verify_every = verify_every
        self.drilling = False  # a round of restore drills is under way
        self.seen: dict[str, tuple[str, Entry | None]] = {}
        self.asked: dict[str, float] = {}  # tenant: monotonic of the last activity poll
        self.timer_tried: dict[str, float] = {}  # tenant: monotonic of the last timer wake
        self.tasks: set[asyncio.Task[Any]] = set()
        self.lost = asyncio.Event()  # the registration was taken over

    async def run(self) -> None:
        next_refresh = next_renew = next_drills = 0.0
        while not self.lost.is_set():
            now = time.monotonic()
            try:
                if now >= next_renew and self.reg is not None:
                    next_renew = now + RENEW_S
                    await self._renew()
                if now >= next_refresh:
                    next_refresh = now + REFRESH_S
                    await self.refresh()
                if self.verify_every is not None and now >= next_drills and not self.drilling:
                    next_drills = now + min(VERIFY_CHECK_S, self.verify_every)
                    self.drilling = True
                    self._spawn(self._drills(self.verify_every))
                self._timers()
                self._idle()
            except Exception as exc:  # keep serving; the next tick tries again
                log.warning("gateway upkeep failed", error=f"{type(exc).__name__}: {exc}")
            await asyncio.sleep(TICK_S)

    async def refresh(self) -> None:
        found = await self.gw.blocking(survey, self.gw.fleet, self.seen)
        self.seen = found.manifests_seen
        for name, entry in found.entries.items():
            if not self.gw.busy(name):
                self.gw.remember(entry)
        for name in set(self.gw.entries) - set(found.entries):
            if not self.gw.busy(name) and self.gw.entries[name].state != "unknown":
                del self.gw.entries[name]

    async def _renew(self) -> None:
        assert self.reg is not None
        try:
            await self.gw.blocking(registry.renew, self.reg)
        except ManifestConflict:
            log.error("another gateway took over this fleet; stopping")
            self.lost.set()

    def _timers(self) -> None:
        now = time.time()
        for e in list(self.gw.entries.values()):
            due = e.next_wake_at
            if e.state != names.STATE_PARKED or due is None or due - names.WAKE_LEAD_S > now:
                continue
            if self.gw.busy(e.name) or time.monotonic() - self.timer_tried.get(e.name, -1e9) < 10:
                continue  # a failed wake is tried again every 10 s
            self.timer_tried[e.name] = time.monotonic()
            self._spawn(self.gw.wake(e.name, "timer"))

    def _idle(self) -> None:
        now = time.monotonic()
        for e in list(self.gw.entries.values()):
            if e.state != RUNNING or e.idle_park_s is None or self.gw.busy(e.name):
                continue
            if now - e.last_proxied < e.idle_park_s:
                continue
            every = min(15.0, max(1.0, e.idle_park_s / 4))
            if now - self.asked.get(e.name, 0.0) >= every:
                self.asked[e.name] = now
                self._spawn(self._park_if_idle(e))

    async def _park_if_idle(self, e: Entry) -> None:
        if not e.url or not e.token or e.idle_park_s is None:
            return
        try:
            r = await self.gw.http.get(
                f"{e.url}/v1/activity", headers={"Authorization": f"Bearer {e.token}"}, timeout=5
            )
            a = r.raise_for_status().json()
        except (httpx.HTTPError, ValueError) as exc:
            log.debug("no activity report", tenant=e.name, error=type(exc).__name__)
            return
        idle = float(a.get("idle_seconds") or 0.0)
        quiet = not a.get("executing") and not a.get("pending")
        if idle >= e.idle_park_s and quiet and time.monotonic() - e.last_proxied >= e.idle_park_s:
            log.info("parking idle tenant", tenant=e.name, activity=a)
            await self.gw.park(e.name, "idle", idle_for=e.idle_park_s)

    async def _drills(self, every: float) -> None:
        """Verify the tenants that are due, one at a time (each restores a whole database)."""
        try:
            for name in await self.gw.blocking(verify.due, self.gw.fleet, every, time.time()):
                try:
                    v = await self.gw.blocking(verify.verify, self.gw.fleet, name)
                except FleetError as exc:  # tried again at the next check
                    log.warning("restore drill not run", tenant=name, error=exc.message)
                    continue
                if v.passed is not None:
                    self.gw.metrics.drills["passed" if v.passed else "failed"] += 1
                report = log.info if v.passed is not False else log.error
                report("restore drill", tenant=name, passed=v.passed, detail=v.detail)
        finally:
            self.drilling = False

    def _spawn(self, coro: Coroutine[Any, Any, object]) -> None:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
