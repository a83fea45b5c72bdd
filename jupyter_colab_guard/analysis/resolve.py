"""Lazy name resolution: find where a name was bound, parse only that statement."""

from __future__ import annotations

import ast
import bisect
import re
import warnings

import libcst as cst

from .facts import FactSet
from .fold import Binding, Lookup
from .locate import innermost, line_of, line_starts, snippet_for
from .pyscan import Memory, PythonScanner
from .transform import transform

_BIND = re.compile(
    r"^[ \t]*(?:(?P<targets>[A-Za-z_][\w \t,]*?)[ \t]*(?::[^=\n]*)?[-+*/%|&^]?=(?!=)"
    r"|(?:from[ \t]+[\w.]+[ \t]+)?import[ \t]+(?P<imports>[^\n#]+)"
    r"|for[ \t]+(?P<loop>[\w, \t]+?)[ \t]+in\b)|\bas[ \t]+(?P<as>[A-Za-z_]\w*)",
    re.MULTILINE,
)
PARSE_BUDGET = 32  # statements one cell may parse to resolve names; past it, names stay unknown
# A binding worth parsing: it imports, holds a literal, touches a marked construct, or makes
# an instance of a library class (`s = socket.socket(...)`: later `s.sendto` is a rule's call).
_WORTH = re.compile(
    r"import|['\"]|chr|getattr|__|system|popen|subprocess|os\.|join|decode|hex|=\s*-?\d"
    r"|=\s*[A-Za-z_]\w*(?:\.\w+)+\("
)


class CellIndex:
    """One cell's transformed code, able to answer 'what is NAME bound to before line L'."""

    def __init__(
        self, code: str, tree: ast.Module | None = None, outer: Lookup | None = None
    ) -> None:
        self.code = code
        self._tree = tree
        self.outer = outer  # lookup in earlier cells
        self._lines = code.splitlines()
        self._cache: dict[tuple[str, int], Binding | None] = {}
        self._statements: dict[int, PythonScanner | None] = {}  # first line -> its scope
        self._budget = PARSE_BUDGET
        self._index: dict[str, list[int]] | None = None

    @classmethod
    def from_source(cls, source: str, outer: Lookup | None = None) -> CellIndex:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                code = transform(source)[0]
            except Exception:
                code = source
        return cls(code, None, outer)

    @property
    def tree(self) -> ast.Module | None:
        if self._tree is None:
            try:
                self._tree = ast.parse(self.code)
            except (SyntaxError, ValueError, RecursionError, MemoryError):
                self._tree = ast.Module(body=[], type_ignores=[])
        return self._tree

    def lookup_before(self, line: int) -> Lookup:
        """A lookup for code at ``line`` (1-based; a huge number means 'after the cell')."""
        return lambda name: self.resolve(name, line)

    def resolve(self, name: str, line: int) -> Binding | None:
        key = (name, line)
        if key not in self._cache:
            self._cache[key] = None  # guards against cycles
            found = self._resolve_here(name, line)
            if found is None and self.outer is not None:
                found = self.outer(name)
            self._cache[key] = found
        return self._cache[key]

    def resolve_local(self, name: str) -> Binding | None:
        """The binding at the end of this cell, without asking earlier cells."""
        key = (name, -1)
        if key not in self._cache:
            self._cache[key] = None
            self._cache[key] = self._resolve_here(name, 1 << 30)
        return self._cache[key]

    def _binding_lines(self) -> dict[str, list[int]]:
        """name -> lines that may bind it, from one regex pass over the cell."""
        if self._index is None:
            index: dict[str, list[int]] = {}
            starts = line_starts(self.code)
            for m in _BIND.finditer(self.code):
                names: list[str] = []
                if m.group("targets"):
                    names = [t.strip() for t in m.group("targets").split(",")]
                elif m.group("imports"):
                    for part in m.group("imports").strip("() \t").split(","):
                        bits = part.split()
                        if bits:
                            names.append(bits[-1] if len(bits) == 3 else bits[0].split(".")[0])
                elif m.group("loop"):
                    names = [t.strip() for t in m.group("loop").split(",")]
                elif m.group("as"):
                    names = [m.group("as")]
                line = line_of(starts, m.start())
                for name in names:
                    if name.isidentifier():
                        index.setdefault(name, []).append(line)
            self._index = index
        return self._index

    def _resolve_here(self, name: str, line: int) -> Binding | None:
        lines = self._binding_lines().get(name)
        if not lines:
            return None
        tree = self.tree
        for number in reversed(lines[: bisect.bisect_left(lines, line)]):
            node = innermost(tree.body, number) if tree is not None else None
            if node is None:
                continue
            scope = self._scope_of(node)
            found = scope.binding(name) if scope is not None else None
            if found is not None:
                return found
        return None

    def _scope_of(self, node: ast.AST) -> PythonScanner | None:
        """What one statement binds (parsed once per cell, within the budget)."""
        snippet = snippet_for(node, self._lines)
        if snippet.first_line in self._statements:
            return self._statements[snippet.first_line]
        self._statements[snippet.first_line] = None
        if self._budget <= 0 or not _WORTH.search(snippet.text):
            return None
        self._budget -= 1
        try:
            module = cst.parse_module(snippet.text)
        except Exception:
            return None
        scanner = PythonScanner(FactSet(), Memory(), self.lookup_before(snippet.first_line))
        scanner.bindings_only = True
        scanner.visit_snippet(module)
        self._statements[snippet.first_line] = scanner
        return scanner

