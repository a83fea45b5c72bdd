"""Hostile cells never blind or stall the analyzer: odd whitespace, long chains, deep
nesting, many statements, huge literals, a spent time budget (issue 11)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from IPython.core.inputtransformer2 import TransformerManager

from jupyter_colab_guard.analysis import Analyzer
from jupyter_colab_guard.analysis.transform import python_text, transform, transform_cell
from jupyter_colab_guard.policy import load_policy

POLICY = load_policy(None)
COMMAND = "!./xmrig -o stratum+tcp://pool.example.com:3333 -u 4Awallet"
# every character IPython's str.splitlines() breaks at, and Python's own line ends
ODD = ["\x0c", "\x0b", "\r", "\r\n", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"]


def fresh() -> Analyzer:
    return Analyzer(POLICY)  # no cache shared between tests


def mined(findings: list) -> bool:
    return any(f.category == "crypto_mining" and f.action == "block" for f in findings)


def ipython(source: str) -> tuple[str, str]:
    """What IPython makes of a cell: ("ok", code) or ("error", exception name)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return "ok", TransformerManager().transform_cell(source)
        except Exception as exc:
            return "error", type(exc).__name__


def runs_command(source: str) -> bool:
    """IPython transforms the cell, Python compiles it, and it calls the shell."""
    status, code = ipython(source)
    if status != "ok" or "get_ipython().system(" not in code:
        return False
    try:
        compile(code, "<cell>", "exec")
    except (SyntaxError, ValueError):
        return False
    return True


# -- IPython's transformation, reproduced in linear time ---------------------------------
FRAGMENTS = [
    "!ls",
    "!!ls -la",
    "%time x",
    "x = !ls",
    "a, b = %sx ls",
    "y = %env",
    "x?",
    "x??",
    "%%bash\necho",
    "if 1:",
    "    pass",
    "def f():",
    "    return 1",
    "'''",
    '"',
    "(",
    ")",
    "[",
    "]",
    "\\",
    "#c",
    "x = 1",
    "/f a b",
    ",f a b",
    ";f a b",
    "?",
    "%",
    "!",
    ">>> ",
    "In [1]: ",
    "...",
    "'a'",
    "foo bar?",
    "/",
    "xmrig -o",
    "\t",
    "  ",
    *ODD,
]
SEPARATORS = ["", "\n", " ", "\n    ", "\n\t"]
cells = st.lists(
    st.tuples(st.sampled_from(FRAGMENTS), st.sampled_from(SEPARATORS)), min_size=1, max_size=14
).map(lambda parts: "".join(a + b for a, b in parts))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cells)
@example("!ls\n\r>>> ")  # prompt stripping joins "\r" and the next line end (found by it)
def test_transform_is_ipythons_own(source: str) -> None:
    expected = ipython(source)
    try:
        got = ("ok", transform_cell(source))
    except Exception as exc:
        got = ("error", type(exc).__name__)
    if expected[0] == "error" and got[0] == "ok":
        # IPython re-tokenizes the whole cell after each rewrite and can give up on a later
        # line its tokenizer rejects; such a cell never runs, and the guard checks it anyway
        return
    assert got == expected
    if got[0] == "ok":
        code, line_map = transform(source)
        assert len(line_map) == code.count("\n")
        assert all(1 <= n <= python_text(source).count("\n") + 1 for n in line_map)


def test_transform_of_many_shell_lines_is_linear() -> None:
    # IPython re-tokenizes the cell after each of its 499 rewrites: quadratic
    cell = "x = 1\n" * 1000 + "!echo hi\n" * 200
    start = time.perf_counter()
    mine = transform_cell(cell)
    ours = time.perf_counter() - start
    start = time.perf_counter()
    theirs = TransformerManager().transform_cell(cell)
    baseline = time.perf_counter() - start
    assert mine == theirs
    assert ours * 5 < baseline, (ours, baseline)


# -- whitespace IPython accepts ---------------------------------------------------------
SHAPES = [
    "x = 1{ws}\n{cmd}\n",
    "x = 1\n{ws}{cmd}\n",
    "x = 1{ws}{cmd}\n",
    "{ws}{cmd}\n",
    "if 1:\n    x = 1{ws}\n    {cmd}\n",
    "x = (1,{ws}\n2)\n{cmd}\n",
    "s = '''a{ws}b'''\n{cmd}\n",
]


@pytest.mark.parametrize("ws", ODD, ids=[repr(w) for w in ODD])
def test_odd_whitespace_never_hides_a_command_ipython_runs(ws: str) -> None:
    runnable = 0
    for shape in SHAPES:
        cell = shape.format(ws=ws, cmd=COMMAND)
        if runs_command(cell):
            runnable += 1
            assert mined(fresh().check(cell)), repr(cell)
    # the form feed and Python's line ends reach the shell in several shapes
    if ws in ("\x0c", "\r", "\r\n"):
        assert runnable >= 3


