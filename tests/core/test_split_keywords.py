"""A rule's keyword split across string literals still reaches the deep analysis.

The prefilter looks for each rule's keywords in the cell's text; a keyword written as
``"colab." + "research." + ...`` occurs in no line. The prefilter also reads the cell with
the places where literals meet removed, so it must find what the exhaustive analysis finds.
Each policy here has one rule only, so no other rule's keyword can open the door by luck.
"""

from __future__ import annotations

import dataclasses

import pytest

from jupyter_colab_guard.analysis import Analyzer
from jupyter_colab_guard.policy import load_policy
from jupyter_colab_guard.policy.loader import parse_policy

POLICY = """
version: 1
name: split-keywords
categories:
  - id: accounts
    title: Accounts
    description: Test category.
    action: block
    severity: medium
rules:
  - id: colab-url
    category: accounts
    message: Names the notebook service's address.
    match:
      string: '\\bcolab\\.research\\.google\\.com\\b'
      keywords: [colab.research.google.com]
    examples:
      match: ['u = "https://colab.research.google.com/drive/1"']
      no_match: ['u = "https://example.org/"']
"""

URL = "https://colab.research.google.com/drive/1"


def joins(left: str, right: str) -> list[str]:
    """The URL split at one place, in the ways Python joins literals."""
    return [
        f'u = "{left}" + "{right}"',
        f'u = "{left}"  "{right}"',
        f'u = ("{left}"\n     "{right}")',
        f'u = "".join(["{left}", "{right}"])',
        f"u = '{left}' + r'{right}'",
        f'u = "{left}" + \\\n    "{right}"',
    ]


CELLS = [c for i in range(1, len(URL)) for c in joins(URL[:i], URL[i:])]


@pytest.fixture(scope="module")
def analyzers() -> tuple[Analyzer, Analyzer]:
    policy = parse_policy(POLICY)
    return Analyzer(policy), Analyzer(policy, exhaustive=True)


@pytest.mark.parametrize("cell", CELLS[:: max(1, len(CELLS) // 60)])
def test_a_split_keyword_is_found_as_the_exhaustive_analysis_finds_it(
    analyzers: tuple[Analyzer, Analyzer], cell: str
) -> None:
    fast, exhaustive = analyzers
    assert {f.rule for f in exhaustive.check(cell)} == {"colab-url"}  # the split folds
    assert {f.rule for f in fast.check(cell)} == {"colab-url"}


def test_every_split_point_is_found(analyzers: tuple[Analyzer, Analyzer]) -> None:
    fast, _ = analyzers
    missed = [c for c in CELLS if not fast.check(c)]
    assert missed == []


def test_literals_that_join_to_nothing_of_interest_stay_quiet(
    analyzers: tuple[Analyzer, Analyzer],
) -> None:
    fast, _ = analyzers
    assert fast.check('u = "https://colab." + "example.org"') == []
    assert fast.check('parts = ["colab", "research", "google", "com"]\nprint(len(parts))') == []


def test_the_default_policy_case_without_the_rule_that_used_to_open_the_door() -> None:
    # tests/cases rt-acct-built-colab-url-uc was caught only because another rule's
    # keyword ("colab") happened to mark its line; without that rule it must still be
    policy = load_policy(None)
    alone = dataclasses.replace(
        policy, rules=[r for r in policy.rules if r.id != "accounts-account-list"]
    )
    cell = (
        "import undetected_chromedriver as uc\n"
        'base = "https://co" + "lab.res" + "earch.google.com"\n'
        "d = uc.Chrome()\n"
        'd.get(base + "/drive/1AbCdEfGh")\n'
    )
    assert "accounts-colab-automation" in {f.rule for f in Analyzer(alone).check(cell)}
