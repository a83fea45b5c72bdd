"""The shipped Colab policy: its rule examples, the case corpus, and prefilter soundness."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import yaml
from colab_categories import COLAB_CATEGORIES

from jupyter_colab_guard.analysis import Analyzer, Finding
from jupyter_colab_guard.analysis.pyscan import Memory
from jupyter_colab_guard.policy import load_policy

CASES = Path(__file__).parents[1] / "cases"
POLICY = load_policy(None)
ANALYZER = Analyzer(POLICY)
EXHAUSTIVE = Analyzer(POLICY, exhaustive=True)
POSITIVE = yaml.safe_load((CASES / "positive.yaml").read_text())
NEGATIVE = yaml.safe_load((CASES / "negatives.yaml").read_text())
CATEGORIES = COLAB_CATEGORIES


def run_session(analyzer: Analyzer, cells: list[str]) -> list[list[Finding]]:
    session = analyzer.session()
    return [session.check(cell) for cell in cells]


@pytest.mark.parametrize("rule", POLICY.rules, ids=[r.id for r in POLICY.rules])
def test_rule_examples(rule) -> None:  # type: ignore[no-untyped-def]
    for cell in rule.examples_match:
        got = {f.rule for f in ANALYZER.analyse(cell, Memory(), None).findings}
        assert rule.id in got, f"should match: {cell!r}"
    for cell in rule.examples_no_match:
        got = {f.rule for f in ANALYZER.analyse(cell, Memory(), None).findings}
        assert rule.id not in got, f"should not match: {cell!r}"


def test_every_category_has_cases() -> None:
    counts = Counter(case["category"] for case in POSITIVE)
    assert set(counts) == CATEGORIES
    assert sum(case["evasive"] for case in POSITIVE) >= 0.35 * len(POSITIVE)
    assert len(NEGATIVE) >= 40


@pytest.mark.parametrize("case", POSITIVE, ids=[c["id"] for c in POSITIVE])
def test_positive_case_is_caught_with_its_category(case: dict) -> None:
    last = run_session(ANALYZER, case["cells"])[-1]
    hits = [f for f in last if f.category == case["category"] and f.action in ("warn", "block")]
    assert hits, f"{case['note']}: got {[(f.rule, f.action) for f in last]}"


@pytest.mark.parametrize("case", NEGATIVE, ids=[c["id"] for c in NEGATIVE])
def test_negative_case_is_not_flagged(case: dict) -> None:
    for findings in run_session(ANALYZER, case["cells"]):
        alarms = [(f.rule, f.evidence) for f in findings if f.action in ("warn", "block")]
        assert not alarms, case["note"]


ALL_CELLS = [(case["id"], case["cells"]) for case in POSITIVE + NEGATIVE] + [
    (f"{rule.id}/{i}", [cell])
    for rule in POLICY.rules
    for i, cell in enumerate((*rule.examples_match, *rule.examples_no_match))
]


@pytest.mark.parametrize("cells", [c for _, c in ALL_CELLS], ids=[i for i, _ in ALL_CELLS])
def test_prefilter_loses_nothing(cells: list[str]) -> None:
    """Skipping cells and statements must give what analysing everything gives."""
    fast = run_session(ANALYZER, cells)
    full = run_session(EXHAUSTIVE, cells)
    as_set = lambda runs: [{(f.rule, f.line) for f in run} for run in runs]  # noqa: E731
    assert as_set(fast) == as_set(full)
