"""Which statements of a cell deserve deep analysis, cut out as small libcst-parsable snippets.

Python's own parser (C speed) only finds statement boundaries here; the analysis itself runs
on libcst trees of the snippets. A 2000-line cell with one suspicious line costs one
ast.parse plus a one-line libcst parse, not a 2000-line libcst parse.
"""

from __future__ import annotations

import ast
import bisect
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import accumulate

from ..policy.keywords import bare
from .guesses import advanced_indexes, item_arguments, loop_items, names_from
from .loops import (
    ENDLESS_TEXT,  # noqa: F401 (kept importable from here)
    FOREVER,
    FarName,
    far_names,
)
from .loops import endless as _endless

_BODY_FIELDS = ("body", "handlers", "orelse", "finalbody")  # a match is kept whole


@dataclass(frozen=True, slots=True)
class Snippet:
    first_line: int  # 1-based line of the transformed cell where the snippet starts
    text: str  # dedented, parsable on its own
    indent: int = 0  # columns removed by the dedent
    looped: int = 0  # inside an endless loop (loops.FOREVER or COUNTED)
    node: ast.AST | None = field(default=None, compare=False)  # the statement (Python's ast)
    items: frozenset[str] = frozenset()  # names holding an enclosing `for` loop's item


def line_starts(code: str) -> list[int]:
    """Offsets where each line begins (lines end at "\\n", as ast counts them); C-speed loop."""
    starts = list(accumulate(map((1).__add__, map(len, code.split("\n"))), initial=0))
    starts.pop()  # the offset past the end
    return starts


def line_of(starts: list[int], offset: int) -> int:
    return bisect.bisect_right(starts, offset)


def keyword_lines(
    code: str, lowered: str, keywords: Iterable[str], starts: list[int] | None = None
) -> set[int]:
    """1-based lines of ``code`` where any of the keywords occurs."""
    found = lines_by_keyword(code, lowered, keywords, starts).values()
    return set().union(*found)


def lines_by_keyword(
    code: str, lowered: str, keywords: Iterable[str], starts: list[int] | None = None
) -> dict[str, set[int]]:
    """For each keyword that occurs, the 1-based lines of ``code`` where it does. Each
    keyword is found with ``str.find`` (C speed, no pattern to compile per set of
    keywords), at most once a line: after a hit the search goes on from the next line."""
    chosen = {k for k in keywords if bare(k)}
    if not chosen:
        return {}
    starts = starts if starts is not None else line_starts(code)
    size, count = len(lowered), len(starts)
    found: dict[str, set[int]] = {}
    for keyword in chosen:
        plain = bare(keyword)
        whole = plain != keyword  # `\bxmrig\b`: not inside a longer word
        lines: set[int] = set()
        pos = lowered.find(plain)
        while pos != -1:
            end = pos + len(plain)
            if whole and (
                (pos and _WORDCHAR(lowered[pos - 1])) or (end < size and _WORDCHAR(lowered[end]))
            ):
                pos = lowered.find(plain, pos + 1)
                continue
            line = line_of(starts, pos)
            lines.add(line)
            if line >= count:
                break
            pos = lowered.find(plain, starts[line])
        if lines:
            found[keyword] = lines
    return found


def _WORDCHAR(char: str) -> bool:
    return char.isalnum() or char == "_"


def innermost(statements: list[ast.stmt], line: int) -> ast.AST | None:
    return _innermost(statements, line, None, None)[0]


ParamItems = Callable[[ast.FunctionDef | ast.AsyncFunctionDef], frozenset[str]]
CallerLoops = Callable[[ast.FunctionDef | ast.AsyncFunctionDef], int]


