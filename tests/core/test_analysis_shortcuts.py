"""The analyzer's speed shortcuts give exactly what the plain way gives.

- ``walk`` makes the same visit/leave calls, in the same order, as libcst's ``node.visit``;
- a regex leaf's search over all fact texts joined finds the same first fact as searching
  the facts one by one (anchors, multi-line texts, matches across two texts);
- the keyword line search over only the keywords a cell holds marks the same lines.
"""

from __future__ import annotations

import ast
import itertools
import re

import libcst as cst
import pytest
from case_cells import CELLS, POLICY
from hypothesis import given, settings
from hypothesis import strategies as st

from jupyter_colab_guard.analysis import Analyzer, walk
from jupyter_colab_guard.analysis.engine import (
    Engine,
    TextIndex,
    _texts_by_leaf_kind,
    joined_pattern,
)
from jupyter_colab_guard.analysis.facts import Fact
from jupyter_colab_guard.analysis.locate import keyword_lines, snippets
from jupyter_colab_guard.analysis.transform import transform
from jupyter_colab_guard.policy import load_policy
from jupyter_colab_guard.policy.model import Leaf
from jupyter_colab_guard.policy.regex import compile_regex

ANALYZER = Analyzer(POLICY)


# -- walk ------------------------------------------------------------------------------
class Recorder(cst.CSTVisitor):
    """Logs every visit and leave; a bare string statement is not entered (as pyscan)."""

    def __init__(self) -> None:
        super().__init__()
        self.log: list[tuple[str, str, int]] = []


def _add_hooks() -> None:
    for name, cls in vars(cst).items():
        if not (isinstance(cls, type) and issubclass(cls, cst.CSTNode)):
            continue

        def visit(self: Recorder, node: cst.CSTNode, name: str = name) -> bool:
            self.log.append(("visit", name, id(node)))
            return not (isinstance(node, cst.Expr) and isinstance(node.value, cst.SimpleString))

        def leave(self: Recorder, node: cst.CSTNode, name: str = name) -> None:
            self.log.append(("leave", name, id(node)))

        setattr(Recorder, f"visit_{name}", visit)
        setattr(Recorder, f"leave_{name}", leave)


_add_hooks()


def _same_walk(source: str) -> None:
    module = cst.parse_module(source)
    theirs, ours = Recorder(), Recorder()
    module.visit(theirs)
    walk.walk(ours, module)
    assert ours.log == theirs.log
    assert len(ours.log) > 2


FSTRINGS = [
    # the first f-string field has no format spec: the spec, seen later, must be walked too
    "a = f'{x}'\nb = f'{y:>{width}}'\nc = f'{z!r:{fmt(w)}}'\n",
    "def f(a, /, b=1, *c, d: int = 2, **e) -> None:\n    return lambda q, *r: q\n",
    "async def g():\n    async with a() as b, c as d:\n        await e\n    async for x in y:\n"
    "        yield x\n",
    "match p:\n    case {'k': [1, *rest]} | Point(x=0) if rest:\n        pass\n    case _:\n"
    "        pass\n",
    "try:\n    pass\nexcept* (A, B) as e:\n    raise X from e\nfinally:\n    del a[1:2, ::3]\n",
    "from . import a\nfrom .b import (c as d, e)\nfrom f import *\nimport g.h as i, j\n",
    "x = [i for i in y if i] + {k: v for k, v in z} + {*s} + (t := 1,)\n",
    "@dec(1)\nclass C(B, metaclass=M):\n    '''doc'''\n    x: int = 1\n    global q\n",
    "'doc'\nprint(*a, **b, sep='')\nx = a if b else c\nassert not a < b <= c, 'm'\n",
]


@pytest.mark.parametrize("source", FSTRINGS)
def test_walk_visits_like_libcst_on_every_kind_of_node(source: str) -> None:
    walk._FIELDS.clear()  # learn each node's fields from these sources first
    walk._PLANS.clear()
    _same_walk(source)


def test_walk_visits_like_libcst_on_the_case_corpus() -> None:
    walked = 0
    for cell in CELLS:
        try:
            source = transform(cell)[0]
            cst.parse_module(source)
        except Exception:
            continue
        _same_walk(source)
        walked += 1
    assert walked > 300


# -- regex leaves over joined texts --------------------------------------------------------
def _first_one_by_one(leaf: Leaf, facts: list[Fact]) -> Fact | None:
    return next((f for f in facts if Engine._regex_ok(leaf, f)), None)


def _first_joined(leaf: Leaf, facts: list[Fact]) -> Fact | None:
    assert leaf.pattern is not None
    texts = _texts_by_leaf_kind(facts).get(leaf.kind)
    if texts is None:
        return None
    return texts.first_match(leaf.pattern, joined_pattern(leaf.pattern))


