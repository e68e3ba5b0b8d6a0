"""What the runtime agrees to store: JSON values, names and durations, checked before any
write so that nothing stored can make a later read fail.

Every value the runtime keeps (run input, signal payloads, step and workflow results,
recorded values) is JSON that

- nests at most ``MAX_DEPTH`` (64) containers deep: the same limit when a request body is
  parsed and when a stored value is decoded and encoded again (Python's own JSON limits
  differ between parsing and encoding by a few levels, which let a 961-level value in and
  then failed every read of it);
- holds only finite numbers (no NaN or Infinity, which JSON cannot carry; ``1e400``
  parses as Infinity);
- holds only valid Unicode text (no lone UTF-16 surrogate such as ``"\\ud800"``, which
  Python accepts and no UTF-8 encoder can write);
- takes at most ``MAX_VALUE_BYTES`` (4 MiB) as UTF-8 JSON: a step returning 300 MB would
  otherwise make every list page holding its run too large to serve from a tenant's
  memory limit.

Run ids and signal names travel in URL paths: they are ``IDENTIFIER`` (1-200 characters
from ``A-Z a-z 0-9 . _ - :``, starting with a letter or digit, so neither ``/`` nor ``..``).
Step and workflow names come from code: 1-200 printable characters. Durations (durable
sleeps, signal timeouts, step timeouts, retry intervals) are finite and at most
``MAX_DURATION`` (ten years).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from ._errors import (
    InvalidDuration,
    InvalidInput,
    RunNotFound,
    SignalBufferFull,
    UnstorableValue,
)

MAX_DEPTH = 64
MAX_VALUE_BYTES = 4 * 1024 * 1024
MAX_NAME = 200
MAX_DURATION = 10 * 366 * 86400.0  # seconds: ten years
IDENTIFIER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,199}")

# Signals a run may hold unconsumed (sent, not yet taken by wait_for_signal): at most
# MAX_BUFFERED_SIGNALS of them and MAX_BUFFERED_SIGNAL_BYTES of stored JSON in all. One
# signal over HTTP is at most 1 MiB (the body limit), so one always fits an empty buffer.
MAX_BUFFERED_SIGNALS = 100
MAX_BUFFERED_SIGNAL_BYTES = 4 * 1024 * 1024


# One encoder for every check (json.dumps with options builds a new one per call).
_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_INNERMOST = re.compile(r"\[\]|\{\}")


def json_text(value: Any, what: str) -> str:
    """Compact JSON text of ``value``; raises ``UnstorableValue`` naming ``what`` when the
    runtime could not store it and serve it back."""
    try:
        text = _ENCODER.encode(value)
    except RecursionError:
        raise UnstorableValue(f"{what} is nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:
        if "Out of range float" in str(exc):
            raise UnstorableValue(
                f"{what} holds NaN or Infinity, which JSON cannot carry"
            ) from None
        raise UnstorableValue(f"{what} cannot be stored as JSON: {exc}") from None
    except TypeError as exc:
        raise UnstorableValue(f"{what} is not JSON-serialisable: {exc}") from None
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise UnstorableValue(
            f"{what} holds a lone UTF-16 surrogate (such as \\ud800), which is not valid text"
        ) from None
    if size > MAX_VALUE_BYTES:
        raise UnstorableValue(f"{what} takes {size} bytes as JSON (at most {MAX_VALUE_BYTES})")
    # A value cannot nest deeper than it has brackets: most values need no scan at all.
    if text.count("[") + text.count("{") > MAX_DEPTH and _too_deep(text):
        raise UnstorableValue(f"{what} is nested deeper than {MAX_DEPTH} levels")
    return text


def to_json_value(value: Any, what: str) -> Any:
    """``value`` as JSON gives it back (tuples become lists...), so a first execution and a
    replay see the same thing; raises ``UnstorableValue`` as ``json_text`` does."""
    return json.loads(json_text(value, what))


def parse_json(body: bytes | str, what: str = "request body") -> Any:
    """Parse JSON text the runtime will store; raises ``UnstorableValue`` if it is not JSON
    or breaks a limit above."""
    try:
        value = json.loads(body, parse_constant=_no_constant)
    except RecursionError:
        raise UnstorableValue(f"{what} is nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:  # JSONDecodeError, bad UTF-8, an integer of >4300 digits
        raise UnstorableValue(f"{what} is not valid JSON: {exc}") from None
    json_text(value, what)
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _too_deep(text: str) -> bool:
    """Whether JSON text (as the encoder wrote it) nests deeper than MAX_DEPTH: with the
    strings and scalars gone, each pass drops the innermost pairs of brackets."""
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    for _ in range(MAX_DEPTH):
        brackets = _INNERMOST.sub("", brackets)
        if not brackets:
            return False
    return True


def check_identifier(value: Any, what: str) -> str:
    """A run id or signal name: ``IDENTIFIER``, safe in a URL path segment."""
    if not isinstance(value, str) or IDENTIFIER.fullmatch(value) is None:
        raise InvalidInput(
            f"{what} must be 1-{MAX_NAME} characters from A-Z a-z 0-9 . _ - : "
            f"starting with a letter or digit, got {_shown(value)}"
        )
    return value


def check_run_ref(run_id: str) -> str:
    """A run id given to look a run up: one that no store can hold (NUL, a lone surrogate,
    longer than any id) names no run, so it is not even asked for. Runs stored by older
    runtimes keep their ids (then: any 1-200 printable characters)."""
    if not 0 < len(run_id) <= MAX_NAME or "\x00" in run_id or not _is_text(run_id):
        raise RunNotFound(run_id)
    return run_id


def check_name(value: Any, what: str) -> str:
    """A step or workflow name (from code): 1-200 printable characters of valid text."""
    if (
        not isinstance(value, str)
        or not 0 < len(value) <= MAX_NAME
        or not value.isprintable()
        or not _is_text(value)
    ):
        raise InvalidInput(f"{what} must be 1-{MAX_NAME} printable characters, got {_shown(value)}")
    return value


def check_duration(seconds: Any, what: str) -> float:
    """Seconds as a float in [0, MAX_DURATION]; a negative duration counts as 0."""
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise InvalidDuration(f"{what} must be a number of seconds, got {type(seconds).__name__}")
    try:
        value = float(seconds)
    except OverflowError:
        value = math.inf
    if not math.isfinite(value) or value > MAX_DURATION:
        raise InvalidDuration(
            f"{what} must be a finite number of seconds up to {MAX_DURATION:.0f} "
            f"(ten years), got {value:g}"
        )
    return max(0.0, value)


def check_signal_buffer(buffered: int, buffered_bytes: int, payload_bytes: int) -> None:
    """Raise ``SignalBufferFull`` when a run holding ``buffered`` unconsumed signals of
    ``buffered_bytes`` cannot take one more of ``payload_bytes``."""
    if buffered >= MAX_BUFFERED_SIGNALS:
        raise SignalBufferFull(
            f"the run already holds {buffered} signals it has not consumed "
            f"(at most {MAX_BUFFERED_SIGNALS})"
        )
    if buffered_bytes + payload_bytes > MAX_BUFFERED_SIGNAL_BYTES:
        raise SignalBufferFull(
            f"the run's unconsumed signals would hold {buffered_bytes + payload_bytes} bytes "
            f"(at most {MAX_BUFFERED_SIGNAL_BYTES})"
        )


def _is_text(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _shown(value: Any) -> str:
    """A short, printable rendering of a rejected value for an error message."""
    text = ascii(value)
    return text if len(text) <= 60 else text[:57] + "..."
