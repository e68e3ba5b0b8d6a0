"""``agent-runtime``: serve an app's workflows over HTTP (``serve``); check recorded runs
against new code (``replay``, in ``_cli_replay``); list an app's workflows (``workflows``).

argparse rather than Typer on purpose: this process runs in every tenant container and
its idle memory is a budget (Typer + Rich cost several MB).
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import os
import signal
import sys
from collections.abc import Sequence
from typing import NoReturn

import structlog

from . import __version__, _cli_replay, _cli_workflows
from ._errors import AgentRuntimeError, InvalidInput
from ._logging import LEVELS, configure_logging

EXIT_USAGE = 2
EXIT_ERROR = 1


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line, like every other error of this command."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="agent-runtime",
        description="Durable AI-agent workflows on SQLite or PostgreSQL.",
    )
    p.add_argument("--version", action="version", version=f"agent-runtime {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    s = sub.add_parser(
        "serve",
        help="run the workflow engine and its HTTP API",
        description="Recover unfinished runs, then execute runs submitted over HTTP. "
        "SIGTERM drains in-flight steps and exits 0.",
    )
    s.add_argument("--db", required=True, help="SQLite file path or postgresql:// URL")
    s.add_argument(
        "--app", required=True, help="module name or .py file that defines the @workflows"
    )
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    s.add_argument("--port", type=int, default=8080, help="port to listen on (default 8080)")
    s.add_argument(
        "--token",
        default=None,
        help="bearer token required by the API (default: $AGENT_RUNTIME_TOKEN; none = open)",
    )
    s.add_argument(
        "--token-file",
        default=None,
        help="read the token from this file (default: $AGENT_RUNTIME_TOKEN_FILE), e.g. a "
        "Docker Swarm secret: the token then never sits in the process environment",
    )
    s.add_argument(
        "--concurrency", type=int, default=100, help="runs executing at once (default 100)"
    )
    s.add_argument(
        "--synchronous",
        default="FULL",
        choices=["FULL", "NORMAL", "EXTRA"],
        help="SQLite synchronous mode (default FULL: a step is on disk before it is reported)",
    )
    s.add_argument(
        "--grace", type=float, default=10.0, help="seconds in-flight steps get on SIGTERM"
    )
    s.add_argument(
        "--lease-seconds",
        type=float,
        default=30.0,
        help="PostgreSQL: how long a claimed run stays with a runtime that stopped renewing "
        "(a killed runtime's runs move to another after this); default 30",
    )
    s.add_argument(
        "--lease-file",
        default=None,
        help="run steps only while this file confirms the tenant's lease (written by the "
        "supervisor; see agent_runtime/_lease_gate.py); default: $AGENT_RUNTIME_LEASE_FILE",
    )
    s.add_argument("--log-level", default="info", choices=LEVELS, help="default info")
    _cli_replay.add_parser(sub)
    _cli_workflows.add_parser(sub)
    return p


def _token(args: argparse.Namespace) -> str | None:
    """--token, else --token-file / $AGENT_RUNTIME_TOKEN_FILE, else $AGENT_RUNTIME_TOKEN."""
    if args.token:
        return str(args.token)
    path = args.token_file or os.environ.get("AGENT_RUNTIME_TOKEN_FILE")
    if path:
        try:
            with open(path, encoding="utf-8") as f:
                token = f.read().strip()
        except OSError as exc:
            raise AgentRuntimeError(f"cannot read the token file {path}: {exc.strerror}") from None
        if not token:
            raise AgentRuntimeError(f"the token file {path} is empty")
        return token
    return os.environ.get("AGENT_RUNTIME_TOKEN") or None


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from ._http import build_app
    from ._loader import load_app
    from ._runtime import Runtime
    from ._server import Server

    if not 0 < args.port < 65536:
        raise AgentRuntimeError(f"--port must be 1-65535, got {args.port}")
    if args.lease_seconds < 1:
        raise AgentRuntimeError("--lease-seconds must be >= 1")
    token = _token(args)
    if token is None and not _is_loopback(args.host):
        structlog.get_logger("agent_runtime").warning(
            "serving_without_token",
            host=args.host,
            hint="anyone who can reach this address can drive every run: set --token "
            "or AGENT_RUNTIME_TOKEN, or listen on 127.0.0.1",
        )
    runtime = Runtime(
        db=args.db,
        app=load_app(args.app),
        concurrency=args.concurrency,
        synchronous=args.synchronous,
        lease_seconds=args.lease_seconds,
        lease_file=args.lease_file or os.environ.get("AGENT_RUNTIME_LEASE_FILE") or None,
    )
    app = build_app(runtime, token=token, grace=args.grace)
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        log_level="warning",
        access_log=False,
        lifespan="on",
        # The pure-Python protocol and the asyncio loop, always: no probing for optional
        # packages (httptools, uvloop, websockets) that a file beside the app could fake.
        http="h11",
        loop="asyncio",
        ws="none",
        timeout_graceful_shutdown=int(args.grace) + 1,
    )
    server = Server(config)  # uvicorn's, with a 1 s idle tick (_server.py)

    # uvicorn handles SIGTERM/SIGINT (graceful shutdown, our lifespan drains the runtime)
    # and afterwards re-raises the signal under the handler it found. Leave it a no-op
    # one, so a drained shutdown exits 0 instead of dying by the signal.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)

    async def serve() -> bool:
        # Open the database before listening, so a locked or too-old database is one
        # clear error line; the app's lifespan then finds the runtime already started.
        await runtime.start()
        try:
            await server.serve()
        finally:
            await runtime.stop(grace=args.grace)
        return server.started

    ok = asyncio.run(serve())
    # Plain steps still running after the grace period are abandoned (not recorded, run
    # again after a restart); their threads must not keep the process alive past --grace.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0 if ok else EXIT_ERROR)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "serve":
            configure_logging(args.log_level)
            return _serve(args)
        if args.command == "replay":
            configure_logging(args.log_level, stream=sys.stderr)
            return _cli_replay.command(args)
        if args.command == "workflows":
            configure_logging("warning", stream=sys.stderr)
            return _cli_workflows.command(args)
    except AgentRuntimeError as exc:
        hint = f" (hint: {exc.hint})" if getattr(exc, "hint", None) else ""
        print(f"agent-runtime: error: {exc}{hint}", file=sys.stderr)
        return EXIT_USAGE if isinstance(exc, InvalidInput) else EXIT_ERROR
    except KeyboardInterrupt:
        return 128 + signal.SIGINT
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