def _innermost(
    statements: list[ast.stmt],
    line: int,
    endless: dict[int, int] | None,
    loops: dict[int, frozenset[str]] | None,
    params: ParamItems | None = None,
    far_name: FarName | None = None,
    callers: CallerLoops | None = None,
) -> tuple[ast.AST | None, int, frozenset[str]]:
    """The innermost statement (or except handler) whose lines contain ``line``, whether it
    sits in an endless loop (the loop's own header counts), and the names that hold an
    enclosing `for` loop's item there. ``endless`` and ``loops``: what is known of the
    tree's loops (id -> endless, id -> item names), kept across calls on one tree; None:
    not looked at. ``callers``: the loop a function's callers call it from (a function
    called from an endless loop runs in one). Each level is a binary search over a body
    list in source order: O(depth * log n)."""
    found: ast.AST | None = None
    looped = 0
    items: frozenset[str] = frozenset()
    bodies: list[list[ast.AST]] = [statements]  # type: ignore[list-item]
    while bodies:
        node = None
        for body in bodies:
            index = bisect.bisect_right(body, line, key=_lineno) - 1
            if index >= 0 and _lineno(body[index]) <= line <= _end(body[index]):
                node = body[index]
                break
        if node is None:
            break
        found = node
        if endless is not None and looped < FOREVER:  # a loop's body is walked once per tree
            known = endless.get(id(node))
            if known is None:
                known = endless[id(node)] = _endless(node, far_name)
            looped = max(looped, known)
        if loops is not None and isinstance(node, ast.For | ast.AsyncFor):
            if node.body and node.body[0].lineno <= line:  # in the body, where items are bound
                names = loops.get(id(node))
                if names is None:
                    names = loops[id(node)] = loop_items(node)
                items |= names
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            if node.body and node.body[0].lineno <= line:
                if params is not None:
                    items |= params(node)
                if callers is not None and looped < FOREVER:
                    looped = max(looped, callers(node))
        first = getattr(node, "body", None)
        if first and isinstance(first, list) and first[0].lineno == node.lineno == line:
            break  # `try: import a; b()`: the body shares the header's line, kept whole
        bodies = [b for b in (getattr(node, f, None) for f in _BODY_FIELDS) if b]
    return found, looped, items


def _lineno(node: ast.AST) -> int:
    """A statement's first line: its first decorator's, for a decorated def or class."""
    decorators = getattr(node, "decorator_list", None)
    if decorators:
        return min(d.lineno for d in decorators)  # type: ignore[no-any-return]
    return node.lineno  # type: ignore[attr-defined, no-any-return]


def _end(node: ast.AST) -> int:
    return node.end_lineno or node.lineno  # type: ignore[attr-defined, no-any-return]


def _dedent(lines: list[str], indent: int) -> str:
    out: list[str] = []
    for text in lines:
        prefix = text[:indent]
        out.append(text[indent:] if not prefix.strip() else text)
    return "\n".join(out) + "\n"


def _prefix(node: ast.AST, first: str) -> str:
    """Lines that let a clause which cannot stand alone (except/elif/case) parse."""
    if isinstance(node, ast.ExceptHandler):
        return "try:\n    pass\n"
    if isinstance(node, ast.If) and first.lstrip().startswith("elif"):
        return "if False:\n    pass\n"
    # a statement on the line of an `else:`/`finally:` clause (`else: z = 1`)
    if re.match(r"\s*else\s*:", first):
        return "if False:\n    pass\n"
    if re.match(r"\s*finally\s*:", first):
        return "try:\n    pass\n"
    return ""


def snippet_for(
    node: ast.AST, lines: list[str], looped: int = 0, items: frozenset[str] = frozenset()
) -> Snippet:
    """Source of a statement; for a compound statement only its header, with `pass`."""
    start = _lineno(node)
    end = node.end_lineno or start  # type: ignore[attr-defined]
    first = lines[start - 1] if start - 1 < len(lines) else ""
    indent = len(first) - len(first.lstrip())  # `a(); b()` on one line: take the whole line
    prefix = _prefix(node, lines[start - 1])
    body = getattr(node, "body", None)
    header_only = bool(isinstance(body, list) and body and _lineno(body[0]) > start)
    if header_only and isinstance(node, ast.Try | ast.TryStar):
        text = "pass\n"  # a bare `try:` holds no code
    elif header_only:
        text = _dedent(lines[start - 1 : _lineno(body[0]) - 1], indent) + "    pass\n"  # type: ignore[index]
    else:
        text = _dedent(lines[start - 1 : end], indent)
    return Snippet(start - prefix.count("\n"), prefix + text, indent, looped, node, items)


def _bare_string(node: ast.AST) -> bool:
    """A docstring or other string statement: it does nothing, and the deep analysis takes
    no fact from it (its words only made its lines look interesting)."""
    return (
        isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str | bytes)
    )


_HEADER_ONLY = (ast.While, ast.If, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef, ast.Try)
_SIMPLE_INERT = (ast.Pass, ast.Break, ast.Continue, ast.Global, ast.Nonlocal)
_SIMPLE_EXPRS = (ast.Return, ast.Raise, ast.Assert, ast.Delete, ast.Expr)
_TEXT_OPS = (ast.Add, ast.Mod, ast.Mult)


