"""PydanticAI agents for tests/test_pydantic_ai.py: embedded there, and served by
``agent-runtime serve --app tests/pai_app.py`` in its crash tests.

Every model request and tool call appends a line to ``$PAI_TEST_DIR/calls`` (opened, written and
closed each time, so a SIGKILL loses nothing already written): the tests count side effects there.
``slow_fetch`` waits until ``$PAI_TEST_DIR/release`` exists, so a test can kill the server while
that tool call is in progress.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic_ai import Agent
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

from agent_runtime import RetryPolicy, workflow
from agent_runtime.integrations.pydantic_ai import DurableAgent


def work_dir() -> Path:
    return Path(os.environ["PAI_TEST_DIR"])


def mark(what: str) -> None:
    with (work_dir() / "calls").open("a") as f:
        f.write(what + "\n")


def calls() -> list[str]:
    path = work_dir() / "calls"
    return path.read_text().splitlines() if path.exists() else []


class Report(BaseModel):
    topic: str
    findings: list[str]


def _turn(messages: list[ModelMessage]) -> int:
    return sum(isinstance(m, ModelResponse) for m in messages)


def research_script(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    """Call `lookup`, then `slow_fetch`, then answer with a structured Report."""
    turn = _turn(messages)
    mark(f"model {turn}")
    if turn == 0:
        return ModelResponse(parts=[ToolCallPart("lookup", {"topic": "sqlite"})])
    if turn == 1:
        return ModelResponse(parts=[ToolCallPart("slow_fetch", {"url": "https://example.org/a"})])
    findings = [
        str(part.content)
        for m in messages
        for part in getattr(m, "parts", ())
        if getattr(part, "part_kind", "") == "tool-return"
    ]
    answer = {"topic": "sqlite", "findings": findings}
    return ModelResponse(parts=[ToolCallPart(info.output_tools[0].name, answer)])


researcher = Agent(FunctionModel(research_script), name="researcher", output_type=Report)


@researcher.tool_plain
def lookup(topic: str) -> str:
    mark("lookup")
    return f"{topic} is an embedded database"


@researcher.tool_plain
async def slow_fetch(url: str) -> str:
    mark("slow_fetch start")
    deadline = time.monotonic() + 60
    while not (work_dir() / "release").exists():
        if time.monotonic() > deadline:
            raise TimeoutError("release file never appeared")
        await asyncio.sleep(0.02)
    mark("slow_fetch done")
    return f"fetched {url}"


durable_researcher = DurableAgent(researcher)


@workflow
async def pai_research() -> dict[str, Any]:
    result = await durable_researcher.run("What is SQLite?")
    return {"report": result.output.model_dump(), "run_id": result.run_id}


def flaky_script(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    if _turn(messages) == 0:
        return ModelResponse(parts=[ToolCallPart("flaky", {})])
    return ModelResponse(parts=[TextPart("done")])


flaky_agent = Agent(FunctionModel(flaky_script), name="flaky_agent", output_type=str)


@flaky_agent.tool_plain
def flaky() -> str:
    """Fails until it has been called ``$PAI_TEST_DIR/failures`` times."""
    mark("flaky")
    failures = int((work_dir() / "failures").read_text())
    if calls().count("flaky") <= failures:
        raise ConnectionError("upstream unavailable")
    return "ok"


durable_flaky = DurableAgent(
    flaky_agent,
    tool_retry=RetryPolicy(max_attempts=3, initial_interval=0.01, max_interval=0.02),
)


@workflow
async def pai_flaky() -> str:
    result = await durable_flaky.run("call the flaky tool")
    return result.output
