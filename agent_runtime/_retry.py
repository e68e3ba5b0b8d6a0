"""Retry policy of a step: exponential backoff with full jitter."""

from __future__ import annotations

import random
from dataclasses import dataclass

from ._limits import check_duration


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a failing step is retried.

    ``max_attempts`` counts the first attempt (1 = never retry). The n-th retry waits a
    random time in [0, min(max_interval, initial_interval * backoff**(n-1))] (full jitter,
    so runs failing together do not retry in lockstep). Exceptions whose type is in
    ``non_retryable`` (or a subclass) fail the step at once.
    """

    max_attempts: int = 3
    initial_interval: float = 1.0
    backoff: float = 2.0
    max_interval: float = 60.0
    non_retryable: tuple[type[BaseException], ...] = ()

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("RetryPolicy.max_attempts must be >= 1")
        if self.initial_interval < 0 or self.max_interval < 0:
            raise ValueError("RetryPolicy intervals must be >= 0")
        check_duration(self.initial_interval, "RetryPolicy.initial_interval")
        check_duration(self.max_interval, "RetryPolicy.max_interval")
        if not 1 <= self.backoff < float("inf"):
            raise ValueError("RetryPolicy.backoff must be >= 1 and finite")

    def retryable(self, exc: BaseException) -> bool:
        return not isinstance(exc, self.non_retryable)

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        try:
            grown = self.initial_interval * self.backoff ** (attempt - 1)
        except OverflowError:  # a long run of retries: the cap applies
            grown = self.max_interval
        return random.uniform(0, min(self.max_interval, grown))


NO_RETRY = RetryPolicy(max_attempts=1)
DEFAULT_RETRY = RetryPolicy()
