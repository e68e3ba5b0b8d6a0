"""What DurableAgent costs: the same PydanticAI agent run plainly and durably, side by side.

The agent's model is a FunctionModel (no network, ~no model time), so the figures are the
framework's own cost and what durability adds to it. Three agents:

  w0  answers at once                     1 model request
  w1  K turns of one tool call each       K+1 model requests, K tool calls
  w2  K turns of two tool calls each      K+1 model requests, 2K tool calls

Inside one workflow on a fresh agent_runtime database (SQLite, synchronous=FULL, in build/ on
the repository's disk; PostgreSQL too with --pg-dsn / $LITEFLEET_BENCH_PG), each agent runs N
times as pairs: ``agent.run`` (plain: nothing recorded, tool calls one at a time as inside a
workflow), then ``DurableAgent.run`` right after it. Pairing puts both under the same load from
whatever else runs on the machine; figures are medians over all pairs of all rounds.

The overhead of one tool call is (extra(w2) - extra(w1)) / K and that of one model request
(extra(w1) - extra(w0)) / K minus one tool call's, where extra(w) is the median of durable minus
plain over w's pairs: what every agent run pays once (its recorded run id) cancels out.

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

WORKLOADS = {"w0": (0, 0), "w1": (1, 1), "w2": (1, 2)}  # (turns factor, tool calls per turn)


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


async def pairs(agent: Any, runs: int, db: str) -> list[tuple[float, float]]:
    """(plain, durable) seconds of ``runs`` agent runs, alternating, inside one workflow."""
    from agent_runtime import Runtime, workflow
    from agent_runtime.integrations.pydantic_ai import DurableAgent

    durable = DurableAgent(agent)

    async def timed(run: Any) -> float:
        t0 = time.perf_counter()
        if (await run("go")).output != "done":
            raise RuntimeError("the agent run did not finish")
        return time.perf_counter() - t0

    @workflow
    async def bench_agent(n: int) -> list[list[float]]:
        out = []
        for _ in range(n):
            with agent.parallel_tool_call_execution_mode("sequential"):
                plain = await timed(agent.run)
            out.append([plain, await timed(durable.run)])
        return out

    async with Runtime(db=db, app=[bench_agent], synchronous="FULL") as rt:
        run = await rt.submit("bench_agent", {"n": runs})
        done = await rt.wait(run.id, timeout=900)
    if done.status != "completed":
        raise RuntimeError(f"the benchmark workflow ended {done.status}: {done.error}")
    return [(p, d) for p, d in done.result]


async def one_round(
    args: argparse.Namespace, workdir: Path, backends: dict[str, str]
) -> dict[str, list[tuple[float, float]]]:
    out: dict[str, list[tuple[float, float]]] = {}
    for key, (factor, per_turn) in WORKLOADS.items():
        agent = build_agent(factor * args.turns, per_turn, f"bench_{key}")
        for backend, where in backends.items():
            if backend == "sqlite":
                await pairs(agent, 2, str(workdir / f"{key}-warm.db"))  # schemas, caches
                out[f"{key}.{backend}"] = await pairs(agent, args.runs, str(workdir / f"{key}.db"))
            else:
                with fresh_database(where) as dsn:
                    out[f"{key}.{backend}"] = await pairs(agent, args.runs, dsn)
    return out


def summarize(samples: dict[str, list[tuple[float, float]]], turns: int, backend: str) -> Any:
    """Medians in microseconds, and durable/plain ratios."""
    med = statistics.median
    plain = {k: med(p for p, _ in samples[f"{k}.{backend}"]) for k in WORKLOADS}
    durable = {k: med(d for _, d in samples[f"{k}.{backend}"]) for k in WORKLOADS}
    extra = {k: med(d - p for p, d in samples[f"{k}.{backend}"]) for k in WORKLOADS}
    tool = (extra["w2"] - extra["w1"]) / turns
    model = (extra["w1"] - extra["w0"]) / turns - tool
    plain_tool = (plain["w2"] - plain["w1"]) / turns
    plain_model = (plain["w1"] - plain["w0"]) / turns - plain_tool

    def us(x: float) -> float:
        return round(1e6 * x, 1)

    return {
        "per_agent_run_us": {
            k: {"plain": us(plain[k]), "durable": us(durable[k]), "extra": us(extra[k])}
            for k in WORKLOADS
        },
        "ratio_durable_to_plain": {k: round(durable[k] / plain[k], 2) for k in WORKLOADS},
        "model_request_us": {"plain": us(plain_model), "overhead": us(model)},
        "tool_call_us": {"plain": us(plain_tool), "overhead": us(tool)},
        "pairs": len(samples[f"w0.{backend}"]),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--turns", type=int, default=20, help="K: tool-calling turns of w1 and w2")
    p.add_argument("--runs", type=int, default=10, help="N: pairs of agent runs per round")
    p.add_argument("--repeat", type=int, default=5, help="rounds, each on fresh databases")
    p.add_argument("--pg-dsn", default=os.environ.get("LITEFLEET_BENCH_PG"))
    p.add_argument(
        "--dir",
        type=Path,
        default=REPO / "build",
        help="where the SQLite databases go (default: build/, on the repository's disk);\n"
        "a tmpfs such as /dev/shm takes fsync out and leaves the CPU cost",
    )
    p.add_argument("--json", type=Path, metavar="OUT")
    args = p.parse_args(argv)

    from agent_runtime._logging import configure_logging

    configure_logging("warning")  # runs and steps log nothing below, only failures do
    root = args.dir
    root.mkdir(parents=True, exist_ok=True)
    backends = {"sqlite": "file"}
    if args.pg_dsn:
        backends["postgres"] = args.pg_dsn
    samples: dict[str, list[tuple[float, float]]] = {}
    for i in range(args.repeat):
        workdir = Path(tempfile.mkdtemp(prefix="pai-bench-", dir=root))
        try:
            for key, got in asyncio.run(one_round(args, workdir, backends)).items():
                samples.setdefault(key, []).extend(got)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        print(f"round {i + 1}/{args.repeat} done", file=sys.stderr)

    params = {"turns": args.turns, "runs": args.runs, "repeat": args.repeat, "dir": str(root)}
    report: dict[str, Any] = {"machine": describe(root, REPO), "params": params}
    for backend in backends:
        report[backend] = summarize(samples, args.turns, backend)
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
