"""The shared keyword scanner finds exactly what a plain search finds.

The engine reads a cell once for every keyword its prefilter asks about (gates, the parts
of `all` rules, the line keywords): an RE2 set of the substring keywords, the whole words
in the cell's words. RE2 cannot tell "no match" from "DFA out of memory", nor search text
with a lone surrogate: then the plain way answers.
"""

from __future__ import annotations

import re

import pytest
from case_cells import CELLS, POLICY

from jupyter_colab_guard.analysis import Analyzer
from jupyter_colab_guard.analysis.engine import (
    KeywordIndex,
    KeywordScanner,
    TextIndex,
    _LiteralSet,
)
from jupyter_colab_guard.policy.keywords import bare

ENGINE = Analyzer(POLICY).engine
LONG = ["\n".join(CELLS[i : i + 60]) for i in range(0, len(CELLS), 60)]
TEXTS = CELLS + LONG


def plain(keywords: frozenset[str], lowered: str, words: set[str]) -> set[str]:
    """A substring keyword anywhere in the text; a whole word among the text's words."""
    return {k for k in keywords if (bare(k) in words if bare(k) != k else k in lowered)}


def indexes() -> list[KeywordIndex]:
    checks = [c for cs in ENGINE.conjuncts.values() for c in cs if isinstance(c, KeywordIndex)]
    assert ENGINE._line_index is not None
    return [*ENGINE.gates.values(), ENGINE._line_index, ENGINE.regex_index, *checks]


def test_every_prefilter_index_shares_the_engine_scanner() -> None:
    for index in indexes():
        if index is ENGINE.regex_index:  # fact texts, not the cell: a scanner of its own
            continue
        assert index.scanner is ENGINE.scanner
        assert index.keywords <= ENGINE.scanner.keywords


@pytest.mark.parametrize("fallback", [False, True], ids=["re2-set", "plain-way"])
def test_indexes_find_what_a_plain_search_finds(
    fallback: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if fallback:  # as after a DFA out of memory: the set answers "cannot tell"
        monkeypatch.setattr(_LiteralSet, "search", lambda self, text: None)
    found = 0
    for text in CELLS[::5] + LONG if fallback else TEXTS:  # (the plain way is slow)
        lowered = text.lower()
        words = set(re.findall(r"[a-z0-9_]+", lowered))
        shared = TextIndex(lowered)
        every = plain(ENGINE.scanner.keywords | ENGINE.regex_index.keywords, lowered, words)
        for number, index in enumerate(indexes()):
            expected = every & index.keywords
            if number < 5:  # the gates, the lines, the fact texts: also each on its own
                assert index.hits(lowered) == expected
            assert index.hits(lowered, shared) == expected
            found += len(expected)
    assert found > 1000


def test_context_words_count_for_whole_words_only() -> None:
    """The gate's index of a cell may hold earlier cells' imports as words: whole-word
    keywords see them, substrings are read in the text alone."""
    scanner = KeywordScanner({"\\bzipfile\\b", "zipf", "xmrig"})
    lowered = "print(1)"
    own = TextIndex(lowered)
    with_context = TextIndex(lowered, own.tokens | {"zipfile", "xmrig"}, own=own)
    assert scanner.found(with_context) == {"\\bzipfile\\b"}
    assert scanner.found(own) == set()


@pytest.mark.parametrize(
    "text",
    [
        "",
        "x = '\ud800' + 'xmrig'",  # a lone surrogate: RE2 cannot encode it
        "nothing here at all",
        "ünïcödé stratum+tcp://pool, ß İ xmrig",
        "\x00xmrig\x00",
    ],
)
def test_odd_texts(text: str) -> None:
    scanner = KeywordScanner({"xmrig", "stratum+tcp", "\\bpool\\b", "ß i", "-o", "zzz"})
    lowered = text.lower()
    words = set(re.findall(r"[a-z0-9_]+", lowered))
    assert scanner.found(TextIndex(lowered)) == plain(scanner.keywords, lowered, words)


def test_many_keywords_one_pass() -> None:
    """Thousands of keywords (a policy ten times the size) in one set."""
    keywords = {f"kw{i:05d}x" for i in range(20000)} | {f"-{i}q" for i in range(2000)}
    scanner = KeywordScanner(keywords)
    text = "a kw00042x b -17q c kw19999x kw2 -3"
    assert scanner.found(TextIndex(text)) == {"kw00042x", "-17q", "kw19999x"}


def test_the_words_of_a_text_are_the_runs_of_word_characters() -> None:
    import random

    from jupyter_colab_guard.analysis.engine import words_of

    rnd = random.Random(3)
    alphabet = [chr(c) for c in range(256)] + ["ß", "İ", "ä", "\u2028", "é", "\ud800", "\U0001d535"]
    texts = [t.lower() for t in TEXTS] + [
        "".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 80))) for _ in range(3000)
    ]
    for text in texts:
        assert words_of(text) == set(re.findall(r"[a-z0-9_]+", text)), repr(text[:100])