PATTERNS = [
    r"^foo$",
    r"^foo",
    r"foo$",
    r"\Afoo",
    r"foo\z",
    r"(?-m:^foo)",
    r"(?m)^bar$",
    r"foo\s+bar",
    r"foo.*bar",
    r"foo[^x]*bar",
    r"\bfoo\b",
    r"\Bfoo",
    r"foo\B",
    r"o\nb",
    r"x*",
    r"(?s)foo.bar",
]
TEXTS = ["foo", "bar", "xfoo", "foo\nbar", "a foo", "foo ", "", "-foo-", "barfoo", "FOO\n"]


def _leaf(kind: str, pattern: str, index: int) -> Leaf:
    return Leaf(kind, pattern=compile_regex(pattern), keywords=("foo",), index=index)


@given(
    st.lists(
        st.tuples(st.sampled_from(["string", "url", "shell", "connect"]), st.sampled_from(TEXTS)),
        max_size=8,
    )
)
@settings(max_examples=300, deadline=None)
def test_joined_search_finds_the_first_fact_like_one_by_one(rows: list[tuple[str, str]]) -> None:
    facts = [Fact(kind, text=text, evidence=str(i)) for i, (kind, text) in enumerate(rows)]
    for index, (kind, pattern) in enumerate(itertools.product(("string", "url"), PATTERNS)):
        leaf = _leaf(kind, pattern, index)
        assert _first_joined(leaf, facts) is _first_one_by_one(leaf, facts), (pattern, rows)


def test_joined_search_agrees_for_every_leaf_of_the_default_policy() -> None:
    texts = [line for cell in CELLS for line in (cell, *cell.splitlines())]
    facts = [
        Fact(kind, text=text, evidence=str(i))
        for i, text in enumerate(texts)
        for kind in ("string", "shell", "url", "connect")
    ]
    hits = 0
    for leaf in POLICY.leaves:
        if leaf.pattern is None or leaf.kind not in ("string", "shell", "url", "connect"):
            continue
        expected = _first_one_by_one(leaf, facts)
        assert _first_joined(leaf, facts) is expected, leaf.pattern.pattern
        hits += expected is not None
    assert hits > 100  # the examples do match: the comparison is not between two Nones


# -- keyword lines over the keywords a cell holds ------------------------------------------
def test_present_keywords_mark_the_same_lines() -> None:
    engine = ANALYZER.engine
    every = engine.every_line_keyword()
    marked = 0
    for cell in CELLS:
        lowered = cell.lower()
        kept = engine.present(every, lowered, TextIndex(lowered))
        assert kept <= every
        lines = keyword_lines(cell, lowered, every)
        assert keyword_lines(cell, lowered, kept) == lines
        marked += bool(lines)
    assert marked > 300


# -- keyword indexes on long texts ----------------------------------------------------------
def _long_cells() -> list[str]:
    """The corpus cells in groups joined into long texts (past the size where the index
    reads the text's distinct words instead of the text)."""
    joined = ["\n".join(CELLS[i : i + 60]) for i in range(0, len(CELLS), 60)]
    long = [text for text in joined if len(text) > 4096]
    assert len(long) >= 5
    return long


def test_keyword_index_finds_what_a_plain_search_finds_in_long_texts() -> None:
    engine = ANALYZER.engine
    engine.present(set(), "", TextIndex(""))  # builds the line index
    assert engine._line_index is not None
    indexes = [*engine.gates.values(), engine.regex_index, engine._line_index]
    found = 0
    for text in _long_cells():
        lowered = text.lower()
        words = set(re.findall(r"[a-z0-9_]+", lowered))
        for index in indexes:
            expected = {k for k in index.short if k in lowered}
            expected |= {k for w, k in index.words.items() if w in words}
            expected |= {k for ks in index.by_gram.values() for k, _ in ks if k in lowered}
            assert index.hits(lowered) == expected
            assert index.hits(lowered, TextIndex(lowered)) == expected
            found += len(expected)
    assert found > 100


def test_present_keywords_mark_the_same_lines_in_long_cells() -> None:
    engine = ANALYZER.engine
    every = engine.every_line_keyword()
    for cell in _long_cells():
        lowered = cell.lower()
        kept = engine.present(every, lowered, TextIndex(lowered))
        assert kept < every
        assert keyword_lines(cell, lowered, kept) == keyword_lines(cell, lowered, every)


# -- keyword lines: one str.find per keyword ------------------------------------------------
def _plain_keyword_lines(cell: str, keywords: set[str]) -> set[int]:
    """Line by line: a substring keyword anywhere in it, a whole-word one not inside a
    longer word (what `\\bxmrig\\b` means to the prefilter)."""
    found: set[int] = set()
    lowered = cell.lower()
    for keyword in keywords:
        plain = keyword[2:-2] if keyword.startswith("\\b") else keyword
        if plain not in lowered:
            continue
        pattern = re.escape(plain)
        if keyword.startswith("\\b"):
            pattern = rf"(?<![0-9a-z_]){pattern}(?![0-9a-z_])"
        for number, line in enumerate(lowered.split("\n"), start=1):
            if re.search(pattern, line):
                found.add(number)
    return found


