"""Which loops never end by themselves: the `looped: true` condition of a call leaf."""

from __future__ import annotations

import ast
import re
from collections.abc import Callable

from ..policy.model import LOOP_COUNTED, LOOP_FOREVER, LOOP_REPEATED

# Text that every loop `endless` accepts contains (lower-cased): `while` then a literal or
# `not`, or a call of count/cycle/repeat/iter. Literal-prefixed: fast scans (the prefilter).
ENDLESS_TEXT = (
    re.compile(r"while[\s(\\]*(?:true|not\b|[0-9.]|[rbu]{0,2}['\"])"),
    re.compile(r"count[\s\\]*\("),
    re.compile(r"cycle[\s\\]*\("),
    re.compile(r"repeat[\s\\]*\("),
    re.compile(r"iter[\s\\]*\("),
    re.compile(r"range[\s\\]*\("),  # counted far (see _long_range)
    re.compile(r"while[\s(\\]*[\w.][\w.\s]*[\s)\\]*[<!>]"),  # (see _counts_far)
    re.compile(r"while[\s(\\]*[\w.]+\(\)[\s)\\]*<"),  # `while time.time() < end`
)
MANY = 1000  # a loop counted this far repeats like a flood, not like a retry or a batch
CLOCKS = frozenset({"time", "monotonic", "perf_counter", "now", "utcnow"})  # `time.time()`
FarName = Callable[[str], bool]
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


FOREVER = LOOP_FOREVER  # `while True`, `itertools.count()`: never ends by itself
COUNTED = LOOP_COUNTED  # counted far: `range(100000)`, `while sent < 5000`, typed in
REPEATED = LOOP_REPEATED  # counted to a number the code does not show: `range(count)`
FEW = 20  # a literal count below this is a retry or a batch, not a repetition


def endless(node: ast.AST, far_name: FarName | None = None) -> int:
    """FOREVER: `while True` / `while 1` / `while not False`, or `for` over an iterator that
    never runs out (`itertools.count()`, `cycle()`, `repeat(x)` without a count,
    `iter(int, 1)`); COUNTED: a loop counted to a number that is huge or typed in by the
    user (`for _ in range(100000)`, `while sent < 5000`, `range(int(input("how many? ")))`,
    also through a name ``far_name`` says is bound to such a number), or a loop that runs
    until a clock reaches a time (`while time.time() < end`); REPEATED: a loop counted to
    a number the code does not show (`range(count)`, `while sent < count`) or to a literal
    of at least FEW; 0 otherwise, for a loop that a `break` or `return` of its own body
    ends (a worker that stops is not endless), and for one that asks the user each round
    (`input()`: a menu or a prompt)."""
    if isinstance(node, ast.While):
        if node.orelse:
            return 0
        kind = FOREVER if _always_true(node.test) else _counts_far(node.test, far_name)
    elif isinstance(node, ast.For | ast.AsyncFor) and endless_iterator(node.iter):
        kind = FOREVER
    elif isinstance(node, ast.For | ast.AsyncFor):
        kind = _long_range(node.iter, far_name)
    else:
        return 0
    return kind if kind and not _exits(node.body) and not _asks_user(node.body) else 0


def _far(node: ast.expr, far_name: FarName | None = None) -> int:
    """COUNTED: a count of at least MANY, or one the user types in (`int(input())`);
    REPEATED: one of at least FEW, or a count the code does not show (not the length of
    a collection, whose items the loop then goes through); 0 otherwise."""
    if isinstance(node, ast.Constant):
        value = node.value if type(node.value) is int else 0
        return COUNTED if value >= MANY else REPEATED if value >= FEW else 0
    if isinstance(node, ast.Name):
        return COUNTED if far_name is not None and far_name(node.id) else REPEATED
    calls = [n.func for n in ast.walk(node) if isinstance(n, ast.Call)]
    if any(isinstance(f, ast.Name) and f.id == "input" for f in calls):
        return COUNTED
    if any(isinstance(f, ast.Name) and f.id == "len" for f in calls):
        return 0
    return REPEATED


def _long_range(node: ast.expr, far_name: FarName | None = None) -> int:
    """`range(N)` / `range(a, N[, step])` by how far N counts (see ``_far``)."""
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
        return 0
    if node.func.id != "range" or not 1 <= len(node.args) <= 3 or node.keywords:
        return 0
    if len(node.args) == 1:
        return _far(node.args[0], far_name)
    numbers = [a.value for a in node.args if isinstance(a, ast.Constant)]
    if len(numbers) == len(node.args) and all(type(n) is int for n in numbers):
        start, stop, step = (*numbers, 1)[:3]
        steps = len(range(start, stop, step)) if step else 0
        return COUNTED if steps >= MANY else REPEATED if steps >= FEW else 0
    return _far(node.args[1], far_name)


def _counts_far(test: ast.expr, far_name: FarName | None = None) -> int:
    """`while n < N` / `while n <= N` / `while n != N` by how far N counts (see ``_far``),
    `while time.time() < end` (COUNTED: a loop that runs for a while, whatever its body
    does), or a countdown `while left > 0` (REPEATED)."""
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1):
        return 0
    if isinstance(test.ops[0], ast.Gt | ast.GtE):  # a countdown: `while left > 0`
        bottom = test.comparators[0]
        counted_down = isinstance(bottom, ast.Constant) and bottom.value in (0, 1)
        return REPEATED if counted_down and isinstance(test.left, ast.Name | ast.Attribute) else 0
    if not isinstance(test.ops[0], ast.Lt | ast.LtE | ast.NotEq):
        return 0
    left = test.left
    if isinstance(left, ast.Call) and not left.args and isinstance(left.func, ast.Attribute):
        clock = left.func.attr in CLOCKS and isinstance(test.ops[0], ast.Lt | ast.LtE)
        return COUNTED if clock else 0
    if not isinstance(left, ast.Name | ast.Attribute):
        return 0
    return _far(test.comparators[0], far_name)


def far_names(code: str) -> FarName:
    """Whether a name is bound, somewhere in ``code``, to a count that is far (a literal of
    at least MANY, or an int of what the user types: `int(input(...))`, `int(ask_input(...))`);
    one search per name asked."""
    known: dict[str, bool] = {}

    def far(name: str) -> bool:
        if name not in known:
            pattern = rf"^[ \t]*{re.escape(name)}[ \t]*=[ \t]*(?:int\([^\n]*input|\d{{4,}}\b)"
            known[name] = re.search(pattern, code, re.MULTILINE) is not None
        return known[name]

    return far


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


def _asks_user(body: list[ast.stmt]) -> bool:
    """An `input()` in the loop (functions defined there excluded): each round waits for
    the user (a menu, a chat prompt), however long the loop runs."""
    stack: list[ast.AST] = list(body)
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            if node.func.id in ("input", "raw_input"):
                return True
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Lambda):
            continue
        stack.extend(ast.iter_child_nodes(node))
    return False


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
