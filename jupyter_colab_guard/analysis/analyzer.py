"""The entry point: a cell (or a session of cells) in, findings out. Never raises."""

from __future__ import annotations

import ast
import hashlib
import re
import threading
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import libcst as cst
from libcst.metadata import MetadataWrapper, PositionProvider

from ..policy.keywords import word
from ..policy.model import Identity, Policy, Rule
from .engine import Engine, TextIndex
from .facts import Anchor, Fact, FactSet
from .findings import Finding
from .fold import Binding, Lookup
from .locate import keyword_lines, line_starts, snippets
from .markers import is_marked, marker_lines
from .pyscan import Memory, PythonScanner
from .resolve import CellIndex
from .shell import ShellScanner
from .transform import transform

INCOMPLETE_RULE = "analysis.incomplete"
MAX_SNIPPETS = 2000  # statements analysed in depth per cell; past it the cell is incomplete
INTERNAL_RULE = "analysis.error"


# Where a cell reaches a shell without any marker above: `!cmd`, `%%bash`, `%pip`, automagic.
SHELL_ENTRY = re.compile(r"^\s*(?:!|%|\w+\s*=\s*!|(?:pip|conda|mamba|uv)\s)", re.MULTILINE)


@dataclass
class _Result:
    findings: list[Finding]


def _column(original: list[str], transformed: list[str], t_line: int, o_line: int, col: int) -> int:
    if 0 < t_line <= len(transformed) and 0 < o_line <= len(original):
        if transformed[t_line - 1] == original[o_line - 1]:
            return col + 1
        text = original[o_line - 1]
        return len(text) - len(text.lstrip()) + 1
    return 1