def _inert(node: ast.AST) -> bool:
    """A statement whose visit can yield no fact: no call, string, text operation, import,
    binding or decorator where the snippet reads it (a compound statement's header: its
    body's lines are snippets of their own). Such a line is not parsed again."""
    if isinstance(node, _SIMPLE_INERT):
        return True
    if isinstance(node, _HEADER_ONLY):
        body = node.body  # type: ignore[attr-defined]
        if getattr(node, "decorator_list", None) or (body and body[0].lineno == node.lineno):
            return False  # (`if x: os.system(y)` on one line is kept whole)
        if isinstance(node, ast.Try):
            return True
        if isinstance(node, ast.While | ast.If):
            parts: list[ast.AST] = [node.test]
        elif isinstance(node, ast.ClassDef):
            parts = [*node.bases, *node.keywords]
        else:
            parts = [node.args] + ([node.returns] if node.returns else [])  # type: ignore[attr-defined]
        return not any(_active(part) for part in parts)
    if isinstance(node, _SIMPLE_EXPRS):
        return not _active(node)
    return False


def _alone(node: ast.AST, lines: list[str]) -> bool:
    """No other statement shares the statement's lines (`f(x); break`: the snippet is the
    whole line, and the line's last statement stands for it)."""
    first = lines[node.lineno - 1]  # type: ignore[attr-defined]
    if first.encode()[: node.col_offset].strip():  # type: ignore[attr-defined]
        return False  # (ast's columns count UTF-8 bytes)
    if isinstance(node, _HEADER_ONLY):
        return True  # (its header ends at its colon; its body starts on a later line)
    last = lines[(node.end_lineno or node.lineno) - 1]  # type: ignore[attr-defined]
    rest = last.encode()[node.end_col_offset :].decode(errors="replace").strip()  # type: ignore[attr-defined]
    return not rest or rest.startswith("#")


def _active(node: ast.AST) -> bool:
    for sub in ast.walk(node):
        if isinstance(sub, ast.Call | ast.JoinedStr | ast.NamedExpr | ast.Lambda):
            return True
        if isinstance(sub, ast.Constant) and isinstance(sub.value, str | bytes):
            return True
        if isinstance(sub, ast.BinOp) and isinstance(sub.op, _TEXT_OPS):
            return True
    return False


class _CallSites:
    """Finds where a cell's text calls a function, by its name (each search is one
    ``str.find`` run; the line starts are computed once, when first needed)."""

    def __init__(self, code: str) -> None:
        self.code = code
        self.starts: list[int] | None = None

    def lines(self, needle: str, after_dot: bool = True) -> Iterator[int]:
        """The lines where ``needle`` (`name(`) starts a name: not inside a longer name,
        and after a `.` only when ``after_dot`` (a method of any object)."""
        code = self.code
        pos = code.find(needle)
        while pos != -1:
            before = code[pos - 1] if pos else " "
            if not (before.isalnum() or before == "_" or (before == "." and not after_dot)):
                if self.starts is None:
                    self.starts = line_starts(code)
                yield line_of(self.starts, pos)
            pos = code.find(needle, pos + 1)


class _ParamItems(_CallSites):
    """A function's parameters that some call in the cell hands a loop's item (`for pw in
    words: try_login(user, pw)` makes `password` of `def try_login(user, password)` an
    item in its body), with the names assigned from them there. The calls are found by
    the function's name in the text; each function is looked at once."""

    def __init__(self, code: str, tree: ast.Module, loops: dict[int, frozenset[str]]) -> None:
        super().__init__(code)
        self.tree, self.loops = tree, loops
        self.known: dict[int, frozenset[str]] = {}

    def __call__(self, function: ast.FunctionDef | ast.AsyncFunctionDef) -> frozenset[str]:
        key = id(function)
        if key in self.known:
            return self.known[key]
        self.known[key] = frozenset()  # (a recursive function: no items from itself)
        spec = function.args
        taken = [a.arg for a in (*spec.posonlyargs, *spec.args, *spec.kwonlyargs)]
        name = function.name
        if name.startswith("__") or not [a for a in taken if a not in ("self", "cls")]:
            return frozenset()  # (nothing to hand an item to, or called by Python itself)
        found: set[str] = set()
        for line in self.lines(name + "("):
            # (the call site's own loops; an item that reaches it through a further
            # function is not followed: one level, one pass per function)
            node, _, items = _innermost(self.tree.body, line, None, self.loops)
            if items and node is not None:
                found |= item_arguments(node, name, function, items)
        result = names_from(found, function.body) if found else frozenset()
        self.known[key] = result
        return result


