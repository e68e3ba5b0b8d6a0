"""The ``calculate`` tool: arithmetic on numbers, evaluated from the syntax tree.

The model (or whoever steers it) chooses the expression, so this is hostile input. ``eval``
with empty builtins is no sandbox (``().__class__.__base__.__subclasses__()`` reaches
``os``); here nothing is evaluated but numbers and ``+ - * / // % **``, unary minus and plus,
and parentheses. Sizes are bounded before each operation, so ``9**9**9`` is refused at
once instead of holding the tenant's CPU.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable

Number = int | float

MAX_EXPRESSION = 200  # characters
MAX_BITS = 4096  # of an integer operand or result (about 1,233 decimal digits)
MAX_EXPONENT = 4096

_BINARY: dict[type[ast.operator], Callable[[Number, Number], Number]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[Number], Number]] = {
    ast.USub: operator.neg,
    ast.UAdd: operator.pos,
}


class CalculationError(ValueError):
    """The expression is not plain arithmetic, or its result would be too large."""


def calculate(expression: str) -> Number:
    """The value of an arithmetic expression such as ``(2 + 3) * 4 ** 2 / 7``."""
    if len(expression) > MAX_EXPRESSION:
        raise CalculationError(f"expression longer than {MAX_EXPRESSION} characters")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        raise CalculationError("not an arithmetic expression") from None
    return _evaluate(tree.body)


def _evaluate(node: ast.expr) -> Number:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return _checked(node.value)
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_evaluate(node.operand))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _evaluate(node.left), _evaluate(node.right)
        _check_size(node.op, left, right)
        try:
            result = _BINARY[type(node.op)](left, right)
        except ZeroDivisionError:
            raise CalculationError("division by zero") from None
        except OverflowError:
            raise CalculationError("result too large") from None
        return _checked(result)
    raise CalculationError(
        f"{type(node).__name__} is not allowed: only numbers and + - * / // % **"
    )


def _check_size(op: ast.operator, left: Number, right: Number) -> None:
    """Refuse an operation whose integer result would pass MAX_BITS, before computing it."""
    if isinstance(op, ast.Pow) and abs(right) > MAX_EXPONENT:
        raise CalculationError(f"exponent larger than {MAX_EXPONENT}")
    if not (isinstance(left, int) and isinstance(right, int)):
        return  # float operations overflow into an error, not into a huge number
    if isinstance(op, ast.Pow):
        bits = abs(left).bit_length() * max(right, 0)
    elif isinstance(op, ast.Mult):
        bits = abs(left).bit_length() + abs(right).bit_length()
    else:
        return
    if bits > MAX_BITS:
        raise CalculationError("result too large")


def _checked(value: object) -> Number:
    # (-8) ** 0.5 is complex; 1e308 * 10 is inf: neither is an answer.
    if isinstance(value, float) and not math.isfinite(value):
        raise CalculationError("result is not a finite number")
    if isinstance(value, int) and not isinstance(value, bool):
        if value.bit_length() > MAX_BITS:
            raise CalculationError("result too large")
        return value
    if isinstance(value, float):
        return value
    raise CalculationError("result is not a real number")
