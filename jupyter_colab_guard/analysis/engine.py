"""Rules compiled into lookup tables: matching cost grows with the facts, not the rules."""

from __future__ import annotations

import bisect
import re
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from itertools import accumulate

import re2

from ..policy.keywords import bare
from ..policy.model import Combinator, Leaf, Matcher, Policy, Rule
from ..policy.regex import Regex, RegexError, compile_regex
from .facts import UNKNOWN, Fact, Value
from .loops import COUNTED, ENDLESS_TEXT  # covers every loop locate.py calls endless
from .repos import repository

_TOKEN = re.compile(r"[a-z0-9_]+")
_RUN = re.compile(r"[a-z0-9]{4,}")


# Every byte that is no word character ([a-z0-9_]) read as a space: the words of a text are
# then what str.split() gives (twice the speed of _TOKEN.findall).
_WORD_BYTES = bytes(
    c if chr(c) in "abcdefghijklmnopqrstuvwxyz0123456789_" else 32 for c in range(256)
)


def words_of(lowered: str) -> set[str]:
    """The distinct runs of [a-z0-9_] in a text (``set(_TOKEN.findall(lowered))``)."""
    try:
        data = lowered.encode("utf-8")  # bytes of other characters are >= 0x80: spaces
    except UnicodeEncodeError:  # a lone surrogate
        return set(_TOKEN.findall(lowered))
    return set(data.translate(_WORD_BYTES).decode("ascii").split())


class TextIndex:
    """The words of a lower-cased text and their 4-grams, computed once for every index.

    ``tokens`` may hold more words than the text (context: earlier cells' imports); ``own``
    is then the index of the text alone, which ``spelled`` reads. What a ``KeywordScanner``
    finds in the text is kept here too, so that every index sharing the scanner reads the
    text once."""

    __slots__ = ("_found", "_grams", "_spelled", "lowered", "marked", "own", "spread", "tokens")

    def __init__(
        self, lowered: str, tokens: set[str] | None = None, own: TextIndex | None = None
    ) -> None:
        self.lowered = lowered
        self.tokens = tokens if tokens is not None else words_of(lowered)
        self.own = own
        self._grams: set[str] | None = None
        self._spelled: str | None = None
        self._found: dict[object, set[str] | bool] | None = None  # per scanner, etc.
        self.spread = False  # a rule's keyword occurs only across joined string literals
        self.marked: bool | None = None  # the gate's is_marked of the text (None: not asked)

    @property
    def grams(self) -> set[str]:
        if self._grams is None:
            self._grams = {
                w[i : i + 4] for w in self.tokens if len(w) > 3 for i in range(len(w) - 3)
            }
        return self._grams

    @property
    def spelled(self) -> str:
        """Text in which a keyword made of word characters only ([a-z0-9_]) occurs exactly
        when it occurs in the text: each distinct word of the text once, or, for a short
        text, the text itself. (Such a keyword can only occur inside one word.)"""
        if self.own is not None:
            return self.own.spelled
        if self._spelled is None:
            lowered = self.lowered
            self._spelled = " ".join(self.tokens) if len(lowered) > _SPELL_FROM else lowered
        return self._spelled


_SPELL_FROM = 4096  # characters: below, searching the text itself costs less than joining


class _GramIndex:
    """Which of many keywords occur in a text, in time that depends on the text only.

    Whole-word keywords (``\\bxmrig\\b``) are looked up in the set of the text's words;
    substrings through 4-grams of those words, then confirmed with ``in`` (in the text's
    distinct words when the keyword is made of word characters only).
    """

    def __init__(self, keywords: Iterable[str]) -> None:
        self.words: dict[str, str] = {}
        self.by_gram: dict[str, list[tuple[str, bool]]] = defaultdict(list)
        self.short: list[str] = []  # no 4-character run: each checked with `in` (C speed)
        for keyword in sorted(set(keywords)):
            plain = bare(keyword)
            if plain != keyword:
                self.words[plain] = keyword
                continue
            runs = _RUN.findall(keyword)
            if runs:  # the end of the longest run: prefixes are shared more often than ends
                wordy = _TOKEN.fullmatch(keyword) is not None
                self.by_gram[max(runs, key=len)[-4:]].append((keyword, wordy))
            else:
                self.short.append(keyword)
        # sets, so that an intersection walks the smaller side (a dict: always the dict)
        self._word_set = frozenset(self.words)
        self._gram_set = frozenset(self.by_gram)

    def __bool__(self) -> bool:
        return bool(self.words or self.by_gram or self.short)

    def word_hits(self, text: TextIndex) -> set[str]:
        return {self.words[t] for t in text.tokens & self._word_set}

    def substring_hits(self, lowered: str, text: TextIndex) -> set[str]:
        found = {k for k in self.short if k in lowered}
        if self.by_gram:
            for gram in text.grams & self._gram_set:
                for keyword, wordy in self.by_gram[gram]:
                    if keyword in (text.spelled if wordy else lowered):
                        found.add(keyword)
        return found


