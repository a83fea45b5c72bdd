"""Speed shortcuts of name resolution and the tree walk give exactly what the plain way gives.

- ``_all_bindings`` tries its regex only where a match can start (line starts and `as`):
  the same matches as ``finditer`` over the whole cell;
- ``walk`` passes over nodes with nothing to visit, call or enter: a visitor with only a
  few methods still gets the calls ``node.visit`` makes, in the same order.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

import libcst as cst
import pytest
import yaml
from case_cells import CELLS

from jupyter_colab_guard.analysis.locate import line_of, line_starts
from jupyter_colab_guard.analysis.resolve import _BIND, _all_bindings, _names_of
from jupyter_colab_guard.analysis.walk import walk


def _plain_bindings(code: str, starts: list[int]) -> dict[str, list[int]]:
    index: dict[str, list[int]] = {}
    for m in _BIND.finditer(code):
        for name in _names_of(m):
            if name.isidentifier():
                index.setdefault(name, []).append(line_of(starts, m.start()))
    return index


def _fuzz(count: int) -> list[str]:
    rnd = random.Random(7)
    parts = ["as", "a", "s", " ", "\t", "\n", "=", "==", "x", "import ", "from ", "for "]
    parts += [" in ", ",", ".", ":", "#", "_", "as\n", "bas", "+=", "with ", "(", ")"]
    return ["".join(rnd.choice(parts) for _ in range(rnd.randint(0, 50))) for _ in range(count)]


def test_all_bindings_are_the_matches_of_a_whole_cell_search() -> None:
    texts = [*CELLS, "\n".join(CELLS), *_fuzz(5000)]
    texts += [Path(m.__file__).read_text() for m in (random, yaml, pytest)]
    bound = 0
    for code in texts:
        starts = line_starts(code)
        expected = _plain_bindings(code, starts)
        assert _all_bindings(code, starts) == expected, code[:300]
        bound += len(expected)
    assert bound > 1000


class _Few(cst.CSTVisitor):
    """A visitor of a few node types (as the scanner), including leaves (Name, Comment)."""

    def __init__(self) -> None:
        super().__init__()
        self.log: list[tuple[str, str]] = []

    def visit_Call(self, node: cst.Call) -> bool:
        self.log.append(("visit", "Call"))
        return not isinstance(node.func, cst.Name) or node.func.value != "skip"

    def leave_Call(self, node: cst.Call) -> None:
        self.log.append(("leave", "Call"))

    def visit_Name(self, node: cst.Name) -> None:
        self.log.append(("visit", node.value))

    def visit_Comment(self, node: cst.Comment) -> None:
        self.log.append(("comment", node.value))

    def leave_SimpleString(self, node: cst.SimpleString) -> None:
        self.log.append(("leave", node.value))

    def visit_FormattedStringExpression(self, node: cst.FormattedStringExpression) -> None:
        self.log.append(("visit", "{}"))


SAMPLES = [
    "skip(a, b)\nf(x, skip(y), 'z')  # note\n",
    "def g(a=1, *b, **c):\n    # c\n    return [h(i) for i in b if i]\n",
    "x = f'{a!r:>{w}} {b}'\nclass K(B, metaclass=M):\n    y: int = 2\n",
    "with open(p) as f, g() as (h, i):\n    print(f.read(), sep='')\n",
    "@dec(1)\nasync def m():\n    await n(lambda q: q + 1)\n",
]


def _parsed(source: str) -> cst.Module | None:
    try:
        return cst.parse_module(source)
    except Exception:  # IPython syntax
        return None


MODULES = [m for m in map(_parsed, SAMPLES + CELLS) if m is not None]


def test_a_visitor_of_few_nodes_gets_the_calls_libcst_makes() -> None:
    assert len(MODULES) > 300
    for module in MODULES:
        ours, theirs = _Few(), _Few()
        walk(ours, module)
        module.visit(theirs)
        assert ours.log == theirs.log, module.code[:300]


def test_node_positions_are_what_the_metadata_wrapper_resolves() -> None:
    from libcst.metadata import MetadataWrapper, PositionProvider

    from jupyter_colab_guard.analysis.analyzer import node_positions

    nodes = 0
    for module in MODULES:
        expected = MetadataWrapper(module, unsafe_skip_copy=True).resolve(PositionProvider)
        got = node_positions(module)
        assert dict(got) == dict(expected), module.code[:300]
        nodes += len(got)
    assert nodes > 10_000


def test_a_cell_the_gate_finds_unmarked_has_no_marker_line() -> None:
    """The deep pass skips marker_lines when the gate's is_marked said no (same text)."""
    import sys

    from jupyter_colab_guard.analysis.engine import words_of
    from jupyter_colab_guard.analysis.markers import is_marked, marker_lines

    sys.path.insert(0, str(Path(__file__).parents[2] / "benchmarks"))
    from analyzer_bench import CELLS as BENCH

    texts = [*CELLS, *BENCH, *_fuzz(3000)]
    unmarked = 0
    for text in texts:
        lowered = text.lower()
        words = words_of(lowered)
        if not is_marked(text, words):
            unmarked += 1
            assert marker_lines(text, lowered, words, line_starts(text)) == set(), text[:300]
    assert unmarked > 300


def test_a_name_a_cell_binds_is_one_of_its_words() -> None:
    """CellIndex.resolve_local answers from the cell's words once asked often: sound only
    if every name with binding lines (either way of finding them) is a word of the cell."""
    from jupyter_colab_guard.analysis.resolve import CellIndex

    texts = [
        *CELLS,
        *_fuzz(5000),
        "x\u00b2 = 1\nfor \u00e9t\u00e9, b in c: pass\nimport a.b as \u00e7",
    ]
    texts += [Path(m.__file__).read_text() for m in (random, yaml, pytest)]
    checked = 0
    for code in texts:
        index = CellIndex(code)
        words = index._words()
        for name in _all_bindings(code, line_starts(code)):
            assert name in words, (name, code[:200])
            checked += 1
        for name in set(re.findall(r"[^\W\d]\w*", code)):
            if index._binding_lines(name):
                assert name in words, (name, code[:200])
                checked += 1
    assert checked > 1000


def test_resolve_local_answers_as_before_once_it_reads_words() -> None:
    from jupyter_colab_guard.analysis import resolve

    texts = [c for c in CELLS if "=" in c or "import" in c][:300]
    for code in texts:
        names = [*sorted(set(re.findall(r"[^\W\d]\w*", code)))[:40], "nowhere", "x", "os"]
        fast, plain = resolve.CellIndex(code), resolve.CellIndex(code)
        plain._asked = -(10**9)  # never reads its words
        for name in names:
            a, b = fast.resolve_local(name), plain.resolve_local(name)
            assert (a is None) == (b is None), (name, code[:200])
