"""Errors raised to workflow code and to embedders. All derive from AgentRuntimeError."""

from __future__ import annotations

from typing import Any


class AgentRuntimeError(Exception):
    """Base class of every error this package raises on purpose."""

    hint: str | None = None


class StepFailed(AgentRuntimeError):
    """A step failed for good (retries exhausted or a non-retryable error).

    Raised identically on first execution and on replay, so workflow code that catches it
    stays deterministic. ``error_type`` is the qualified name of the original exception.
    """

    def __init__(self, step: str, error_type: str, message: str, attempts: int) -> None:
        super().__init__(
            f"step {step!r} failed after {attempts} attempt(s): {error_type}: {message}"
        )
        self.step = step
        self.error_type = error_type
        self.message = message
        self.attempts = attempts


class StepTimeout(AgentRuntimeError):
    """One attempt of a step ran longer than its ``timeout`` (retryable)."""


class SignalTimeout(AgentRuntimeError):
    """``wait_for_signal`` reached its timeout before the signal arrived."""

    def __init__(self, name: str, timeout: float) -> None:
        super().__init__(f"no signal {name!r} arrived within {timeout:g} s")
        self.name = name
        self.timeout = timeout


class NonDeterminismError(AgentRuntimeError):
    """On replay the workflow called something other than what its history records."""

    def __init__(self, position: int, recorded: str, called: str) -> None:
        super().__init__(
            f"non-determinism at position {position}: history records {recorded}, "
            f"but the workflow now calls {called}"
        )
        self.position = position
        self.recorded = recorded
        self.called = called


class WorkflowNotFound(AgentRuntimeError):
    def __init__(self, name: str) -> None:
        super().__init__(f"unknown workflow {name!r}")
        self.name = name


class RunNotFound(AgentRuntimeError):
    def __init__(self, run_id: str) -> None:
        super().__init__(f"no run with id {run_id!r}")
        self.run_id = run_id


class InvalidInput(AgentRuntimeError):
    """Bad input from a caller (API body, CLI flag, submitted run input)."""


class StorageError(AgentRuntimeError):
    """The database cannot be used (wrong SQLite version, locked by another process...)."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


def error_dict(exc: BaseException) -> dict[str, Any]:
    """How an exception is stored in history and shown in the API."""
    t = type(exc)
    name = (
        t.__qualname__
        if t.__module__ in ("builtins", __name__)
        else f"{t.__module__}.{t.__qualname__}"
    )
    try:
        message = str(exc)
    except Exception:  # a broken __str__ must not take the run's bookkeeping down with it
        message = f"<{name} whose message cannot be shown>"
    return {"type": name, "message": message}
