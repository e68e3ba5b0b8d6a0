"""The example app's ``calculate`` tool: arithmetic only, bounded, no way out (issue 11,
item 6). The escapes a security review used against ``eval`` are among the cases."""

from __future__ import annotations

import os

import pytest

from agent_runtime.examples._calculate import MAX_EXPRESSION, CalculationError, calculate
from agent_runtime.examples._model import run_tool


@pytest.mark.parametrize(
    ("expression", "value"),
    [
        ("1 + 2", 3),
        ("(2 + 3) * 4 ** 2 / 8", 10.0),
        ("-3 - -4", 1),
        ("+5", 5),
        ("7 // 2", 3),
        ("-7 % 3", 2),
        ("2 ** -1", 0.5),
        ("2 ** 3 ** 2", 512),
        ("1.5e3 * 2", 3000.0),
        ("10 ** 1000 // 10 ** 999", 10),
        ("((((1))))", 1),
        ("  21 * 2 ", 42),
    ],
)
def test_arithmetic(expression: str, value: float) -> None:
    assert calculate(expression) == value


ESCAPES = [
    "().__class__.__base__.__subclasses__()",
    "[c for c in ().__class__.__base__.__subclasses__()"
    " if c.__name__ == 'catch_warnings'][0]()._module.__builtins__['__import__']('os').getpid()",
    "__import__('os').getpid()",
    "(lambda: 1)()",
    "globals()",
    "open('/etc/passwd').read()",
    "(1).__class__",
    "x",
    "'a' * 3",
    "b'x'",
    "f'{1}'",
    "1 if 1 else 2",
    "1 < 2",
    "1 and 2",
    "[1, 2]",
    "{1: 2}",
    "1j",
    "True + 1",
    "None",
    "...",
    "(x := 1)",
    "1; 2",
    "import os",
    "1 << 10",
    "5 & 3",
    "~1",
    "not 1",
]


@pytest.mark.parametrize("expression", ESCAPES)
def test_anything_but_arithmetic_is_refused(expression: str) -> None:
    with pytest.raises(CalculationError):
        calculate(expression)


@pytest.mark.timeout(10)  # a guard against a hang, not a performance assertion
@pytest.mark.parametrize(
    ("expression", "needle"),
    [
        ("9 ** 9 ** 9", "exponent"),
        ("10 ** 10 ** 10", "exponent"),
        ("2 ** 100000", "exponent"),
        ("2 ** 4096", "too large"),
        ("(10 ** 1000) * (10 ** 1000)", "too large"),
        ("10 ** 1000 * 10 ** 1000 * 10 ** 1000", "too large"),
        ("2.0 ** 4000", "too large"),
        ("1e308 * 10", "finite"),
        ("1e308 * 10 - 1e308 * 10", "finite"),
        ("10 ** 1000 / 3", "too large"),
        ("10 ** 1000 + 0.5", "too large"),
        ("(-8) ** 0.5", "real number"),
        ("1 / 0", "division by zero"),
        ("5 % 0", "division by zero"),
        ("0 ** -1", "division by zero"),
        ("(" * 100 + "1", "arithmetic"),
        ("(" * 99 + "-1" + ")" * 99, None),
        ("-" * 199 + "1", None),
        ("1" * (MAX_EXPRESSION + 1), "longer than"),
    ],
)
def test_sizes_are_bounded_before_computing(expression: str, needle: str | None) -> None:
    if needle is None:  # deep but harmless
        assert calculate(expression) == -1
        return
    with pytest.raises(CalculationError, match=needle):
        calculate(expression)


def test_the_tool_reports_a_clear_error_and_no_side_effect() -> None:
    pid = os.getpid()
    assert run_tool("calculate", "6 * 7") == "42"
    with pytest.raises(ValueError, match="cannot calculate") as caught:
        run_tool("calculate", ESCAPES[1])
    assert str(pid) not in str(caught.value)
