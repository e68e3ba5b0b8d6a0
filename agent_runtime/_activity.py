"""``GET /v1/activity``: what a supervisor needs to decide that a runtime may be put away.

The fleet parks an idle tenant (container removed, state kept in object storage) and wakes
it again for a request or before a durable timer is due. For that it asks the runtime:

- ``idle_seconds`` / ``last_request_at``: since the last API request (``/v1/...`` except this
  endpoint; ``/healthz`` and ``/metrics`` are probes and do not count). Counted after the
  bearer check, so requests without the token do not keep a tenant awake.
- ``executing``: runs this process is executing now (a step, a retry's backoff, workflow
  code); ``pending``: runs waiting for a free slot. Sleeping runs and runs waiting for a
  signal are neither: they hold nothing and the store wakes them.
- ``next_wake_at``: the earliest deadline of a durable sleep or a signal timeout (epoch
  seconds, the store's ``next_wake_at``), which a parked tenant must be woken for.
- ``now``: the runtime's clock, so a caller on another host can correct for skew.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from ._http_json import SafeJSONResponse
from ._runtime import Runtime
from ._store import RunStatus

PATH = "/v1/activity"
_COUNTED_PREFIX = "/v1/"


class Activity:
    """When the API last served a request (monotonic, so a clock step does not fake idleness)."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.last_request: float | None = None  # monotonic

    def touch(self) -> None:
        self.last_request = time.monotonic()

    def idle_seconds(self) -> float:
        return time.monotonic() - (self.last_request or self.started)

    def last_request_at(self) -> float | None:
        if self.last_request is None:
            return None
        return time.time() - (time.monotonic() - self.last_request)


class ActivityTracker:
    """ASGI middleware: every ``/v1/...`` request but ``/v1/activity`` counts as activity."""

    def __init__(self, app: ASGIApp, activity: Activity) -> None:
        self.app = app
        self.activity = activity

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            if path.startswith(_COUNTED_PREFIX) and path != PATH:
                self.activity.touch()
        await self.app(scope, receive, send)


def activity_endpoint(runtime: Runtime, activity: Activity) -> Any:
    async def endpoint(request: Request) -> Response:
        counts = await runtime.store.count_by_status()
        return SafeJSONResponse(
            {
                "idle_seconds": round(activity.idle_seconds(), 3),
                "last_request_at": activity.last_request_at(),
                "executing": runtime.executing,
                "pending": counts.get(RunStatus.PENDING.value, 0),
                "next_wake_at": await runtime.store.next_wake_at(),
                "now": time.time(),
            }
        )

    return endpoint