class _LiteralSet:
    """Which of many literal texts occur in a text, in one pass of RE2 over the text (an
    RE2::Set: a DFA of all of them), whatever their number. ``None`` when it cannot tell:
    RE2 reports a DFA out of memory as no match, so "none found" is never trusted (nor
    text RE2 cannot encode, a lone surrogate), and the caller searches the plain way."""

    __slots__ = ("_set", "literals")

    def __init__(self, literals: Iterable[str]) -> None:
        self.literals = tuple(sorted(set(literals)))
        self._set: re2.Set | None = None
        if not self.literals or "" in self.literals:
            return
        options = re2.Options()
        options.literal = True
        options.case_sensitive = True  # the texts and keywords are lower-cased already
        options.log_errors = False
        options.max_mem = _SET_MEMORY
        compiled = re2.Set.SearchSet(options)
        try:
            for literal in self.literals:
                compiled.Add(literal)
            compiled.Compile()
        except re2.error:
            return
        self._set = compiled

    def search(self, text: str) -> set[str] | None:
        if self._set is None:
            return None
        try:
            found = self._set.Match(text)
        except UnicodeEncodeError:
            return None
        if not found:  # nothing, or a DFA out of memory: RE2 cannot say which
            return None
        literals = self.literals
        return {literals[i] for i in found}


_SET_MEMORY = 64 << 20  # bytes RE2 may use for a set's program and DFA (a cap: used lazily;
# a literal set's DFA is at most its Aho-Corasick automaton: about 10 MB for the default policy)


class KeywordScanner:
    """Which of a policy's keywords occur in a text, found once per text for every index
    that shares the scanner: whole words (``\\bxmrig\\b``) by a lookup in the text's
    words, substrings in one pass over the text (``_LiteralSet``). The result is kept on
    the ``TextIndex``: the substrings on the index of the text alone (they depend on the
    text only), the words on each index (its words may include context words)."""

    def __init__(self, keywords: Iterable[str]) -> None:
        self.keywords = frozenset(keywords)
        self._plain = _GramIndex(self.keywords)  # the plain way, when the set cannot tell
        self._literals = _LiteralSet(k for k in self.keywords if bare(k) == k)

    def found(self, text: TextIndex) -> set[str]:
        """The keywords that occur in ``text`` (shared: the caller must not change it)."""
        cache = text._found
        if cache is None:
            cache = text._found = {}
        found = cache.get(self)
        if found is None:
            found = self.substrings(text)
            if self._plain.words:
                found = found | self._plain.word_hits(text)
            cache[self] = found
        return found

    def substrings(self, text: TextIndex) -> set[str]:
        own = text.own if text.own is not None else text
        cache = own._found
        if cache is None:
            cache = own._found = {}
        key = self._literals
        found = cache.get(key)
        if found is None:
            if not (self._plain.short or self._plain.by_gram):
                found = set()
            else:
                found = self._literals.search(own.lowered)
                if found is None:
                    found = self._plain.substring_hits(own.lowered, own)
            cache[key] = found
        return found


class KeywordIndex:
    """Which of some keywords occur in a text, in time that depends on the text only.

    Indexes built with a shared ``KeywordScanner`` (which holds all their keywords) read a
    text once between them; without one, the index has a scanner of its own.
    """

    def __init__(self, keywords: Iterable[str], scanner: KeywordScanner | None = None) -> None:
        self.keywords = frozenset(keywords)
        plain = _GramIndex(self.keywords)
        self.words, self.by_gram, self.short = plain.words, plain.by_gram, plain.short
        if scanner is None or not self.keywords <= scanner.keywords:
            scanner = KeywordScanner(self.keywords)
        self.scanner = scanner

    def __bool__(self) -> bool:
        return bool(self.keywords)

    def hits(self, lowered: str, text: TextIndex | None = None) -> set[str]:
        """``text``: the index of ``lowered`` (its words may include context words)."""
        text = text if text is not None else TextIndex(lowered)
        return self.keywords & self.scanner.found(text)


# Which facts a regex leaf of each kind reads (as _regex_ok says, one fact at a time).
_READS = {
    "url": ("url",),
    "string": ("string", "url"),
    "shell": ("shell",),
    "connect": ("connect",),
}


# Between joined texts: a line break (`.` stops there, and in multi-line mode `^` and `$`
# match next to it, as they do at each text's start and end), then a character `\s` does
# not match; no word character, so \b and \B see what they see at a text's ends.
_SEPARATOR = "\n\x00\n"
# What a joined search cannot stand for: \A and \z, and turning multi-line mode off.
_TEXT_ENDS = re.compile(r"\\[Az]|\(\?[a-zA-Z]*-[a-zA-Z]*m")


