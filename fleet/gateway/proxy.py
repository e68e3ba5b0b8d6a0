"""The gateway's HTTP front: ``/t/<tenant>/...`` is that tenant's runtime API, ``/healthz``,
``/metrics``.

A request is checked before anything else happens: the tenant's token (``Authorization:
Bearer``) against the digest the gateway holds, compared in constant time; without a match
it gets 401 and costs nothing more (no wake, no manifest read: an unknown name is looked up
at most once per few seconds). Then the body is read (bounded, so that it can be sent again)
and the request is passed on, over a keep-alive pool, to wherever the tenant runs. While the
tenant is parked, being woken, parked, moved or deployed, the request is held until it
answers (``GATEWAY_HOLD_S``), then 503 with Retry-After. A connection the tenant refused is
tried again within the same hold (it never saw the request); one it dropped before
answering (a runtime stopping closes its idle keep-alive connections) is tried again only
when the request can be applied twice (``replayable``), else 502.
"""

from __future__ import annotations

import asyncio
import json
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
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout)  # the tenant never saw the request
_CUT = (httpx.ReadError, httpx.RemoteProtocolError, httpx.WriteError)  # it may have


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
        except (*_NOT_SENT, *_CUT) as exc:
            if isinstance(exc, _CUT) and not replayable(request.method, path, body):
                return _error(
                    502,
                    f"tenant {name} closed the connection; the request may or "
                    "may not have been applied",
                )
            if time.monotonic() >= deadline:
                return _error(503, f"tenant {name} did not answer in time", {"Retry-After": "5"})
            await asyncio.sleep(0.1)
            await gw.lookup(name)  # it may have moved, stopped or been parked
            continue
        except httpx.TimeoutException:
            return _error(504, f"tenant {name} did not answer in time")
        except httpx.HTTPError as exc:
            return _error(502, f"tenant {name}: {type(exc).__name__}")
        entry.last_proxied = time.monotonic()
        out = [(k, v) for k, v in resp.headers.multi_items() if k.lower() not in _HOP]
        return StreamingResponse(
            resp.aiter_raw(),
            status_code=resp.status_code,
            headers=dict(out),
            background=BackgroundTask(resp.aclose),
        )


def replayable(method: str, path: str, body: bytes) -> bool:
    """Whether sending the request twice does what sending it once does, by the runtime
    API's rules: reads, a cancel, a submission with its own run id (an existing id returns
    that run). A signal without such a guarantee is not sent again."""
    if method in ("GET", "HEAD", "OPTIONS"):
        return True
    bare = path.split("?", 1)[0]
    if method == "POST" and bare.endswith("/cancel"):
        return True
    if method == "POST" and bare == "/v1/runs":
        try:
            doc = json.loads(body)
        except ValueError:
            return False
        return isinstance(doc, dict) and isinstance(doc.get("id"), str)
    return False


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