class Analyzer:
    """Checks cells against one policy. Thread-safe; caches by content and policy version."""

    def __init__(self, policy: Policy, cache_size: int = 2048, exhaustive: bool = False) -> None:
        """``exhaustive`` turns the prefilter off and analyses every statement (for tests)."""
        self.policy = policy
        self.exhaustive = exhaustive
        self.engine = Engine(policy)
        self._cache: OrderedDict[str, list[Finding]] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    # -- public API ---------------------------------------------------------------
    def check(self, source: str, identity: Identity | None = None) -> list[Finding]:
        key = hashlib.blake2b(source.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None:
                self._cache.move_to_end(key)
        if cached is None:
            cached = self.analyse(source, Memory(), None).findings
            with self._lock:
                self._cache[key] = cached
                if len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        return self.policy.filter(cached, identity)

    def session(self, identity: Identity | None = None) -> Session:
        return Session(self, identity)

    def check_command(
        self, command: str | Sequence[str], identity: Identity | None = None
    ) -> list[Finding]:
        """Runtime backstop: shell rules against one command about to be launched."""
        try:
            facts = FactSet()
            memory = Memory()
            scanner = ShellScanner(facts, memory.files, memory.renames, lambda *a: None)
            if isinstance(command, str):
                scanner.scan(command, Anchor(line=1))
            else:
                scanner.scan_argv([str(a) for a in command], Anchor(line=1))
            # every rule: branches that need Python facts simply cannot hit here
            found = [
                self._finding(rule, fact, None, [], [], None)
                for rule, fact in self.engine.match(facts.facts)
            ]
        except Exception as exc:  # never break a launch by accident
            found = [self._error_finding(exc)]
        return self.policy.filter(found, identity)

    def check_connect(
        self, host: str | None, port: int | None, identity: Identity | None = None
    ) -> list[Finding]:
        """Runtime backstop: connect rules against one outgoing connection."""
        try:
            fact = Fact(
                "connect",
                text=(host or "").lower(),
                port=port,
                evidence=f"connect {host}:{port}",
                anchor=Anchor(line=1),
            )
            found = [
                self._finding(rule, f, None, [], [], None)
                for rule, f in self.engine.match([fact])
                if _only_connect(rule)
            ]
        except Exception as exc:
            found = [self._error_finding(exc)]
        return self.policy.filter(found, identity)

    # -- analysis ------------------------------------------------------------------
    def gate(self, source: str, memory: Memory) -> tuple[bool, set[str] | None, TextIndex]:
        """The cheap prefilter: (analyse in depth?, rules that can still match or None: all,
        the words of the source for later passes)."""
        lowered = source.lower()
        tokens = TextIndex(lowered)
        marked = is_marked(source, tokens.tokens)
        if self.exhaustive or (marked and self.engine.always_deep):
            return True, None, tokens
        shell = marked or SHELL_ENTRY.search(source) is not None
        words = tokens
        if memory.imports:  # `import zipfile` in the first cell counts for rules on later ones
            imported = {p.lower() for m in memory.imports for p in m.split(".")}
            words = TextIndex(lowered, tokens.tokens | imported)
        live = self.engine.live_rules(lowered, shell, words)
        deep = bool(live) or marked or _memory_hit(lowered, tokens.tokens, memory)
        return deep, live, tokens

    def analyse(self, source: str, memory: Memory, history: Lookup | None) -> _Result:
        try:
            deep, live, tokens = self.gate(source, memory)
            result = self._deep(source, memory, history, live, tokens) if deep else _Result([])
            memory.imports.update(imported_modules(source))  # after: context for later cells
            return result
        except Exception as exc:  # the analyzer must never take the kernel or server down
            return _Result([self._error_finding(exc)])

    def _wanted_lines(
        self, code: str, memory: Memory, live: set[str] | None, words: set[str]
    ) -> set[int]:
        if self.exhaustive:
            return set(range(1, code.count("\n") + 2))
        lowered = code.lower()
        starts = line_starts(code)
        wanted = marker_lines(code, lowered, words, starts)
        rules = self.engine.rule_line_keywords
        keywords: set[str] = set()
        for rule_id in live if live is not None else rules:
            keywords |= rules.get(rule_id, set())
        keywords |= {name.lower() for name in _memory_names(memory)}
        keywords |= set(_env_refs(memory))
        keywords |= {word(name.lower()) for name in memory.sink_names}
        wanted |= keyword_lines(code, lowered, keywords, starts)
        return wanted

    def _deep(
        self,
        source: str,
        memory: Memory,
        history: Lookup | None,
        live: set[str] | None,
        tokens: TextIndex,
    ) -> _Result:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            given, source = source, _user_alias(source, memory)
            try:  # plain Python: IPython's transforms would leave it as it is
                tree = ast.parse(source)
                code = source
                line_map = list(range(1, source.count("\n") + 2))
            except (SyntaxError, ValueError, OverflowError):
                code, line_map = transform(source)
                try:
                    tree = ast.parse(code)
                except (SyntaxError, ValueError, OverflowError):
                    return self._fallback(source, memory, history, "not valid Python")
        index = CellIndex(code, tree, history)
        facts = FactSet()
        scanner = PythonScanner(facts, memory, None)
        scanner.wants_args = self.engine.wants_args
        unparsed: list[int] = []
        done: set[int] = set()
        words = tokens.tokens if code is given else TextIndex(code.lower()).tokens
        wanted = snippets(code, tree, self._wanted_lines(code, memory, live, words))
        if len(wanted) > MAX_SNIPPETS:  # a flood of suspicious statements: check a bounded part
            unparsed.append(wanted[MAX_SNIPPETS].first_line)
            wanted = wanted[:MAX_SNIPPETS]
        for snip in wanted:
            done.add(snip.first_line)
            try:
                module = cst.parse_module(snip.text)
            except Exception:
                unparsed.append(snip.first_line)
                facts.add(
                    Fact(
                        "string",
                        text=snip.text,
                        evidence=snip.text[:200],
                        anchor=Anchor(line=_original(line_map, snip.first_line)),
                    )
                )
                continue
            scanner.history = index.lookup_before(snip.first_line)
            scanner.visit_snippet(module, snip.first_line - 1, snip.indent, snip.looped)
        followed = self._follow_names(code, tree, facts, scanner, index, done)
        scanner.finish()
        memory.sink_names.update(followed)
        remembered = [Fact("import", name=m, remembered=True) for m in sorted(memory.imports)]
        findings = self._findings(facts.facts + remembered, source, code, line_map)
        if unparsed:
            findings.append(
                self._incomplete(
                    _original(line_map, unparsed[0]),
                    self.policy.on_error,
                    "a statement could not be parsed, or the cell has too many to check",
                )
            )
        findings.sort(key=lambda f: (f.line, f.column, f.rule))
        return _Result(findings)

    def _follow_names(
        self,
        code: str,
        tree: ast.Module,
        facts: FactSet,
        scanner: PythonScanner,
        index: CellIndex,
        done: set[int],
    ) -> list[str]:
        """Analyse lines that use a name bound to a rule's call or a sink (`g = os.system`)."""
        names = [name for name, value in scanner.qual_bindings() if self.engine.interesting(value)]
        if not names:
            return names
        lines = keyword_lines(code, code.lower(), [word(n) for n in names])
        for snip in snippets(code, tree, lines):
            if snip.first_line in done:
                continue
            done.add(snip.first_line)
            try:
                module = cst.parse_module(snip.text)
            except Exception:
                continue
            scanner.history = index.lookup_before(snip.first_line)
            scanner.visit_snippet(module, snip.first_line - 1, snip.indent, snip.looped)
        return names

    def _findings(
        self, facts: list[Fact], source: str, code: str, line_map: list[int] | None
    ) -> list[Finding]:
        matches = self.engine.match(facts)
        if not matches:
            return []
        positions: dict[int, object] = {}
        original, transformed = source.splitlines(), code.splitlines()
        out = []
        for rule, fact in matches:
            module = fact.anchor.module
            if module is not None and id(module) not in positions:
                wrapper = MetadataWrapper(module, unsafe_skip_copy=True)
                positions[id(module)] = wrapper.resolve(PositionProvider)
            table = positions.get(id(module)) if module is not None else None
            out.append(self._finding(rule, fact, table, original, transformed, line_map))
        return out

    def _fallback(
        self, source: str, memory: Memory, history: Lookup | None, reason: str
    ) -> _Result:
        """Line by line for text Python cannot parse; says so in a finding of its own."""
        facts = FactSet()
        for number, line in enumerate(source.splitlines(), start=1):
            stripped = line.strip()
            if not stripped or stripped.startswith("#"):
                continue
            anchor = Anchor(line=number)
            try:
                module = cst.parse_module(transform(stripped)[0])
            except Exception:
                facts.add(Fact("string", text=stripped, evidence=stripped, anchor=anchor))
                continue
            PythonScanner(facts, memory, history, outer=anchor).visit_snippet(module)
        findings = [
            self._finding(rule, fact, None, [], [], None)
            for rule, fact in self.engine.match(facts.facts)
        ]
        # Python cannot run this cell either, so nothing runs: record, do not block
        findings.append(self._incomplete(1, "log", reason))
        return _Result(findings)

    def _incomplete(self, line: int, action: str, reason: str) -> Finding:
        return Finding(
            category="analysis",
            rule=INCOMPLETE_RULE,
            action=action,
            severity="low",
            message=f"Part of this cell could not be parsed and was checked line by line only "
            f"({reason}).",
            line=line,
            column=1,
            evidence="",
            title="Analysis incomplete",
        )

    # -- findings -------------------------------------------------------------
    def _finding(
        self,
        rule: Rule,
        fact: Fact,
        positions: object,
        original: list[str],
        transformed: list[str],
        line_map: list[int] | None,
    ) -> Finding:
        line, column = self._locate(fact.anchor, positions, original, transformed, line_map)
        category = self.policy.categories.get(rule.category)
        return Finding(
            category=rule.category,
            rule=rule.id,
            action=rule.action,
            severity=rule.severity,
            message=rule.message,
            line=line,
            column=column,
            evidence=fact.shown()[:300],
            title=category.title if category else rule.category,
        )

    @staticmethod
    def _locate(
        anchor: Anchor,
        positions: object,
        original: list[str],
        transformed: list[str],
        line_map: list[int] | None,
    ) -> tuple[int, int]:
        if anchor.line:
            return anchor.line + anchor.line_offset, 1
        if anchor.node is None or line_map is None or positions is None:
            return 1, 1
        pos = positions.get(anchor.node)  # type: ignore[attr-defined]
        if pos is None:
            return 1, 1
        t_line = anchor.base + pos.start.line
        o_line = _original(line_map, t_line)
        if anchor.line_offset:
            return o_line + anchor.line_offset, 1
        return o_line, _column(
            original, transformed, t_line, o_line, pos.start.column + anchor.indent
        )

    def _error_finding(self, exc: BaseException) -> Finding:
        return Finding(
            category="analysis",
            rule=INTERNAL_RULE,
            action=self.policy.on_error,
            severity="low",
            message=f"The analyzer failed on this cell ({type(exc).__name__}: {exc}).",
            line=1,
            column=1,
            evidence="",
            title="Analysis incomplete",
        )


def _memory_hit(lowered: str, tokens: set[str], memory: Memory) -> bool:
    """The cell names a file, alias or sink name an earlier cell left behind."""
    if any(name.lower() in lowered for name in _memory_names(memory)):
        return True
    if any(ref in lowered for ref in _env_refs(memory)):
        return True
    return any(name.lower() in tokens for name in memory.sink_names)


_IMPORT = re.compile(r"[ \t]*(?:from[ \t]+([\w.]+)[ \t]+import\b|import[ \t]+([\w., \t]+))")


def imported_modules(source: str) -> set[str]:
    """Modules a cell's import statements name (a line scan; only ever context for `all`)."""
    found: set[str] = set()
    pos = source.find("import")
    while pos != -1:
        start = source.rfind("\n", 0, pos) + 1
        match = _IMPORT.match(source, start)
        if match and match.group(1):
            if not match.group(1).startswith("."):  # a relative import names no library
                found.add(match.group(1))
        elif match:
            for part in match.group(2).split(","):
                bits = part.split()
                if bits and bits[0].replace(".", "").replace("_", "").isalnum():
                    found.add(bits[0])
        end = source.find("\n", pos)
        pos = source.find("import", end) if end != -1 else -1
    return found


def _env_refs(memory: Memory) -> list[str]:
    """How shell text refers to the environment variables earlier cells set ($X, ${X})."""
    return [ref for n in memory.environ for ref in (f"${n.lower()}", f"${{{n.lower()}}}")]


def _user_alias(source: str, memory: Memory) -> str:
    """A one-line cell naming a `%alias` the user made runs it (automagic)."""
    stripped = source.strip()
    name, _, rest = stripped.partition(" ")
    if "\n" in stripped or name not in memory.shell_aliases:
        return source
    return f"%{name} {rest}"


def _original(line_map: list[int], t_line: int) -> int:
    return line_map[t_line - 1] if 0 < t_line <= len(line_map) else 1


def _memory_names(memory: Memory) -> list[str]:
    names = [*memory.files, *memory.shell_aliases, *memory.renames]
    names += [k for k in memory.magic_aliases if k != "file"]
    return [n for n in names if n]


def _kinds(matcher: object) -> set[str]:
    from ..policy.model import Leaf

    if isinstance(matcher, Leaf):
        return {matcher.kind}
    out: set[str] = set()
    for child in getattr(matcher, "children", ()):
        out |= _kinds(child)
    return out


def _only_connect(rule: Rule) -> bool:
    return _kinds(rule.match) == {"connect"}


class Session:
    """Checks cells in order, remembering variables, imports and written files."""

    def __init__(self, analyzer: Analyzer, identity: Identity | None = None) -> None:
        self.analyzer = analyzer
        self.identity = identity
        self.memory = Memory()
        self._cells: list[CellIndex] = []

    def _lookup_before(self, count: int) -> Lookup:
        """Resolve a name in the last binding of it among the first ``count`` cells."""

        def lookup(name: str) -> Binding | None:
            for cell in reversed(self._cells[:count]):
                found = cell.resolve_local(name)
                if found is not None:
                    return found
            return None

        return lookup

    def check(self, source: str) -> list[Finding]:
        earlier = self._lookup_before(len(self._cells))
        result = self.analyzer.analyse(source, self.memory, earlier)
        self._cells.append(CellIndex.from_source(source, earlier))
        return self.analyzer.policy.filter(result.findings, self.identity)
