"""Policy regexes run on RE2: linear-time search, and RE2-only syntax is a policy problem.

Python's backtracking ``re`` took seconds on an 8 KB cell for the default pool-host regex
and hung on a 37-character cell for an operator's ``(a+)+b``. The bounds below are
generous: they catch a return of super-linear matching, they do not benchmark.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import re2

from jupyter_colab_guard.analysis import Analyzer
from jupyter_colab_guard.analysis.pyscan import Memory
from jupyter_colab_guard.policy import Policy, PolicyError, load_policy, parse_policy
from jupyter_colab_guard.policy.keywords import regex_keywords
from jupyter_colab_guard.policy.model import Leaf, Matcher
from jupyter_colab_guard.policy.regex import Regex, compile_regex

RE2_TYPE = type(re2.compile("x"))
DEFAULT = load_policy(None)
FAST = 0.5  # seconds; RE2 needs well under a millisecond for each search below

POLICY = """\
version: 1
name: re2-test
categories:
  - id: tools
    title: Tools
    description: Tools.
    action: block
    severity: high
rules:
  - id: r1
    category: tools
    message: Matches the pattern.
    match:
{match}
    examples:
      match: ["x = 'aab'"]
      no_match: ["x = 'aaa'"]
"""

# where a regex can stand: (match block with {p} for the pattern, key of its problem)
PLACES = {
    "string": ("      string: '{p}'", "rules[r1].match.string"),
    "url": ("      url: '{p}'", "rules[r1].match.url"),
    "shell-args": (
        "      shell:\n        program: [tool]\n        args: '{p}'",
        "rules[r1].match.shell.args",
    ),
    "call-args": (
        "      call:\n        name: [mod.fn]\n        args: {{0: '{p}'}}",
        "rules[r1].match.call.args.0",
    ),
    "call-kwargs": (
        "      call:\n        name: [mod.fn]\n        kwargs: {{mode: '{p}'}}",
        "rules[r1].match.call.kwargs.mode",
    ),
    "connect-host": ("      connect:\n        host: '{p}'", "rules[r1].match.connect.host"),
}


def policy_text(pattern: str, place: str = "string") -> str:
    block, _ = PLACES[place]
    return POLICY.format(match=block.format(p=pattern))


def is_re2(pattern: object) -> bool:
    return isinstance(pattern, Regex) and type(pattern.re2) is RE2_TYPE


def line_of(text: str, needle: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), 1) if needle in line)


def timed(search: Callable[[str], object], text: str) -> tuple[float, bool]:
    start = time.perf_counter()
    found = bool(search(text))
    return time.perf_counter() - start, found


def leaves(matcher: Matcher) -> Iterator[Leaf]:
    if isinstance(matcher, Leaf):
        yield matcher
    else:
        for child in matcher.children:
            yield from leaves(child)


def patterns(policy: Policy) -> Iterator[Regex]:
    for leaf in policy.leaves:
        if leaf.pattern is not None:
            yield leaf.pattern
        yield from (p for _, p in leaf.args)
        yield from (p for _, p in leaf.kwargs)


# -- syntax RE2 cannot run is a problem with file, line and key ------------------------
@pytest.mark.parametrize(
    ("pattern", "construct"),
    [
        ("(?=x)", "lookahead (?=...)"),
        ("(?<!x)y", "negative lookbehind (?<!...)"),
        (r"(a)\1", "backreference \\1"),
        ("(?!x)y", "negative lookahead (?!...)"),
        ("(?<=x)y", "lookbehind (?<=...)"),
        ("a*+b", "possessive quantifier *+"),
        ("(?>a+)b", "atomic group (?>...)"),
        ("(?P<n>a)(?P=n)", "named backreference (?P=name)"),
        (r"end\Z", "\\Z (RE2 writes the end of the text as \\z)"),
    ],
)
def test_unsupported_construct_is_a_problem(tmp_path: Path, pattern: str, construct: str) -> None:
    text = policy_text(pattern)
    path = tmp_path / "p.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    (problem,) = info.value.problems
    assert (problem.path, problem.line, problem.key) == (
        str(path),
        line_of(text, f"'{pattern}'"),
        "rules[r1].match.string",
    )
    assert problem.message == (
        f"invalid regex: {construct} is not supported (policy regexes are RE2 syntax)"
    )


@pytest.mark.parametrize("place", PLACES)
def test_every_regex_field_is_compiled_by_re2(place: str) -> None:
    text = policy_text("(?=x)y", place)
    with pytest.raises(PolicyError) as info:
        parse_policy(text, "p.yaml")
    (problem,) = info.value.problems
    assert (problem.line, problem.key) == (line_of(text, "(?=x)y"), PLACES[place][1])
    assert "lookahead" in problem.message


def test_other_re2_errors_keep_re2_words() -> None:
    with pytest.raises(PolicyError) as info:
        parse_policy(policy_text("a{1001}"), "p.yaml")
    assert info.value.problems[0].message == "invalid regex: invalid repetition size: {1001}"


def test_policy_validate_prints_the_problem(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    text = policy_text(r"(a)\1", "shell-args")
    path.write_text(text, encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "jupyter_colab_guard.cli", "policy", "validate", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2
    line = line_of(text, r"(a)\1")
    assert f"{path}:{line}: rules[r1].match.shell.args: invalid regex: backreference \\1" in (
        proc.stderr
    )


# -- every pattern of the default policy is an RE2 pattern -------------------------------
def test_default_policy_patterns_are_all_re2() -> None:
    reachable = [leaf for rule in DEFAULT.rules for leaf in leaves(rule.match)]
    assert {id(leaf) for leaf in reachable} == {id(leaf) for leaf in DEFAULT.leaves}
    found = list(patterns(DEFAULT))
    assert len(found) > 50
    assert all(is_re2(p) for p in found), {type(p) for p in found}
    assert any(leaf.args for leaf in DEFAULT.leaves)
    assert any(leaf.kwargs for leaf in DEFAULT.leaves)


def test_patterns_search_case_insensitively_and_keep_their_text() -> None:
    pattern = compile_regex(r"\bXMRig\s+(-o)")
    match = pattern.search("!./xmrig  -O pool:3333")
    assert match is not None
    assert (match.group(), match.group(1), match.start(), match.span(1)) == (
        "xmrig  -O",
        "-O",
        3,
        (10, 12),
    )
    assert pattern.pattern == r"\bXMRig\s+(-o)"  # what `policy explain` shows
    assert pattern.search("xmrigger -o") is None


# -- linear time ---------------------------------------------------------------------
def pool_host() -> Regex:
    (rule,) = [r for r in DEFAULT.rules if r.id == "mining-pool-host"]
    assert isinstance(rule.match, Leaf) and rule.match.pattern is not None
    assert rule.match.pattern.pattern.startswith(r"\b(?:[\w-]+\.)*(?:")  # the quadratic shape
    return rule.match.pattern


@pytest.mark.parametrize("size", [8 * 1024, 64 * 1024])
def test_pool_host_regex_is_linear(size: int) -> None:
    pattern = pool_host()
    assert is_re2(pattern)
    dots = "a." * (size // 2)
    elapsed, found = timed(pattern.search, dots)
    assert not found and elapsed < FAST
    elapsed, found = timed(pattern.search, dots + "nanopool.org:3333")
    assert found and elapsed < FAST


def test_pool_host_regex_was_quadratic_under_python_re() -> None:
    pattern = pool_host()
    dots = "a." * (32 * 1024)  # 64 KB
    re2_time = min(timed(pattern.search, dots)[0] for _ in range(3))
    backtracking = re.compile(pattern.pattern, re.IGNORECASE)
    python_time, _ = timed(backtracking.search, "a." * 1024)  # 2 KB, 32 times less text
    assert python_time > re2_time


def test_pool_host_in_a_large_cell_is_found_fast() -> None:
    cell = 'hosts = "' + "a." * 4096 + 'eth.nanopool.org:9999"'
    start = time.perf_counter()
    findings = Analyzer(DEFAULT).analyse(cell, Memory(), None).findings
    assert time.perf_counter() - start < 5 * FAST  # includes parsing the 8 KB cell
    assert "mining-pool-host" in {f.rule for f in findings}


def test_nested_quantifier_from_an_operator_runs_in_linear_time() -> None:
    policy = parse_policy(policy_text("(a+)+b"), "operator.yaml")
    (leaf,) = policy.leaves
    assert leaf.pattern is not None and is_re2(leaf.pattern)
    elapsed, found = timed(leaf.pattern.search, "a" * 100_000)
    assert not found and elapsed < FAST
    elapsed, found = timed(leaf.pattern.search, "a" * 100_000 + "b")
    assert found and elapsed < FAST
    cell = 'x = "' + "a" * 31 + '"'  # 37 characters: hung the server under Python's re
    assert len(cell) == 37
    start = time.perf_counter()
    assert Analyzer(policy).analyse(cell, Memory(), None).findings == []
    assert time.perf_counter() - start < FAST


# -- text RE2 cannot encode ------------------------------------------------------------
def test_lone_surrogates_do_not_hide_a_match() -> None:
    pattern = pool_host()
    match = pattern.search("\ud800 eth.nanopool.org:3333")  # google-re2 alone raises here
    assert match is not None and match.span() == (2, 23)
    cell = 'x = "\\ud800 eth.nanopool.org:3333"'
    findings = Analyzer(DEFAULT).analyse(cell, Memory(), None).findings
    assert "mining-pool-host" in {f.rule for f in findings}


def test_a_lone_surrogate_in_a_pattern_is_a_problem() -> None:
    with pytest.raises(PolicyError) as info:
        parse_policy(policy_text("x\\ud800").replace("'x\\ud800'", '"x\\ud800"'), "p.yaml")
    assert "lone surrogate" in info.value.problems[0].message


# -- keywords from RE2-only syntax ------------------------------------------------------
@pytest.mark.parametrize("pattern", [r"[[:alpha:]]xmrig", r"[^[:space:]]+stratum", r"\pLxmrig"])
def test_re2_only_syntax_gets_no_keyword_rather_than_a_wrong_one(pattern: str) -> None:
    assert compile_regex(pattern).search("Axmrig,stratum") is not None
    assert regex_keywords(pattern) == ()
