"""Rules compiled into lookup tables: matching cost grows with the facts, not the rules."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable

from ..policy.model import Combinator, Leaf, Matcher, Policy, Rule
from .facts import UNKNOWN, Fact, Value

_WORD = re.compile(r"[a-z0-9]{4,}")  # alphanumeric runs long enough to hold a 4-gram


class KeywordIndex:
    """Which of many keywords occur in a text, in time that depends on the text only."""

    def __init__(self, keywords: Iterable[str]) -> None:
        self.by_gram: dict[str, list[str]] = defaultdict(list)
        self.short: list[str] = []
        for keyword in sorted(set(keywords)):
            runs = _WORD.findall(keyword)
            if runs:
                self.by_gram[max(runs, key=len)[:4]].append(keyword)
            else:
                self.short.append(keyword)

    def hits(self, lowered: str) -> set[str]:
        found = {k for k in self.short if k in lowered}
        if not self.by_gram:
            return found
        grams = {w[i : i + 4] for w in set(_WORD.findall(lowered)) for i in range(len(w) - 3)}
        for gram in grams.intersection(self.by_gram):
            found.update(k for k in self.by_gram[gram] if k in lowered)
        return found


def _value_text(value: Value) -> str | None:
    if value is UNKNOWN or isinstance(value, list | tuple | dict):
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


class Engine:
    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.rules_of_leaf: dict[int, list[Rule]] = defaultdict(list)
        self.imports: dict[str, list[Leaf]] = defaultdict(list)
        self.calls: dict[str, list[Leaf]] = defaultdict(list)
        self.programs: dict[str, list[Leaf]] = defaultdict(list)
        self.installs: dict[str, list[Leaf]] = defaultdict(list)
        self.ports: dict[int, list[Leaf]] = defaultdict(list)
        self.gated: dict[str, list[Leaf]] = defaultdict(list)  # keyword -> regex leaves
        self.ungated: list[Leaf] = []  # regex leaves without keywords: always tried
        self.always_deep = False
        all_keywords: list[str] = []
        for rule in policy.rules:
            for leaf in _leaves(rule.match):
                self.rules_of_leaf[leaf.index].append(rule)
        for leaf in policy.leaves:
            self._index(leaf)
            all_keywords.extend(leaf.keywords)
            if not leaf.keywords:
                self.always_deep = True
        self.prefilter = KeywordIndex(all_keywords)
        self.regex_index = KeywordIndex(self.gated)

    def _index(self, leaf: Leaf) -> None:
        if leaf.kind == "import":
            for name in leaf.names:
                self.imports[name].append(leaf)
        elif leaf.kind == "call":
            for name in leaf.names:
                self.calls[name].append(leaf)
        elif leaf.kind == "shell" and "*" not in leaf.names:
            for name in leaf.names:
                self.programs[name].append(leaf)
        elif leaf.kind == "install":
            for name in leaf.names:
                self.installs[name].append(leaf)
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
        for index, pattern in leaf.args:
            text = _value_text(fact.args[index]) if index < len(fact.args) else None
            if text is None or not pattern.search(text):
                return False
        for name, pattern in leaf.kwargs:
            text = _value_text(fact.kwargs.get(name, UNKNOWN))
            if text is None or not pattern.search(text):
                return False
        return True

    @staticmethod
    def _regex_ok(leaf: Leaf, fact: Fact) -> bool:
        if leaf.kind == "url":
            return fact.kind == "url" and bool(leaf.pattern and leaf.pattern.search(fact.text))
        if leaf.kind == "string":
            return fact.kind in ("string", "url") and bool(
                leaf.pattern and leaf.pattern.search(fact.text))
        if leaf.kind == "shell":
            return fact.kind == "shell" and bool(leaf.pattern and leaf.pattern.search(fact.text))
        if leaf.kind == "connect":
            return fact.kind == "connect" and bool(
                leaf.pattern and fact.text and leaf.pattern.search(fact.text))
        return False

    def leaf_hits(self, facts: list[Fact]) -> dict[int, Fact]:
        """For each leaf that matches, the first fact it matches."""
        hits: dict[int, Fact] = {}

        def hit(leaf: Leaf, fact: Fact) -> None:
            hits.setdefault(leaf.index, fact)

        regex_facts: list[Fact] = []
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
            elif kind == "shell":
                for leaf in self.programs.get(fact.name, ()):
                    if leaf.pattern is None or leaf.pattern.search(fact.text):
                        hit(leaf, fact)
                regex_facts.append(fact)
            elif kind == "install":
                for leaf in self.installs.get(fact.name, ()):
                    if not leaf.managers or fact.manager in leaf.managers:
                        hit(leaf, fact)
            elif kind == "connect":
                for leaf in self.ports.get(fact.port, ()) if fact.port is not None else ():
                    if leaf.pattern is None or (fact.text and leaf.pattern.search(fact.text)):
                        hit(leaf, fact)
                regex_facts.append(fact)
            else:
                regex_facts.append(fact)
        if regex_facts and (self.gated or self.ungated):
            texts = "\n".join(f.text for f in regex_facts).lower()
            candidates = list(self.ungated)
            for keyword in self.regex_index.hits(texts):
                candidates.extend(self.gated[keyword])
            for leaf in candidates:
                if leaf.index in hits:
                    continue
                for fact in regex_facts:
                    if self._regex_ok(leaf, fact):
                        hit(leaf, fact)
                        break
        return hits

    def match(self, facts: list[Fact]) -> list[tuple[Rule, Fact]]:
        hits = self.leaf_hits(facts)
        seen: set[str] = set()
        out: list[tuple[Rule, Fact]] = []
        for index in hits:
            for rule in self.rules_of_leaf[index]:
                if rule.id in seen:
                    continue
                seen.add(rule.id)
                fact = _evaluate(rule.match, hits)
                if fact is not None:
                    out.append((rule, fact))
        return out


def _leaves(matcher: Matcher) -> Iterable[Leaf]:
    if isinstance(matcher, Leaf):
        yield matcher
    else:
        for child in matcher.children:
            yield from _leaves(child)


_TRUE = Fact("none")


def _evaluate(matcher: Matcher, hits: dict[int, Fact]) -> Fact | None:
    """The fact that locates a match of ``matcher``, or None when it does not match."""
    if isinstance(matcher, Leaf):
        return hits.get(matcher.index)
    assert isinstance(matcher, Combinator)
    if matcher.op == "not":
        return None if _evaluate(matcher.children[0], hits) is not None else _TRUE
    if matcher.op == "any":
        for child in matcher.children:
            found = _evaluate(child, hits)
            if found is not None:
                return found
        return None
    located: Fact | None = None
    for child in matcher.children:
        found = _evaluate(child, hits)
        if found is None:
            return None
        # locate at the most specific signal: an import is context, not the act
        if found is not _TRUE and (located is None or located.kind == "import"):
            located = found
    return located