def joined_pattern(pattern: Regex) -> Regex | None:
    """The pattern for a search of joined texts: in multi-line mode, so that ^ and $ also
    match at each text's start and end. Every match inside one text is then a match of the
    joined text at the same place (there are more: it is a filter). None: cannot be."""
    if _TEXT_ENDS.search(pattern.pattern):
        return None
    try:
        return compile_regex("(?m)" + pattern.pattern)
    except RegexError:
        return None


class _Texts:
    """The distinct texts one kind of regex leaf reads, in fact order, each with the first
    fact that has it. A leaf's first matching fact takes one search of all the texts joined
    (no match there: none in any text), then text by text from the text where that match
    starts (no text before it has a match: it would have been found first)."""

    __slots__ = ("_joined", "_starts", "rows")

    def __init__(self) -> None:
        self.rows: list[tuple[str, Fact]] = []
        self._joined: str | None = None
        self._starts: list[int] = []

    def first_match(self, pattern: Regex, joined: Regex | None) -> Fact | None:
        rows = self.rows
        begin = 0
        if len(rows) > 1 and joined is not None:
            if self._joined is None:
                self._joined = _SEPARATOR.join(text for text, _ in rows)
                gap = len(_SEPARATOR)
                self._starts = list(accumulate((len(t) + gap for t, _ in rows[:-1]), initial=0))
            found = joined.search(self._joined)
            if found is None:
                return None
            begin = bisect.bisect_right(self._starts, found.start()) - 1
        for text, fact in rows[begin:]:
            if pattern.search(text):
                return fact
        return None


def _texts_by_leaf_kind(facts: list[Fact]) -> dict[str, _Texts]:
    """For each regex leaf kind, the texts of the facts it reads (as _regex_ok says; a
    connect without host text is never read)."""
    out: dict[str, _Texts] = {}
    for leaf_kind, kinds in _READS.items():
        seen: set[str] = set()
        texts = out[leaf_kind] = _Texts()
        for fact in facts:
            if fact.kind not in kinds or fact.text in seen:
                continue
            if fact.text or leaf_kind != "connect":
                seen.add(fact.text)
                texts.rows.append((fact.text, fact))
    return out


def _given_text(value: Value) -> str:
    """An argument that is there: its literal text, or "" when it is not a literal (so '.*'
    means 'given' and any pattern that needs characters needs a literal)."""
    text = _value_text(value)
    return "" if text is None else text


def _value_text(value: Value) -> str | None:
    if value is UNKNOWN or isinstance(value, list | tuple | dict):
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


@dataclass(frozen=True)
class Staged:
    """A rule read in stages: the line keywords of alternatives read at once, and the
    alternatives whose parts must all match, as lists of (part, its line keywords)."""

    whole: frozenset[str]
    chains: list[list[tuple[Matcher, frozenset[str]]]]


