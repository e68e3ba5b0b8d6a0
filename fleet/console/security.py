"""Who may use the console, and what a page may do in the browser.

- **The token.** Every request needs the console's token: ``?token=`` on any URL (the link
  `fleet console` prints), which sets a cookie (HttpOnly, SameSite=Strict), or that cookie.
  Anything else answers 401. The page's script drops ``?token=`` from the address bar, and
  ``Referrer-Policy: no-referrer`` keeps it out of Referer headers.
- **State-changing requests** (signal, cancel, fork, download) are POSTs that also carry a
  CSRF value derived from the token (HMAC), which only a page of the console can know, and
  are refused when the browser says they come from another origin (``Origin``,
  ``Sec-Fetch-Site``). The cookie alone is not enough: another site on the same host (any
  port on 127.0.0.1 is "same-site") would send it.
- **Agent-produced content is hostile** (inputs, results, errors, payloads, step names):
  templates escape everything (Jinja2 autoescape), and a strict Content-Security-Policy
  allows scripts, styles and requests from the console itself only; no inline script or
  style at all, so nothing injected could run even if escaping failed.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import MutableMapping
from typing import Any

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

COOKIE = "fleet_console"
CSRF_FIELD = "csrf"

HEADERS = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self';"
        " connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
    "cache-control": "no-store",
}


def csrf_value(token: str) -> str:
    """What forms carry: derived from the token, useless without the page that shows it."""
    return hmac.new(token.encode(), b"fleet-console-csrf", hashlib.sha256).hexdigest()


def same(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def from_this_origin(request: Request) -> bool:
    """False when the browser says the request comes from elsewhere; clients that say
    nothing (curl, scripts) are judged by the CSRF value alone."""
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    if origin is None or (origin == "null" and site is not None):
        # Browsers send "Origin: null" under Referrer-Policy: no-referrer; Sec-Fetch-Site
        # (checked above) then tells where the request comes from.
        return True
    return origin == f"{request.url.scheme}://{request.headers.get('host', '')}"


class TokenGate:
    """ASGI middleware: the token check and the security headers of every response."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        by_link = same(request.query_params.get("token"), self.token)
        if not by_link and not same(request.cookies.get(COOKIE), self.token):
            await _deny(401, "401: open the console with the link `fleet console` printed")(
                scope, receive, send
            )
            return
        if request.method not in ("GET", "HEAD") and not from_this_origin(request):
            await _deny(403, "403: a request from another origin")(scope, receive, send)
            return
        await self.app(scope, receive, _with_headers(send, self.token if by_link else None))


def _deny(status: int, text: str) -> PlainTextResponse:
    return PlainTextResponse(text, status_code=status, headers=HEADERS)


def _with_headers(send: Send, token: str | None) -> Send:
    """``send`` adding the security headers (and the token cookie after a link)."""

    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = Headers(raw=message.get("headers", []))
            raw = list(message.get("headers", []))
            for name, value in HEADERS.items():
                if name not in headers:
                    raw.append((name.encode(), value.encode()))
            if token is not None:
                cookie = f"{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict"
                raw.append((b"set-cookie", cookie.encode()))
            message = _replace(message, headers=raw)
        await send(message)

    return wrapped


def _replace(message: Message, **changes: Any) -> Message:
    updated: MutableMapping[str, Any] = dict(message)
    updated.update(changes)
    return updated
