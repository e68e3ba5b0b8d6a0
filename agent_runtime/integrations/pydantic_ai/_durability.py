"""agent_runtime as a PydanticAI durable-execution engine, on ``pydantic_ai.durable_exec``.

PydanticAI owns the model, toolset and event machinery (``BaseDurabilityCapability``); this
module only says what a durable unit is here: a step of the enclosing workflow run, through the
same ``WorkflowContext.call_step`` that ``@step`` uses. So a model request or a tool call is
recorded, retried and replayed exactly like any other step, and its history shows it.

Choices the engine spec makes, and why:

- ``JSON_CODEC``: a step result must survive the JSON history, so PydanticAI reduces every
  response and tool result with its own type adapters before it is recorded, and the workflow
  sees the decoded value on first execution and on replay alike.
- Tool calls run one after another inside a workflow: step positions are taken in call order,
  and tool calls racing in parallel tasks could take them in a different order on replay.
- Toolsets passed per run (``run(toolsets=...)``) are refused inside a workflow: only the
  agent's own toolsets are wrapped, so a per-run toolset's tools would run unrecorded.
- MCP sessions are entered inside the first step that needs one and kept for the run (steps run
  in the workflow's own process), so connecting is retried like the step.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic_ai.durable_exec import (
    JSON_CODEC,
    BaseDurabilityCapability,
    DurabilityEngineSpec,
    DurableOperationBackend,
    DurableOperationId,
    JournalCallableOperationBackend,
    RoleBasedOperationConfig,
    conversation_id_from_run_id,
)
from pydantic_ai.exceptions import ModelRequestRejectedError, UserError

from ..._context import current_context
from ..._definitions import Step
from ..._retry import RetryPolicy


class UnrecordableResult(TypeError):
    """A model response or tool result that cannot be written to the JSON history.

    Never retried: encoding the same value again fails the same way.
    """


def _unrecordable(exc: Exception) -> BaseException:
    return UnrecordableResult(f"cannot be recorded as JSON: {exc}")


# Retrying these cannot help: a misconfigured agent, a value that cannot be recorded.
_NEVER_RETRIED: tuple[type[BaseException], ...] = (UserError, UnrecordableResult)

DEFAULT_MODEL_RETRY = RetryPolicy(non_retryable=(ModelRequestRejectedError,))
"""Model requests: the step default, but a request the provider rejected (4xx: bad request,
authentication, unknown model, context window) is not sent again."""

DEFAULT_TOOL_RETRY = RetryPolicy()


def _never_retrying(policy: RetryPolicy) -> RetryPolicy:
    extra = tuple(t for t in _NEVER_RETRIED if t not in policy.non_retryable)
    return dataclasses.replace(policy, non_retryable=(*policy.non_retryable, *extra))


class StepBackend(JournalCallableOperationBackend[RetryPolicy]):
    """Runs each durable operation as one step of the current workflow run."""

    async def execute(
        self,
        *,
        operation_id: DurableOperationId,
        name: str,
        body: Callable[[], Awaitable[object]],
        cache_key: tuple[object, ...],
        config: RetryPolicy,
    ) -> object:
        ctx = current_context()
        if ctx is None:  # inside a step (a nested agent run): steps within steps are plain calls
            return await body()
        return await ctx.call_step(Step(body, name=name, retry=config), (), {})


class AgentRuntimeDurability(BaseDurabilityCapability[Any]):
    """The capability ``DurableAgent`` adds to each run it makes inside a workflow."""

    engine_spec = DurabilityEngineSpec(
        engine_name="agent_runtime",
        durable_unit_noun="step",
        durable_unit_plural="steps",
        durable_container_noun="workflow",
        codec=JSON_CODEC,
        serialization_failure=_unrecordable,
        wrapped_toolset_kinds=frozenset({"function", "mcp", "dynamic"}),
        toolset_lifecycles={
            "function": "enter-always",
            "mcp": "enter-in-durable-unit",
            "dynamic": "enter-never",
        },
        unsupported_runtime_toolset_kinds=frozenset({"function", "mcp", "dynamic"}),
        tool_call_result_upgrade_lenient=False,
        journal_discovery=True,
        sequential_tools_in_durable_context=True,
        tool_config_key=None,
    )

    def __init__(
        self,
        *,
        name: str | None = None,
        model_retry: RetryPolicy | None = None,
        tool_retry: RetryPolicy | None = None,
    ) -> None:
        super().__init__(name=name)
        self.model_retry = _never_retrying(model_retry or DEFAULT_MODEL_RETRY)
        self.tool_retry = _never_retrying(tool_retry or DEFAULT_TOOL_RETRY)

    @property
    def in_durable_context(self) -> bool:
        # Inside a step the runtime clears the context: a nested run there is a plain call.
        return current_context() is not None

    def get_default_conversation_id(self, run_id: str) -> str | None:
        # DurableAgent records the run id, so an id derived from it is replay-stable too.
        return conversation_id_from_run_id(run_id) if self.in_durable_context else None

    def get_durable_operation_backend(self) -> DurableOperationBackend[RetryPolicy]:
        return StepBackend(
            agent_name=self.name,
            default_model_id=self.default_model_id,
            config=RoleBasedOperationConfig(
                model=self.model_retry,
                event=self.tool_retry,
                capability=self.tool_retry,
                tool=self.tool_retry,
            ),
        )