class Engine:
    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.rules_of_leaf: dict[int, list[Rule]] = defaultdict(list)
        self.imports: dict[str, list[Leaf]] = defaultdict(list)
        self.calls: dict[str, list[Leaf]] = defaultdict(list)
        self.methods: dict[str, list[Leaf]] = defaultdict(list)  # `*.name`: any receiver
        self.likes: list[Leaf] = []  # call `like`: a regex on the called function's name
        self.programs: dict[str, list[Leaf]] = defaultdict(list)
        self.installs: dict[str, list[Leaf]] = defaultdict(list)
        self.repos: dict[str, list[Leaf]] = defaultdict(list)  # "name" or "owner/name"
        self.ports: dict[int, list[Leaf]] = defaultdict(list)
        self.gated: dict[str, list[Leaf]] = defaultdict(list)  # keyword -> regex leaves
        self.ungated: list[Leaf] = []  # regex leaves without keywords: always tried
        self.binaries: list[Leaf] = []  # binary leaves: only ever facts of kind "binary"
        self.listens: list[Leaf] = []  # listen leaves: only ever facts of kind "listen"
        self._joined: dict[int, Regex | None] = {}  # leaf -> its pattern for joined texts
        for rule in policy.rules:
            for leaf in _leaves(rule.match):
                self.rules_of_leaf[leaf.index].append(rule)
        for leaf in policy.leaves:
            self._index(leaf)
        # rules with a `like` leaf: they read the names of the functions a cell defines
        self.like_rules = {r.id for leaf in self.likes for r in self.rules_of_leaf[leaf.index]}
        self.regex_index = KeywordIndex(self.gated)
        self.likes_by_keyword: dict[str, list[Leaf]] = defaultdict(list)
        for leaf in self.likes:
            for keyword in leaf.keywords or ("",):
                self.likes_by_keyword[keyword].append(leaf)
        self.like_index = KeywordIndex(self.likes_by_keyword)
        self.like_keywords = frozenset(k for k in self.likes_by_keyword if k)
        self.binary_signatures = sorted({s.encode() for leaf in self.binaries for s in leaf.names})
        self.call_prefixes = {
            name.rsplit(".", i)[0] for name in self.calls for i in range(1, name.count(".") + 1)
        }
        self._build_prefilter(policy.rules)

    # -- prefilter ----------------------------------------------------------------
    def _build_prefilter(self, rules: list[Rule]) -> None:
        """Per rule, the keywords one of which any match needs, by where they can show."""
        self.always_live: set[str] = set()
        self.gate_rules: dict[str, dict[str, list[str]]] = {g: defaultdict(list) for g in GATES}
        self.rule_line_keywords: dict[str, set[str]] = {}
        self.rule_unless_keywords: dict[str, set[str]] = {}
        # the positive parts of a top-level `all` (or of an `all` under a top-level `any`),
        # each with its line keywords: read one after another (see ``next_parts``)
        self.rule_parts: dict[str, Staged] = {}
        for rule in rules:
            requirement = _requirement(rule.match)
            # lines worth a deep look; argument fragments ("-o") of shell leaves only count
            # on lines that reach a shell, which the markers select anyway
            # (the keywords of `not` parts apart: their lines matter only once the rest
            # of the rule has matched, see ``unless_keywords``)
            keys = _line_keys(rule.match)
            self.rule_line_keywords[rule.id] = keys[False]
            if keys[True] - keys[False]:
                self.rule_unless_keywords[rule.id] = keys[True] - keys[False]
            staged = _staged_parts(rule.match)
            if staged is not None:
                self.rule_parts[rule.id] = staged
            if requirement is None:
                self.always_live.add(rule.id)
                continue
            for kind, keyword in requirement:
                if kind != "connect":  # a connect always stands on a marked line
                    gate = "shell" if _generic(kind, keyword) else GATE_OF[kind]
                    self.gate_rules[gate][keyword].append(rule.id)
        # every line keyword as plain text: which of them a cell holds at all (see ``present``)
        every_line = {k for ks in self.rule_line_keywords.values() for k in ks}
        self._every_line = frozenset(every_line.union(*self.rule_unless_keywords.values()))
        self.line_texts = {bare(k) for k in self._every_line}
        # 'all' rules: every part's keywords must show, not only the most selective part's
        parts = {r.id: _conjunct_parts(r.match) for r in rules if r.id not in self.always_live}
        # one scanner for every keyword the prefilter asks about: a cell is read once for all
        # of them, not once per gate, per 'all' rule and for the lines
        every = set(self.line_texts)
        for rules_by_kw in self.gate_rules.values():
            every.update(rules_by_kw)
        for checks in parts.values():
            every.update(k for check in checks if not isinstance(check, tuple) for k in check)
        self.scanner = KeywordScanner(every)
        self.gates = {
            g: KeywordIndex(rules_by_kw, self.scanner) for g, rules_by_kw in self.gate_rules.items()
        }
        self._line_index: KeywordIndex | None = KeywordIndex(self.line_texts, self.scanner)
        self.always_deep = bool(self.always_live)
        self.conjuncts: dict[str, list[KeywordIndex | tuple[re.Pattern[str], ...]]] = {}
        for rule_id, checks in parts.items():
            if checks:
                self.conjuncts[rule_id] = [
                    check if isinstance(check, tuple) else KeywordIndex(check, self.scanner)
                    for check in checks
                ]

    def every_line_keyword(self) -> frozenset[str]:
        """The line keywords of every rule, `not` parts included."""
        return self._every_line

    def unless_keywords(self, hits: dict[int, Fact], rule_ids: Iterable[str]) -> set[str]:
        """The keywords of the `not` parts of those of ``rule_ids`` that match (``hits``:
        see ``add_hits``) when their `not` parts are taken as true: only for those can the
        lines of a `not` part change the outcome (sound: a fact can only make `not` false,
        and the rest of a rule needs its own keywords, whose lines were read first)."""
        wanted = [r for r in rule_ids if r in self.rule_unless_keywords]
        found: set[str] = set()
        for rule_id in wanted:
            if _evaluate(self.policy.rules_by_id[rule_id].match, hits, lenient=True) is not None:
                found |= self.rule_unless_keywords[rule_id]
        return found

    def next_parts(
        self,
        hits: dict[int, Fact],
        read: dict[str, list[Matcher]],
        unread: dict[str, list[tuple[Matcher, frozenset[str]]]],
    ) -> set[str] | None:
        """The line keywords of the next unread part of each staged rule whose parts read so
        far all match (``hits``: see ``add_hits``; leniently: `not` parts taken as true);
        that part moves from ``unread`` to ``read``; None when no part moved. Sound: a part
        that does not match on the lines of its own keywords cannot make its rule match,
        so the rule's other lines are not needed."""
        found: set[str] | None = None
        for rule_id, rest in unread.items():
            if not rest:
                continue
            if all(_evaluate(part, hits, lenient=True) is not None for part in read[rule_id]):
                part, keywords = rest.pop(0)
                read[rule_id].append(part)
                found = keywords | (found or set())
        return found

    def present(self, keywords: Iterable[str], lowered: str, text: TextIndex) -> set[str]:
        """The keywords that can mark a line of ``lowered`` (``text``: its words): a rule's
        keyword whose text does not occur in it anywhere cannot, so it is left out (the
        lines found stay the same; the line search gets shorter). Others are kept."""
        if self._line_index is None:
            self._line_index = KeywordIndex(self.line_texts, self.scanner)
        held = self._line_index.hits(lowered, text)
        known = self.line_texts
        return {k for k in keywords if (plain := bare(k)) in held or plain not in known}

    def wants_args(self, qualname: str) -> bool:
        """Whether a call's arguments matter enough to resolve names for them."""
        root = qualname.split(".")[0]
        if qualname in self.calls or root in SINK_ROOTS or root in FETCH_ROOTS:
            return True
        if "." in qualname and qualname.rsplit(".", 1)[1] in self.methods:
            return True
        return qualname.rsplit(".", 1)[-1] in ARG_VERBS

    def interesting(self, qualname: str) -> bool:
        """A name some rule calls, or a module through which code reaches a shell."""
        if qualname.split(".")[0] in SINK_ROOTS:
            return True
        return qualname in self.calls or qualname in self.call_prefixes

    def live_rules(self, lowered: str, shell: bool, text: TextIndex | None = None) -> set[str]:
        """Rules that can still match a text; ``shell``: the text reaches a shell."""
        live = set(self.always_live)
        text = text if text is not None else TextIndex(lowered)
        for gate, index in self.gates.items():
            if gate == "shell" and not shell:
                continue
            if gate == "url" and not any(m in lowered for m in URL_MARKS):
                continue
            for keyword in index.hits(lowered, text):
                live.update(self.gate_rules[gate][keyword])
        for rule_id in [r for r in live if r in self.conjuncts]:
            if not all(_shows(check, lowered, text) for check in self.conjuncts[rule_id]):
                live.discard(rule_id)
        return live

    def _index(self, leaf: Leaf) -> None:
        if leaf.kind == "binary":
            self.binaries.append(leaf)
        elif leaf.kind == "listen":
            self.listens.append(leaf)
        elif leaf.kind == "import":
            for name in leaf.names:
                self.imports[name].append(leaf)
        elif leaf.kind == "call" and leaf.pattern is not None:
            self.likes.append(leaf)
        elif leaf.kind == "call":
            for name in leaf.names:
                if name.startswith("*."):
                    self.methods[name[2:]].append(leaf)
                else:
                    self.calls[name].append(leaf)
        elif leaf.kind == "shell" and "*" not in leaf.names:
            for name in leaf.names:
                self.programs[name].append(leaf)
        elif leaf.kind == "install":
            for name in leaf.names:
                self.installs[name].append(leaf)
        elif leaf.kind == "repo":
            for name in leaf.names:
                self.repos[name].append(leaf)
        elif leaf.kind == "connect" and leaf.ports:
            for port in leaf.ports:
                self.ports[port].append(leaf)
        elif leaf.keywords:
            for keyword in leaf.keywords:
                self.gated[keyword].append(leaf)
        else:
            self.ungated.append(leaf)

    # -- leaf tests ------------------------------------------------------------
    @staticmethod
    def _call_ok(leaf: Leaf, fact: Fact) -> bool:
        if leaf.looped and (
            fact.anchor.looped < leaf.looped
            # a counted loop that sends each item once: a crawl, not a flood
            or (fact.anchor.looped <= COUNTED and fact.guessed)
        ):
            return False
        if leaf.guessed is not None and not any(leaf.guessed.search(k) for k in fact.guessed):
            return False
        for index, pattern in leaf.args:
            if index >= len(fact.args) or not pattern.search(_given_text(fact.args[index])):
                return False
        for name, pattern in leaf.kwargs:
            if name not in fact.kwargs or not pattern.search(_given_text(fact.kwargs[name])):
                return False
        return True

    @staticmethod
    def _regex_ok(leaf: Leaf, fact: Fact) -> bool:
        if leaf.kind == "url":
            return fact.kind == "url" and bool(leaf.pattern and leaf.pattern.search(fact.text))
        if leaf.kind == "string":
            return fact.kind in ("string", "url") and bool(
                leaf.pattern and leaf.pattern.search(fact.text)
            )
        if leaf.kind == "shell":
            return fact.kind == "shell" and bool(leaf.pattern and leaf.pattern.search(fact.text))
        if leaf.kind == "connect":
            return fact.kind == "connect" and bool(
                leaf.pattern and fact.text and leaf.pattern.search(fact.text)
            )
        return False

    def add_hits(self, hits: dict[int, Fact], facts: list[Fact]) -> None:
        """Adds to ``hits`` the leaves that ``facts`` match (each leaf's fact is the first
        found, not the first in the cell: for whether a part matches, not where)."""
        for index, fact in self.leaf_hits(facts).items():
            hits.setdefault(index, fact)

    def leaf_hits(self, facts: list[Fact]) -> dict[int, Fact]:
        """For each leaf that matches, the first fact it matches."""
        hits: dict[int, Fact] = {}

        def hit(leaf: Leaf, fact: Fact) -> None:
            hits.setdefault(leaf.index, fact)

        regex_facts: list[Fact] = []
        likes = self._likes_for(facts) if self.likes else []
        for fact in facts:
            kind = fact.kind
            if kind == "import":
                parts = fact.name.split(".")
                for i in range(1, len(parts) + 1):
                    for leaf in self.imports.get(".".join(parts[:i]), ()):
                        hit(leaf, fact)
            elif kind == "call":
                for leaf in self.calls.get(fact.name, ()):
                    if self._call_ok(leaf, fact):
                        hit(leaf, fact)
                if self.methods and "." in fact.name:
                    for leaf in self.methods.get(fact.name.rsplit(".", 1)[1], ()):
                        if self._call_ok(leaf, fact):
                            hit(leaf, fact)
                if likes:
                    own = fact.name.rsplit(".", 1)[-1]
                    for leaf in likes:
                        if leaf.pattern.search(own) and self._call_ok(leaf, fact):  # type: ignore[union-attr]
                            hit(leaf, fact)
            elif kind == "define":  # a function or class the code defines: `like` leaves
                for leaf in likes:
                    if leaf.pattern.search(fact.name) and not _conditioned(leaf):  # type: ignore[union-attr]
                        hit(leaf, fact)
            elif kind == "shell":
                for leaf in self.programs.get(fact.name, ()):
                    if leaf.pattern is None or leaf.pattern.search(fact.text):
                        hit(leaf, fact)
                regex_facts.append(fact)
            elif kind == "install":
                for leaf in self.installs.get(fact.name, ()):
                    if not leaf.managers or fact.manager in leaf.managers:
                        hit(leaf, fact)
            elif kind == "binary":  # args: the signatures the file holds; name: its path
                present = set(fact.args)
                for leaf in self.binaries:
                    held = tuple(s for s in leaf.names if s in present)
                    if len(held) >= leaf.minimum:
                        shown = f"{fact.evidence}: {', '.join(held)}"
                        hit(
                            leaf,
                            Fact(kind, fact.name, args=held, evidence=shown, anchor=fact.anchor),
                        )
            elif kind == "listen":  # port; name: "public" or "loopback" (the local address)
                port = fact.port if fact.port is not None else 0
                for leaf in self.listens:
                    wanted = leaf.addresses == "any" or fact.name == "public"
                    if wanted and any(low <= port <= high for low, high in leaf.spans):
                        hit(leaf, fact)
            elif kind == "connect":
                for leaf in self.ports.get(fact.port, ()) if fact.port is not None else ():
                    if leaf.pattern is None or (fact.text and leaf.pattern.search(fact.text)):
                        hit(leaf, fact)
                regex_facts.append(fact)
            else:
                if kind == "url" and self.repos:
                    self._repo_hits(fact, hit)
                regex_facts.append(fact)
        if regex_facts and (self.gated or self.ungated):
            texts = "\n".join(f.text for f in regex_facts).lower()
            candidates = list(self.ungated)
            for keyword in self.regex_index.hits(texts):
                candidates.extend(self.gated[keyword])
            texts_of = _texts_by_leaf_kind(regex_facts)
            for leaf in candidates:
                if leaf.index in hits or leaf.pattern is None or leaf.kind not in texts_of:
                    continue
                if leaf.index not in self._joined:
                    self._joined[leaf.index] = joined_pattern(leaf.pattern)
                found = texts_of[leaf.kind].first_match(leaf.pattern, self._joined[leaf.index])
                if found is not None:
                    hit(leaf, found)
        return hits

    def _likes_for(self, facts: list[Fact]) -> list[Leaf]:
        """The `like` leaves one of whose keywords the names called or defined hold (the
        others cannot match: each match of a leaf's regex holds one of its keywords)."""
        names = "\n".join(
            f.name.rsplit(".", 1)[-1] for f in facts if f.kind in ("call", "define")
        ).lower()
        found = {id(leaf): leaf for leaf in self.likes_by_keyword.get("", ())}
        for keyword in self.like_index.hits(names) if names else ():
            found.update((id(leaf), leaf) for leaf in self.likes_by_keyword[keyword])
        return list(found.values())

    def _repo_hits(self, fact: Fact, hit: Callable[[Leaf, Fact], None]) -> None:
        """Repo leaves naming the repository of a URL (by name or owner/name)."""
        found = repository(fact.text)
        if found is None:
            return
        owner, name = found
        for key in (name, f"{owner}/{name}"):
            for leaf in self.repos.get(key, ()):
                hit(leaf, fact)

    def match(self, facts: list[Fact]) -> list[tuple[Rule, Fact]]:
        # in the cell's order, so that a finding points at the first place, however the
        # statements were visited (a keyword pass, then names followed to earlier lines)
        hits = self.leaf_hits(sorted(facts, key=_place))
        seen: set[str] = set()
        out: list[tuple[Rule, Fact]] = []
        for index in hits:
            for rule in self.rules_of_leaf[index]:
                if rule.id in seen:
                    continue
                seen.add(rule.id)
                fact = _evaluate(rule.match, hits)
                if fact is not None and not fact.remembered:
                    out.append((rule, fact))
        return out


