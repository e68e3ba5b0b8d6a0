"""``DurableAgent``: a PydanticAI agent whose runs inside a ``@workflow`` are durable."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any, Generic, NoReturn, overload

from pydantic_ai.agent import AbstractAgent, AgentRunResult
from pydantic_ai.exceptions import UserError
from pydantic_ai.messages import UserContent
from pydantic_ai.models import Model
from pydantic_ai.output import OutputDataT, OutputSpec
from pydantic_ai.tools import AgentDepsT
from typing_extensions import TypeVar

from ..._context import current_context
from ..._retry import RetryPolicy
from ._durability import AgentRuntimeDurability

RunOutputDataT = TypeVar("RunOutputDataT")

_STREAMING = (
    "is not supported by DurableAgent: a stream's consumer sees events live, and on replay after "
    "a restart they would be delivered again (or not at all) rather than recorded. Use run(); "
    "its result holds every message."
)


class DurableAgent(Generic[AgentDepsT, OutputDataT]):
    """Wraps a ``pydantic_ai.Agent`` so that its runs inside a ``@workflow`` are durable.

    ``await durable.run(prompt, ...)`` takes ``Agent.run``'s arguments and returns its result.
    Inside a workflow every model request and every tool call (function, MCP and dynamic
    toolsets) is a step of the workflow's run, named ``<name>__model.request`` and
    ``<name>__<toolset>.call_tool:<tool>``, retried with ``model_retry`` / ``tool_retry``
    (``RetryPolicy``; the step defaults otherwise). After a restart the run replays the recorded
    steps and carries on. Outside a workflow (or inside a step) it is the plain agent.

    Refused inside a workflow, because they could not be recorded: an event stream handler,
    ``timeout=``, a ``cancellation_token``, executing toolsets passed per run, a ``Model``
    instance as ``model=`` (a model name is fine), and the streaming methods. A model request
    that fails for good raises ``StepFailed``.
    """

    def __init__(
        self,
        agent: AbstractAgent[AgentDepsT, OutputDataT],
        *,
        name: str | None = None,
        model_retry: RetryPolicy | None = None,
        tool_retry: RetryPolicy | None = None,
    ) -> None:
        name = name or agent.name
        if not name:
            raise UserError(
                "DurableAgent needs a name: give the agent one (Agent(..., name='researcher')) "
                "or pass name=. Step names in every run's history start with it."
            )
        self.agent = agent
        self.name = name
        self._durability = AgentRuntimeDurability(
            name=name, model_retry=model_retry, tool_retry=tool_retry
        )
        # Binding wraps the agent's toolsets: do it once now so that a toolset without an id
        # or a duplicate id fails here, not in the middle of a run.
        self._durability.for_agent(agent)

    @overload
    async def run(
        self,
        user_prompt: str | Sequence[UserContent] | None = None,
        *,
        output_type: None = None,
        **kwargs: Any,
    ) -> AgentRunResult[OutputDataT]: ...
    @overload
    async def run(
        self,
        user_prompt: str | Sequence[UserContent] | None = None,
        *,
        output_type: OutputSpec[RunOutputDataT],
        **kwargs: Any,
    ) -> AgentRunResult[RunOutputDataT]: ...
    async def run(
        self,
        user_prompt: str | Sequence[UserContent] | None = None,
        *,
        output_type: OutputSpec[Any] | None = None,
        **kwargs: Any,
    ) -> AgentRunResult[Any]:
        """``Agent.run``, each model request and tool call a step of the current workflow run."""
        ctx = current_context()
        if ctx is None:
            return await self.agent.run(user_prompt, output_type=output_type, **kwargs)
        self._refuse_unrecordable(kwargs)
        if kwargs.get("run_id") is None:
            # PydanticAI stamps the run id on every message; a replay must stamp the same one.
            kwargs["run_id"] = await ctx.record(f"{self.name}__run_id", _new_run_id)
        kwargs["capabilities"] = [*(kwargs.get("capabilities") or ()), self._durability]
        return await self.agent.run(user_prompt, output_type=output_type, **kwargs)

    def _refuse_unrecordable(self, kwargs: dict[str, Any]) -> None:
        if kwargs.get("event_stream_handler") is not None or self.agent.event_stream_handler:
            raise UserError(f"an event_stream_handler {_STREAMING}")
        model = kwargs.get("model")
        if isinstance(model, Model) and model is not self.agent.model:
            raise UserError(
                "model= takes a model name inside an agent_runtime workflow (e.g. "
                "'openai:gpt-4o'), built inside each step; a Model instance other than the "
                "agent's own would have to be rebuilt from its name, maybe with other settings"
            )
        if kwargs.get("timeout") is not None:
            raise UserError(
                "timeout= is not supported inside an agent_runtime workflow: a wall-clock deadline "
                "would cut a replayed run at a different point. Bound the run's work with "
                "usage_limits= (e.g. UsageLimits(request_limit=...)) instead."
            )

    def run_sync(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise UserError("DurableAgent.run_sync is not supported: workflows are async, use run()")

    def run_stream(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise UserError(f"DurableAgent.run_stream {_STREAMING}")

    def run_stream_events(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise UserError(f"DurableAgent.run_stream_events {_STREAMING}")

    def iter(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise UserError(
            "DurableAgent.iter is not supported: driving the graph node by node from workflow "
            "code is not recorded. Use run()."
        )

    def __repr__(self) -> str:
        return f"<DurableAgent {self.name}>"


def _new_run_id() -> str:
    return str(uuid.uuid4())
