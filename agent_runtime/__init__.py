"""agent_runtime: durable AI-agent workflows on SQLite (or PostgreSQL).

Every step's result is committed before the workflow moves on; a killed process resumes
each run where it stopped. Public API: exactly ``__all__`` (a test pins it).
"""

from ._context import now, random, sleep, uuid4, wait_for_signal
from ._definitions import Step, Workflow, step, workflow
from ._errors import (
    AgentRuntimeError,
    InvalidInput,
    NonDeterminismError,
    RunNotFound,
    SignalTimeout,
    StepFailed,
    StepTimeout,
    StorageError,
    WorkflowNotFound,
)
from ._retry import RetryPolicy
from ._runtime import Runtime
from ._store import Event, EventKind, Run, RunPage, RunStatus

__version__ = "0.1.0"

__all__ = [
    "AgentRuntimeError",
    "Event",
    "EventKind",
    "InvalidInput",
    "NonDeterminismError",
    "RetryPolicy",
    "Run",
    "RunNotFound",
    "RunPage",
    "RunStatus",
    "Runtime",
    "SignalTimeout",
    "Step",
    "StepFailed",
    "StepTimeout",
    "StorageError",
    "Workflow",
    "WorkflowNotFound",
    "__version__",
    "now",
    "random",
    "sleep",
    "step",
    "uuid4",
    "wait_for_signal",
    "workflow",
]
