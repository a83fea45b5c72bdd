"""Strict policy loading: every problem names the file, the line and the key path.

Line numbers are computed from the YAML text each test writes (``line_of``), never
hard-coded, so a test stays right when the text around the fault changes.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from colab_categories import COLAB_CATEGORIES
from jsonschema import Draft202012Validator, FormatChecker

from jupyter_colab_guard.analysis import Analyzer
from jupyter_colab_guard.policy import (
    PolicyError,
    Problem,
    default_policy_path,
    load_policy,
    parse_policy,
)
from jupyter_colab_guard.policy.folder import document, flatten
from jupyter_colab_guard.policy.keywords import regex_keywords, sharpened
from jupyter_colab_guard.policy.model import Combinator, Leaf
from jupyter_colab_guard.policy.regex import compile_regex

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_PATH = ROOT / "jupyter_colab_guard" / "policy" / "schema.json"

DEFAULT_CATEGORIES = COLAB_CATEGORIES

# A small, valid policy in block style: every key sits on a line of its own.
BASE = """\
version: 1
name: loader-test
tiers: [free, paid]
categories:
  - id: tools
    title: Running tools
    description: The tool must not run.
    action: block
    severity: high
  - id: notes
    title: Noted modules
    description: Importing notemod is noted.
    action: log
    severity: low
rules:
  - id: tool-shell
    category: tools
    message: Runs the tool.
    match:
      shell:
        program: [forbidden-tool]
    examples:
      match: ["!forbidden-tool --go"]
      no_match: ["print('forbidden-tool')"]
  - id: note-import
    category: notes
    message: Imports notemod.
    match:
      import: notemod
    examples:
      match: ["import notemod"]
      no_match: ["import os"]
exceptions:
  - id: course
    reason: The course may run the tool.
    users: [alice]
    rules: [tool-shell]
