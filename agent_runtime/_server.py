"""uvicorn's server with a 1 s housekeeping tick instead of 0.1 s.

uvicorn's ``Server.main_loop`` wakes every 0.1 s to notice a shutdown request and refresh
the Date header once a second. In a tenant that is idle most of the time those ten wakeups
a second were most of the runtime's idle CPU (measured: bench/park_bench.py part idle).
Here the loop waits up to a second, and a shutdown signal wakes it at once, so stopping is
not slower.
"""

from __future__ import annotations

import asyncio
import contextlib
from types import FrameType

import uvicorn

TICK_S = 1.0


class Server(uvicorn.Server):
    _wake: asyncio.Event | None = None
    _loop: asyncio.AbstractEventLoop | None = None

    async def main_loop(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        counter = 0
        while not await self.on_tick(counter):
            counter = (counter + 10) % 864000  # on_tick refreshes the Date header at % 10
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), TICK_S)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        if self._loop is not None and self._wake is not None:
            with contextlib.suppress(RuntimeError):  # the loop is already closed
                self._loop.call_soon_threadsafe(self._wake.set)
