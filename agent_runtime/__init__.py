"""agent_runtime: durable AI-agent workflows on SQLite (or PostgreSQL).

Every step's result is committed before the workflow moves on; a killed process resumes
each run where it stopped. Public API: exactly ``__all__`` (a test pins it).
"""

import sys as _sys

# structlog imports rich (for pretty tracebacks) whenever it is installed: ~15 MB of RSS
# in every tenant's runtime, which logs JSON and never uses it. Hide rich from structlog's
# import only; anything importing rich afterwards gets it as usual.
if "structlog" not in _sys.modules and "rich" not in _sys.modules:
    _sys.modules["rich"] = None  # type: ignore[assignment]
    try:
        import structlog as _structlog  # noqa: F401
    finally:
        del _sys.modules["rich"]

from ._context import now, random, sleep, uuid4, wait_for_signal
from ._definitions import Step, Workflow, step, workflow
from ._errors import (
    AgentRuntimeError,
    InvalidDuration,
    InvalidInput,
    NonDeterminismError,
    RunNotFound,
    SignalBufferFull,
    SignalTimeout,
    StepFailed,
    StepTimeout,
    StorageError,
    UnstorableValue,
    WorkflowNotFound,
)
from ._reader import DatabaseCopy, open_copy
from ._retry import RetryPolicy
from ._runtime import Runtime
from ._store import Event, EventKind, Run, RunPage, RunStatus

__version__ = "0.1.0"

__all__ = [
    "AgentRuntimeError",
    "DatabaseCopy",
    "Event",
    "EventKind",
    "InvalidDuration",
    "InvalidInput",
    "NonDeterminismError",
    "RetryPolicy",
    "Run",
    "RunNotFound",
    "RunPage",
    "RunStatus",
    "Runtime",
    "SignalBufferFull",
    "SignalTimeout",
    "Step",
    "StepFailed",
    "StepTimeout",
    "StorageError",
    "UnstorableValue",
    "Workflow",
    "WorkflowNotFound",
    "__version__",
    "now",
    "open_copy",
    "random",
    "sleep",
    "step",
    "uuid4",
    "wait_for_signal",
    "workflow",
]