SINK_ROOTS = frozenset(
    {
        "os",
        "subprocess",
        "pty",
        "asyncio",
        "pexpect",
        "sh",
        "commands",
        "platform",
        "builtins",
        "importlib",
        "socket",
        "ctypes",
        "exec",
        "eval",
        "compile",
        "get_ipython",
        "__import__",
        "getattr",
    }
)
# Calls whose arguments feed a sink or a fetch wherever they come from.
ARG_VERBS = frozenset(
    {
        "system",
        "system_raw",
        "getoutput",
        "run_line_magic",
        "run_cell_magic",
        "run_cell",
        "connect",
        "connect_ex",
        "create_connection",
        "open_connection",
        "urlopen",
        "urlretrieve",
        "clone_from",
        "download_url_to_file",
        "load_state_dict_from_url",
        "hf_hub_download",
        "spawn",
        "Popen",
        "check_call",
        "check_output",
    }
)
FETCH_ROOTS = frozenset(
    {
        "requests",
        "urllib",
        "httpx",
        "aiohttp",
        "wget",
        "gdown",
        "git",
        "torch",
        "huggingface_hub",
        "pycurl",
        "urllib3",
    }
)
GATES = ("code", "shell", "url")
GATE_OF = {
    "import": "code",
    "call": "code",
    "string": "code",
    "shell": "shell",
    "install": "shell",
    "url": "url",
    "repo": "url",
    "connect": "code",
}
URL_MARKS = ("://", "git@", "magnet:")
Requirement = list[tuple[str, str]]  # (leaf kind, keyword): any one must be present


