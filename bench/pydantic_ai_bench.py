"""What DurableAgent costs: a PydanticAI agent run plainly vs. inside a workflow, in one run.

The agent's model is a FunctionModel (no network, ~no model time), so the figures are the
framework's own cost and what durability adds to it. Three agents:

  w0  answers at once                     1 model request
  w1  K turns of one tool call each       K+1 model requests, K tool calls
  w2  K turns of two tool calls each      K+1 model requests, 2K tool calls

Each is run N times plainly (``agent.run`` outside any workflow, tool calls one at a time as
inside a workflow) and N times through
``DurableAgent.run`` inside one workflow on a fresh agent_runtime database (SQLite,
synchronous=FULL, in build/ on the repository's disk; PostgreSQL too with --pg-dsn /
$LITEFLEET_BENCH_PG). Rounds interleave everything; figures are medians of per-round values.
The overhead of one tool call is ((w2 durable - w2 plain) - (w1 durable - w1 plain)) / K and
that of one model request ((w1 durable - w1 plain) - (w0 durable - w0 plain)) / K minus one
tool call's, so the per-agent-run costs (the recorded run id, the workflow) cancel out.

    .venv/bin/python bench/pydantic_ai_bench.py [--turns K] [--runs N] [--repeat R] [--json OUT]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

from bench._machine import describe  # noqa: E402
from bench._pg import fresh_database  # noqa: E402

WORKLOADS = {"w0": (0, 0), "w1": (1, 1), "w2": (1, 2)}  # (turns factor, tools per turn)


def build_agent(turns: int, tools_per_turn: int, name: str) -> Any:
    from pydantic_ai import Agent
    from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
    from pydantic_ai.models.function import AgentInfo, FunctionModel

    def model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        turn = sum(isinstance(m, ModelResponse) for m in messages)
        if turn >= turns:
            return ModelResponse(parts=[TextPart("done")])
        return ModelResponse(
            parts=[ToolCallPart("noop", {"i": turn * 10 + j}) for j in range(tools_per_turn)]
        )

    agent = Agent(FunctionModel(model), name=name)

    @agent.tool_plain
    def noop(i: int) -> int:
        return i

    return agent


async def plain(agent: Any, runs: int) -> float:
    # Tool calls one at a time, as DurableAgent runs them inside a workflow: the comparison is
    # then what recording costs, not what running two no-op tools in parallel saves.
    with agent.parallel_tool_call_execution_mode("sequential"):
        t0 = time.perf_counter()
        for _ in range(runs):
            if (await agent.run("go")).output != "done":
                raise RuntimeError("plain run did not finish")
        return time.perf_counter() - t0


async def durable(agent: Any, runs: int, db: str) -> float:
    from agent_runtime import Runtime, workflow
    from agent_runtime.integrations.pydantic_ai import DurableAgent

    wrapped = DurableAgent(agent)

    @workflow
    async def bench_agent(n: int) -> int:
        for _ in range(n):
            if (await wrapped.run("go")).output != "done":
                raise RuntimeError("durable run did not finish")
        return n

    async with Runtime(db=db, app=[bench_agent], synchronous="FULL") as rt:
        t0 = time.perf_counter()
        run = await rt.submit("bench_agent", {"n": runs})
        done = await rt.wait(run.id, timeout=900)
        elapsed = time.perf_counter() - t0
    if done.status != "completed":
        raise RuntimeError(f"durable run ended {done.status}: {done.error}")
    return elapsed


async def one_round(
    args: argparse.Namespace, workdir: Path, backends: dict[str, str]
) -> dict[str, float]:
    """Seconds per agent run for every (workload, mode)."""
    out: dict[str, float] = {}
    for key, (factor, per_turn) in WORKLOADS.items():
        agent = build_agent(factor * args.turns, per_turn, f"bench_{key}")
        await plain(agent, 2)  # warm: schemas, first-call caches
        out[f"{key}.plain"] = await plain(agent, args.runs) / args.runs
        for backend, where in backends.items():
            if backend == "sqlite":
                await durable(agent, 1, str(workdir / f"{key}-warm.db"))
                elapsed = await durable(agent, args.runs, str(workdir / f"{key}.db"))
            else:
                with fresh_database(where) as dsn:
                    elapsed = await durable(agent, args.runs, dsn)
            out[f"{key}.{backend}"] = elapsed / args.runs
    return out


def derive(r: dict[str, float], turns: int, backend: str) -> dict[str, float]:
    """Per-operation overheads (microseconds) and ratios for one round."""
    extra = {k: r[f"{k}.{backend}"] - r[f"{k}.plain"] for k in WORKLOADS}
    tool = (extra["w2"] - extra["w1"]) / turns
    model = (extra["w1"] - extra["w0"]) / turns - tool
    plain_tool = (r["w2.plain"] - r["w1.plain"]) / turns
    plain_model = (r["w1.plain"] - r["w0.plain"]) / turns - plain_tool
    steps = {"w0": 1, "w1": 2 * turns + 1, "w2": 3 * turns + 1}  # model requests + tool calls
    return {
        "model_request_overhead_us": 1e6 * model,
        "tool_call_overhead_us": 1e6 * tool,
        "plain_model_request_us": 1e6 * plain_model,
        "plain_tool_call_us": 1e6 * plain_tool,
        **{f"{k}_overhead_per_step_us": 1e6 * extra[k] / steps[k] for k in WORKLOADS},
        **{f"{k}_ratio": r[f"{k}.{backend}"] / r[f"{k}.plain"] for k in WORKLOADS},
    }


def spread(values: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(values), 3),
        "min": round(min(values), 3),
        "max": round(max(values), 3),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--turns", type=int, default=10, help="K: tool-calling turns of w1 and w2")
    p.add_argument("--runs", type=int, default=20, help="N: agent runs per measurement")
    p.add_argument("--repeat", type=int, default=5, help="rounds; medians are reported")
    p.add_argument("--pg-dsn", default=os.environ.get("LITEFLEET_BENCH_PG"))
    p.add_argument("--json", type=Path, metavar="OUT")
    args = p.parse_args(argv)

    from agent_runtime._logging import configure_logging

    configure_logging("info")  # as `agent-runtime serve` logs by default
    root = REPO / "build"
    root.mkdir(exist_ok=True)
    backends = {"sqlite": "file"}
    if args.pg_dsn:
        backends["postgres"] = args.pg_dsn
    rounds: list[dict[str, float]] = []
    for i in range(args.repeat):
        workdir = Path(tempfile.mkdtemp(prefix="pai-bench-", dir=root))
        try:
            rounds.append(asyncio.run(one_round(args, workdir, backends)))
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        print(f"round {i + 1}/{args.repeat} done", file=sys.stderr)

    report: dict[str, Any] = {
        "machine": describe(root, REPO),
        "params": vars(args) | {"json": None},
    }
    report["params"].pop("pg_dsn", None)
    report["per_agent_run_ms"] = {k: spread([1e3 * r[k] for r in rounds]) for k in rounds[0]}
    for backend in backends:
        derived = [derive(r, args.turns, backend) for r in rounds]
        report[backend] = {k: spread([d[k] for d in derived]) for k in derived[0]}
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
