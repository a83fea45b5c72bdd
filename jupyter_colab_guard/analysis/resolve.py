"""Lazy name resolution: find where a name was bound, parse only that statement."""

from __future__ import annotations

import ast
import bisect
import re
import warnings

import libcst as cst

from .budget import tick
from .facts import FactSet
from .fold import Binding, Lookup
from .locate import innermost, line_of, line_starts, snippet_for
from .pyscan import MAX_PARSE, Memory, PythonScanner
from .transform import python_text, transform

_BIND = re.compile(
    r"^[ \t]*(?:(?P<targets>[A-Za-z_][\w \t,.]*?)[ \t]*(?::[^=\n]*)?[-+*/%|&^]?=(?!=)"
    r"|(?:from[ \t]+[\w.]+[ \t]+)?import[ \t]+(?P<imports>[^\n#]+)"
    r"|for[ \t]+(?P<loop>[\w, \t]+?)[ \t]+in\b)|\bas[ \t]+(?P<as>[A-Za-z_]\w*)",
    re.MULTILINE,
)
WORDS_AFTER = 8  # resolve_local questions a cell answers the plain way before reading its words
_WORD_RUN = re.compile(r"\w+")
MAX_MENTIONS = 100  # a name found more often: index every binding of the cell at once
PARSE_BUDGET = 32  # statements one cell may parse to resolve names; past it, names stay unknown
# A binding worth parsing: it imports, holds a literal, touches a marked construct, or makes
# an instance of a library class (`s = socket.socket(...)`, `with requests.Session() as s`:
# later `s.sendto` / `s.get` is a rule's call).
_WORTH = re.compile(
    r"import|['\"]|chr|getattr|__|system|popen|subprocess|os\.|join|decode|hex|=\s*-?\d"
    r"|[=\[{:,(]\s*[A-Za-z_]\w*(?:\.\w+)+\(|=\s*[A-Za-z_][\w.]*\[|\bwith\b|^\s*for\b"
)


class CellIndex:
    """One cell's transformed code, able to answer 'what is NAME bound to before line L'."""

    def __init__(
        self, code: str, tree: ast.Module | None = None, outer: Lookup | None = None
    ) -> None:
        self.code = code
        self._tree = tree
        self.outer = outer  # lookup in earlier cells
        self._lines = code.split("\n")
        self._cache: dict[tuple[str, int], Binding | None] = {}
        self._statements: dict[int, PythonScanner | None] = {}  # first line -> its scope
        self._modules: dict[str, cst.Module | None] = {}  # statement text -> its libcst tree
        self._budget = PARSE_BUDGET
        self._index: dict[str, list[int]] | None = None  # every name, when built
        self._by_name: dict[str, list[int]] = {}
        self._rows: list[str] | None = None
        self._starts = line_starts(code)
        self._asked = 0  # resolve_local questions
        self._word_set: dict[str, None] | None = None

    @classmethod
    def from_source(cls, source: str, outer: Lookup | None = None) -> CellIndex:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                code = transform(source)[0]
            except Exception:
                code = python_text(source)
        return cls(code, None, outer)

    @property
    def tree(self) -> ast.Module | None:
        if self._tree is None:
            try:
                self._tree = ast.parse(self.code)
            except (SyntaxError, ValueError, RecursionError, MemoryError):
                self._tree = ast.Module(body=[], type_ignores=[])
        return self._tree

    def release(self) -> None:
        """Drop what the index learnt: its answers hold lookups that refer back to it (a
        cycle only the garbage collector frees, with every tree it reaches, at a cost
        paid in the user's next cell). Its code stays; later questions start afresh."""
        self._cache.clear()
        self._statements.clear()
        self._modules.clear()

    def parse(self, text: str) -> cst.Module | None:
        """libcst's tree of one statement's text, parsed once per cell and shared by the deep
        visit and name resolution (None: libcst cannot parse it)."""
        if text in self._modules:
            return self._modules[text]
        try:
            module: cst.Module | None = cst.parse_module(text)
        except Exception:
            module = None
        self._modules[text] = module
        return module

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
        """The binding at the end of this cell, without asking earlier cells.

        A session asks every earlier cell for each name a new cell looks up (a notebook's
        hundredth cell: thousands of questions); after a few, the cell answers from the set
        of its words: a name it binds is always one of them (see ``_words``)."""
        key = (name, -1)
        if key not in self._cache:
            self._cache[key] = None
            self._asked += 1
            if self._asked > WORDS_AFTER and name not in self._words():
                return None
            self._cache[key] = self._resolve_here(name, 1 << 30)
        return self._cache[key]

    def _words(self) -> dict[str, None]:
        """The maximal runs of word characters of the code. Every name _binding_lines can
        return lines for is one: a mention (_mentions) stands between characters that are
        not word characters, and each name _BIND captures (an assignment target, an
        imported name, a loop target, an `as` name) ends where the match's text has a
        non-word character (or a line end) on either side."""
        if self._word_set is None:  # a dict of str keys: untracked by the garbage collector,
            self._word_set = dict.fromkeys(_WORD_RUN.findall(self.code))  # which a set is not
        return self._word_set

    def _binding_lines(self, name: str) -> list[int]:
        """Lines that may bind ``name``. Few names are ever asked for, so each is looked up
        on its own (lines that mention it, confirmed with _BIND); a name on very many lines
        falls back to one regex pass over the whole cell."""
        found = self._by_name.get(name)
        if found is not None:
            return found
        if self._index is not None:
            return self._index.get(name, [])
        lines = (
            _mentions(self.code, name, self._starts)
            if self.code.count(name) <= MAX_MENTIONS  # C-speed count of raw occurrences
            else None
        )
        if lines is None:
            self._index = _all_bindings(self.code, self._starts)
            return self._index.get(name, [])
        if self._rows is None:  # the lines _BIND's `^` sees, as line_starts counts them
            self._rows = self.code.split("\n")
        rows = self._rows
        found = [n for n in lines if name in _bound_names(rows[n - 1])]
        self._by_name[name] = found
        return found

    def _resolve_here(self, name: str, line: int) -> Binding | None:
        lines = self._binding_lines(name)
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
        if self._budget <= 0 or len(snippet.text) > MAX_PARSE or not _WORTH.search(snippet.text):
            return None  # (a statement too large for libcst in time binds nothing we know)
        tick()
        self._budget -= 1
        module = self.parse(snippet.text)
        if module is None:
            return None
        scanner = PythonScanner(FactSet(), Memory(), self.lookup_before(snippet.first_line))
        scanner.bindings_only = True
        scanner.visit_snippet(module)
        self._statements[snippet.first_line] = scanner
        return scanner