# Programs too common to mark a line on their own: their leaves count where a shell is reached.
GENERIC_PROGRAMS = frozenset(
    {
        "python",
        "python3",
        "bash",
        "sh",
        "java",
        "node",
        "npm",
        "npx",
        "pip",
        "pip3",
        "curl",
        "wget",
        "git",
        "ssh",
        "docker",
        "sudo",
        "apt",
        "apt-get",
        "tar",
        "unzip",
        "chmod",
        "nohup",
        "screen",
    }
)


def _generic(kind: str, keyword: str) -> bool:
    """Argument fragments ("-o") and common programs: only meaningful where a shell is."""
    if kind not in ("shell", "install"):
        return False
    plain = bare(keyword)
    return plain == keyword or plain in GENERIC_PROGRAMS


def _conjunct_parts(matcher: Matcher) -> list[frozenset[str] | tuple[re.Pattern[str], ...]]:
    """For a top-level `all`: one check per part that must show in the text (sound: every
    part of an `all` must match, and a part with a requirement needs one of its keywords):
    the part's keywords, or the patterns of which one must match."""
    if not isinstance(matcher, Combinator) or matcher.op != "all":
        return []
    checks: list[frozenset[str] | tuple[re.Pattern[str], ...]] = []
    for child in matcher.children:
        requirement = _requirement(child)
        if requirement:
            checks.append(frozenset(k for _, k in requirement))
        if isinstance(child, Leaf) and child.looped:
            checks.append(ENDLESS_TEXT)  # the loop `looped: true` needs shows in the text
    return checks


