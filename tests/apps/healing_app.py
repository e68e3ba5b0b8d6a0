"""Workflows for the self-healing tests (tests/test_self_healing.py), run inside a tenant
as agent code: put into its volume before start and loaded as AGENT_RUNTIME_APP."""

from __future__ import annotations

import errno
import os

from agent_runtime import sleep, step, workflow


@step
async def tick(i: int) -> int:
    return i


@workflow
async def ticks(n: int, pause: float = 0.2) -> int:
    """n steps with a durable pause between them: something to be doing during a fault."""
    for i in range(n):
        await tick(i)
        await sleep(pause)
    return n


@step
def grab(mb: int) -> str:
    """Touch ``mb`` MiB: beyond the container's memory limit the kernel's OOM killer ends
    the runtime. Only the first attempt does (a marker in the volume): after the restart the
    run continues instead of dying again."""
    marker = "/data/oom-tried"
    if os.path.exists(marker):
        return "survived"
    with open(marker, "w"):
        pass
    blocks = []
    for _ in range(mb):
        block = bytearray(1 << 20)
        block[::4096] = b"x" * len(block[::4096])  # every page resident
        blocks.append(block)
    return f"held {len(blocks)} MiB"


@workflow
async def hog(mb: int) -> str:
    return str(await grab(mb))


@step
def fill(path: str) -> int:
    """Write zeros to ``path`` until the volume is full; the bytes written."""
    written = 0
    chunk = b"\0" * (256 << 10)
    with open(path, "wb") as f:
        while True:
            try:
                f.write(chunk)
                f.flush()
                os.fsync(f.fileno())
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                return written
            written += len(chunk)


@workflow
async def fill_volume(path: str) -> int:
    return int(await fill(path))
