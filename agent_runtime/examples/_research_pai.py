"""The ``research`` agent written with PydanticAI, for the ``research_pai`` workflow.

Its model is a deterministic offline ``FunctionModel`` (the same planner ``research`` uses),
or an OpenAI-compatible chat model when ``AGENT_RUNTIME_LLM_BASE_URL`` is set (see _model.py;
that needs ``pydantic-ai-slim[openai]``). ``DurableAgent`` makes each model request and tool
call a step of the workflow's run. Imported on the first ``research_pai`` run, so an app that
never runs it does not load PydanticAI (about 40 MB of RSS).
"""

from __future__ import annotations

import functools
import json
import re

from pydantic_ai import Agent, ModelRetry
from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)
from pydantic_ai.models import Model
from pydantic_ai.models.function import AgentInfo, FunctionModel

from agent_runtime import RetryPolicy
from agent_runtime.integrations.pydantic_ai import DurableAgent

from ._model import OfflinePlanner, llm_endpoint, run_tool

GATHER = "Research the topic with at most {max_tools} tool calls, then say what you found.\n"
REPORT = "Write a short report on the findings."
_ARGUMENT = {"search": "query", "calculate": "expression", "summarize": "text"}


def search(query: str) -> str:
    """Search for sources on a query."""
    return run_tool("search", query)


def calculate(expression: str) -> str:
    """Evaluate an arithmetic expression."""
    try:
        return run_tool("calculate", expression)
    except ValueError as exc:
        raise ModelRetry(str(exc)) from None  # the model may fix the expression


def summarize(text: str) -> str:
    """Summarize a text in a dozen words."""
    return run_tool("summarize", text)


def _prompts(messages: list[ModelMessage]) -> list[str]:
    return [
        p.content
        for m in messages
        if isinstance(m, ModelRequest)
        for p in m.parts
        if isinstance(p, UserPromptPart) and isinstance(p.content, str)
    ]


def offline_model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    """Plan tool calls from the research prompt, then answer; write the report when asked."""
    planner = OfflinePlanner()
    first = _prompts(messages)[0]
    topic = first.split("Topic: ", 1)[-1]
    last = messages[-1]
    if isinstance(last, ModelRequest) and _prompts([last]) == [REPORT]:
        return ModelResponse(parts=[TextPart(planner.complete("report", _notes(topic, messages)))])
    if isinstance(last, ModelRequest) and any(isinstance(p, ToolReturnPart) for p in last.parts):
        return ModelResponse(parts=[TextPart(f"Gathered {len(findings(messages))} findings.")])
    limit = re.search(r"at most (\d+) tool calls", first)
    calls = json.loads(planner.complete("plan", topic))["calls"][: int(limit[1]) if limit else 3]
    if not calls:
        return ModelResponse(parts=[TextPart("Gathered 0 findings.")])
    return ModelResponse(
        parts=[ToolCallPart(c["tool"], {_ARGUMENT[c["tool"]]: c["arg"]}) for c in calls]
    )


def findings(messages: list[ModelMessage]) -> list[dict[str, str]]:
    """Each tool call of the run and what it returned, in order."""
    calls = {
        p.tool_call_id: p
        for m in messages
        if isinstance(m, ModelResponse)
        for p in m.parts
        if isinstance(p, ToolCallPart)
    }
    found = []
    for m in messages:
        for p in m.parts if isinstance(m, ModelRequest) else ():
            if isinstance(p, ToolReturnPart) and p.tool_call_id in calls:
                args = calls[p.tool_call_id].args_as_dict()
                arg = str(next(iter(args.values()), ""))
                found.append({"tool": p.tool_name, "arg": arg, "output": str(p.content)})
    return found


def _notes(topic: str, messages: list[ModelMessage]) -> str:
    lines = [f"- {f['tool']}({f['arg']}): {f['output']}" for f in findings(messages)]
    return "\n".join([topic, *lines])


def _model() -> Model:
    endpoint = llm_endpoint()
    if endpoint is None:
        return FunctionModel(offline_model, model_name="offline")
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider

    base_url, model, api_key = endpoint
    # Local servers (Ollama, llama.cpp) want no key, but the client insists on one.
    provider = OpenAIProvider(base_url=base_url, api_key=api_key or "unused")
    return OpenAIChatModel(model, provider=provider)


@functools.cache
def researcher() -> DurableAgent[None, str]:
    """Built on first use, with the model the environment says at that time."""
    agent = Agent(
        _model(),
        name="research_pai",
        instructions="You research a topic with the tools you have, then report briefly.",
        tools=[search, calculate, summarize],
    )
    return DurableAgent(
        agent,
        model_retry=RetryPolicy(max_attempts=4, initial_interval=0.5, max_interval=5),
        tool_retry=RetryPolicy(max_attempts=3, initial_interval=0.2),
    )


async def gather(topic: str, max_tools: int) -> list[ModelMessage]:
    """Let the agent call its tools on the topic; the conversation so far."""
    result = await researcher().run(GATHER.format(max_tools=max_tools) + f"Topic: {topic}")
    return result.all_messages()


async def write_report(history: list[ModelMessage]) -> str:
    result = await researcher().run(REPORT, message_history=history)
    return result.output
