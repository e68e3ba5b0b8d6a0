"""DBOS Transact doing the same work as parts (b) and (c), for comparison.

DBOS keeps one global instance per process, so each measurement runs in its own worker
process (see _worker.py). Its SQLite system database is used as DBOS configures it
(default rollback journal, pysqlite, IMMEDIATE transactions): the out-of-the-box setup.
Workflows and steps are ``async def`` like agent_runtime's, and (c) starts the workflows
with ``DBOS.start_workflow_async`` (DBOS's way to run workflows in the background on the
event loop) and gathers their handles' results.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

from dbos import DBOS, DBOSConfig


@DBOS.step()
async def noop(i: int) -> int:
    return i


@DBOS.workflow()
async def noop_steps(n: int) -> int:
    for i in range(n):
        await noop(i)
    return n


def _launch(db_path: Path) -> None:
    config: DBOSConfig = {
        "name": "litefleet-bench",
        "system_database_url": f"sqlite:///{db_path}",
        "log_level": "WARNING",
        "console_log_level": "WARNING",
    }
    DBOS(config=config)
    DBOS.launch()
    logging.getLogger("dbos").setLevel(logging.WARNING)


async def _one_workflow(steps: int) -> float:
    t0 = time.perf_counter()
    handle = await DBOS.start_workflow_async(noop_steps, steps)
    result = await handle.get_result()
    elapsed = time.perf_counter() - t0
    if result != steps:
        raise RuntimeError(f"DBOS workflow returned {result!r}, expected {steps}")
    return elapsed


async def _concurrent(workflows: int, steps: int) -> float:
    t0 = time.perf_counter()
    handles = await asyncio.gather(
        *(DBOS.start_workflow_async(noop_steps, steps) for _ in range(workflows))
    )
    results = await asyncio.gather(*(h.get_result() for h in handles))
    elapsed = time.perf_counter() - t0
    if any(r != steps for r in results):
        raise RuntimeError("a DBOS workflow returned a wrong result")
    return elapsed


def run(part: str, db_path: Path, workflows: int, steps: int) -> dict[str, Any]:
    """Part ``dbos_b`` (one workflow of ``steps`` steps) or ``dbos_c`` (``workflows``
    concurrent workflows of ``steps`` steps). Returns steps/s and the elapsed time."""
    _launch(db_path)
    try:
        if part == "dbos_b":
            elapsed = asyncio.run(_one_workflow(steps))
            total = steps
        else:
            elapsed = asyncio.run(_concurrent(workflows, steps))
            total = workflows * steps
    finally:
        DBOS.destroy()
    import dbos

    return {
        "value": total / elapsed,
        "unit": "steps/s",
        "elapsed_s": elapsed,
        "steps": total,
        "version": getattr(dbos, "__version__", None) or _dist_version("dbos"),
    }


def _dist_version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None
