"""Derive the literal text every match of a regex must contain (for the prefilter)."""

from __future__ import annotations

import re
import re._constants as C  # noqa: N812
import re._parser as P  # noqa: N812

MIN_KEYWORD = 3

# A requirement is a set of alternatives: at least one of them occurs in any match.
Requirement = frozenset[str]


def _best(reqs: list[Requirement]) -> Requirement | None:
    """The most selective requirement: the one whose shortest alternative is longest."""
    usable = [r for r in reqs if r and min(len(x) for x in r) >= MIN_KEYWORD]
    if not usable:
        return None
    return max(usable, key=lambda r: (min(len(x) for x in r), -len(r)))


def _sequence(items: P.SubPattern | list) -> list[Requirement]:
    """Requirements of a concatenation: literal runs and required groups."""
    reqs: list[Requirement] = []
    run: list[str] = []

    def flush() -> None:
        if run:
            reqs.append(frozenset(["".join(run)]))
            run.clear()

    for op, arg in items:
        if op is C.LITERAL:
            run.append(chr(arg).lower())
            continue
        if op in (C.AT, C.ASSERT, C.ASSERT_NOT):
            continue  # zero-width: does not break a literal run
        flush()
        if op is C.SUBPATTERN:
            sub = _best(_sequence(arg[-1]))
            if sub:
                reqs.append(sub)
        elif op is C.BRANCH:
            alternatives = [_best(_sequence(branch)) for branch in arg[1]]
            if all(alternatives):
                reqs.append(frozenset().union(*alternatives))  # type: ignore[arg-type]
        elif op in (C.MAX_REPEAT, C.MIN_REPEAT, C.POSSESSIVE_REPEAT) and arg[0] >= 1:
            sub = _best(_sequence(arg[2]))
            if sub:
                reqs.append(sub)
    flush()
    return reqs


def regex_keywords(pattern: str) -> tuple[str, ...]:
    """Lower-case literals of which every match contains at least one; () if none found."""
    try:
        parsed = P.parse(pattern, re.IGNORECASE)
    except re.error:
        return ()
    best = _best(_sequence(parsed))
    return tuple(sorted(best)) if best else ()
