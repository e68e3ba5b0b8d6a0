"""``@workflow`` and ``@step``: what user code decorates."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar, overload

from ._context import current_context
from ._limits import check_duration, check_name
from ._retry import DEFAULT_RETRY, RetryPolicy

P = ParamSpec("P")
R = TypeVar("R")


class Workflow:
    """A registered workflow: an ``async def`` whose JSON input arrives as keyword arguments."""

    def __init__(self, fn: Callable[..., Awaitable[Any]], name: str | None = None) -> None:
        if not inspect.iscoroutinefunction(fn):
            raise TypeError(f"@workflow needs an async def, got {fn!r}")
        self.fn = fn
        self.name = check_name(name or fn.__name__, "workflow name")
        self.doc = inspect.getdoc(fn) or ""
        self.signature = inspect.signature(fn)  # inputs are checked against it on submit
        functools.update_wrapper(self, fn)

    def __call__(self, *args: Any, **kwargs: Any) -> Awaitable[Any]:
        # Calling a workflow directly runs it without durability (handy in unit tests).
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<workflow {self.name}>"


class Step:
    """A step: its result (or final error) is recorded before the workflow moves on."""

    def __init__(
        self,
        fn: Callable[..., Any],
        name: str | None = None,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
    ) -> None:
        if timeout is not None and check_duration(timeout, "@step timeout") <= 0:
            raise ValueError("@step timeout must be > 0 seconds")
        self.fn = fn
        self.name = name or fn.__name__
        self.retry = retry or DEFAULT_RETRY
        self.timeout = timeout
        self.is_async = inspect.iscoroutinefunction(fn)
        functools.update_wrapper(self, fn)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        ctx = current_context()
        if ctx is None:
            # Outside a workflow a step is just its function.
            return self.fn(*args, **kwargs)
        return ctx.call_step(self, args, kwargs)

    def __repr__(self) -> str:
        return f"<step {self.name}>"


@overload
def workflow(fn: Callable[P, Awaitable[R]], /) -> Workflow: ...
@overload
def workflow(*, name: str | None = None) -> Callable[[Callable[P, Awaitable[R]]], Workflow]: ...
def workflow(
    fn: Callable[P, Awaitable[R]] | None = None, /, *, name: str | None = None
) -> Workflow | Callable[[Callable[P, Awaitable[R]]], Workflow]:
    """Mark an ``async def`` as a durable workflow: ``@workflow`` or ``@workflow(name=...)``."""
    if fn is not None:
        return Workflow(fn)
    return lambda f: Workflow(f, name=name)


@overload
def step(fn: Callable[..., Any], /) -> Step: ...
@overload
def step(
    *, name: str | None = None, retry: RetryPolicy | None = None, timeout: float | None = None
) -> Callable[[Callable[..., Any]], Step]: ...
def step(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    retry: RetryPolicy | None = None,
    timeout: float | None = None,
) -> Step | Callable[[Callable[..., Any]], Step]:
    """Mark a function (``async def`` or plain ``def``, run in a worker thread) as a step."""
    if fn is not None:
        return Step(fn)
    return lambda f: Step(f, name=name, retry=retry, timeout=timeout)
