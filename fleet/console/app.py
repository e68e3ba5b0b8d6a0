"""`fleet console`: the web console's routes and its server.

Server-rendered HTML (templates/) with one small script (static/console.js) that refreshes a
run in flight; the templates, styles and script are package data served by the console
itself: nothing from a CDN, no external font (air-gapped hosts).
"""

from __future__ import annotations

import secrets
import socket
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from fleet.core.context import Fleet
from fleet.core.errors import InvalidArgument
from fleet.ops.run_source import SourceCache

from .pages import Pages
from .security import TokenGate

RUN = "/t/{tenant}/runs/{run_id}"


def build_app(fleet: Fleet, token: str, sources: SourceCache) -> Starlette:
    pages = Pages(fleet, token, sources)
    routes = [
        Route("/", pages.tenants, name="tenants"),
        Route("/t/{tenant}", pages.tenant, name="tenant"),
        Route("/t/{tenant}/download", pages.download, methods=["POST"]),
        Route("/t/{tenant}/fork", pages.fork, methods=["POST"]),
        Route(RUN, pages.run, name="run"),
        Route(RUN + "/live", pages.live, name="live"),
        Route(RUN + "/signal", pages.signal, methods=["POST"]),
        Route(RUN + "/cancel", pages.cancel, methods=["POST"]),
        Mount("/static", StaticFiles(packages=[("fleet.console", "static")]), name="static"),
    ]
    return Starlette(routes=routes, middleware=[Middleware(TokenGate, token=token)])


def listen(host: str, port: int) -> socket.socket:
    """The console's socket, bound before anything is printed (a port in use is an error
    here, not after the link was shown)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise InvalidArgument(
            f"cannot listen on {host}:{port}: {exc.strerror}", "pass another --port or --host"
        ) from None
    sock.listen(128)
    return sock


def link(sock: socket.socket, token: str) -> str:
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/?token={token}"


def serve(fleet: Fleet, host: str, port: int, announce: Callable[[str], None]) -> None:
    """Serve until SIGINT/SIGTERM; ``announce`` gets the console's link first."""
    import uvicorn

    token = secrets.token_urlsafe(24)
    sock = listen(host, port)
    if host not in ("127.0.0.1", "localhost", "::1"):
        sys.stderr.write(
            f"fleet: warning: the console on {host} is reachable from other machines, over"
            " plain HTTP, with only its token\n"
        )
    announce(f"console at {link(sock, token)}")
    with tempfile.TemporaryDirectory(prefix="fleet-console-") as tmp:
        sources = SourceCache(Path(tmp))
        app = build_app(fleet, token, sources)
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
        try:
            uvicorn.Server(config).run(sockets=[sock])
        finally:
            sources.close()
