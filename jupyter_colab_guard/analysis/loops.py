"""Which loops never end by themselves: the `looped: true` condition of a call leaf."""

from __future__ import annotations

import ast
import re

# Text that every loop `endless` accepts contains (lower-cased): `while` then a literal or
# `not`, or a call of count/cycle/repeat/iter. Literal-prefixed: fast scans (the prefilter).
ENDLESS_TEXT = (
    re.compile(r"while[\s(\\]*(?:true|not\b|[0-9.]|[rbu]{0,2}['\"])"),
    re.compile(r"count[\s\\]*\("),
    re.compile(r"cycle[\s\\]*\("),
    re.compile(r"repeat[\s\\]*\("),
    re.compile(r"iter[\s\\]*\("),
)
# A constructor called with no argument, and what it returns: `iter(int, 1)` never stops,
# since int() is always 0.
_CONSTANT_CALLS: dict[str, object] = {
    "int": 0,
    "float": 0.0,
    "bool": False,
    "str": "",
    "bytes": b"",
    "complex": 0j,
    "list": [],
    "dict": {},
    "tuple": (),
    "set": set(),
}


def endless(node: ast.AST) -> bool:
    """`while True` / `while 1` / `while not False`, or `for` over an iterator that never
    runs out (`itertools.count()`, `cycle()`, `repeat(x)` without a count, `iter(int, 1)`),
    that no `break` or `return` of its own body ends (a worker that stops is not endless)."""
    if isinstance(node, ast.While):
        forever = _always_true(node.test) and not node.orelse
    elif isinstance(node, ast.For | ast.AsyncFor):
        forever = endless_iterator(node.iter)
    else:
        return False
    return forever and not _exits(node.body)


def _always_true(test: ast.expr) -> bool:
    if isinstance(test, ast.Constant):
        return bool(test.value)
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
        return isinstance(test.operand, ast.Constant) and not test.operand.value
    return False


def endless_iterator(node: ast.expr) -> bool:
    """An iterator expression that never runs out by itself."""
    if not isinstance(node, ast.Call):
        return False
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
    if name in ("count", "cycle"):
        return True
    if name == "repeat":  # repeat(x) forever, repeat(x, n) / repeat(x, times=n) n times
        return len(node.args) == 1 and not node.keywords
    if name == "iter" and len(node.args) == 2 and not node.keywords:
        maker, sentinel = node.args
        return (
            isinstance(maker, ast.Name)
            and maker.id in _CONSTANT_CALLS
            and isinstance(sentinel, ast.Constant)
            and sentinel.value != _CONSTANT_CALLS[maker.id]
        )
    return False


_NESTED = (ast.For, ast.AsyncFor, ast.While, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def _exits(body: list[ast.stmt]) -> bool:
    """A `break` or `return` that leaves this loop (nested loops and functions excluded)."""
    stack: list[ast.AST] = list(body)
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Break | ast.Return):
            return True
        if isinstance(node, _NESTED):
            continue
        stack.extend(
            child
            for child in ast.iter_child_nodes(node)
            if isinstance(child, ast.stmt | ast.excepthandler | ast.match_case)
        )
    return False
