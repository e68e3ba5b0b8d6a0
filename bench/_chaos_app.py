"""The workload of bench/chaos.py, run inside each tenant as agent code (put into its volume
and loaded as AGENT_RUNTIME_APP).

Each step appends "TAG POSITION" to /data/executions.log (the volume, so it survives restarts)
when it starts, then works for a while (0.3 s, as a tool or model call would): a line per
execution, not per recorded result, so a step that ran twice (in flight when its process died,
then run again from the history) shows up twice. On a full volume the line cannot be written
(the step still runs): an execution then goes uncounted.
"""

from __future__ import annotations

import os
import time

from agent_runtime import sleep, step, workflow

LOG = "/data/executions.log"


@step
def act(tag: str, i: int, work: float) -> int:
    try:
        fd = os.open(LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o660)
        try:
            os.write(fd, f"{tag} {i}\n".encode())
        finally:
            os.close(fd)
    except OSError:
        pass  # a full volume: the step's result cannot be recorded either
    time.sleep(work)
    return i


@workflow
async def work(tag: str, n: int = 3, pause: float = 0.2, step_s: float = 0.3) -> int:
    for i in range(n):
        await act(tag, i, step_s)
        await sleep(pause)
    return n