"""

# A valid policy that uses every feature of the language.
FULL = """\
version: "1"
name: full
tiers: [free, paid]
on_error: block
metadata:
  owner: ops
  links: [https://example.org/faq]
categories:
  - id: tools
    title: Tools
    description: Tools.
    action: warn
    severity: medium
    tiers: [free]
    metadata: {faq: https://example.org/faq#tools}
rules:
  - id: call-args
    category: tools
    message: Calls notemod.run with a bad argument.
    severity: critical
    action: block
    tiers: paid
    metadata: {ticket: 12}
    match:
      call:
        name: [notemod.run, notemod.go]
        args: {0: 'bad', 2: 3333}
        kwargs: {share: 'True', verbose: '.*'}
    examples:
      match: ["import notemod\\nnotemod.run('bad')"]
      no_match: "import notemod\\nnotemod.run('good')"
  - id: combo
    category: tools
    message: Combination.
    match:
      all:
        - any:
            - install: {manager: [pip, conda, apt, npm], package: [Some_Pkg]}
            - url: 'example\\.org/tool'
            - connect: {host: '(^|\\.)pool\\.example$', port: [3333, 4444]}
            - connect: {port: 5555}
        - not:
            shell: {program: '*', args: '--dry-run'}
        - string: '\\d{4}'
          keywords: [digits]
    examples:
      match: ["!pip install some-pkg"]
      no_match: ["!pip install other"]
exceptions:
  - id: staff
    reason: Staff.
    groups: staff
    categories: [tools]
  - id: paid-tier
    reason: Paid.
    tiers: [paid]
    rules: [combo]
"""


def line_of(text: str, needle: str, nth: int = 1) -> int:
    """1-based number of the line holding the nth occurrence of ``needle``."""
    seen = 0
    for number, line in enumerate(text.splitlines(), start=1):
        if needle in line:
            seen += 1
            if seen == nth:
                return number
    raise AssertionError(f"{needle!r} (occurrence {nth}) not in the text")


def edit(text: str, *pairs: tuple[str, str]) -> str:
    """Apply replacements, each of which must apply exactly once."""
    for old, new in pairs:
        assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times"
        text = text.replace(old, new)
    return text


def bare(keyword: str) -> str:
    """A keyword without the whole-word marks (``\\bxmrig\\b`` -> ``xmrig``)."""
    if keyword.startswith("\\b") and keyword.endswith("\\b") and len(keyword) > 4:
        return keyword[2:-2]
    return keyword


def problems_of(tmp_path: Path, text: str, name: str = "policy.yaml") -> tuple[str, list[Problem]]:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    return str(path), info.value.problems


# -- valid input -------------------------------------------------------------------
def test_base_and_full_policies_load() -> None:
    base = parse_policy(BASE, "base.yaml")
    assert [r.id for r in base.rules] == ["tool-shell", "note-import"]
    assert base.rules[0].line == line_of(BASE, "- id: tool-shell")
    assert base.rules[1].action == "log" and base.rules[1].severity == "low"  # category default
    assert base.exceptions[0].users == ("alice",)

    full = parse_policy(FULL, "full.yaml")
    assert full.on_error == "block"
    call = full.rules_by_id["call-args"]
    assert (call.action, call.severity, call.tiers) == ("block", "critical", ("paid",))
    assert isinstance(call.match, Leaf)
    assert [(i, p.pattern) for i, p in call.match.args] == [(0, "bad"), (2, "3333")]
    assert [k for k, _ in call.match.kwargs] == ["share", "verbose"]
    combo = full.rules_by_id["combo"]
    assert (combo.action, combo.severity, combo.tiers) == ("warn", "medium", ("free",))
    assert isinstance(combo.match, Combinator) and combo.match.op == "all"
    assert [c.op if isinstance(c, Combinator) else c.kind for c in combo.match.children] == [
        "any",
        "not",
        "string",
    ]
    install = combo.match.children[0].children[0]
    assert install.names == ("some-pkg",)  # normalised
    assert full.categories["tools"].metadata == {"faq": "https://example.org/faq#tools"}
    assert full.exceptions[0].groups == ("staff",)


def test_default_policy_loads_with_the_nine_categories() -> None:
    assert (default_policy_path() / "policy.yaml").is_file()
    policy = load_policy(None)
    assert set(policy.categories) == DEFAULT_CATEGORIES
    for category in policy.categories.values():
        assert category.title.strip(), category.id
        assert category.description.strip(), category.id
        assert category.action in ("log", "warn", "block"), category.id
        assert category.severity in ("low", "medium", "high", "critical"), category.id
    covered = {rule.category for rule in policy.rules}
    assert covered == DEFAULT_CATEGORIES  # every category has at least one rule
    for rule in policy.rules:
        assert rule.examples_match and rule.examples_no_match, rule.id


# -- one problem per file ----------------------------------------------------------
# (name, edits, line needle (occurrence), key, message fragment)
CASES = [
    (
        "unknown-top-key",
        [("exceptions:\n", "colour: blue\nexceptions:\n")],
        ("colour: blue", 1),
        "colour",
        "unknown key",
    ),
    (
        "unknown-category-key",
        [("    severity: high\n", "    severity: high\n    colour: red\n")],
        ("colour: red", 1),
        "categories[0].colour",
        "unknown key",
    ),
    (
        "unknown-rule-key",
        [("    message: Runs the tool.\n", "    message: Runs the tool.\n    owner: me\n")],
        ("owner: me", 1),
        "rules[0].owner",
        "unknown key",
    ),
    (
        "unknown-matcher-key",
        [("      import: notemod\n", "      import: notemod\n      weight: 3\n")],
        ("weight: 3", 1),
        "rules[note-import].match.weight",
        "unknown key",
    ),
    (
        "unknown-shell-key",
        [
            (
                "        program: [forbidden-tool]\n",
                "        program: [forbidden-tool]\n        flags: '-x'\n",
            )
        ],
        ("flags: '-x'", 1),
        "rules[tool-shell].match.shell.flags",
        "unknown key",
    ),
    (
        "unknown-examples-key",
        [
            (
                '      no_match: ["import os"]\n',
                '      no_match: ["import os"]\n      maybe: ["x"]\n',
            )
        ],
        ("maybe:", 1),
        "rules[note-import].examples.maybe",
        "unknown key",
    ),
    (
        "yaml-bool-as-title",
        [("    title: Running tools\n", "    title: yes\n")],
        ("title: yes", 1),
        "categories[tools].title",
        "must be a string",
    ),
    (
        "yaml-bool-as-message",
        [("    message: Imports notemod.\n", "    message: no\n")],
        ("message: no", 1),
        "rules[note-import].message",
        "must be a string",
    ),
    (
        "yaml-bool-in-program-list",
        [("program: [forbidden-tool]", "program: [forbidden-tool, on]")],
        ("program: [forbidden-tool, on]", 1),
        "rules[tool-shell].match.shell.program[1]",
        "must be a string",
    ),
    (
        "list-as-name",
        [("name: loader-test\n", "name: [a, b]\n")],
        ("name: [a, b]", 1),
        "name",
        "must be a string",
    ),
    (
        "regex-does-not-compile",
        [("      import: notemod\n", "      string: 'notemod(['\n")],
        ("string: 'notemod(['", 1),
        "rules[note-import].match.string",
        "invalid regex",
    ),
    (
        "shell-args-regex-does-not-compile",
        [
            (
                "        program: [forbidden-tool]\n",
                "        program: [forbidden-tool]\n        args: '[z-a]'\n",
            )
        ],
        ("args: '[z-a]'", 1),
        "rules[tool-shell].match.shell.args",
        "invalid regex",
    ),
    (
        "duplicate-rule-id",
        [("  - id: note-import\n", "  - id: tool-shell\n")],
        ("- id: tool-shell", 2),
        "rules[tool-shell].id",
        "duplicate rule id",
    ),
    (
        "duplicate-category-id",
        [
            ("  - id: notes\n", "  - id: tools\n"),
            ("    category: notes\n", "    category: tools\n"),
        ],
        ("- id: tools", 2),
        "categories[tools].id",
        "duplicate category id",
    ),
    (
        "unknown-category-in-rule",
        [("    category: notes\n", "    category: nothing\n")],
        ("category: nothing", 1),
        "rules[note-import].category",
        "unknown category 'nothing'",
    ),
    (
        "unknown-tier-in-category",
        [("    severity: high\n", "    severity: high\n    tiers: [gold]\n")],
        ("tiers: [gold]", 1),
        "categories[tools].tiers",
        "unknown tier 'gold'",
    ),
    (
        "unknown-tier-in-rule",
        [
            (
                "    message: Runs the tool.\n",
                "    message: Runs the tool.\n    tiers: [free, premium]\n",
            )
        ],
        ("tiers: [free, premium]", 1),
        "rules[tool-shell].tiers",
        "unknown tier 'premium'",
    ),
    (
        "unknown-tier-in-exception",
        [("    users: [alice]\n", "    tiers: [platinum]\n")],
        ("tiers: [platinum]", 1),
        "exceptions[0].tiers",
        "unknown tier 'platinum'",
    ),
    (
        "matcher-with-two-kinds",
        [("      import: notemod\n", "      import: notemod\n      string: notemod\n")],
        ("import: notemod", 1),
        "rules[note-import].match",
        "exactly one of",
    ),
    (
        "matcher-with-only-keywords",
        [("      import: notemod\n", "      keywords: [notemod]\n")],
        ("keywords: [notemod]", 1),
        "rules[note-import].match",
        "exactly one of",
    ),
    (
        "not-outside-all",
        [("      import: notemod\n", "      not:\n        import: notemod\n")],
        ("        import: notemod", 1),
        "rules[note-import].match.not",
        "only allowed inside 'all'",
    ),
    (
        "not-inside-any",
        [
            (
                "      import: notemod\n",
                "      any:\n        - import: os\n        - not:\n            import: notemod\n",
            )
        ],
        ("            import: notemod", 1),
        "rules[note-import].match.any[1].not",
        "only allowed inside 'all'",
    ),
    (
        "all-with-only-not",
        [("      import: notemod\n", "      all:\n        - not:\n            import: notemod\n")],
        ("- not:", 1),
        "rules[note-import].match.all",
        "not 'not'",
    ),
    (
        "empty-any",
        [("      import: notemod\n", "      any: []\n")],
        ("any: []", 1),
        "rules[note-import].match.any",
        "non-empty list",
    ),
    (
        "call-args-index-not-integer",
        [
            (
                "      import: notemod\n",
                "      call:\n        name: notemod.run\n        args:\n          first: '.*'\n",
            )
        ],
        ("first: '.*'", 1),
        "rules[note-import].match.call.args.first",
        "must be an integer",
    ),
    (
        "call-args-quoted-index",
        [
            (
                "      import: notemod\n",
                "      call:\n        name: notemod.run\n        args:\n          '0': '.*'\n",
            )
        ],
        ("'0': '.*'", 1),
        "rules[note-import].match.call.args.0",
        "must be an integer",
    ),
    (
        "call-without-name",
        [("      import: notemod\n", "      call:\n        args: {0: x}\n")],
        ("args: {0: x}", 1),
        "rules[note-import].match.call.name",
        "required key is missing",
    ),
    (
        "install-manager-not-in-enum",
        [
            (
                "      import: notemod\n",
                "      install:\n        manager: [pip, brew]\n        package: notemod\n",
            )
        ],
        ("manager: [pip, brew]", 1),
        "rules[note-import].match.install.manager",
        "'brew'",
    ),
    (
        "connect-without-host-or-port",
        [("      import: notemod\n", "      connect: {}\n")],
        ("connect: {}", 1),
        "rules[note-import].match.connect",
        "needs host or port",
    ),
    (
        "connect-port-as-string",
        [("      import: notemod\n", "      connect:\n        port: '3333'\n")],
        ("port: '3333'", 1),
        "rules[note-import].match.connect.port",
        "must be an integer",
    ),
    (
        "shell-any-program-without-args",
        [("program: [forbidden-tool]", "program: '*'")],
        ("program: '*'", 1),
        "rules[tool-shell].match.shell.args",
        "needs an args pattern",
    ),
    (
        "empty-example-list",
        [('      match: ["import notemod"]\n', "      match: []\n")],
        ("match: []", 1),
        "rules[note-import].examples.match",
        "at least one example",
    ),
    (
        "missing-examples",
        [('    examples:\n      match: ["import notemod"]\n      no_match: ["import os"]\n', "")],
        ("- id: note-import", 1),
        "rules[1].examples",
        "required key is missing",
    ),
    (
        "exception-without-who",
        [("    users: [alice]\n", "")],
        ("- id: course", 1),
        "exceptions[0]",
        "users, groups, tiers",
    ),
    (
        "exception-with-empty-who",
        [("    users: [alice]\n", "    users: []\n")],
        ("- id: course", 1),
        "exceptions[0]",
        "users, groups, tiers",
    ),
    (
        "exception-without-what",
        [("    rules: [tool-shell]\n", "")],
        ("- id: course", 1),
        "exceptions[0]",
        "categories, rules",
    ),
    (
        "exception-naming-unknown-rule",
        [("    rules: [tool-shell]\n", "    rules: [ghost-rule]\n")],
        ("rules: [ghost-rule]", 1),
        "exceptions[0].rules",
        "unknown rule 'ghost-rule'",
    ),
    (
        "exception-naming-unknown-category",
        [("    rules: [tool-shell]\n", "    categories: [nothing]\n")],
        ("categories: [nothing]", 1),
        "exceptions[0].categories",
        "unknown category 'nothing'",
    ),
    (
        "wrong-version",
        [("version: 1\n", "version: 2\n")],
        ("version: 2", 1),
        "version",
        "must be 1",
    ),
    (
        "bad-on-error",
        [("tiers: [free, paid]\n", "tiers: [free, paid]\non_error: explode\n")],
        ("on_error: explode", 1),
        "on_error",
        "'explode'",
    ),
    (
        "bad-category-action",
        [("    action: block\n", "    action: deny\n")],
        ("action: deny", 1),
        "categories[tools].action",
        "'deny'",
    ),
    (
        "bad-rule-severity",
        [("    message: Runs the tool.\n", "    message: Runs the tool.\n    severity: extreme\n")],
        ("severity: extreme", 1),
        "rules[tool-shell].severity",
        "'extreme'",
    ),
    (
        "bad-category-id",
        [
            ("  - id: notes\n", "  - id: Notes\n"),
            ("    category: notes\n", "    category: Notes\n"),
        ],
        ("- id: Notes", 1),
        "categories[Notes].id",
        "must match",
    ),
    (
        "bad-rule-id",
        [("  - id: note-import\n", "  - id: Note Import\n")],
        ("- id: Note Import", 1),
        "rules[Note Import].id",
        "must match",
    ),
    (
        "categories-not-a-list",
        [("categories:\n  - id: tools\n", "categories: {}\nunused:\n  - id: tools\n")],
        ("categories: {}", 1),
        "categories",
        "must be a list",
    ),
    (
        "missing-rules",
        [("rules:\n", "retired_rules:\n")],
        ("version: 1", 1),
        "rules",
        "required key is missing",
    ),
    (
        "yaml-syntax-error",
        [("    message: Runs the tool.\n", "    message: Runs: the tool\n")],
        ("message: Runs: the tool", 1),
        "",
        "YAML syntax error",
    ),
]


@pytest.mark.parametrize(
    ("edits", "needle", "key", "fragment"),
    [pytest.param(e, n, k, f, id=name) for name, e, n, k, f in CASES],
)
def test_one_problem_names_file_line_and_key(
    tmp_path: Path, edits: list[tuple[str, str]], needle: tuple[str, int], key: str, fragment: str
) -> None:
    text = edit(BASE, *edits)
    path, problems = problems_of(tmp_path, text)
    expected_line = line_of(text, *needle)
    matching = [p for p in problems if p.key == key and fragment in p.message]
    assert matching, f"no problem with key {key!r} and {fragment!r} in {problems}"
    problem = matching[0]
    assert problem.path == path
    assert problem.line == expected_line, problem
    assert str(problem).startswith(f"{path}:{expected_line}: {key}: ")


def test_categories_not_a_list_reports_unknown_key_too(tmp_path: Path) -> None:
    # the helper case above leaves an unknown key behind: both are reported
    text = edit(BASE, ("categories:\n  - id: tools\n", "categories: {}\nunused:\n  - id: tools\n"))
    _, problems = problems_of(tmp_path, text)
    assert {p.key for p in problems} >= {"categories", "unused"}


@pytest.mark.parametrize(
    ("edits", "count"),
    [
        pytest.param([("    title: Running tools\n", "    title: yes\n")], 1, id="bool-title"),
        pytest.param([("    category: notes\n", "    category: nothing\n")], 1, id="unknown-cat"),
        pytest.param([("    rules: [tool-shell]\n", "    rules: [ghost]\n")], 1, id="unknown-rule"),
        pytest.param([("exceptions:\n", "colour: blue\nexceptions:\n")], 1, id="top-key"),
    ],
)
def test_single_fault_gives_single_problem(
    tmp_path: Path, edits: list[tuple[str, str]], count: int
) -> None:
    _, problems = problems_of(tmp_path, edit(BASE, *edits))
    assert len(problems) == count, problems


def test_error_message_lists_every_problem(tmp_path: Path) -> None:
    text = edit(
        BASE,
        ("    title: Running tools\n", "    title: yes\n"),
        ("    rules: [tool-shell]\n", "    rules: [ghost]\n"),
    )
    path, _ = problems_of(tmp_path, text)
    with pytest.raises(PolicyError) as info:
        load_policy(tmp_path / "policy.yaml")
    message = str(info.value)
    assert message.count(path) == 2
    assert f"{path}:{line_of(text, 'title: yes')}: categories[tools].title:" in message
    assert f"{path}:{line_of(text, 'rules: [ghost]')}: exceptions[0].rules:" in message


# -- several problems at once -------------------------------------------------------
def test_all_problems_of_a_file_are_reported_at_once(tmp_path: Path) -> None:
    text = edit(
        BASE,
        ("name: loader-test\n", "name: loader-test\nextra_top: 1\n"),
        ("    title: Running tools\n", "    title: yes\n"),
        ("    severity: high\n", "    severity: high\n    tiers: [gold]\n"),
        (
            "        program: [forbidden-tool]\n",
            "        program: [forbidden-tool]\n        args: '(oops'\n",
        ),
        ("      import: notemod\n", "      import: notemod\n      string: notemod\n"),
        ("    rules: [tool-shell]\n", "    rules: [ghost]\n"),
    )
    path, problems = problems_of(tmp_path, text)
    got = {(p.line, p.key) for p in problems}
    expected = {
        (line_of(text, "extra_top: 1"), "extra_top"),
        (line_of(text, "title: yes"), "categories[tools].title"),
        (line_of(text, "tiers: [gold]"), "categories[tools].tiers"),
        (line_of(text, "args: '(oops'"), "rules[tool-shell].match.shell.args"),
        (line_of(text, "import: notemod"), "rules[note-import].match"),
        (line_of(text, "rules: [ghost]"), "exceptions[0].rules"),
    }
    assert got == expected
    assert all(p.path == path for p in problems)


def test_rule_fields_are_checked_even_when_category_or_matcher_is_bad(tmp_path: Path) -> None:
    text = edit(
        BASE,
        (
            "    category: tools\n    message: Runs the tool.\n",
            "    category: nothing\n    message: yes\n    action: deny\n",
        ),
        ("    message: Imports notemod.\n", "    message: Imports notemod.\n    severity: huge\n"),
        ("      import: notemod\n", "      string: '(oops'\n"),
        ("    rules: [tool-shell]\n", "    categories: [tools]\n"),
    )
    _, problems = problems_of(tmp_path, text)
    got = {(p.line, p.key) for p in problems}
    assert got == {
        (line_of(text, "category: nothing"), "rules[tool-shell].category"),
        (line_of(text, "message: yes"), "rules[tool-shell].message"),
        (line_of(text, "action: deny"), "rules[tool-shell].action"),
        (line_of(text, "severity: huge"), "rules[note-import].severity"),
        (line_of(text, "string: '(oops'"), "rules[note-import].match.string"),
    }


def test_missing_ids_are_not_reported_as_duplicates(tmp_path: Path) -> None:
    text = edit(
        BASE,
        ("  - id: tool-shell\n    category", "  - category"),
        ("  - id: note-import\n    category", "  - category"),
        ("    rules: [tool-shell]\n", "    categories: [tools]\n"),
    )
    _, problems = problems_of(tmp_path, text)
    assert all(p.line >= 1 for p in problems), problems
    assert {(p.line, p.key, p.message) for p in problems} == {
        (line_of(text, "- category: tools"), "rules[0].id", "required key is missing"),
        (line_of(text, "- category: notes"), "rules[1].id", "required key is missing"),
    }


def test_keywords_beside_a_combinator_are_type_checked(tmp_path: Path) -> None:
    text = edit(
        BASE,
        (
            "      import: notemod\n",
            "      any:\n        - import: notemod\n      keywords: true\n",
        ),
    )
    _, problems = problems_of(tmp_path, text)
    assert any(p.line == line_of(text, "keywords: true") for p in problems)


# -- files that cannot be parsed or read ---------------------------------------------
@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n"])
def test_empty_file(tmp_path: Path, text: str) -> None:
    path, problems = problems_of(tmp_path, text)
    assert [(p.path, p.line, p.key) for p in problems] == [(path, 1, "")]
    assert "empty" in problems[0].message


def test_yaml_syntax_error_names_its_line(tmp_path: Path) -> None:
    text = edit(BASE, ('      no_match: ["import os"]\n', '      no_match: ["import os"\n'))
    path, problems = problems_of(tmp_path, text)
    assert len(problems) == 1
    assert problems[0].path == path
    assert "YAML syntax error" in problems[0].message
    # the parser notices the unclosed flow sequence at or after the line that opens it
    assert problems[0].line >= line_of(text, 'no_match: ["import os"')


def test_top_level_not_a_mapping(tmp_path: Path) -> None:
    path, problems = problems_of(tmp_path, "- a\n- b\n")
    assert [(p.path, p.line, p.key) for p in problems] == [(path, 1, "")]
    assert "mapping" in problems[0].message


def test_unreadable_paths(tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"version: 1\nname: \xff\xfe\n")
    for target in (missing, binary):
        with pytest.raises(PolicyError) as info:
            load_policy(target)
        (problem,) = info.value.problems
        assert problem.path == str(target)
        assert "cannot read" in problem.message
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "policy.yaml").write_bytes(b"version: 1\nname: \xff\n")
    with pytest.raises(PolicyError) as info:
        load_policy(folder)
    assert info.value.problems[0].path == str(folder / "policy.yaml")


def test_parse_policy_uses_the_given_path() -> None:
    with pytest.raises(PolicyError) as info:
        parse_policy(edit(BASE, ("version: 1\n", "version: 2\n")), "somewhere/p.yaml")
    assert [p.path for p in info.value.problems] == ["somewhere/p.yaml"]


# -- keywords ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("pattern", "keywords"),
    [
        ("xmrig", ("xmrig",)),
        ("XMRig", ("xmrig",)),
        (r"\bstratum\d?\+(tcp|ssl)://", ("stratum",)),
        (r"(xmrig|t-rex)\.exe", ("t-rex", "xmrig")),
        (r"(?:nanopool|2miners)\.org:\d+", ("2miners", "nanopool")),
        (r"ngrok\s+http", ("ngrok",)),
        (r"(?:abc)*def", ("def",)),  # an optional group is not required
        (r"(?:xyz)+", ("xyz",)),  # a repeated group is
        (r"a(bcd)?", ()),
        (r"(foo|ba)", ()),  # one alternative is too short to be a keyword
        (r".*", ()),
        (r"\d+", ()),
        ("ab", ()),
        (r"\bxmrig\b", ("xmrig",)),
        ("(unclosed", ()),
    ],
)
def test_regex_keywords(pattern: str, keywords: tuple[str, ...]) -> None:
    assert sorted(bare(k) for k in regex_keywords(pattern)) == list(keywords)


@pytest.mark.parametrize(
    ("pattern", "sample"),
    [
        (r"\bstratum\d?\+(tcp|ssl)://", "url = 'STRATUM2+ssl://pool:1'"),
        (r"(xmrig|t-rex)\.exe", "run T-Rex.exe now"),
        (r"(?:nanopool|2miners)\.org:\d+", "eth.2miners.org:2020"),
        (r"ngrok\s+http", "!ngrok   http 8080"),
        (r"\bxmrig\b", "./XMRig -o x"),
        (r"(?:abc)*def", "xxdefyy"),
    ],
)
def test_regex_keywords_occur_in_every_match(pattern: str, sample: str) -> None:
    match = compile_regex(pattern).search(sample)  # the RE2 search the analyzer runs
    assert match is not None
    keywords = regex_keywords(pattern)
    assert keywords
    assert any(bare(k) in match.group(0).lower() for k in keywords), keywords


@pytest.mark.parametrize(
    ("pattern", "keywords"),
    [
        (r"\bpass[-_ ]?lists?\b", ("pass list", "pass-list", "pass_list", "passlist")),
        (r"\btop[-_]?\d+[-_]?passwords?", ("password",)),  # \d is no small set
        (
            r"^--(?:user(?:name)?s?|login)$",
            ("--login", "--user", "--username", "--usernames", "--users"),
        ),
        (r"stratum\+tcp", ("stratum+tcp",)),  # long enough already: as before
        (r"pass[^x]list", ("pass",)),  # a negated set is not spelled out
        (r"(?:ab|cd)(?:ef|gh)(?:ij|kl)(?:mn|op)(?:qr|st)(?:uv|wx)(?:yz|01)", ("abefijmnqruv",)),
    ],
)
def test_short_regex_keywords_are_spelled_out(pattern: str, keywords: tuple[str, ...]) -> None:
    spelled = sorted(bare(k) for k in regex_keywords(pattern, spell=True))
    if pattern.startswith("(?:ab|cd)"):
        assert len(spelled) == 64 and keywords[0] in spelled
        assert all(len(k) == 12 for k in spelled)
        return
    if pattern.startswith("\\bpass"):  # `lists?`: with and without the s
        assert spelled == sorted([*keywords, *(k + "s" for k in keywords)])
        return
    assert spelled == list(keywords)


@pytest.mark.parametrize(
    ("pattern", "sample"),
    [
        (r"\bpass[-_ ]?lists?\b", "open('My Pass-Lists.txt')"),
        (r"\bpass(?:word)?s?[-_ ]?(?:list|file|dict)", "--PASSWORDS_dict x"),
        (r"^--(?:user(?:name)?s?|login)$", "--Usernames"),
        (r"(?:^|[/\\])[\w-]*prox(?:y|ies)[\w-]*\.(?:txt|csv)$", "data/my-PROXIES-2.csv"),
        (r"(?-i:GET|POST)[_ -]?flood", "run POST-flood now"),
    ],
)
def test_spelled_keywords_occur_in_every_match(pattern: str, sample: str) -> None:
    match = compile_regex(pattern).search(sample)
    assert match is not None
    keywords = regex_keywords(pattern, spell=True)
    assert keywords
    assert any(bare(k) in match.group(0).lower() for k in keywords), keywords
    # and the plain derivation's keyword occurs too (the spelled one is the sharper)
    assert any(bare(k) in match.group(0).lower() for k in regex_keywords(pattern))


def test_a_policys_short_keywords_give_way_to_longer_derived_ones() -> None:
    derived = ("pass-list", "pass_list", "passlist")
    assert sharpened(("pass",), derived) == derived
    assert sharpened(("xmrig",), ("github.com/xmrig/xmrig",)) == ("xmrig",)  # not short
    assert sharpened(("pass",), ("github.com/",)) == ("pass",)  # the telling part is gone
    assert sharpened(("pass",), (*derived, "hashfile")) == ("pass",)
    assert sharpened(("pass",), ("pas",)) == ("pass",)  # not longer
    assert sharpened(("pass",), ()) == ("pass",)
    text = edit(
        BASE,
        (
            "      import: notemod\n",
            "      any:\n"
            "        - string: '\\bpass[-_ ]?list\\b'\n"
            "          keywords: [pass]\n"
            "        - string: '\\bgithub\\.com/ab'\n"
            "          keywords: [gith]\n"
            "        - call: {name: os.pass_list}\n",
        ),
    )
    leaves = {leaf.kind + str(leaf.index): leaf for leaf in parse_policy(text, "k.yaml").leaves}
    strings = [leaf for leaf in leaves.values() if leaf.kind == "string"]
    assert [sorted(leaf.keywords) for leaf in strings] == [
        ["pass list", "pass-list", "pass_list", "passlist"],
        ["github.com/ab"],
    ]


def test_leaf_keywords_from_the_loader() -> None:
    text = edit(
        BASE,
        (
            "      import: notemod\n",
            "      any:\n"
            "        - import: notemod.sub\n"
            "        - string: '\\d{6}'\n"
            "        - url: '\\w+\\.example'\n"
            "          keywords: [Example, EXAMPLE2]\n",
        ),
    )
    policy = parse_policy(text, "k.yaml")
    by_kind = {leaf.kind: leaf for leaf in policy.leaves}
    assert [bare(k) for k in by_kind["shell"].keywords] == ["forbidden-tool"]
    assert [bare(k) for k in by_kind["import"].keywords] == ["notemod"]  # top-level module
    assert by_kind["string"].keywords == ()
    assert by_kind["url"].keywords == ("example", "example2")  # explicit, lower-cased
    assert [leaf.index for leaf in policy.leaves] == list(range(len(policy.leaves)))
    # the leaf without a keyword is reported as a warning with its line and key
    (warning,) = policy.warnings
    assert warning.startswith(f"k.yaml:{line_of(text, 'string:')}: ")
    assert "rules[note-import].match.any[1].string" in warning


# -- the JSON Schema ----------------------------------------------------------------
@pytest.fixture(scope="module")
def validator() -> Draft202012Validator:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    return Draft202012Validator(schema, format_checker=FormatChecker())


def as_json(text: str) -> object:
    """The YAML document as JSON data (mapping keys such as call args indexes become text)."""
    return json.loads(json.dumps(yaml.safe_load(text)))


def schema_errors(validator: Draft202012Validator, text: str) -> list[str]:
    return [f"{e.json_path}: {e.message}" for e in validator.iter_errors(as_json(text))]


def yaml_policies() -> list[Path]:
    found = [default_policy_path()]
    for path in sorted((ROOT / "tests").glob("**/*.yaml")):
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            continue
        if isinstance(data, dict) and "rules" in data:
            found.append(path)
    return found


@pytest.mark.parametrize(
    "path",
    yaml_policies(),
    ids=lambda p: str(p.relative_to(ROOT)) if p.is_relative_to(ROOT) else p.name,
)
def test_shipped_and_test_policies_validate_against_schema(
    validator: Draft202012Validator, path: Path
) -> None:
    load_policy(path)  # the loader accepts it ...
    doc = (
        json.loads(json.dumps(document(path)))
        if path.is_dir()
        else as_json(path.read_text(encoding="utf-8"))
    )
    errors = [f"{e.json_path}: {e.message}" for e in validator.iter_errors(doc)]
    assert errors == []  # ... and so does the schema (a folder: its files merged)


def test_default_policy_is_among_the_schema_checked_files() -> None:
    paths = yaml_policies()
    assert paths[0].name == "colab" and (paths[0] / "policy.yaml").is_file()
    assert len(paths) >= 2  # plus at least one test policy


@pytest.mark.parametrize("text", [BASE, FULL], ids=["base", "full"])
def test_valid_policies_validate_against_schema(validator: Draft202012Validator, text: str) -> None:
    parse_policy(text)
    assert schema_errors(validator, text) == []


SCHEMA_REJECTS = [
    "unknown-top-key",
    "unknown-category-key",
    "unknown-rule-key",
    "unknown-matcher-key",
    "unknown-shell-key",
    "unknown-examples-key",
    "yaml-bool-as-title",
    "yaml-bool-as-message",
    "yaml-bool-in-program-list",
    "list-as-name",  # regex syntax (RE2) is the loader's alone
    "matcher-with-two-kinds",
    "matcher-with-only-keywords",
    "not-outside-all",
    "not-inside-any",
    "all-with-only-not",
    "empty-any",
    "call-args-index-not-integer",
    "call-without-name",
    "install-manager-not-in-enum",
    "connect-without-host-or-port",
    "connect-port-as-string",
    "shell-any-program-without-args",
    "empty-example-list",
    "missing-examples",
    "exception-without-who",
    "exception-with-empty-who",
    "exception-without-what",
    "wrong-version",
    "bad-on-error",
    "bad-category-action",
    "bad-rule-severity",
    "bad-category-id",
    "bad-rule-id",
    "categories-not-a-list",
    "missing-rules",
]


@pytest.mark.parametrize(
    "edits",
    [pytest.param(e, id=name) for name, e, *_ in CASES if name in SCHEMA_REJECTS],
)
def test_broken_policies_are_rejected_by_the_schema_too(
    validator: Draft202012Validator, edits: list[tuple[str, str]]
) -> None:
    text = edit(BASE, *edits)
    with pytest.raises(PolicyError):
        parse_policy(text)
    assert schema_errors(validator, text), "the schema accepts a policy the loader rejects"


def test_every_schema_case_exists() -> None:
    assert set(SCHEMA_REJECTS) <= {name for name, *_ in CASES}


# -- policy folders --------------------------------------------------------------------
FOLDER_MAIN = """\
version: 1
categories:
  - {id: tools, title: Tools, description: d, action: block, severity: high}
"""
FOLDER_RULES = """\
rules:
  - id: tools-run
    category: tools
    message: Runs a tool.
    match:
      shell: {program: [$tool_names]}
    examples:
      match: ["!evil-tool --go"]
      no_match: ["!ls"]
"""
FOLDER_LISTS = "lists:\n  tool_names: [evil-tool, other-tool]\n"


def write_folder(root: Path, rules: str = FOLDER_RULES, lists: str = FOLDER_LISTS) -> Path:
    (root / "rules").mkdir(parents=True)
    (root / "catalogue").mkdir()
    (root / "policy.yaml").write_text(FOLDER_MAIN)
    (root / "rules" / "tools.yaml").write_text(rules)
    (root / "catalogue" / "tools.yaml").write_text(lists)
    return root


def test_a_folder_is_one_policy_and_lists_expand(tmp_path: Path) -> None:
    policy = load_policy(write_folder(tmp_path / "p"))
    assert [r.id for r in policy.rules] == ["tools-run"]
    analyzer = Analyzer(policy)
    assert analyzer.check("!other-tool --go") and not analyzer.check("!ls")


def test_folder_problems_name_their_own_file_and_line(tmp_path: Path) -> None:
    bad = FOLDER_RULES.replace("category: tools", "category: nope")
    with pytest.raises(PolicyError) as err:
        load_policy(write_folder(tmp_path / "p", rules=bad))
    problem = err.value.problems[0]
    assert problem.path.endswith("rules/tools.yaml") and problem.line == 3, problem


@pytest.mark.parametrize(
    "lists, message",
    [
        ("lists:\n  other: [x]\n", "no list of that name"),
        ("lists:\n  tool_names: x\n", "must be a list of strings"),
        ("version: 1\n", "belongs in policy.yaml"),
    ],
    ids=["unknown list", "not a list", "setting outside policy.yaml"],
)
def test_folder_mistakes_are_clear(tmp_path: Path, lists: str, message: str) -> None:
    with pytest.raises(PolicyError) as err:
        load_policy(write_folder(tmp_path / "p", lists=lists))
    assert message in str(err.value)


def test_a_folder_without_policy_yaml_is_refused(tmp_path: Path) -> None:
    (tmp_path / "rules").mkdir()
    with pytest.raises(PolicyError, match=r"needs policy\.yaml"):
        load_policy(tmp_path)


def test_the_flattened_folder_is_the_same_policy(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "p")
    flat = parse_policy(flatten(folder))
    assert [r.id for r in flat.rules] == [r.id for r in load_policy(folder).rules]
    assert Analyzer(flat).check("!evil-tool")
