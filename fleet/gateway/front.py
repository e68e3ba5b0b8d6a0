"""The gateway's view of the fleet and what it does to tenants: find where one answers, wake
it, park it. One ``Gateway`` per process, used from one event loop.

- Look-ups of one tenant are single-flight (concurrent requests share one), at most
  ``LOOKUPS`` at once; blocking calls (Docker SDK, boto3, the ops) run in worker threads
  (``THREADS``).
- Wakes and parks of one tenant are serialized by its lock; at most ``WAKES`` wakes run at
  once (a wake is a container start and a restore).
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable
from typing import Any, TypeVar

import anyio
import httpx

from fleet.core import names
from fleet.core.context import Fleet
from fleet.core.errors import FleetError, translate
from fleet.core.log import log
from fleet.ops.park import NotIdle, park
from fleet.ops.wake import wake

from .directory import NEGATIVE_S, RUNNING, STOPPED, UNKNOWN, Entry, entry_of_tenant, resolve
from .metrics import Metrics

T = TypeVar("T")
THREADS = 32
LOOKUPS = 8
WAKES = 8
_POLL_S = 0.25  # while holding a request: how often to look again


class Unavailable(Exception):
    """The tenant cannot answer within the hold (503 with Retry-After)."""

    def __init__(self, reason: str, retry_after: int = 5) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class Gateway:
    def __init__(self, fleet: Fleet, http: httpx.AsyncClient) -> None:
        self.fleet = fleet
        self.http = http
        self.entries: dict[str, Entry] = {}
        self.metrics = Metrics()
        self._limiter = anyio.CapacityLimiter(THREADS)
        self._lookup_slots = asyncio.Semaphore(LOOKUPS)
        self._wake_slots = asyncio.Semaphore(WAKES)
        self._lookups: dict[str, asyncio.Future[Entry]] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def blocking(self, fn: Callable[..., T], *args: Any) -> T:
        return await anyio.to_thread.run_sync(functools.partial(fn, *args), limiter=self._limiter)

    def lock(self, name: str) -> asyncio.Lock:
        return self._locks.setdefault(name, asyncio.Lock())

    def busy(self, name: str) -> bool:
        return self.lock(name).locked()

    # -- finding tenants

    async def entry(self, name: str) -> Entry:
        """What is known about ``name``; looked up when unknown (at most every NEGATIVE_S)."""
        e = self.entries.get(name)
        if e is not None and (e.state != UNKNOWN or time.monotonic() - e.checked < NEGATIVE_S):
            return e
        return await self.lookup(name)

    async def lookup(self, name: str) -> Entry:
        pending = self._lookups.get(name)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Entry] = asyncio.get_running_loop().create_future()
        self._lookups[name] = future
        try:
            async with self._lookup_slots:
                found = await self.blocking(resolve, self.fleet, name)
            self.remember(found)
            future.set_result(found)
            return found
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters re-raise it, nobody logs it as lost
            raise
        finally:
            del self._lookups[name]

    def remember(self, found: Entry) -> None:
        old = self.entries.get(found.name)
        if old is not None:
            found.last_proxied = old.last_proxied
        self.entries[found.name] = found

    async def upstream(self, name: str, deadline: float) -> Entry:
        """A running entry for ``name``: waking it when parked, holding while it is being
        parked, woken, moved or deployed; Unavailable when it cannot answer by ``deadline``."""
        while True:
            e = self.entries.get(name) or await self.lookup(name)
            if e.state == RUNNING and e.url:
                return e
            if e.state == names.STATE_PARKED and not e.operation and not self.busy(name):
                if not await self.wake(name, "request"):
                    raise Unavailable(f"tenant {name} could not be woken", retry_after=30)
                continue
            if e.state in (STOPPED, UNKNOWN) and not e.operation:
                raise Unavailable(f"tenant {name} is {e.state}", retry_after=30)
            if time.monotonic() >= deadline:
                raise Unavailable(f"tenant {name} did not answer in time ({e.state})")
            await asyncio.sleep(_POLL_S)
            if not self.busy(name):
                await self.lookup(name)

    # -- waking and parking

    async def wake(self, name: str, reason: str) -> bool:
        """Wake ``name`` if it is parked; whether it runs now."""
        async with self.lock(name), self._wake_slots:
            current = await self.lookup(name)
            if current.state != names.STATE_PARKED or current.operation:
                return current.state == RUNNING
            current.state = names.STATE_WAKING
            t0 = time.monotonic()
            try:
                woken = await self.blocking(functools.partial(wake, self.fleet, name))
            except Exception as exc:
                self.metrics.wake_failures += 1
                await self._after_failure(name, "wake", exc)
                return False
            self.metrics.woke(reason, time.monotonic() - t0)
            self.remember(entry_of_tenant(woken.tenant))
            log.info("gateway woke tenant", tenant=name, reason=reason, seconds=woken.seconds)
            return True

    async def park(self, name: str, reason: str, idle_for: float | None = None) -> None:
        """Park ``name``; with ``idle_for``, only if it is still idle once new requests are
        held (requests already passed on make it busy)."""
        async with self.lock(name):
            current = self.entries.get(name)
            if current is None or current.state != RUNNING:
                return
            current.state = names.STATE_PARKING  # from here on requests wait
            try:
                result = await self.blocking(
                    functools.partial(park, self.fleet, name, idle_for=idle_for)
                )
            except NotIdle:
                await self.lookup(name)
                return
            except Exception as exc:
                await self._after_failure(name, "park", exc)
                return
            self.metrics.parks[reason] += 1
            await self.lookup(name)
            log.info("gateway parked tenant", tenant=name, reason=reason, seconds=result.seconds)

    async def _after_failure(self, name: str, what: str, exc: Exception) -> None:
        err = translate(exc) or FleetError(f"{type(exc).__name__}: {exc}")
        log.warning(f"gateway could not {what} tenant", tenant=name, error=err.message)
        try:
            await self.lookup(name)
        except Exception:  # the next refresh looks again
            self.entries.pop(name, None)
