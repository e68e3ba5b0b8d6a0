"""The workload of bench/chaos.py, run inside each tenant as agent code (put into its volume
and loaded as AGENT_RUNTIME_APP).

Each step appends "TAG POSITION" to /data/executions.log (the volume, so it survives restarts)
before it returns: a line per execution, not per recorded result, so a step that ran twice
(in flight when its process died, then run again from the history) shows up twice. On a full
volume the line cannot be written (the step still returns): an execution then goes uncounted.
"""

from __future__ import annotations

import os

from agent_runtime import sleep, step, workflow

LOG = "/data/executions.log"


@step
def act(tag: str, i: int) -> int:
    try:
        fd = os.open(LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o660)
        try:
            os.write(fd, f"{tag} {i}\n".encode())
        finally:
            os.close(fd)
    except OSError:
        pass  # a full volume: the step's result cannot be recorded either
    return i


@workflow
async def work(tag: str, n: int = 3, pause: float = 0.2) -> int:
    for i in range(n):
        await act(tag, i)
        await sleep(pause)
    return n
