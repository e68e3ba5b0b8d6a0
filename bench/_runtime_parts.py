"""Parts (b) and (c) on agent_runtime, and the idle RSS of ``agent-runtime serve``.

``db`` is a SQLite path or, for the PostgreSQL hook, a ``postgresql://`` DSN. Runtime
start-up and shut-down are outside the timed section; submitting and waiting are inside.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import time
from pathlib import Path
from typing import Any

WAIT_TIMEOUT = 600.0


def _runtime_class() -> Any:
    # The public export if there is one, else the engine module itself.
    public = importlib.import_module("agent_runtime")
    if hasattr(public, "Runtime"):
        return public.Runtime
    return importlib.import_module("agent_runtime._runtime").Runtime


def _configure_logging(level: str) -> None:
    """Log as ``agent-runtime serve`` does by default (JSON lines, info). Unconfigured,
    structlog would print every per-step debug line, which is not what a tenant runs."""
    from agent_runtime._logging import configure_logging

    configure_logging(level)


def _writer_totals() -> tuple[float, int, float]:
    """(seconds inside commit transactions, transactions, operations) so far: the
    runtime's own metrics, to split elapsed time into writer work and everything else."""
    from agent_runtime import _metrics

    return (
        _metrics.COMMIT_SECONDS.sum,
        _metrics.COMMIT_SECONDS.count,
        _metrics.BATCH_SIZE.sum,
    )


def _check(run: Any, steps: int) -> None:
    if run.status != "completed" or run.result != steps:
        raise RuntimeError(
            f"run {run.id} ended {run.status} with result={run.result!r} error={run.error!r}"
        )


async def _one_workflow(db: str, steps: int) -> float:
    import _workloads

    async with _runtime_class()(db=db, app=_workloads.WORKFLOWS, synchronous="FULL") as rt:
        t0 = time.perf_counter()
        run = await rt.submit("noop_steps", {"n": steps})
        done = await rt.wait(run.id, timeout=WAIT_TIMEOUT)
        elapsed = time.perf_counter() - t0
        _check(done, steps)
    return elapsed


async def _concurrent(db: str, workflows: int, steps: int) -> float:
    import _workloads

    runtime = _runtime_class()(
        db=db, app=_workloads.WORKFLOWS, concurrency=workflows, synchronous="FULL"
    )
    async with runtime as rt:
        t0 = time.perf_counter()
        runs = await asyncio.gather(
            *(rt.submit("noop_steps", {"n": steps}) for _ in range(workflows))
        )
        done = await asyncio.gather(*(rt.wait(r.id, timeout=WAIT_TIMEOUT) for r in runs))
        elapsed = time.perf_counter() - t0
        for d in done:
            _check(d, steps)
    return elapsed


def run(part: str, db: str, workflows: int, steps: int) -> dict[str, Any]:
    """``b``/``pg_b``: one workflow of ``steps`` steps; ``c``/``pg_c``: ``workflows``
    concurrent workflows of ``steps`` steps each."""
    _configure_logging(os.environ.get("LITEFLEET_BENCH_LOG_LEVEL", "info"))
    before = _writer_totals()
    if part.endswith("b"):
        elapsed = asyncio.run(_one_workflow(db, steps))
        total = steps
    else:
        elapsed = asyncio.run(_concurrent(db, workflows, steps))
        total = workflows * steps
    commit_s, txns, ops = (b - a for a, b in zip(before, _writer_totals(), strict=True))
    result: dict[str, Any] = {
        "value": total / elapsed,
        "unit": "steps/s",
        "elapsed_s": elapsed,
        "steps": total,
    }
    if txns:  # SQLite only; includes start-up and shut-down transactions (a handful)
        result["writer"] = {
            "transactions": int(txns),
            "operations": int(ops),
            "mean_batch": ops / txns,
            "commit_s": commit_s,
            "commit_share": commit_s / elapsed,
            "mean_commit_ms": 1000 * commit_s / txns,
        }
    return result


def _vm_kib(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not found in /proc/{pid}/status")


def rss(db_path: Path, settle_s: float, log_path: Path) -> dict[str, Any]:
    """Start ``agent-runtime serve`` on loopback, wait for /healthz, let it settle idle,
    then read VmRSS (and the peak VmHWM) from /proc."""
    import _serve

    with _serve.serving(db_path, log_path) as server:
        at_ready = _vm_kib(server.pid, "VmRSS")
        time.sleep(settle_s)
        idle = _vm_kib(server.pid, "VmRSS")
        peak = _vm_kib(server.pid, "VmHWM")
    return {
        "value": idle / 1024,
        "unit": "MiB",
        "rss_at_ready_mib": at_ready / 1024,
        "hwm_mib": peak / 1024,
        "ready_s": server.ready_s,
        "settle_s": settle_s,
    }
