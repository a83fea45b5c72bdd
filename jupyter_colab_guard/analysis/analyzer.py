"""The entry point: a cell (or a session of cells) in, findings out. Never raises."""

from __future__ import annotations

import ast
import gc
import hashlib
import ipaddress
import re
import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import libcst as cst
from libcst.metadata import CodeRange, MetadataWrapper, PositionProvider

from ..policy.keywords import word
from ..policy.model import Identity, Matcher, Policy, Rule
from .budget import OutOfTime, tick, unlimited, within
from .engine import Engine, Staged, TextIndex
from .facts import Anchor, Fact, FactSet
from .findings import Finding
from .fold import Binding, Lookup
from .linear import LinearPass
from .locate import Cutter, Snippet, keyword_lines, line_of, line_starts, lines_by_keyword
from .markers import is_marked, marker_lines
from .pyscan import Memory, PythonScanner
from .resolve import CellIndex
from .shell import ShellScanner
from .summaries import Summarizer, may_define_wrapper
from .transform import may_have_ipython_syntax, python_text, transform

INCOMPLETE_RULE = "analysis.incomplete"
MAX_SNIPPETS = 2000  # statements analysed in depth per cell; past it the cell is incomplete
MAX_SNIPPET_CHARS = 20_000  # a longer statement is read by the linear pass (libcst: ~25 µs/char)
# libcst's parser is quadratic in nesting (a chain `'a' + 'a' + ...` of 2,000 terms: ~1 s, in
# native code the budget cannot stop): a statement nested deeper goes to the linear pass
MAX_SNIPPET_DEPTH = 300
DEPTH_CHECK_FROM = 600  # characters: a shorter statement cannot nest that deep at any cost
INTERNAL_RULE = "analysis.error"
TIMEOUT_RULE = "analysis.timeout"


# where two string literals meet ("co" + "lab", "co" "lab", "co", "lab" in a join): the
# prefilter also reads the cell with these removed, so a keyword split across literals counts
LITERAL_JOIN = re.compile(r"""['"](?:[\s\\]*[+,])?[\s\\(]*[rbuf]{0,2}['"]""")
# Where a cell reaches a shell without any marker above: `!cmd`, `%%bash`, `%pip`, automagic.
SHELL_ENTRY = re.compile(r"^\s*(?:!|%|\w+\s*=\s*!|(?:pip|conda|mamba|uv)\s)", re.MULTILINE)


@dataclass
class _Result:
    findings: list[Finding]
    code: str | None = None  # the code analysed and its tree, for the session's index
    tree: ast.Module | None = None


@dataclass
class Stages:
    """Per rule whose parts must all match: the parts read, and those still unread with
    their line keywords (cheapest first)."""

    read: dict[str, list[Matcher]]
    unread: dict[str, list[tuple[Matcher, frozenset[str]]]]
    by_key: dict[str, set[int]]  # the lines of every line keyword of the rules in play

    def lines_of(self, keywords: Iterable[str]) -> set[int]:
        return set().union(*(self.by_key.get(k, ()) for k in keywords))

    def first_lines(self, rule_id: str, staged: Staged) -> set[int]:
        """The lines of a staged rule to read first: those of its alternatives read whole,
        and of each `all` the part with the fewest lines (the others are kept unread)."""
        lines = self.lines_of(staged.whole)
        for i, chain in enumerate(staged.chains):
            ordered = sorted(chain, key=lambda part: len(self.lines_of(part[1])))
            self.read[f"{rule_id}/{i}"] = [ordered[0][0]]
            self.unread[f"{rule_id}/{i}"] = ordered[1:]
            lines |= self.lines_of(ordered[0][1])
        return lines


DEFINITION = re.compile(r"^[ \t]*(?:async[ \t]+)?(?:def|class)[ \t]+([A-Za-z_]\w*)", re.MULTILINE)


