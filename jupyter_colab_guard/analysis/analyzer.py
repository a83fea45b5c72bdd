"""The entry point: a cell (or a session of cells) in, findings out. Never raises."""

from __future__ import annotations

import ast
import hashlib
import re
import threading
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

import libcst as cst
from libcst.metadata import MetadataWrapper, PositionProvider

from ..policy.model import Identity, Policy, Rule
from .engine import Engine
from .facts import Anchor, Fact, FactSet
from .findings import Finding
from .fold import Binding, Lookup
from .pyscan import Memory, PythonScanner
from .shell import ShellScanner
from .transform import transform

INCOMPLETE_RULE = "analysis.incomplete"
INTERNAL_RULE = "analysis.error"

# Constructs that can hide a name from the keyword prefilter, or run text as code.
MARKERS = re.compile(
    r"chr\s*\(|fromhex|unhexlify|b\d\d[a-z]*decode|decodebytes|codecs|rot.?13|__import__|"
    r"import_module|getattr\s*\(|__builtins__|__dict__|globals\s*\(|vars\s*\(|sys\.modules|"
    r"\bexec\b|\beval\b|compile\s*\(|system|popen|subprocess|spawn|execv|execl|\bpty\b|"
    r"getoutput|run_cell|alias|base64|\bsocket\b|connect\s*\(|\.write|%run|\brun\s+-|"
    r"['\"]\s*\+|\+\s*['\"]|['\"]\s*\.join|\[\s*::\s*-1\s*\]|^\s*!.*[{$]|^\s*%.*[{$]",
    re.MULTILINE,
)


@dataclass
class _Result:
    findings: list[Finding]
    bindings: dict[str, Binding] | None = None  # None: the cell was not analysed in depth
    used_history: bool = False


def _column(original: list[str], transformed: list[str], t_line: int, o_line: int,
            col: int) -> int:
    if 0 < t_line <= len(transformed) and 0 < o_line <= len(original):
        if transformed[t_line - 1] == original[o_line - 1]:
            return col + 1
        text = original[o_line - 1]
        return len(text) - len(text.lstrip()) + 1
    return 1


