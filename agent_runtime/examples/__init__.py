"""Example workflows: ``agent-runtime serve --app agent_runtime.examples``.

- ``echo``: ``{"message": str}`` -> ``{"message": str}``.
- ``steps``: ``{"n": int, "sleep": float = 0}`` -> n, after n no-op steps with a durable
  sleep of ``sleep`` seconds between them.
- ``research``: a small agent loop: plan -> tool-call steps -> wait for an "approve"
  signal -> report.
- ``research_pai`` (when PydanticAI is installed): the same agent written with PydanticAI
  and run by ``DurableAgent``; same input and result.
"""

from __future__ import annotations

import importlib.util
import json
import secrets
import string
from typing import Any

from agent_runtime import RetryPolicy, sleep, step, wait_for_signal, workflow

from ._model import TOOLS, model_client, run_tool


@workflow
async def echo(message: str) -> dict[str, str]:
    """Return the message it was given."""
    if not isinstance(message, str):
        raise TypeError("message must be a string")
    return {"message": message}


@step
async def noop(i: int) -> dict[str, Any]:
    # The token makes a re-execution visible: a replayed step returns the recorded one.
    return {"i": i, "token": secrets.token_hex(4)}


@workflow
async def steps(n: int, sleep: float = 0) -> int:
    """Run n no-op steps with a durable sleep of `sleep` seconds between them."""
    if not isinstance(n, int) or n < 0:
        raise ValueError("n must be a non-negative integer")
    pause = float(sleep)
    for i in range(n):
        await noop(i)
        if pause > 0 and i < n - 1:
            await _durable_sleep(pause)
    return n


_durable_sleep = sleep  # `sleep` is also the input name of `steps`


@step(retry=RetryPolicy(max_attempts=4, initial_interval=0.5, max_interval=5))
def plan(topic: str, max_tools: int) -> dict[str, Any]:
    client = model_client()
    raw = client.complete(
        f'plan: answer with JSON {{"calls": [{{"tool": one of {list(TOOLS)}, "arg": str}}]}}',
        topic,
    )
    calls = json.loads(raw)["calls"][:max_tools]
    return {"model": client.name, "calls": calls}


@step(retry=RetryPolicy(max_attempts=3, initial_interval=0.2, non_retryable=(ValueError,)))
def call_tool(tool: str, arg: str) -> dict[str, str]:
    return {"tool": tool, "arg": arg, "output": run_tool(tool, arg)}


@step(retry=RetryPolicy(max_attempts=4, initial_interval=0.5, max_interval=5))
def write_report(topic: str, findings: list[dict[str, str]]) -> str:
    notes = "\n".join(f"- {f['tool']}({f['arg']}): {f['output']}" for f in findings)
    return model_client().complete("report: write a short report", f"{topic}\n{notes}")


@workflow
async def research(
    topic: str, max_tools: int = 3, approval_timeout: float | None = None
) -> dict[str, Any]:
    """Plan tool calls for a topic, run them, wait for an "approve" signal, then report."""
    _check_topic(topic)
    planned = await plan(topic, max_tools)
    findings = [await call_tool(c["tool"], c["arg"]) for c in planned["calls"]]
    decision = await wait_for_signal("approve", timeout=approval_timeout)
    if not _approved(decision):
        return {"topic": topic, "approved": False, "findings": findings, "report": None}
    report = await write_report(topic, findings)
    return {
        "topic": topic,
        "approved": True,
        "model": planned["model"],
        "findings": findings,
        "report": report,
    }


def _check_topic(topic: str) -> None:
    if not topic or not set(topic) <= set(string.printable):
        raise ValueError("topic must be non-empty printable text")


def _approved(decision: Any) -> bool:
    """Anything but ``false`` or ``{"approved": false}`` approves."""
    return decision is not False and not (
        isinstance(decision, dict) and decision.get("approved") is False
    )


if importlib.util.find_spec("pydantic_ai") is not None:

    @workflow
    async def research_pai(
        topic: str, max_tools: int = 3, approval_timeout: float | None = None
    ) -> dict[str, Any]:
        """research, with the agent written in PydanticAI: each model request and tool call
        is a step."""
        _check_topic(topic)
        if not isinstance(max_tools, int) or max_tools < 0:
            raise ValueError("max_tools must be a non-negative integer")
        # Loaded here, not with the app: PydanticAI costs ~40 MB in every runtime otherwise.
        from . import _research_pai as pai

        history = await pai.gather(topic, max_tools)
        findings = pai.findings(history)
        decision = await wait_for_signal("approve", timeout=approval_timeout)
        if not _approved(decision):
            return {"topic": topic, "approved": False, "findings": findings, "report": None}
        return {
            "topic": topic,
            "approved": True,
            "model": model_client().name,
            "findings": findings,
            "report": await pai.write_report(history),
        }
