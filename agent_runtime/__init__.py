"""agent_runtime: durable AI-agent workflows on SQLite (or PostgreSQL).

Public API: everything importable from this module is listed in ``__all__`` (a test pins it).
"""

from ._definitions import Step, Workflow, step, workflow
from ._errors import (
    AgentRuntimeError,
    NonDeterminismError,
    RunNotFound,
    SignalTimeout,
    StepFailed,
    StepTimeout,
    WorkflowNotFound,
)
from ._retry import RetryPolicy

__all__ = [
    "AgentRuntimeError",
    "NonDeterminismError",
    "RetryPolicy",
    "RunNotFound",
    "SignalTimeout",
    "Step",
    "StepFailed",
    "StepTimeout",
    "Workflow",
    "WorkflowNotFound",
    "step",
    "workflow",
]
