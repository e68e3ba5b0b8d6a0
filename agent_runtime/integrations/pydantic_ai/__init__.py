"""PydanticAI agents as durable agent_runtime workflows: ``DurableAgent``.

Every model request and every tool call of a wrapped agent's run inside a ``@workflow`` is a
step of that workflow's run, so a killed runtime resumes the agent without repeating a recorded
model call or tool call. Needs ``pip install 'litefleet[pydantic-ai]'``.
"""

try:
    import pydantic_ai as _pydantic_ai  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on what is installed
    raise ImportError(
        "agent_runtime.integrations.pydantic_ai needs PydanticAI: "
        "pip install 'litefleet[pydantic-ai]'"
    ) from exc

from ._agent import DurableAgent

__all__ = ["DurableAgent"]