def _definitions(
    code: str, facts: FactSet, line_map: list[int], lines: set[int] | None = None
) -> None:
    """A fact for each function and class the code defines, by name (`like` leaves read
    them as they read calls), on ``lines`` (None: all): found in the text, with no
    statement to parse."""
    starts = line_starts(code)
    spans = [(0, len(code))]
    if lines is not None:
        spans = [(starts[n - 1], starts[n] if n < len(starts) else len(code)) for n in lines]
    for start, end in spans:
        for found in DEFINITION.finditer(code, start, end):
            line = _original(line_map, line_of(starts, found.start()))
            facts.add(Fact("define", name=found.group(1), anchor=Anchor(line=line)))


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
    def check(
        self, source: str, identity: Identity | None = None, budget: float | None = None
    ) -> list[Finding]:
        """Findings for one cell; ``budget``: see ``analyse``."""
        key = hashlib.blake2b(source.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None:
                self._cache.move_to_end(key)
        if cached is None:
            cached = self.analyse(source, Memory(), None, budget).findings
            if any(f.rule == TIMEOUT_RULE for f in cached):
                return self.policy.filter(cached, identity)  # may finish next time: not kept
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

    @property
    def binary_signatures(self) -> list[bytes]:
        """Every distinct signature of the policy's binary leaves (UTF-8), for one scan."""
        return list(self.engine.binary_signatures)

    def check_binary(
        self, found: Iterable[str], path: str = "", identity: Identity | None = None
    ) -> list[Finding]:
        """Runtime backstop: binary rules against the signatures found in one executable
        (``found``: those of ``binary_signatures`` the file holds, as text)."""
        return self._runtime(
            lambda: Fact(
                "binary",
                name=path,
                args=tuple(sorted(set(found))),
                evidence=f"binary {path}",
                anchor=Anchor(line=1),
            ),
            identity,
        )

    def check_listen(self, host: str, port: int, identity: Identity | None = None) -> list[Finding]:
        """Runtime backstop: listen rules against one listening socket (its local address
        and port, as a process watcher sees them: "0.0.0.0", "::", "127.0.0.1")."""

        def fact() -> Fact:
            address = host.strip().strip("[]")
            shown = f"[{address}]" if ":" in address else address or "*"
            return Fact(
                "listen",
                name="loopback" if _loopback(address) else "public",
                text=address,
                port=port,
                evidence=f"listen {shown}:{port}",
                anchor=Anchor(line=1),
            )

        return self._runtime(fact, identity)

    def _runtime(self, make: Callable[[], Fact], identity: Identity | None) -> list[Finding]:
        """Rules against one fact a watcher saw; never raises."""
        try:
            matched = self.engine.match([make()])
            findings = [self._finding(rule, f, None, [], [], None) for rule, f in matched]
        except Exception as exc:
            findings = [self._error_finding(exc)]
        return self.policy.filter(findings, identity)

    # -- analysis ------------------------------------------------------------------
    def gate(self, source: str, memory: Memory) -> tuple[bool, set[str] | None, TextIndex]:
        """The cheap prefilter: (analyse in depth?, rules that can still match or None: all,
        the words of the source for later passes)."""
        lowered = source.lower()
        tokens = TextIndex(lowered)
        marked = tokens.marked = is_marked(source, tokens.tokens)
        if self.exhaustive or (marked and self.engine.always_deep):
            return True, None, tokens
        shell = marked or SHELL_ENTRY.search(source) is not None
        words = tokens
        if memory.imports:  # `import zipfile` in the first cell counts for rules on later ones
            imported = {p.lower() for m in memory.imports for p in m.split(".")}
            words = TextIndex(lowered, tokens.tokens | imported, own=tokens)
        live = self.engine.live_rules(lowered, shell, words)
        joined = LITERAL_JOIN.sub("", lowered)
        if joined != lowered:  # a keyword split across string literals
            spread = self.engine.live_rules(joined, shell, TextIndex(joined)) - live
            if spread:
                live |= spread
                tokens.spread = True
        deep = bool(live) or marked or _memory_hit(lowered, tokens.tokens, memory)
        if not deep:  # `def sh(c): sp.run(c, shell=True)` with subprocess imported before
            deep = may_define_wrapper(tokens.tokens, memory.functions, memory.imports)
        return deep, live, tokens

    def analyse(
        self,
        source: str,
        memory: Memory,
        history: Lookup | None,
        budget: float | None = None,
    ) -> _Result:
        """Findings for one cell; ``budget``: seconds the deep analysis may take (past it the
        rest is checked by the linear pass, and the cell gets the policy's ``on_timeout``)."""
        try:
            with within(budget), no_collection():
                deep, live, tokens = self.gate(source, memory)
                result = self._deep(source, memory, history, live, tokens) if deep else _Result([])
            memory.imports.update(imported_modules(source))  # after: context for later cells
            return result
        except OutOfTime:  # before the cell could even be parsed: its lines, one by one
            with unlimited():
                result = self._fallback(python_text(source), memory, "")
            result.findings.append(self.timeout_finding(1))
            return result
        except Exception as exc:  # the analyzer must never take the kernel or server down
            return self._after_error(source, memory, exc)

    def _after_error(self, source: str, memory: Memory, exc: Exception) -> _Result:
        """An internal error in the deep analysis loses none of the cell: its lines are
        read one by one (each in its own try), and the error is recorded."""
        try:
            with unlimited():
                result = self._fallback(python_text(source), memory, "")
        except Exception:
            result = _Result([])
        result.findings.append(self._error_finding(exc))
        return result

    def _wanted_lines(
        self, code: str, memory: Memory, live: set[str] | None, text: TextIndex, stages: Stages
    ) -> tuple[set[int], set[int]]:
        """Lines worth a deep look first: (lines with a rule's keyword, lines with a marker);
        ``text``: the words of the lower-cased code. Of a rule whose parts must all match,
        only the part with the fewest lines is read first: ``stages`` keeps the others."""
        if self.exhaustive:
            return set(range(1, code.count("\n") + 2)), set()
        lowered = code.lower()
        words = text.tokens
        starts = line_starts(code)
        rules = self.engine.rule_line_keywords
        chosen = live if live is not None else rules
        keywords: set[str] = set()
        for rule_id in chosen:
            keywords |= rules.get(rule_id, set())
        keywords = self.engine.present(keywords, lowered, text)
        stages.by_key = lines_by_keyword(code, lowered, keywords, starts)
        strong: set[int] = set()
        for rule_id in chosen:
            staged = self.engine.rule_parts.get(rule_id)
            if staged is None:
                strong |= stages.lines_of(rules.get(rule_id, ()))
            else:
                strong |= stages.first_lines(rule_id, staged)
        extra = {name.lower() for name in _memory_names(memory)}
        extra |= set(_env_refs(memory))
        extra |= {word(name.lower()) for name in memory.sink_names}
        strong |= keyword_lines(code, lowered, extra, starts)
        if text.spread:  # a keyword split across literals: the lines where literals meet
            strong |= {line_of(starts, m.start()) for m in LITERAL_JOIN.finditer(code)}
        if text.marked is False:  # the gate's index: this code is the cell it found unmarked
            return strong, set()  # (no marker word, no marker syntax: no marker line)
        return strong, marker_lines(code, lowered, words, starts)

    def _parse(self, source: str, memory: Memory) -> tuple[str, ast.Module, list[int]] | _Result:
        """The code the kernel would run, its tree and line map; or, when Python or
        IPython cannot take the cell (so nothing of it runs), the line-by-line result."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            syntax = may_have_ipython_syntax(source)
            if syntax:  # (often a `?` at the end of a comment)
                try:  # IPython's syntax is never valid Python: valid Python stays as it is
                    return source, ast.parse(source), list(range(1, source.count("\n") + 2))
                except (SyntaxError, ValueError, OverflowError, RecursionError, MemoryError):
                    pass
            try:
                code, line_map = transform(source, syntax)
            except Exception:  # IPython gives up on it too: the kernel runs nothing
                return self._fallback(source, memory, "IPython cannot transform it")
            try:
                return code, ast.parse(code), line_map
            except (SyntaxError, ValueError, OverflowError, RecursionError, MemoryError):
                return self._fallback(source, memory, "not valid Python")

    def _deep(
        self,
        source: str,
        memory: Memory,
        history: Lookup | None,
        live: set[str] | None,
        tokens: TextIndex,
    ) -> _Result:
        given, source = source, python_text(_user_alias(source, memory))
        parsed = self._parse(source, memory)
        if isinstance(parsed, _Result):
            return parsed
        code, tree, line_map = parsed
        index = CellIndex(code, tree, history)
        try:
            return self._deep_parsed(
                given, source, code, tree, line_map, memory, live, tokens, index
            )
        finally:
            index.release()

    def _deep_parsed(
        self,
        given: str,
        source: str,
        code: str,
        tree: ast.Module,
        line_map: list[int],
        memory: Memory,
        live: set[str] | None,
        tokens: TextIndex,
        index: CellIndex,
    ) -> _Result:
        facts = FactSet()
        scanner = PythonScanner(facts, memory, None)
        scanner.wants_args = self.engine.wants_args
        text = tokens if code is given else TextIndex(code.lower())
        text.spread = tokens.spread
        if may_define_wrapper(text.tokens, memory.functions, memory.imports):
            _summarize(code, tree, memory)
        stages = Stages({}, {}, {})
        strong, weak = self._wanted_lines(code, memory, live, text, stages)
        if self.engine.like_rules and (live is None or not live.isdisjoint(self.engine.like_rules)):
            lines = stages.lines_of(self.engine.like_keywords) if live is not None else None
            _definitions(code, facts, line_map, lines)
        # statements with a rule's keyword first, then those with only a marker: the cap
        # can only leave out the last (the linear pass reads those); visits go in order
        cutter = Cutter(code, tree)
        wanted = cutter.cut(strong)
        first = {s.first_line for s in wanted}
        wanted += [s for s in cutter.cut(weak - strong) if s.first_line not in first]
        unfinished: list[Snippet] = wanted[MAX_SNIPPETS:]
        wanted = sorted(wanted[:MAX_SNIPPETS], key=lambda s: s.first_line)
        done: set[int] = set()
        timed_out = False
        remembered = [Fact("import", name=m, remembered=True) for m in sorted(memory.imports)]
        try:
            visit = self._visitor(scanner, index, facts, line_map, done, unfinished)
            visit(wanted)
            followed = self._follow_names(code, cutter, facts, scanner, index, done, line_map, [])
            # then the next part of the rules whose parts read so far match, and the lines
            # of `not` parts for the rules that match but for them
            asked: set[str] = set()
            rules = live if live is not None else self.engine.rule_unless_keywords
            hits: dict[int, Fact] = {}
            self.engine.add_hits(hits, remembered)
            counted = 0  # facts whose leaves are in ``hits``
            while not self.exhaustive:
                self.engine.add_hits(hits, facts.facts[counted:])
                counted = len(facts.facts)
                parts = self.engine.next_parts(hits, stages.read, stages.unread)
                unless = self.engine.unless_keywords(hits, rules) - asked
                if parts is None and not unless:
                    break
                asked |= unless
                lines = stages.lines_of(parts or ())
                keys = self.engine.present(unless, text.lowered, text)
                lines |= keyword_lines(code, text.lowered, keys)
                later = [s for s in cutter.cut(lines) if s.first_line not in done]
                wanted += later
                visit(later)
                followed += self._follow_names(
                    code, cutter, facts, scanner, index, done, line_map, followed
                )
            memory.sink_names.update(followed)
            scanner.finish()
        except OutOfTime:
            timed_out = True
            unfinished += [s for s in wanted if s.first_line not in done]
        if unfinished:  # never fail open: what the deep analysis did not finish, read linearly
            with unlimited():
                LinearPass(
                    facts,
                    memory,
                    lambda line: Anchor(line=_original(line_map, line)),
                    self.engine.wants_args,
                )(s.node for s in unfinished if s.node is not None)
        findings = self._findings(facts.facts + remembered, source, code, line_map)
        if timed_out:  # (out of time after the statements: in decoded text, say)
            first = unfinished[0].first_line if unfinished else 1
            findings.append(self.timeout_finding(_original(line_map, first)))
        elif unfinished:
            findings.append(
                self._incomplete(
                    _original(line_map, min(s.first_line for s in unfinished)),
                    self.policy.on_error,
                    "a statement could not be analysed in depth, or the cell has too many "
                    "to check; those were read line by line",
                )
            )
        findings.sort(key=lambda f: (f.line, f.column, f.rule))
        return _Result(findings, code, tree)

    def _visitor(
        self,
        scanner: PythonScanner,
        index: CellIndex,
        facts: FactSet,
        line_map: list[int],
        done: set[int],
        unfinished: list[Snippet],
    ) -> Callable[[list[Snippet]], None]:
        """Visits statements in order, each once (``done``: first lines visited), and
        keeps those it could not finish."""

        def visit(snippets: list[Snippet]) -> None:
            for snip in snippets:
                if snip.first_line not in done:
                    tick()
                    done.add(snip.first_line)
                    if not self._visit(snip, scanner, index, facts, line_map):
                        unfinished.append(snip)

        return visit

    def _visit(
        self,
        snip: Snippet,
        scanner: PythonScanner,
        index: CellIndex,
        facts: FactSet,
        line_map: list[int],
    ) -> bool:
        """Deep analysis of one statement; False when it could not be done (too large to
        parse in time, not parsable on its own, or an internal error: that statement only)."""
        if len(snip.text) > MAX_SNIPPET_CHARS:
            return False
        if len(snip.text) > DEPTH_CHECK_FROM and _deeper_than(snip.node, MAX_SNIPPET_DEPTH):
            return False
        module = index.parse(snip.text)
        if module is None:
            facts.add(
                Fact(
                    "string",
                    text=snip.text,
                    evidence=snip.text[:200],
                    anchor=Anchor(line=_original(line_map, snip.first_line)),
                )
            )
            return False
        scanner.history = index.lookup_before(snip.first_line)
        try:
            scanner.visit_snippet(module, snip.first_line - 1, snip.indent, snip.looped, snip.items)
        except Exception:  # RecursionError on a very long chain, or a bug: this statement
            return False
        return True

    def _follow_names(
        self,
        code: str,
        cutter: Cutter,
        facts: FactSet,
        scanner: PythonScanner,
        index: CellIndex,
        done: set[int],
        line_map: list[int],
        followed: list[str],
    ) -> list[str]:
        """Analyse lines that use a name bound to a rule's call or a sink (`g = os.system`);
        ``followed``: names whose lines were analysed before. The new names come back."""
        names = [
            name
            for name, value in scanner.qual_bindings()
            if name not in followed and self.engine.interesting(value)
        ]
        if not names:
            return names
        lines = keyword_lines(code, code.lower(), [word(n) for n in names])
        for snip in cutter.cut(lines):
            if snip.first_line in done:
                continue
            tick()
            done.add(snip.first_line)
            self._visit(snip, scanner, index, facts, line_map)
        return names

    def _findings(
        self, facts: list[Fact], source: str, code: str, line_map: list[int] | None
    ) -> list[Finding]:
        matches = self.engine.match(facts)
        if not matches:
            return []
        positions: dict[int, object] = {}
        original, transformed = source.split("\n"), code.split("\n")
        out = []
        for rule, fact in matches:
            module = fact.anchor.module
            if module is not None and id(module) not in positions:
                positions[id(module)] = node_positions(module)
            table = positions.get(id(module)) if module is not None else None
            out.append(self._finding(rule, fact, table, original, transformed, line_map))
        return out

    def _fallback(self, source: str, memory: Memory, reason: str) -> _Result:
        """Line by line for text Python cannot parse (or not in time), in linear time: lines
        with a keyword or marker are read by the linear pass, each on its own."""
        facts = FactSet()
        lines = source.split("\n")
        lowered = source.lower()
        starts = line_starts(source)
        text = TextIndex(lowered)
        keywords = self.engine.present(self.engine.every_line_keyword(), lowered, text)
        wanted = keyword_lines(source, lowered, keywords, starts)
        wanted |= marker_lines(source, lowered, text.tokens, starts)
        wanted |= {n for n, line in enumerate(lines, start=1) if SHELL_ENTRY.match(line)}
        for number in sorted(wanted):
            stripped = lines[number - 1].strip()
            if not stripped or stripped.startswith("#"):
                continue
            anchor = Anchor(line=number)
            facts.add(Fact("string", text=stripped, evidence=stripped[:200], anchor=anchor))
            if len(facts.facts) > 4 * MAX_SNIPPETS:
                continue  # a flood: its text is still matched, not parsed
            try:
                tree = ast.parse(transform(stripped)[0])
                LinearPass(facts, memory, lambda _line, at=anchor: at, self.engine.wants_args)(
                    tree.body
                )
            except Exception:  # this line only (its text is still matched)
                continue
        findings = [
            self._finding(rule, fact, None, [], [], None)
            for rule, fact in self.engine.match(facts.facts)
        ]
        if reason:  # Python cannot run this cell either, so nothing runs: record, do not block
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

    def timeout_finding(self, line: int = 1) -> Finding:
        """The finding of a cell that could not be checked in time (``on_timeout``)."""
        return Finding(
            category="analysis",
            rule=TIMEOUT_RULE,
            action=self.policy.on_timeout,
            severity="low",
            message="This cell is too large or too complex to check in time, so it was not "
            "run. Split it into smaller cells.",
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


def node_positions(module: cst.Module) -> Mapping[cst.CSTNode, CodeRange]:
    """What ``MetadataWrapper(module, unsafe_skip_copy=True).resolve(PositionProvider)``
    gives: the position of every node. The provider's own pass (a codegen that notes where
    each node starts and ends) without the wrapper's: it also walks the whole tree once
    more for batchable providers, of which there are none here (half the time)."""
    provider = PositionProvider()
    try:
        provider._computed = {}
        provider._gen_impl(module)
    except AttributeError:  # a libcst without these internals: the public way
        return MetadataWrapper(module, unsafe_skip_copy=True).resolve(PositionProvider)
    return provider._computed


def _summarize(code: str, tree: ast.Module, memory: Memory) -> None:
    """Keep the summaries of the cell's wrapper functions; their names become sink names, so
    later cells that call them get a deep look (and the worker's gate sees them too)."""
    found = Summarizer(memory.functions, memory.imports)(code, tree)
    for name, summary in found.items():
        if summary is not None:
            memory.functions[name] = summary
            memory.sink_names.add(name)
        elif memory.functions.pop(name, None) is not None:
            memory.sink_names.discard(name)


def _memory_hit(lowered: str, tokens: set[str], memory: Memory) -> bool:
    """The cell names a file, alias or sink name an earlier cell left behind."""
    if any(name.lower() in lowered for name in _memory_names(memory)):
        return True
    if any(ref in lowered for ref in _env_refs(memory)):
        return True
    return any(name.lower() in tokens for name in memory.sink_names)


@contextmanager
def no_collection() -> Iterator[None]:
    """The cyclic garbage collector paused while a cell is checked: the check allocates
    many short-lived nodes (freed by reference counting), and a collection it triggers
    walks the whole heap, the user's data included (tens of ms in a big kernel)."""
    was = gc.isenabled()
    if was:
        gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _deeper_than(node: ast.AST | None, limit: int) -> bool:
    """Whether a statement's tree nests more than ``limit`` levels (walked without recursion)."""
    stack = [(node, 0)] if node is not None else []
    while stack:
        current, depth = stack.pop()
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(current))
    return False


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