def _mentions(code: str, name: str, starts: list[int]) -> list[int]:
    """1-based lines where ``name`` stands as a word (not after a dot)."""
    lines: list[int] = []
    size, pos = len(name), code.find(name)
    while pos != -1:
        before = code[pos - 1] if pos else " "
        after = code[pos + size] if pos + size < len(code) else " "
        if not (before.isalnum() or before in "_.") and not (after.isalnum() or after == "_"):
            line = line_of(starts, pos)
            lines.append(line)
            if line >= len(starts):
                break
            pos = code.find(name, starts[line])  # go on from the next line
        else:
            pos = code.find(name, pos + 1)
    return lines


def _all_bindings(code: str, starts: list[int]) -> dict[str, list[int]]:
    """name -> lines that may bind it, from one regex pass over the cell.

    A match of _BIND starts where a line starts or at an `as`, so it is tried there only,
    in order, each past the end of the match before: the matches of ``_BIND.finditer``
    (the regex engine would try every character of the cell)."""
    index: dict[str, list[int]] = {}
    places = set(starts)
    pos = code.find("as")
    while pos != -1:
        places.add(pos)
        pos = code.find("as", pos + 1)
    end = 0
    match = _BIND.match
    for place in sorted(places):
        if place < end:
            continue
        m = match(code, place)
        if m is None:
            continue
        end = m.end()
        for name in _names_of(m):
            if name.isidentifier():
                index.setdefault(name, []).append(line_of(starts, place))
    return index


def _bound_names(line: str) -> list[str]:
    """Names one line may bind (assignment targets, imports, loop targets, `as` names)."""
    return [name for m in _BIND.finditer(line) for name in _names_of(m)]


def _names_of(m: re.Match[str]) -> list[str]:
    if m.group("targets"):
        return [t.strip() for t in m.group("targets").split(",")]
    if m.group("imports"):
        names = []
        for part in m.group("imports").strip("() \t").split(","):
            bits = part.split()
            if bits:
                names.append(bits[-1] if len(bits) == 3 else bits[0].split(".")[0])
        return names
    if m.group("loop"):
        return [t.strip() for t in m.group("loop").split(",")]
    return [m.group("as")] if m.group("as") else []
