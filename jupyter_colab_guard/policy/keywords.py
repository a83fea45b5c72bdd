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
MAX_SPELLINGS = 64  # alternatives of one keyword spelled out from a run of small parts
SHORT_KEYWORD = 4  # only keywords this short (`pass`, `top`) are spelled out longer
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


def _spellings(op: object, arg: object) -> set[str] | None:
    """Every text one element of a pattern can match, lower-cased (zero-width ones: "");
    None when there are more than MAX_SPELLINGS or no bound."""
    if op is C.LITERAL:
        return {chr(arg).lower()}  # type: ignore[arg-type]
    if op in (C.AT, C.ASSERT, C.ASSERT_NOT):
        return {""}
    if op is C.IN:
        chars: set[str] = set()
        for kind, value in arg:  # type: ignore[attr-defined]
            if kind is C.LITERAL:
                chars.add(chr(value).lower())
            elif kind is C.RANGE and value[1] - value[0] < MAX_SPELLINGS:
                chars.update(chr(c).lower() for c in range(value[0], value[1] + 1))
            else:  # a negated set, a category (\d is Unicode to Python), a wide range
                return None
        return chars if len(chars) <= MAX_SPELLINGS else None
    if op is C.SUBPATTERN:
        return _run_spellings(arg[-1])  # type: ignore[index]
    if op is C.BRANCH:
        out: set[str] = set()
        for branch in arg[1]:  # type: ignore[index]
            texts = _run_spellings(branch)
            if texts is None:
                return None
            out |= texts
        return out if len(out) <= MAX_SPELLINGS else None
    if op in (C.MAX_REPEAT, C.MIN_REPEAT, C.POSSESSIVE_REPEAT) and arg[1] == 1:  # type: ignore[index]
        texts = _run_spellings(arg[2])  # type: ignore[index]
        if texts is None:
            return None
        return texts | {""} if arg[0] == 0 else texts  # type: ignore[index]
    return None


def _run_spellings(items: P.SubPattern | list) -> set[str] | None:
    """Every text a concatenation can match, or None (see ``_spellings``)."""
    out = {""}
    for op, arg in items:
        texts = _spellings(op, arg)
        if texts is None or len(out) * len(texts) > MAX_SPELLINGS:
            return None
        out = {a + b for a in out for b in texts}
    return out


def _spelled_runs(items: P.SubPattern | list) -> list[Requirement]:
    """Requirements spelled out from runs of consecutive small parts: in ``pass[-_ ]?list``
    every match holds one of "passlist", "pass-list", "pass_list", "pass list" (rarer
    than "pass" or "list"). From each part, the longest run within MAX_SPELLINGS."""
    parts: list[set[str] | None] = []
    for op, arg in items:
        last = parts[-1] if parts else None
        if op is C.LITERAL and last is not None and len(last) == 1:  # "pass": one part
            parts[-1] = {next(iter(last)) + chr(arg).lower()}
        else:
            parts.append(_spellings(op, arg))
    reqs: list[Requirement] = []
    for start in range(len(parts)):
        product = {""}
        for texts in parts[start:]:
            if texts is None or len(product) * len(texts) > MAX_SPELLINGS:
                break
            product = {a + b for a in product for b in texts}
        if min(map(len, product)) >= MIN_KEYWORD:
            reqs.append(frozenset(product))
    return reqs


def _sequence(items: P.SubPattern | list, spell: bool = False) -> list[Requirement]:
    """Requirements of a concatenation: literal runs and required groups (``spell``: also
    runs of small parts spelled out, see ``_spelled_runs``)."""
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
            elements.append(("req", _best(_sequence(arg[-1], spell))))
        elif op is C.BRANCH:
            alternatives = [_best(_sequence(branch, spell)) for branch in arg[1]]
            joined = frozenset().union(*alternatives) if all(alternatives) else None
            elements.append(("req", joined))  # type: ignore[arg-type]
        elif op in (C.MAX_REPEAT, C.MIN_REPEAT, C.POSSESSIVE_REPEAT) and arg[0] >= 1:
            elements.append(("other", None))
            elements.append(("req", _best(_sequence(arg[2], spell))))
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
    if spell:
        reqs += _spelled_runs(items)
    return reqs


def sharpened(given: tuple[str, ...], derived: tuple[str, ...]) -> tuple[str, ...]:
    """A policy's own keywords for a regex leaf (``given``), or, when those are short, the
    ones derived from its regex when longer and each holds one of the given ones (`pass`
    -> `pass-list`, `pass_file`, ...): every match holds a derived keyword, and the
    policy's choice of the telling part stays in each."""
    short = _length(frozenset(given)) <= SHORT_KEYWORD
    if not short or not derived or _length(frozenset(derived)) <= _length(frozenset(given)):
        return given
    plain = [bare(k) for k in given]
    if all(any(p in bare(d) for p in plain) for d in derived):
        return derived
    return given


def regex_keywords(pattern: str, spell: bool = False) -> tuple[str, ...]:
    """Keywords of which every match contains at least one; () if none found. ``spell``:
    short keywords may be spelled out from runs of small parts (substrings, never whole
    words: for leaves whose substring keywords mark lines, not shell arguments)."""
    if _POSIX_CLASS.search(pattern):
        return ()
    try:
        parsed = P.parse(pattern, re.IGNORECASE)
    except re.error:
        return ()
    best = _best(_sequence(parsed))
    if spell and (best is None or _length(best) <= SHORT_KEYWORD):
        best = _best(_sequence(parsed, spell=True))
    return tuple(sorted(best)) if best else ()
