"""Derive the literal text every match must contain (for the prefilter).

A keyword is either a substring (``stratum+``) or a whole word written ``\\bxmrig\\b``,
which only counts where it stands as a word of its own (not inside ``xmrigger``).

Policy patterns are RE2 syntax, read here with Python's parser. Where the two differ,
Python must never see a literal RE2 does not require: a pattern Python rejects (``\\pL``,
``\\z``, ``\\Q...\\E``) or with a POSIX class (``[[:alpha:]]``, to Python a set and then a
literal ``]``) gets no keyword; ``x{,3}`` (literal text to RE2) only hides literals from
Python.
"""

from __future__ import annotations

import re
import re._constants as C
import re._parser as P

MIN_KEYWORD = 3
_WORD = re.compile(r"\w+")
_POSIX_CLASS = re.compile(r"\[:\^?[a-z]+:\]")

# A requirement is a set of alternatives: at least one of them occurs in any match.
Requirement = frozenset[str]


def word(name: str) -> str:
    """The keyword for a name: a whole word where it is one, else a substring."""
    name = name.lower()
    return f"\\b{name}\\b" if _WORD.fullmatch(name) else name


def bare(keyword: str) -> str:
    return keyword[2:-2] if keyword.startswith("\\b") and keyword.endswith("\\b") else keyword


def _length(req: Requirement) -> int:
    return min(len(bare(x)) for x in req)


def _best(reqs: list[Requirement]) -> Requirement | None:
    """The most selective requirement: the one whose shortest alternative is longest."""
    usable = [r for r in reqs if r and _length(r) >= MIN_KEYWORD]
    if not usable:
        return None
    return max(usable, key=lambda r: (_length(r), any(x.startswith("\\b") for x in r), -len(r)))


def _sequence(items: P.SubPattern | list) -> list[Requirement]:
    """Requirements of a concatenation: literal runs and required groups."""
    elements: list[tuple[str, Requirement | None]] = []  # ("b"|"req"|"other", requirement)
    run: list[str] = []

    def flush() -> None:
        if run:
            elements.append(("req", frozenset(["".join(run)])))
            run.clear()

    for op, arg in items:
        if op is C.LITERAL:
            run.append(chr(arg).lower())
            continue
        flush()
        if op is C.AT:
            elements.append(("b" if arg is C.AT_BOUNDARY else "other", None))
        elif op in (C.ASSERT, C.ASSERT_NOT):
            continue
        elif op is C.SUBPATTERN:
            elements.append(("req", _best(_sequence(arg[-1]))))
        elif op is C.BRANCH:
            alternatives = [_best(_sequence(branch)) for branch in arg[1]]
            joined = frozenset().union(*alternatives) if all(alternatives) else None
            elements.append(("req", joined))  # type: ignore[arg-type]
        elif op in (C.MAX_REPEAT, C.MIN_REPEAT, C.POSSESSIVE_REPEAT) and arg[0] >= 1:
            elements.append(("other", None))
            elements.append(("req", _best(_sequence(arg[2]))))
            elements.append(("other", None))
        else:
            elements.append(("other", None))
    flush()
    reqs: list[Requirement] = []
    for i, (kind, req) in enumerate(elements):
        if kind != "req" or not req:
            continue
        bounded = 0 < i < len(elements) - 1 and elements[i - 1][0] == "b" == elements[i + 1][0]
        if bounded:
            req = frozenset(word(x) if not x.startswith("\\b") else x for x in req)
        reqs.append(req)
    return reqs


def regex_keywords(pattern: str) -> tuple[str, ...]:
    """Keywords of which every match contains at least one; () if none found."""
    if _POSIX_CLASS.search(pattern):
        return ()
    try:
        parsed = P.parse(pattern, re.IGNORECASE)
    except re.error:
        return ()
    best = _best(_sequence(parsed))
    return tuple(sorted(best)) if best else ()
