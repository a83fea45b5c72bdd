"""Summaries of user-defined functions that hand their parameters to a sink.

`def sh(*a): os.system(" ".join(a))` is summarised as "parameter a reaches os.system". The
session keeps the summary, so `sh("xmrig", "-o", pool)` in this or a later cell is judged
as the command it builds: the scanner folds the function's body again with the call's
arguments bound to its parameters (see PythonScanner._expand).

Summaries are found on Python's own ast (built in C for the cell anyway); the function is
parsed with libcst only when a call of it is expanded.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field

import libcst as cst

from .facts import UNKNOWN, Value
from .markers import DOORS  # words of a call's dotted name that make it a sink

# subprocess functions imported by name (`from subprocess import run`): sinks only then.
SUBPROCESS_VERBS = frozenset({"run", "call", "check_call", "check_output", "popen"})
MAX_PASSES = 4  # rounds over a cell's functions (wrappers of wrappers defined above them)
_IPY_REF = re.compile(r"\{([A-Za-z_]\w*)|\$\{?([A-Za-z_]\w*)")  # `!cmd {x}` / `!cmd $x`


@dataclass
class Summary:
    """Which parameters of a function reach which sinks, and the function's source."""

    name: str
    params: tuple[str, ...]
    reaches: dict[str, frozenset[str]]  # sink (dotted name as written) -> parameters
    source: str  # the `def` statement, dedented
    _parsed: cst.FunctionDef | None = field(default=None, repr=False)
    _failed: bool = field(default=False, repr=False)

    def function(self) -> cst.FunctionDef | None:
        """The function as libcst parses it (once); None when it cannot be parsed."""
        if self._parsed is None and not self._failed:
            try:
                module = cst.parse_module(self.source)
            except Exception:
                self._failed = True
                return None
            found = [s for s in module.body if isinstance(s, cst.FunctionDef)]
            if not found:
                self._failed = True
                return None
            self._parsed = found[0]
        return self._parsed


def may_define_wrapper(
    words: Collection[str], known: Iterable[str], imports: Iterable[str]
) -> bool:
    """Whether a cell's words (lower-case) can hold a function worth a summary: a `def`
    with a sink word, a known wrapper's name, or a subprocess verb when subprocess is in."""
    if "def" not in words:
        return False
    if not DOORS.isdisjoint(words) or any(name.lower() in words for name in known):
        return True
    imported = "subprocess" in words or any(m.split(".")[0] == "subprocess" for m in imports)
    return imported and not SUBPROCESS_VERBS.isdisjoint(words)


