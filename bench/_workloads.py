"""The agent_runtime workflows the benchmark runs: n no-op steps, each one committed."""

from __future__ import annotations

from agent_runtime import step, workflow


@step
async def noop(i: int) -> int:
    return i


@workflow
async def noop_steps(n: int) -> int:
    for i in range(n):
        await noop(i)
    return n


WORKFLOWS = [noop_steps]
