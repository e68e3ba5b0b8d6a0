"""The gateway's HTTP front: ``/t/<tenant>/...`` is that tenant's runtime API, ``/healthz``,
``/metrics``.

A request is checked before anything else happens: the tenant's token (``Authorization:
Bearer``) against the digest the gateway holds, compared in constant time; without a match
it gets 401 and costs nothing more (no wake, no manifest read: an unknown name is looked up
at most once per few seconds). Then the body is read (bounded, so that it can be sent again)
and the request is passed on, over a keep-alive pool, to wherever the tenant runs. While the
tenant is parked, being woken, parked, moved or deployed, the request is held until it
answers (``GATEWAY_HOLD_S``), then 503 with Retry-After. A connection the tenant refused or
dropped before answering is tried again within the same hold (the tenant had stopped
reading: the request was not processed).
"""

from __future__ import annotations

import time

import httpx
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from fleet.core import names

from .front import Gateway, Unavailable

MAX_BODY = 8 << 20  # the runtime refuses more than 1 MiB per request anyway
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
}
_RETRYABLE = (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ConnectTimeout)


def build_app(gw: Gateway, hold_s: float = names.GATEWAY_HOLD_S) -> Starlette:
    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok", "tenants": len(gw.entries)})

    async def metrics(request: Request) -> Response:
        text = gw.metrics.render(e.state for e in gw.entries.values())
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4")

    async def proxy(request: Request) -> Response:
        name = request.path_params["tenant"]
        if not names.valid_tenant(name):
            return _error(404, "no such tenant")
        token = _bearer(request.headers.get("authorization"))
        if token is None or not (await gw.entry(name)).accepts(token):
            gw.metrics.request(401)
            return _error(401, "missing or wrong bearer token", {"WWW-Authenticate": "Bearer"})
        body = await _body(request)
        if body is None:
            return _error(413, f"request body is larger than {MAX_BODY} bytes")
        response = await _forward(gw, request, name, body, time.monotonic() + hold_s)
        gw.metrics.request(response.status_code)
        return response

    routes = [
        Route("/t/{tenant}/{path:path}", proxy, methods=METHODS),
        Route("/healthz", healthz),
        Route("/metrics", metrics),
    ]
    return Starlette(routes=routes)


async def _forward(
    gw: Gateway, request: Request, name: str, body: bytes, deadline: float
) -> Response:
    path = _upstream_path(request, name)
    headers = [(k, v) for k, v in request.headers.items() if k.lower() not in _HOP]
    while True:
        try:
            entry = await gw.upstream(name, deadline)
        except Unavailable as exc:
            return _error(503, str(exc), {"Retry-After": str(exc.retry_after)})
        upstream = gw.http.build_request(
            request.method, f"{entry.url}{path}", headers=headers, content=body
        )
        try:
            resp = await gw.http.send(upstream, stream=True)
        except _RETRYABLE:
            if time.monotonic() >= deadline:
                return _error(503, f"tenant {name} did not answer in time", {"Retry-After": "5"})
            await gw.lookup(name)  # it may have moved, stopped or been parked
            continue
        except httpx.TimeoutException:
            return _error(504, f"tenant {name} did not answer in time")
        entry.last_proxied = time.monotonic()
        out = [(k, v) for k, v in resp.headers.multi_items() if k.lower() not in _HOP]
        return StreamingResponse(
            resp.aiter_raw(),
            status_code=resp.status_code,
            headers=dict(out),
            background=BackgroundTask(resp.aclose),
        )


def _upstream_path(request: Request, name: str) -> str:
    """The path after ``/t/<tenant>`` as the client encoded it, with the query string."""
    raw = request.scope.get("raw_path") or request.url.path.encode()
    path = raw.decode("latin-1").split("?", 1)[0][len(f"/t/{name}") :] or "/"
    query = request.scope.get("query_string", b"").decode("latin-1")
    return f"{path}?{query}" if query else path


async def _body(request: Request) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _bearer(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse({"error": message}, status_code=status, headers=headers)