class _CallerLoops(_CallSites):
    """The loop a function is called from: the strongest loop kind (loops.FOREVER, ...)
    around its calls in the cell, through the callers' own callers. A call is the
    function's name called (`attack(url)`; a method only as `self.attack()`), or handed to
    a thread (`target=attack`); each function is looked at once, at its first SITES calls,
    through at most DEPTH callers (a menu calls an attack that starts the flooding
    threads)."""

    SITES = 12
    DEPTH = 3

    def __init__(self, code: str, tree: ast.Module, endless: dict[int, int], far: FarName) -> None:
        super().__init__(code)
        self.tree, self.endless, self.far = tree, endless, far
        self.known: dict[int, int] = {}
        self.depth = 0

    def __call__(self, function: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
        key = id(function)
        if key in self.known:
            return self.known[key]
        name = function.name
        if name.startswith("__") or self.depth >= self.DEPTH:
            return 0  # (called by Python itself; or far up a chain of callers)
        self.known[key] = 0  # (a recursive function: no loop from itself)
        self.depth += 1
        try:
            strongest = self._sites(function, name)
        finally:
            self.depth -= 1
        self.known[key] = strongest
        return strongest

    def _sites(self, function: ast.FunctionDef | ast.AsyncFunctionDef, name: str) -> int:
        spec = function.args
        first = [a.arg for a in (*spec.posonlyargs, *spec.args)][:1]
        prefix = "self." if first in (["self"], ["cls"]) else ""
        own = range(_lineno(function), (function.end_lineno or 0) + 1)
        strongest, sites = 0, 0
        for needle in (f"{prefix}{name}(", f"target={prefix}{name}"):
            for line in self.lines(needle, after_dot=False):
                if strongest >= FOREVER or sites >= self.SITES:
                    return strongest
                if line not in own:
                    sites += 1
                    found = _innermost(
                        self.tree.body, line, self.endless, None, None, self.far, self
                    )
                    strongest = max(strongest, found[1])
        return strongest


class Cutter:
    """Cuts one tree's statements into snippets. What it learns of the tree (its loops,
    the item parameters of its functions, its moved-on indexes) is kept for every cut of
    the same cell: the lines with a keyword, those with a marker, those a name leads to."""

    def __init__(self, code: str, tree: ast.Module) -> None:
        self.code, self.tree = code, tree
        self.lines = code.split("\n")  # Python's lines (the code has Python's line ends)
        self.endless: dict[int, int] = {}
        self.loops: dict[int, frozenset[str]] = {}
        self.params = _ParamItems(code, tree, self.loops)
        self.far_name = far_names(code)
        self.callers = _CallerLoops(code, tree, self.endless, self.far_name)
        self._rotating: frozenset[str] | None = None
        self._snippets: dict[int, Snippet | None] = {}  # line -> its statement's snippet

    def cut(self, wanted: set[int]) -> list[Snippet]:
        if not wanted:
            return []
        if self._rotating is None:
            self._rotating = advanced_indexes(self.code)
        seen: set[int] = set()
        out: list[Snippet] = []
        for line in sorted(wanted):
            if line in self._snippets:
                snip = self._snippets[line]
            else:
                snip = self._snippets[line] = self._snippet(line)
            if snip is not None and snip.first_line not in seen:
                seen.add(snip.first_line)
                out.append(snip)
        out.sort(key=lambda s: s.first_line)
        return out

    def _snippet(self, line: int) -> Snippet | None:
        """The snippet of the innermost statement that holds ``line``; None when there is
        nothing to analyse (no statement, a bare string, an inert statement alone)."""
        node, looped, items = _innermost(
            self.tree.body, line, self.endless, self.loops, self.params, self.far_name, self.callers
        )
        if node is None or _bare_string(node):
            return None
        if _inert(node) and _alone(node, self.lines):
            return None
        assert self._rotating is not None
        return snippet_for(node, self.lines, looped, items | self._rotating)


def snippets(code: str, tree: ast.Module, wanted: set[int]) -> list[Snippet]:
    return Cutter(code, tree).cut(wanted)
