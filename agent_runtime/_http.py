"""The runtime's HTTP API (Starlette). Errors become JSON responses in one place:
``_ERRORS`` below (and ``JSONErrors`` for anything unexpected)."""

from __future__ import annotations

import contextlib
import hmac
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from . import _metrics
from ._activity import PATH as ACTIVITY_PATH
from ._activity import Activity, ActivityTracker, activity_endpoint
from ._errors import (
    InvalidInput,
    RunNotFound,
    SignalBufferFull,
    StorageFull,
    WorkflowNotFound,
)
from ._http_json import MAX_BODY, BodyTooLarge, JSONErrors, MalformedBody
from ._http_json import SafeJSONResponse as JSONResponse  # every response encodes safely
from ._http_json import read_json as _read_json
from ._lease_gate import LeaseUnconfirmed
from ._runtime import Runtime
from ._store import Event, Run, RunStatus


class Conflict(Exception):
    pass


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    try:
        return datetime.fromtimestamp(ts, UTC).isoformat()
    except (OverflowError, ValueError, OSError):  # a time past year 9999 (older runtimes)
        return None


def run_json(run: Run) -> dict[str, Any]:
    return {
        "id": run.id,
        "workflow": run.workflow,
        "status": run.status,
        "input": run.input,
        "result": run.result,
        "error": run.error,
        "created_at": _iso(run.created_at),
        "updated_at": _iso(run.updated_at),
        "wake_at": _iso(run.wake_at),
    }


def event_json(ev: Event) -> dict[str, Any]:
    return {
        "seq": ev.seq,
        "kind": ev.kind,
        "position": ev.position,
        "name": ev.name,
        "attempt": ev.attempt,
        "data": ev.data,
        "at": _iso(ev.created_at),
    }


def build_app(runtime: Runtime, *, token: str | None = None, grace: float = 10.0) -> Starlette:
    async def healthz(request: Request) -> Response:
        # 200 even without the lease: a health check must not kill a tenant that only lost
        # its object store; "degraded" says it executes nothing and refuses writes.
        body: dict[str, Any] = {"status": "ok", "backend": runtime.store.backend}
        lease = runtime.lease()
        if lease is not None:
            body["lease"] = lease.as_json()
            if not lease.held:
                body["status"] = "degraded"
        return JSONResponse(body)

    async def create_run(request: Request) -> Response:
        body = await _read_json(request)
        if not isinstance(body, dict):
            raise InvalidInput("body must be a JSON object")
        unknown = set(body) - {"workflow", "input", "id"}
        if unknown:
            raise InvalidInput(f"unknown field(s): {', '.join(sorted(unknown))}")
        workflow, input, run_id = body.get("workflow"), body.get("input", {}), body.get("id")
        if not isinstance(workflow, str) or not workflow:
            raise InvalidInput("'workflow' must be a non-empty string")
        if input is None:
            input = {}
        if not isinstance(input, dict):
            raise InvalidInput("'input' must be a JSON object")
        if run_id is not None and not isinstance(run_id, str):
            raise InvalidInput("'id' must be a string")
        run, created = await runtime.submit_run(workflow, input, id=run_id)
        if not created and run.workflow != workflow:
            raise Conflict(f"run {run.id!r} exists with workflow {run.workflow!r}")
        return JSONResponse(run_json(run), status_code=201 if created else 200)

    async def get_run(request: Request) -> Response:
        return JSONResponse(run_json(await runtime.get(request.path_params["id"])))

    async def list_runs(request: Request) -> Response:
        q = request.query_params
        limit_s = q.get("limit", "50")
        if not (limit_s.isascii() and limit_s.isdigit()):
            raise InvalidInput("limit must be a positive integer")
        page = await runtime.list_runs(
            status=q.get("status") or None,
            workflow=q.get("workflow") or None,
            limit=int(limit_s),
            cursor=q.get("cursor") or None,
        )
        return JSONResponse(
            {"runs": [run_json(r) for r in page.runs], "next_cursor": page.next_cursor}
        )

    async def run_events(request: Request) -> Response:
        events = await runtime.history(request.path_params["id"])
        return JSONResponse({"events": [event_json(e) for e in events]})

    async def signal(request: Request) -> Response:
        payload = await _read_json(request, allow_empty=True)
        run_id, name = request.path_params["id"], request.path_params["name"]
        run = await runtime.signal(run_id, name, payload)
        if RunStatus(run.status).terminal:
            raise Conflict(f"run {run_id!r} is {run.status}: it takes no more signals")
        return JSONResponse({"run": run_json(run), "signal": name, "accepted": True}, 202)

    async def cancel(request: Request) -> Response:
        return JSONResponse(run_json(await runtime.cancel(request.path_params["id"])))

    async def workflows(request: Request) -> Response:
        items = [{"name": n, "doc": w.doc} for n, w in sorted(runtime.workflows.items())]
        return JSONResponse({"workflows": items})

    async def metrics(request: Request) -> Response:
        counts = await runtime.store.count_by_status()
        text = _metrics.render(counts, [s.value for s in RunStatus], runtime.lease_metrics())
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop(grace=grace)

    routes = [  # the busiest first: Starlette tries them in order
        Route("/v1/runs", create_run, methods=["POST"]),
        Route("/healthz", healthz),
        Route("/metrics", metrics),
        Route("/v1/workflows", workflows),
        Route("/v1/runs", list_runs, methods=["GET"]),
        Route("/v1/runs/{id}", get_run),
        Route("/v1/runs/{id}/events", run_events),
        Route("/v1/runs/{id}/signals/{name}", signal, methods=["POST"]),
        Route("/v1/runs/{id}/cancel", cancel, methods=["POST"]),
    ]
    activity = Activity()
    routes.append(Route(ACTIVITY_PATH, activity_endpoint(runtime, activity)))
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers=_ERRORS)
    app.add_middleware(ActivityTracker, activity=activity)  # inside BearerAuth: counted once
    app.add_middleware(JSONErrors)
    if token:
        app.add_middleware(BearerAuth, token=token)
    return app


def _error(status: int) -> Callable[[Request, Exception], Awaitable[Response]]:
    async def handler(request: Request, exc: Exception) -> Response:
        message = str(exc) if str(exc) else _DEFAULT_MESSAGES.get(status, "error")
        return JSONResponse({"error": message}, status_code=status)

    return handler


_DEFAULT_MESSAGES = {413: f"request body is larger than {MAX_BODY} bytes"}


async def _lease_unconfirmed(request: Request, exc: Exception) -> Response:
    retry = str(getattr(exc, "retry_after", 5))
    return JSONResponse({"error": str(exc)}, status_code=503, headers={"Retry-After": retry})


_ERRORS: dict[type[Exception], Callable[[Request, Exception], Awaitable[Response]]] = {
    MalformedBody: _error(400),
    InvalidInput: _error(422),
    WorkflowNotFound: _error(404),
    RunNotFound: _error(404),
    Conflict: _error(409),
    BodyTooLarge: _error(413),
    SignalBufferFull: _error(429),
    LeaseUnconfirmed: _lease_unconfirmed,
    StorageFull: _error(507),
}


class BearerAuth:
    """Every endpoint but /healthz needs ``Authorization: Bearer TOKEN``."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] != "/healthz":
            given = dict(scope["headers"]).get(b"authorization", b"")
            if not hmac.compare_digest(given, self.expected):
                response = JSONResponse(
                    {"error": "missing or wrong bearer token"},
                    status_code=401,
                    headers={"WWW-Authenticate": "Bearer"},
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
