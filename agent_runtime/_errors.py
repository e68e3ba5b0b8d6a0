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


class InvalidDuration(InvalidInput, ValueError):
    """A duration (sleep, timeout, retry interval) that is not a finite number of seconds
    within the runtime's bound."""


class UnstorableValue(InvalidInput, TypeError):
    """A value the runtime cannot store and serve back as JSON (not serialisable, NaN or
    Infinity, a lone surrogate, nested too deeply). A step whose result is unstorable fails
    at once: retrying would produce the same value. A ``TypeError``, as before."""


class SignalBufferFull(AgentRuntimeError):
    """The run holds as many unconsumed signals (or bytes of them) as it may: it takes
    more once its workflow consumes some."""


class StorageError(AgentRuntimeError):
    """The database cannot be used (wrong SQLite version, locked by another process...)."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


class StorageFull(StorageError):
    """The database's disk is full (SQLITE_FULL, or its WAL cannot grow). Nothing was
    written; writes succeed again once space is freed."""

    def __init__(self, message: str) -> None:
        super().__init__(message, hint="free disk space on the database's volume")


MAX_ERROR_MESSAGE = 4000  # characters of an exception's message kept in history


def error_dict(exc: BaseException) -> dict[str, Any]:
    """How an exception is stored in history and shown in the API: always storable text
    (workflow code chooses the message and even the type's name), at most
    ``MAX_ERROR_MESSAGE`` characters of message."""
    t = type(exc)
    name = (
        t.__qualname__
        if t.__module__ in ("builtins", __name__)
        else f"{t.__module__}.{t.__qualname__}"
    )
    name = _storable_text(name)[:MAX_ERROR_MESSAGE]
    try:
        message = str(exc)
    except Exception:  # a broken __str__ must not take the run's bookkeeping down with it
        message = f"<{name} whose message cannot be shown>"
    message = _storable_text(message)
    if len(message) > MAX_ERROR_MESSAGE:
        message = message[:MAX_ERROR_MESSAGE] + "... (truncated)"
    return {"type": name, "message": message}


def _storable_text(text: str) -> str:
    # A lone surrogate cannot be written as UTF-8: show it as its escape instead.
    return text.encode("utf-8", "backslashreplace").decode("utf-8")