class Analyzer:
    """Checks cells against one policy. Thread-safe; caches by content and policy version."""

    def __init__(self, policy: Policy, cache_size: int = 2048) -> None:
        self.policy = policy
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

    def check_command(self, command: str | Sequence[str],
                      identity: Identity | None = None) -> list[Finding]:
        """Runtime backstop: shell rules against one command about to be launched."""
        try:
            facts = FactSet()
            memory = Memory()
            scanner = ShellScanner(facts, memory.files, memory.renames, lambda *a: None)
            if isinstance(command, str):
                scanner.scan(command, Anchor(line=1))
            else:
                scanner.scan_argv([str(a) for a in command], Anchor(line=1))
            found = [self._finding(rule, fact, [], [], [], None) for rule, fact in
                     self.engine.match(facts.facts) if self._is_runtime_rule(rule)]
        except Exception as exc:  # never break a launch by accident
            found = [self._error_finding(exc)]
        return self.policy.filter(found, identity)

    def check_connect(self, host: str | None, port: int | None,
                      identity: Identity | None = None) -> list[Finding]:
        """Runtime backstop: connect rules against one outgoing connection."""
        try:
            fact = Fact("connect", text=(host or "").lower(), port=port,
                        evidence=f"connect {host}:{port}", anchor=Anchor(line=1))
            found = [self._finding(rule, f, [], [], [], None)
                     for rule, f in self.engine.match([fact]) if _only_connect(rule)]
        except Exception as exc:
            found = [self._error_finding(exc)]
        return self.policy.filter(found, identity)

    # -- analysis ------------------------------------------------------------------
    def needs_deep(self, source: str, memory: Memory) -> bool:
        """The cheap prefilter: can any rule possibly match this cell?"""
        if self.engine.always_deep or MARKERS.search(source):
            return True
        lowered = source.lower()
        if self.engine.prefilter.hits(lowered):
            return True
        names = [*memory.files, *memory.shell_aliases, *memory.magic_aliases, *memory.renames]
        return any(name and name.lower() in lowered for name in names if name != "file")

    def analyse(self, source: str, memory: Memory, history: Lookup | None) -> _Result:
        try:
            if not self.needs_deep(source, memory):
                return _Result([])
            return self._deep(source, memory, history)
        except RecursionError as exc:
            return _Result([self._error_finding(exc)])
        except Exception as exc:  # the analyzer must never take the kernel or server down
            return _Result([self._error_finding(exc)])

    def _deep(self, source: str, memory: Memory, history: Lookup | None) -> _Result:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            code, line_map = transform(source)
        try:
            module = cst.parse_module(code)
        except cst.ParserSyntaxError as exc:
            return self._fallback(source, memory, history, str(exc).splitlines()[0])
        facts = FactSet()
        scanner = PythonScanner(facts, memory, history)
        module.visit(scanner)
        scanner.finish()
        matches = self.engine.match(facts.facts)
        findings: list[Finding] = []
        if matches:
            positions = MetadataWrapper(module, unsafe_skip_copy=True).resolve(PositionProvider)
            original, transformed = source.splitlines(), code.splitlines()
            findings = [self._finding(rule, fact, positions, original, transformed, line_map)
                        for rule, fact in matches]
        findings.sort(key=lambda f: (f.line, f.column, f.rule))
        return _Result(findings, scanner.bindings, scanner.used_history)

    def _fallback(self, source: str, memory: Memory, history: Lookup | None,
                  reason: str) -> _Result:
        """Line by line for text libcst cannot parse; says so in a finding of its own."""
        facts = FactSet()
        for number, line in enumerate(source.splitlines(), start=1):
            stripped = line.strip()
            if not stripped or stripped.startswith("#"):
                continue
            anchor = Anchor(line=number)
            try:
                code = transform(stripped)[0]
                module = cst.parse_module(code)
            except Exception:
                facts.add(Fact("string", text=stripped, evidence=stripped, anchor=anchor))
                continue
            scanner = PythonScanner(facts, memory, history, outer=anchor)
            module.visit(scanner)
            scanner.finish()
        findings = [self._finding(rule, fact, {}, [], [], None)
                    for rule, fact in self.engine.match(facts.facts)]
        try:
            ast.parse(transform(source)[0])
            action = self.policy.on_error  # Python would run it: the policy decides
        except (SyntaxError, ValueError):
            action = "log"  # Python cannot run it either
        findings.append(Finding(
            category="analysis", rule=INCOMPLETE_RULE, action=action, severity="low",
            message=f"Part of this cell could not be parsed and was checked line by line only "
                    f"({reason}).",
            line=1, column=1, evidence="", title="Analysis incomplete",
        ))
        return _Result(findings, {})

    # -- findings -------------------------------------------------------------
    def _finding(self, rule: Rule, fact: Fact, positions: object, original: list[str],
                 transformed: list[str], line_map: list[int] | None) -> Finding:
        line, column = self._locate(fact.anchor, positions, original, transformed, line_map)
        category = self.policy.categories.get(rule.category)
        return Finding(
            category=rule.category, rule=rule.id, action=rule.action, severity=rule.severity,
            message=rule.message, line=line, column=column, evidence=fact.evidence[:300],
            title=category.title if category else rule.category,
        )

    @staticmethod
    def _locate(anchor: Anchor, positions: object, original: list[str], transformed: list[str],
                line_map: list[int] | None) -> tuple[int, int]:
        if anchor.line:
            return anchor.line + anchor.line_offset, 1
        if anchor.node is None or line_map is None:
            return 1, 1
        pos = positions.get(anchor.node)  # type: ignore[attr-defined]
        if pos is None:
            return 1, 1
        t_line = pos.start.line
        o_line = line_map[t_line - 1] if 0 < t_line <= len(line_map) else 1
        if anchor.line_offset:
            return o_line + anchor.line_offset, 1
        return o_line, _column(original, transformed, t_line, o_line, pos.start.column)

    def _error_finding(self, exc: BaseException) -> Finding:
        return Finding(
            category="analysis", rule=INTERNAL_RULE, action=self.policy.on_error, severity="low",
            message=f"The analyzer failed on this cell ({type(exc).__name__}: {exc}).",
            line=1, column=1, evidence="", title="Analysis incomplete",
        )

    @staticmethod
    def _is_runtime_rule(rule: Rule) -> bool:
        return _kinds(rule.match) <= {"shell", "string", "url", "install"}


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


class _HistoryCell:
    __slots__ = ("_bindings", "source")

    def __init__(self, source: str, bindings: dict[str, Binding] | None) -> None:
        self.source = source
        self._bindings = bindings

    def bindings(self, lookup: Lookup) -> dict[str, Binding]:
        if self._bindings is None:
            self._bindings = {}
            try:
                code = transform(self.source)[0]
                scanner = PythonScanner(FactSet(), Memory(), lookup)
                cst.parse_module(code).visit(scanner)
                self._bindings = scanner.bindings
            except Exception:
                pass
        return self._bindings


class Session:
    """Checks cells in order, remembering variables, imports and written files."""

    def __init__(self, analyzer: Analyzer, identity: Identity | None = None) -> None:
        self.analyzer = analyzer
        self.identity = identity
        self.memory = Memory()
        self.history: list[_HistoryCell] = []

    def _lookup_before(self, end: int) -> Lookup:
        def lookup(name: str) -> Binding | None:
            for index in range(end - 1, -1, -1):
                cell = self.history[index]
                if name in cell.source:
                    found = cell.bindings(self._lookup_before(index)).get(name)
                    if found is not None:
                        return found
            return None

        return lookup

    def check(self, source: str) -> list[Finding]:
        result = self.analyzer.analyse(source, self.memory, self._lookup_before(len(self.history)))
        self.history.append(_HistoryCell(source, result.bindings))
        return self.analyzer.policy.filter(result.findings, self.identity)