def _shows(
    check: KeywordIndex | tuple[re.Pattern[str], ...], lowered: str, text: TextIndex
) -> bool:
    if isinstance(check, tuple):  # searched once per text, however many rules ask
        cache = text._found
        if cache is None:
            cache = text._found = {}
        shown = cache.get(check)
        if shown is None:
            shown = cache[check] = any(pattern.search(lowered) for pattern in check)
        return bool(shown)
    return bool(check.hits(lowered, text))


def _requirement(matcher: Matcher) -> Requirement | None:
    """Keywords one of which every match of ``matcher`` contains; None: no such set; []:
    no cell can match (a `binary` or `listen` leaf, or an `all` with one)."""
    if isinstance(matcher, Leaf):
        if matcher.kind in ("binary", "listen"):
            return []
        return [(matcher.kind, k) for k in matcher.keywords] or None
    if matcher.op == "not":
        return None
    children = [_requirement(c) for c in matcher.children]
    if matcher.op == "any":
        if any(c is None for c in children):
            return None
        return [pair for c in children for pair in c]  # type: ignore[union-attr]
    if any(c == [] for c in children):
        return []
    usable = [c for c in children if c]
    if not usable:
        return None
    # 'all': one child's keywords suffice; take the most selective (longest shortest keyword)
    return max(usable, key=lambda c: (min(len(bare(k)) for _, k in c), -len(c)))


