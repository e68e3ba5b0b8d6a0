"""The runtime's acceptance rules (agent_runtime/_limits.py), one by one."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from agent_runtime import InvalidInput, RetryPolicy, RunNotFound, step
from agent_runtime._errors import InvalidDuration, UnstorableValue, error_dict
from agent_runtime._limits import (
    MAX_DEPTH,
    MAX_DURATION,
    MAX_VALUE_BYTES,
    check_duration,
    check_identifier,
    check_name,
    check_run_ref,
    json_text,
    parse_json,
    to_json_value,
)


def nested(depth: int, container: str = "list") -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = [value] if container == "list" else {"k": value}
    return value


@pytest.mark.parametrize("container", ["list", "dict"])
def test_one_depth_limit_for_parsing_and_encoding(container: str) -> None:
    ok = nested(MAX_DEPTH, container)
    assert to_json_value(ok, "v") == ok
    assert parse_json(json.dumps(ok)) == ok
    for depth in (MAX_DEPTH + 1, 961, 964, 967, 5000):
        with pytest.raises(UnstorableValue, match="nested deeper than 64"):
            json_text(nested(depth, container), "v")
        opening, closing = ("[", "]") if container == "list" else ('{"k":', "}")
        with pytest.raises(UnstorableValue, match="nested deeper than 64"):
            parse_json(opening * depth + "1" + closing * depth)
    with pytest.raises(UnstorableValue, match="nested deeper than 64"):
        parse_json("[" * 100_000 + "]" * 100_000)


def test_many_brackets_in_strings_or_siblings_are_not_depth() -> None:
    wide = [[i] for i in range(1000)]  # 1001 brackets, depth 2
    assert to_json_value(wide, "v") == wide
    text = {"s": "[" * 500 + "{" * 500, "t": '\\"[{' * 100, "u": '"]}' * 100}
    assert to_json_value(text, "v") == text
    edge = {"s": '\\"[' * 100, "deep": nested(MAX_DEPTH - 1)}
    assert to_json_value(edge, "v") == edge
    with pytest.raises(UnstorableValue, match="nested"):
        json_text({"s": '\\"]' * 100, "deep": nested(MAX_DEPTH)}, "v")
    mixed = nested(MAX_DEPTH // 2, "dict")
    for _ in range(MAX_DEPTH // 2):
        mixed = [mixed, {"x": ["[", "]"]}]
    assert to_json_value(mixed, "v") == mixed


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        ("\ud800", "lone UTF-16 surrogate"),
        ({"\udfff": 1}, "lone UTF-16 surrogate"),
        ([math.nan], "NaN or Infinity"),
        ({"a": -math.inf}, "NaN or Infinity"),
        (object(), "not JSON-serialisable"),
        ({(1, 2): 3}, "not JSON-serialisable"),
        ("\u00e9" * (MAX_VALUE_BYTES // 2 + 1), "bytes as JSON"),
    ],
)
def test_values_that_cannot_be_served_back_are_refused(value: Any, needle: str) -> None:
    with pytest.raises(UnstorableValue, match=needle):
        json_text(value, "step result")
    assert issubclass(UnstorableValue, TypeError) and issubclass(UnstorableValue, InvalidInput)


def test_circular_values_are_refused() -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(UnstorableValue, match="step result"):
        json_text(loop, "step result")


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('"\\ud800"', "surrogate"),
        ('"\\udc00\\ud800"', "surrogate"),
        ("NaN", "not valid JSON"),
        ("-Infinity", "not valid JSON"),
        ("1e400", "NaN or Infinity"),
        ("9" * 5000, "not valid JSON"),
        (b'"\xff"', "not valid JSON"),
        ("{", "not valid JSON"),
    ],
)
def test_parse_refuses_json_it_could_not_serve_back(text: str | bytes, needle: str) -> None:
    with pytest.raises(UnstorableValue, match=needle):
        parse_json(text)


def test_valid_unicode_is_kept() -> None:
    assert parse_json('"\\ud83d\\ude00 caf\\u00e9"') == "\U0001f600 café"
    assert to_json_value({"e": "\U0001f600"}, "v") == {"e": "\U0001f600"}


@pytest.mark.parametrize("good", ["a", "r1", "ticket-42", "A.b_c:d-e", "0" * 200])
def test_identifiers(good: str) -> None:
    assert check_identifier(good, "run id") == good


@pytest.mark.parametrize(
    "bad", ["", ".", "..", "x/events", "a b", "-x", ".x", "_x", "é", "a\x00", "0" * 201, 5, None]
)
def test_identifiers_refused(bad: Any) -> None:
    with pytest.raises(InvalidInput, match="run id must be 1-200 characters"):
        check_identifier(bad, "run id")


def test_run_refs_that_no_store_can_hold_name_no_run() -> None:
    assert check_run_ref("an old id with spaces") == "an old id with spaces"
    for bad in ("", "a\x00", "\ud800", "x" * 201):
        with pytest.raises(RunNotFound):
            check_run_ref(bad)


def test_names_from_code() -> None:
    assert check_name("café_step", "step name") == "café_step"
    for bad in ("", "a\nb", "x\ud800", "x" * 201, None):
        with pytest.raises(InvalidInput, match="step name must be"):
            check_name(bad, "step name")


@pytest.mark.parametrize(
    ("seconds", "expected"), [(0, 0.0), (1.5, 1.5), (-3, 0.0), (MAX_DURATION, MAX_DURATION)]
)
def test_durations(seconds: float, expected: float) -> None:
    assert check_duration(seconds, "sleep()") == expected


@pytest.mark.parametrize(
    "bad", [math.inf, -math.inf, math.nan, 1e300, MAX_DURATION + 1, 10**400, True, "5", None]
)
def test_durations_refused(bad: Any) -> None:
    with pytest.raises(InvalidDuration, match=r"sleep\(\)"):
        check_duration(bad, "sleep()")
    assert issubclass(InvalidDuration, ValueError)


def test_step_timeouts_and_retry_intervals_are_bounded() -> None:
    with pytest.raises(InvalidDuration):
        step(timeout=math.inf)(lambda: None)
    with pytest.raises(ValueError, match="> 0"):
        step(timeout=0)(lambda: None)
    for bad in ({"initial_interval": math.inf}, {"max_interval": math.nan}):
        with pytest.raises(ValueError):
            RetryPolicy(**bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="backoff"):
        RetryPolicy(backoff=math.inf)
    steep = RetryPolicy(max_attempts=10_000, initial_interval=1, backoff=1e10, max_interval=5)
    assert 0 <= steep.delay(9_999) <= 5  # no OverflowError after many attempts


def test_error_dicts_are_storable_text() -> None:
    err = error_dict(ValueError("bad \ud800 " + "x" * 10_000))
    assert json_text(err, "error")
    assert err["message"].startswith("bad \\ud800 ") and err["message"].endswith("(truncated)")
