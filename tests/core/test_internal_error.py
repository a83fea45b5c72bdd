"""An internal error of the deep analysis must not lose the cell: its lines are still read
one by one, so what they do is still found, and the error is recorded beside it."""

from __future__ import annotations

import pytest

from jupyter_colab_guard.analysis import Analyzer, linear
from jupyter_colab_guard.analysis import analyzer as deep
from jupyter_colab_guard.policy import load_policy

CELL = "import os\nx = 1\n!./xmrig -o pool.supportxmr.com:3333 -u WALLET\nprint(x)\n"


POLICY = load_policy(None)


@pytest.fixture
def analyzer() -> Analyzer:
    return Analyzer(POLICY)  # its own cache: a fault must not be answered from another test


def broken(*_args: object, **_kwargs: object) -> None:
    raise RuntimeError("a bug in a visitor")


def test_control_the_cell_is_caught_without_a_fault(analyzer: Analyzer) -> None:
    rules = {f.rule for f in analyzer.check(CELL)}
    assert "analysis.error" not in rules
    assert any(f.action == "block" and f.category == "crypto_mining" for f in analyzer.check(CELL))


def test_a_fault_in_the_deep_analysis_still_leaves_the_lines_read(
    analyzer: Analyzer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(deep.Cutter, "cut", broken)  # the statements to analyse in depth
    findings = analyzer.check(CELL)
    error = [f for f in findings if f.rule == "analysis.error"]
    assert len(error) == 1 and "RuntimeError" in error[0].message
    mining = [f for f in findings if f.category == "crypto_mining"]
    assert mining and mining[0].action == "block" and mining[0].line == 3


def test_a_fault_in_the_line_pass_too_still_records_the_error(
    analyzer: Analyzer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(deep.Cutter, "cut", broken)
    monkeypatch.setattr(linear.LinearPass, "__call__", broken)
    findings = analyzer.check(CELL)
    assert "analysis.error" in {f.rule for f in findings}
    # the line's own text is still matched as a string: the miner's pool shows
    assert any(f.category == "crypto_mining" for f in findings)
