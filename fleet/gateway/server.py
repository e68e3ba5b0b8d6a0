"""`fleet gateway`: one process in front of every tenant's runtime API.

Starlette on uvicorn (already the runtime's stack), httpx for the tenants: one keep-alive
pool (``POOL`` connections, at most ``KEEPALIVE`` kept idle), connect timeout 2 s, and
uvicorn's ``limit_concurrency`` so that a flood is answered 503 rather than queued without
bound. Registers itself as the fleet's one gateway (registry.py), then serves until SIGINT
or SIGTERM, or until another gateway takes its registration over.
"""

from __future__ import annotations

import asyncio
import contextlib

import httpx

from fleet.core.context import Fleet
from fleet.core.log import log

from . import registry
from .front import Gateway
from .proxy import build_app
from .upkeep import Upkeep

POOL = 512
KEEPALIVE = 128
CONCURRENCY = 2048


def serve(fleet: Fleet, *, host: str, port: int, verify_every: float | None = None) -> None:
    asyncio.run(_serve(fleet, host, port, verify_every))


async def _serve(fleet: Fleet, host: str, port: int, verify_every: float | None) -> None:
    import uvicorn

    s3 = fleet.storage.for_fleet(start=True)
    reg = registry.register(s3, f"http://{host}:{port}")
    limits = httpx.Limits(
        max_connections=POOL, max_keepalive_connections=KEEPALIVE, keepalive_expiry=30
    )
    timeout = httpx.Timeout(connect=2.0, read=300.0, write=30.0, pool=30.0)
    try:
        async with httpx.AsyncClient(limits=limits, timeout=timeout, trust_env=False) as http:
            gw = Gateway(fleet, http)
            upkeep = Upkeep(
                gw, reg, verify_every
            )  # its first survey runs while the server already answers
            config = uvicorn.Config(
                build_app(gw),
                host=host,
                port=port,
                loop="asyncio",
                log_level="warning",
                access_log=False,
                limit_concurrency=CONCURRENCY,
                timeout_keep_alive=30,
            )
            server = uvicorn.Server(config)
            keeper = asyncio.create_task(upkeep.run())
            watcher = asyncio.create_task(_stop_when(upkeep.lost, server))
            log.info("gateway serving", url=reg.url, tenants=len(gw.entries))
            try:
                await server.serve()
            finally:
                for task in (keeper, watcher, *upkeep.tasks):
                    task.cancel()
                await asyncio.gather(keeper, watcher, *upkeep.tasks, return_exceptions=True)
    finally:
        with contextlib.suppress(Exception):
            registry.unregister(reg)


async def _stop_when(event: asyncio.Event, server: object) -> None:
    await event.wait()
    server.should_exit = True  # type: ignore[attr-defined]