def test_form_feed_cell_in_a_notebook_fails_the_cli(tmp_path: Path) -> None:
    cell = f"x = 1\x0c\n{COMMAND}\n"
    assert runs_command(cell)
    notebook = {
        "cells": [{"cell_type": "code", "source": cell, "metadata": {}, "outputs": []}],
        "metadata": {},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    path = tmp_path / "ff.ipynb"
    path.write_text(json.dumps(notebook), encoding="utf-8")
    out = subprocess.run(
        [sys.executable, "-m", "jupyter_colab_guard.cli", "check", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 1, out.stdout + out.stderr
    assert "crypto_mining" in out.stdout or "mining" in out.stdout


# -- shapes that broke the deep analysis ------------------------------------------------
HOSTILE = {
    "long + chain before": "s = " + " + ".join(["'a'"] * 5000) + "\n" + COMMAND,
    "2,100 marked statements before": "y = 'a' + 'b'\n" * 2100 + COMMAND,
    "2,100 plain statements before": "x = 1\n" * 2100 + COMMAND,
    "deep brackets before": "x = " + "(" * 5000 + ")" * 5000 + "\n" + COMMAND,
    "form feeds between": "x = 1\x0c\n" * 3000 + COMMAND,
    "more rewrites than IPython takes": "!xmrig\n" * 1000,
}


@pytest.mark.parametrize("cell", list(HOSTILE.values()), ids=list(HOSTILE))
def test_hostile_shapes_keep_the_command(cell: str) -> None:
    start = time.perf_counter()
    findings = fresh().check(cell)
    assert mined(findings), [(f.rule, f.action) for f in findings]
    assert time.perf_counter() - start < 10


def test_an_error_in_one_statement_costs_that_statement_only() -> None:
    # libcst parses this statement but its tree is too deep for the visitor: the deep
    # analysis of it fails (analysis.incomplete says so) and the linear pass reads it
    parts = ["'./xm'", "'rig'", "' -o stratum+tcp://pool.example.com:3333'"] + ["''"] * 2500
    cell = "import os\nos.system(" + " + ".join(parts) + ")\n"
    assert len(cell) < 20_000
    findings = fresh().check(cell)
    assert "analysis.incomplete" in {f.rule for f in findings}
    assert mined(findings)


def test_a_decoded_payload_in_a_statement_too_large_to_parse() -> None:
    payload = "./xmrig -o stratum+tcp://pool.example.com:3333"
    codes = [f"chr({ord(c)})" for c in payload] + ["chr(32)"] * 4000
    cell = "import os\nos.system(''.join([" + ", ".join(codes) + "]))\n"
    assert len(cell) > 20_000  # past the size libcst gets
    assert mined(fresh().check(cell))


# -- the time budget --------------------------------------------------------------------
def test_the_budget_stops_the_deep_analysis_and_the_linear_pass_still_reads() -> None:
    cell = "import os\n" + "os.system('echo %d' % i)\n" * 3000 + COMMAND + "\n"

    def timed(budget: float | None = None) -> tuple[float, list]:  # type: ignore[type-arg]
        start = time.thread_time()  # the budget counts this thread's CPU time
        found = fresh().check(cell, budget=budget)
        return time.thread_time() - start, found

    # the best of a few runs: CPU time still varies with a busy machine (caches, frequency)
    full, unlimited = min((timed() for _ in range(2)), key=lambda r: r[0])
    assert "analysis.timeout" not in {f.rule for f in unlimited}
    budget = full / 10
    took, limited = min((timed(budget) for _ in range(3)), key=lambda r: r[0])
    timeouts = [f for f in limited if f.rule == "analysis.timeout"]
    assert timeouts and timeouts[0].action == POLICY.on_timeout == "block"
    assert mined(limited)  # what the budget did not reach, the linear pass did
    assert took < full, (took, full)


def test_a_timed_out_result_is_not_cached() -> None:
    analyzer = fresh()
    cell = "import os\n" + "os.system('echo %d' % i)\n" * 2000
    assert "analysis.timeout" in {f.rule for f in analyzer.check(cell, budget=0.001)}
    assert "analysis.timeout" not in {f.rule for f in analyzer.check(cell)}


def test_a_session_with_a_huge_literal_stays_linear() -> None:
    session = fresh().session()
    start = time.perf_counter()
    session.check("x = [" + ",".join(["1"] * 200_000) + "]\n")
    session.check("import os\nos.system(str(x))\n")
    assert time.perf_counter() - start < 10


# -- generated hostile shapes: every check ends within a linear bound ------------------
UNITS = [
    "'a' + ",
    "chr(97),",
    "(",
    "[",
    "a.",
    "x = 1\n",
    "y = 'a' + 'b'\n",
    "os.system('echo')\n",
    "!echo hi\n",
    "\x0c",
    "\\\n",
    "    ",
    "'''",
    "#",
]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(st.sampled_from(UNITS), st.integers(min_value=1, max_value=3000)),
        min_size=1,
        max_size=4,
    ),
    st.booleans(),
)
def test_generated_hostile_cells_end_within_a_linear_bound(
    parts: list[tuple[str, int]], with_command: bool
) -> None:
    cell = "".join(unit * count for unit, count in parts)
    if with_command:
        cell += "\n" + COMMAND + "\n"
    start = time.thread_time()  # the budget counts this thread's CPU time
    findings = fresh().check(cell, budget=1.0)
    took = time.thread_time() - start
    # the budget, plus what always runs (transform, parse, linear pass): ~10 µs a char
    assert took < 1.5 + 30e-6 * len(cell), (took, len(cell))
    assert all(f.rule != "analysis.error" for f in findings)


def test_a_statement_nested_too_deep_for_libcst_is_read_by_the_linear_pass() -> None:
    # libcst parses a 2,500-term `+` chain in ~1.5 s of native code the budget cannot
    # stop (the cell was refused as a timeout); it goes to the linear pass instead
    chain = " + ".join(["'a'"] * 2500)
    benign = fresh().check(f"x = ({chain} + chr(97),)\n", budget=1.0)
    assert {f.rule for f in benign} == {"analysis.incomplete"}
    assert all(f.action == "log" for f in benign)
    command = "'./xm' + 'rig -o stratum+tcp://pool.example.com:3333'"
    hidden = f"import os\nos.system({command} + {chain})\n"
    assert mined(fresh().check(hidden, budget=1.0))