class Summarizer:
    """Summaries of the top-level functions of one cell (None: a function that reaches no
    sink, which replaces any summary of that name an earlier cell left)."""

    def __init__(self, known: Collection[str], imports: Iterable[str]) -> None:
        self.known = set(known)
        self.subprocess = any(m.split(".")[0] == "subprocess" for m in imports)

    def __call__(self, code: str, tree: ast.Module) -> dict[str, Summary | None]:
        lines = code.split("\n")
        self.subprocess = self.subprocess or "subprocess" in code
        defs = [n for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
        for node in defs:  # this cell's definitions replace earlier ones
            self.known.discard(node.name)
        found: dict[str, Summary | None] = {}
        self._calls: dict[int, list[tuple[ast.Call, list[str]]]] = {}  # per def, every pass
        self._depends: dict[int, dict[str, set[str]]] = {}
        for _ in range(MAX_PASSES):  # `f` calls `g` defined below it: a second pass
            before = sum(s is not None for s in found.values())
            for node in defs:
                summary = self._summary(node, lines)
                found[node.name] = summary
                if summary is not None:
                    self.known.add(node.name)  # a wrapper of this wrapper
            if sum(s is not None for s in found.values()) == before:
                break
        return found

    def _summary(
        self, node: ast.FunctionDef | ast.AsyncFunctionDef, lines: list[str]
    ) -> Summary | None:
        params = _parameters(node.args)
        if not params:
            return None
        calls = self._calls.get(id(node))
        if calls is None:
            found = (n for n in ast.walk(node) if isinstance(n, ast.Call))
            calls = self._calls[id(node)] = [
                (c, parts) for c in found if (parts := _dotted(c.func))
            ]
        reaches: dict[str, frozenset[str]] = {}
        for call, parts in calls:
            sink = self._sink_name(parts)
            if sink is None:
                continue
            depends = self._depends.get(id(node))
            if depends is None:  # only a function that calls a sink needs them
                depends = self._depends[id(node)] = _dependencies(node)
            used = _closure(_names_in(call.args, call.keywords), depends) & set(params)
            if used:
                reaches[sink] = reaches.get(sink, frozenset()) | used
        if not reaches:
            return None
        start = node.decorator_list[0].lineno if node.decorator_list else node.lineno
        end = node.end_lineno or node.lineno
        text = "\n".join(lines[start - 1 : end])
        indent = len(text) - len(text.lstrip())
        source = "\n".join(line[indent:] for line in text.split("\n")) + "\n"
        return Summary(node.name, params, reaches, source)

    def _sink_name(self, parts: list[str]) -> str | None:
        """The sink a call of ``parts`` (`os.system` -> [os, system]) reaches, or None."""
        name = ".".join(parts)
        if len(parts) == 1 and parts[0] in self.known:
            return name
        lowered = {p.lower() for p in parts}
        if not DOORS.isdisjoint(lowered):
            return name
        if self.subprocess and parts[-1].lower() in SUBPROCESS_VERBS:
            return name  # `run(...)` / `sp.run(...)` where subprocess is imported
        return None


def _parameters(args: ast.arguments) -> tuple[str, ...]:
    names = [a.arg for a in (*args.posonlyargs, *args.args, *args.kwonlyargs)]
    names += [a.arg for a in (args.vararg, args.kwarg) if a is not None]
    return tuple(names)


def _dotted(node: ast.AST) -> list[str]:
    """`os.system` -> [os, system]; `get_ipython().system` -> [get_ipython, system]."""
    parts: list[str] = []
    while True:
        if isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        elif isinstance(node, ast.Call):
            node = node.func
        elif isinstance(node, ast.Name):
            parts.append(node.id)
            return parts[::-1]
        else:
            return []


def _names_in(*groups: Iterable[ast.AST]) -> set[str]:
    """Names an expression reads, and the `{name}` / `$name` IPython expands in a string."""
    names: set[str] = set()
    for group in groups:
        for root in group:
            for node in ast.walk(root):
                if isinstance(node, ast.Name):
                    names.add(node.id)
                elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                    names.update(a or b for a, b in _IPY_REF.findall(node.value))
    return names


def _dependencies(function: ast.AST) -> dict[str, set[str]]:
    """Local name -> names its assignments read (`cmd = " ".join(a)`: cmd -> {a})."""
    depends: dict[str, set[str]] = {}

    def bind(target: ast.AST, value: ast.AST | None) -> None:
        read = _names_in([value]) if value is not None else set()
        for node in ast.walk(target):
            if isinstance(node, ast.Name):
                depends.setdefault(node.id, set()).update(read)

    for node in ast.walk(function):
        if isinstance(node, ast.Assign):
            for target in node.targets:
                bind(target, node.value)
        elif isinstance(node, ast.AnnAssign | ast.AugAssign | ast.NamedExpr):
            bind(node.target, node.value)
        elif isinstance(node, ast.For | ast.AsyncFor | ast.comprehension):
            bind(node.target, node.iter)
        elif isinstance(node, ast.withitem) and node.optional_vars is not None:
            bind(node.optional_vars, node.context_expr)
    return depends


def _closure(names: set[str], depends: dict[str, set[str]]) -> set[str]:
    seen: set[str] = set()
    stack = list(names)
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen.add(name)
        stack.extend(depends.get(name, ()))
    return seen


def bind_arguments(
    params: cst.Parameters,
    args: tuple[Value, ...],
    kwargs: dict[str, Value],
    fold: Callable[[cst.BaseExpression], Value],
) -> list[tuple[str, Value]]:
    """Each parameter with the value a call gives it (its default, or UNKNOWN)."""
    bound: list[tuple[str, Value]] = []
    positional = [*params.posonly_params, *params.params]
    for i, param in enumerate(positional):
        name = param.name.value
        if i < len(args):
            bound.append((name, args[i]))
        else:
            bound.append((name, _given(name, param, kwargs, fold)))
    if isinstance(params.star_arg, cst.Param):
        bound.append((params.star_arg.name.value, tuple(args[len(positional) :])))
    for param in params.kwonly_params:
        bound.append((param.name.value, _given(param.name.value, param, kwargs, fold)))
    if params.star_kwarg is not None:
        bound.append((params.star_kwarg.name.value, UNKNOWN))
    return bound


def _given(
    name: str,
    param: cst.Param,
    kwargs: dict[str, Value],
    fold: Callable[[cst.BaseExpression], Value],
) -> Value:
    if name in kwargs:
        return kwargs[name]
    return fold(param.default) if param.default is not None else UNKNOWN


def body_module(function: cst.FunctionDef) -> cst.Module:
    """A function's body as a module of its own (`def f(c): os.system(c)` too)."""
    body = function.body
    if isinstance(body, cst.IndentedBlock):
        return cst.Module(body=body.body)
    return cst.Module(body=[cst.SimpleStatementLine(body=body.body)])
