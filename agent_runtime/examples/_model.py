"""The model client the ``research`` example calls: an OpenAI-compatible chat endpoint when
configured, a deterministic offline planner otherwise (so demos and tests need no network).

Configure with AGENT_RUNTIME_LLM_BASE_URL (e.g. http://127.0.0.1:11434/v1),
AGENT_RUNTIME_LLM_MODEL and, if the endpoint wants one, AGENT_RUNTIME_LLM_API_KEY.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any, Protocol

from ._calculate import CalculationError, calculate

TOOLS = ("search", "calculate", "summarize")


class ModelClient(Protocol):
    name: str

    def complete(self, system: str, prompt: str) -> str: ...


class OfflinePlanner:
    """Deterministic stand-in for a model: same prompt, same answer."""

    name = "offline"

    def complete(self, system: str, prompt: str) -> str:
        if system.startswith("plan"):
            topic = prompt.strip()
            calls = [
                {"tool": "search", "arg": topic},
                {"tool": "calculate", "arg": str(len(topic.split()) * 7)},
                {"tool": "summarize", "arg": topic},
            ]
            return json.dumps({"calls": calls})
        digest = hashlib.sha256(prompt.encode()).hexdigest()[:8]
        return f"Report ({digest}): " + prompt.strip().replace("\n", " ")[:400]


class OpenAICompatibleClient:
    """Chat completions over HTTP (OpenAI, vLLM, Ollama, llama.cpp server...)."""

    def __init__(self, base_url: str, model: str, api_key: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.name = f"openai-compatible:{model}"
        self._api_key = api_key

    def complete(self, system: str, prompt: str) -> str:
        import httpx

        headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [
                {"role": "system", "content": system},
                {"role": "user", "content": prompt},
            ],
            "temperature": 0,
        }
        resp = httpx.post(
            f"{self.base_url}/chat/completions", json=body, headers=headers, timeout=60
        )
        resp.raise_for_status()
        return str(resp.json()["choices"][0]["message"]["content"])


def llm_endpoint() -> tuple[str, str, str | None] | None:
    """(base URL, model, API key) of the configured OpenAI-compatible endpoint, or None."""
    base_url = os.environ.get("AGENT_RUNTIME_LLM_BASE_URL")
    if not base_url:
        return None
    model = os.environ.get("AGENT_RUNTIME_LLM_MODEL", "gpt-4o-mini")
    return base_url, model, os.environ.get("AGENT_RUNTIME_LLM_API_KEY")


def model_client() -> ModelClient:
    endpoint = llm_endpoint()
    if endpoint is not None:
        return OpenAICompatibleClient(*endpoint)
    return OfflinePlanner()


def run_tool(tool: str, arg: str) -> str:
    """The agent's tools: small, local and deterministic."""
    if tool == "search":
        return f"3 sources mention {arg!r}; the most cited says it is worth a closer look"
    if tool == "calculate":
        try:
            return str(calculate(arg))
        except CalculationError as exc:
            raise ValueError(f"cannot calculate {arg[:60]!r}: {exc}") from None
    if tool == "summarize":
        return " ".join(arg.split()[:12])
    raise ValueError(f"unknown tool {tool!r} (known: {', '.join(TOOLS)})")