def _leaves(matcher: Matcher) -> Iterable[Leaf]:
    if isinstance(matcher, Leaf):
        yield matcher
    else:
        for child in matcher.children:
            yield from _leaves(child)


_TRUE = Fact("none")


def _conditioned(leaf: Leaf) -> bool:
    """A call leaf with a condition on how the call is made (which a definition lacks)."""
    return bool(leaf.looped or leaf.guessed or leaf.args or leaf.kwargs)


def _line_keys(matcher: Matcher) -> tuple[set[str], set[str]]:
    """The line keywords of a matcher's leaves: (outside `not` parts, inside them).
    Argument fragments ("-o") of shell leaves only count on lines that reach a shell,
    which the markers select anyway; a connect always stands on a marked line."""
    keys: tuple[set[str], set[str]] = (set(), set())
    for leaf, negated in _signed_leaves(matcher):
        if leaf.kind != "connect":
            keys[negated].update(k for k in leaf.keywords if not _generic(leaf.kind, k))
    return keys


def _staged_parts(matcher: Matcher) -> Staged | None:
    """A rule's alternatives that are an `all` of several positive parts, each part with
    its line keywords, and the line keywords of the other alternatives (read whole);
    None when the rule has no such alternative."""
    alternatives = [matcher]
    if isinstance(matcher, Combinator) and matcher.op == "any":
        alternatives = list(matcher.children)
    whole: set[str] = set()
    chains: list[list[tuple[Matcher, frozenset[str]]]] = []
    for alternative in alternatives:
        parts = []
        if isinstance(alternative, Combinator) and alternative.op == "all":
            parts = [
                (child, frozenset(_line_keys(child)[False]))
                for child in alternative.children
                if not (isinstance(child, Combinator) and child.op == "not")
            ]
        if len(parts) > 1:
            chains.append(parts)
        else:
            whole |= _line_keys(alternative)[False]
    return Staged(frozenset(whole), chains) if chains else None


def _signed_leaves(matcher: Matcher, negated: bool = False) -> Iterable[tuple[Leaf, bool]]:
    """Each leaf, and whether it stands under a `not`."""
    if isinstance(matcher, Leaf):
        yield matcher, negated
    else:
        for child in matcher.children:
            yield from _signed_leaves(child, negated or matcher.op == "not")


def _evaluate(matcher: Matcher, hits: dict[int, Fact], lenient: bool = False) -> Fact | None:
    """The fact that locates a match of ``matcher``, or None when it does not match;
    ``lenient``: every `not` part taken as true (a match then is only a may-match)."""
    if isinstance(matcher, Leaf):
        return hits.get(matcher.index)
    assert isinstance(matcher, Combinator)
    if matcher.op == "not":
        if lenient:
            return _TRUE
        return None if _evaluate(matcher.children[0], hits) is not None else _TRUE
    if matcher.op == "any":
        found_any = [
            f for f in (_evaluate(c, hits, lenient) for c in matcher.children) if f is not None
        ]
        return min(found_any, key=_rank) if found_any else None
    located: Fact | None = None
    for child in matcher.children:
        found = _evaluate(child, hits, lenient)
        if found is None:
            return None
        if found is not _TRUE and (located is None or _rank(found) < _rank(located)):
            located = found
    return located


def _place(fact: Fact) -> tuple[bool, int]:
    """Where a fact's statement starts in the cell; facts remembered from earlier cells
    (context, never a finding of their own) after every fact of this cell."""
    return fact.remembered, fact.anchor.line or fact.anchor.base


def _rank(fact: Fact) -> tuple[bool, bool]:
    """Where a match is located: a fact of this cell before one remembered from earlier
    cells, and the act before an import (context)."""
    return fact.remembered, fact.kind == "import"