def test_keyword_lines_are_the_lines_a_plain_search_finds() -> None:
    every = ANALYZER.engine.every_line_keyword()
    # a word keyword inside a longer word at the same place as a substring keyword
    tricky = {"\\bpass\\b", "pas", "\\bxmrig\\b", "stratum+", "\\bos\\b"}
    cells = [c for c in CELLS if c.isascii()] + [
        "passx = 1\nx = 'xmrigger'\nbypass\n./xmrig -o stratum+tcp://p\nimport os.path",
        "xmrig xmrig\n\nos os\n",
    ]
    marked = 0
    for cell in cells:
        for keywords in (every, tricky):
            lines = keyword_lines(cell, cell.lower(), keywords)
            assert lines == _plain_keyword_lines(cell, keywords), cell
            marked += bool(lines)
    assert marked > 300
    assert keyword_lines("passx", "passx", {"\\bpass\\b", "pas"}) == {1}  # the substring
    assert keyword_lines("passx", "passx", {"\\bpass\\b"}) == set()


@pytest.mark.parametrize(
    "code",
    [
        "try: import subprocess; t = 'T4' in str(subprocess.check_output(['x']))\n"
        "except Exception: t = False\n",
        "class Monitor:\n    @staticmethod\n    def f():\n        import os; os.system('x')\n",
        "if x: y = 1\nelse: z = 1; w = 2\n",
        "try:\n    a()\nfinally: b(); c()\n",
        "for i in x: pass\nelse: d()\n",
        "while ok: step(); log()\n",
    ],
)
def test_every_snippet_parses_on_its_own(code: str) -> None:
    """Headers with their body on the same line, clauses and decorators: each snippet the
    deep analysis gets is valid Python (before, these went to the line-by-line pass)."""
    lines = set(range(1, code.count("\n") + 1))
    cut = snippets(code, ast.parse(code), lines)
    assert cut
    for snippet in cut:
        ast.parse(snippet.text)


def test_a_command_in_a_one_line_try_is_analysed_in_depth() -> None:
    cell = "import os\ntry: os.system('./xmr' + 'ig -o pool:3333')\nexcept Exception: pass\n"
    findings = Analyzer(load_policy(None)).check(cell)
    assert "mining-miner-binary" in {f.rule for f in findings}
    assert not [f for f in findings if f.rule.startswith("analysis.")]


@pytest.mark.parametrize(
    "cell",
    [
        "f\"{__import__('os').system('./xmrig -o pool.example:3333')}\"\n",
        "import os\nf\"{os.system('./xmrig')}\"\n",
        "import os\n'note: ' f\"{os.system('./xmrig')}\"\n",
    ],
)
def test_a_bare_f_string_statement_runs_its_expressions(cell: str) -> None:
    assert "mining-miner-binary" in {f.rule for f in Analyzer(load_policy(None)).check(cell)}


def test_string_statements_are_not_cut_for_deep_analysis() -> None:
    code = 'def f():\n    """Runs xmrig."""\n    x = 1\n"""xmrig"""\nf"{x} xmrig"\n'
    kept = [s.first_line for s in snippets(code, ast.parse(code), {2, 4, 5})]
    assert kept == [5]  # the f-string may run code; the docstring and the string do nothing
    assert not Analyzer(load_policy(None)).check(code)


def test_statements_that_can_yield_no_fact_are_not_cut() -> None:
    """Headers and simple statements without a call, a string, a text operation or a
    binding are left out; a line they share with another statement is kept whole."""
    code = (
        "while True:\n"  # 1: inert header
        "    pass\n"  # 2
        "if n > limit:\n"  # 3: inert header
        "    break\n"  # 4: inert
        "while len(q) > 0:\n"  # 5: a call
        "    x = q.pop(); continue\n"  # 6: the line holds a call
        "class C(Base):\n"  # 7: inert
        "    def f(self, a=1):\n"  # 8: inert
        "        return a\n"  # 9: inert
        "def g(cmd='x' + 'mrig'):\n"  # 10: a text operation
        "    return cmd\n"  # 11
        "@register\n"  # 12: a decorator is a call
        "def h(): ...\n"  # 13
    )
    kept = [s.first_line for s in snippets(code, ast.parse(code), set(range(1, 14)))]
    assert kept == [5, 6, 10, 12]


@pytest.mark.parametrize(
    "cell",
    [
        "import os\nfor word in words:\n    try:\n        os.system('./xmrig -o p:3333'); break\n"
        "    except OSError:\n        continue\n",
        "import os\nwhile True:\n    os.system('./xmrig -o p:3333')\n    if done: break\n",
    ],
)
def test_a_call_beside_an_inert_statement_is_still_seen(cell: str) -> None:
    assert "mining-miner-binary" in {f.rule for f in Analyzer(load_policy(None)).check(cell)}
