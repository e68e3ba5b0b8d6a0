"""JSON in and out of the HTTP API: request bodies parsed under the runtime's limits
(``_limits``), responses that cannot fail to encode, and a JSON 500 (no stack trace) for
anything unexpected."""

from __future__ import annotations

import json
from typing import Any

import structlog
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ._errors import InvalidInput, UnstorableValue
from ._limits import parse_json

log = structlog.get_logger("agent_runtime")

MAX_BODY = 1024 * 1024  # 1 MiB


class BodyTooLarge(Exception):
    pass


class MalformedBody(Exception):
    pass


async def read_json(request: Request, *, allow_empty: bool = False) -> Any:
    """The request's JSON body; ``MalformedBody`` (400) when it is not JSON the runtime
    would store, ``BodyTooLarge`` (413) past ``MAX_BODY``."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY:
        raise BodyTooLarge()
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise BodyTooLarge()
    if not body.strip():
        if allow_empty:
            return None
        raise InvalidInput("request body is empty: send a JSON object")
    try:
        return parse_json(bytes(body))
    except UnstorableValue as exc:
        raise MalformedBody(str(exc)) from None


class SafeJSONResponse(JSONResponse):
    """A JSON response that encodes whatever a database holds. Values are checked before
    they are stored; a database written by an older runtime may still hold a lone surrogate
    or Infinity: such a value is served escaped (``"\\ud800"``) or as null, not as a 500."""

    def render(self, content: Any) -> bytes:
        try:
            return _dumps(content, ascii_only=False).encode("utf-8")
        except (UnicodeEncodeError, ValueError):
            return _dumps(_finite(content), ascii_only=True).encode("ascii")


def _dumps(content: Any, *, ascii_only: bool) -> str:
    return json.dumps(content, ensure_ascii=ascii_only, allow_nan=False, separators=(",", ":"))


def _finite(content: Any) -> Any:
    # Round-trip with NaN/Infinity turned into null by the parser itself (no hand walk).
    return json.loads(json.dumps(content), parse_constant=lambda _: None)


class JSONErrors:
    """Answers an exception no handler took as JSON 500 and logs it as one line; the
    client never sees a stack trace (and the server's log gets no multi-line one)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watch(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except Exception as exc:
            log.error(
                "request_failed",
                method=scope.get("method"),
                path=scope.get("path"),
                error=f"{type(exc).__name__}: {exc}",
            )
            if started:  # too late for another response: the client sees a cut connection
                return
            response = JSONResponse({"error": "internal error (see the runtime's log)"}, 500)
            await response(scope, receive, send)