def _loopback(address: str) -> bool:
    """127.0.0.0/8, ::1, ::ffff:127.x.x.x and the name localhost. Every other address counts
    as public: the wildcards ("", 0.0.0.0, ::) and names that are no address too."""
    if address.lower() == "localhost":
        return True
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])  # fe80::1%eth0: without its zone
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped.is_loopback
    return ip.is_loopback


def _only_connect(rule: Rule) -> bool:
    return _kinds(rule.match) == {"connect"}


def _with_displayed_value(code: str, tree: ast.Module | None) -> tuple[str, ast.Module | None]:
    """A cell ending in an expression leaves its value in `_` for the next cells (IPython's
    display hook): `"import os; os.system(...)"` then `exec(_)`. Later cells resolve `_`
    through a binding `_ = (<expression>)` added after the cell's own code."""
    last = tree.body[-1] if tree is not None and tree.body else None
    if tree is None or not isinstance(last, ast.Expr):
        return code, tree
    segment = ast.get_source_segment(code, last)
    if not segment:
        return code, tree
    binding = f"_ = ({segment})"
    try:
        node = ast.parse(binding).body[0]
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return code, tree
    base = code if code.endswith("\n") else code + "\n"
    ast.increment_lineno(node, base.count("\n"))
    return base + binding + "\n", ast.Module(body=[*tree.body, node], type_ignores=[])


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

    def check(self, source: str, budget: float | None = None) -> list[Finding]:
        """Findings for the next cell; ``budget``: see ``Analyzer.analyse``."""
        earlier = self._lookup_before(len(self._cells))
        result = self.analyzer.analyse(source, self.memory, earlier, budget)
        if result.code is not None:
            code, tree = _with_displayed_value(result.code, result.tree)
            self._cells.append(CellIndex(code, tree, earlier))
        else:
            self._cells.append(CellIndex.from_source(source, earlier))
        return self.analyzer.policy.filter(result.findings, self.identity)
