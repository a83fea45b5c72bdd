"""Analyzer mechanics added for real-world forms: release names, loops, given arguments,
printed prose, shlex folding and local npm installs (each on a small policy of its own)."""

from __future__ import annotations

from pathlib import Path

import pytest

from jupyter_colab_guard.analysis import Analyzer
from jupyter_colab_guard.analysis.shell import release_base
from jupyter_colab_guard.policy import load_policy
from jupyter_colab_guard.policy.loader import PolicyError

HEAD = """version: 1
name: mechanics
categories:
  - id: misuse
    title: Misuse
    description: Test category.
    action: block
    severity: high
rules:
"""


def rule(rule_id: str, match: str) -> str:
    return (
        f"  - id: {rule_id}\n    category: misuse\n    message: Test rule.\n"
        f"    match:\n{match}\n"
        '    examples:\n      match: ["x"]\n      no_match: ["x = 1"]\n'
    )


@pytest.fixture(scope="module")
def analyzer(tmp_path_factory: pytest.TempPathFactory) -> Analyzer:
    rules = [
        rule("flood", "      call: {name: [net.send], looped: true}"),
        rule("given", "      call: {name: [vault.open], kwargs: {password: '.*'}}"),
        rule("literal", "      call: {name: [vault.open], kwargs: {password: '^hunter2$'}}"),
        rule("tool", "      shell: {program: [ttyd, ngrok]}"),
        rule("wordlist", "      string: 'rockyou\\.txt'"),
        rule("pool", "      string: 'pool\\.example:3333'"),
        rule("webtorrent", "      install: {manager: [npm], package: [webtorrent]}"),
        rule(
            "archive",
            "      all:\n        - import: [zipfile]\n"
            "        - call: {name: [zipfile.ZipFile.extractall], kwargs: {pwd: '.*'}}",
        ),
        rule("tor-import", "      import: [torpy]"),
    ]
    return analyzer_of(tmp_path_factory, rules)


def analyzer_of(tmp_path_factory: pytest.TempPathFactory, rules: list[str]) -> Analyzer:
    """The real analyzer with a small policy of the given rules (see ``rule``)."""
    path = tmp_path_factory.mktemp("policy") / "policy.yaml"
    path.write_text(HEAD + "".join(rules))
    return Analyzer(load_policy(path))


def hits(analyzer: Analyzer, cell: str) -> set[str]:
    return {f.rule for f in analyzer.check(cell)}


@pytest.mark.parametrize(
    ("name", "tool"),
    [
        ("ttyd.x86_64", "ttyd"),
        ("ngrok-v3-stable-linux-amd64", "ngrok"),
        ("xmrig-6.21.0", "xmrig"),
        ("mhddos_proxy_linux_arm64", "mhddos_proxy"),
        ("ssh-keygen", "ssh-keygen"),
        ("t-rex", "t-rex"),
        ("frpc", "frpc"),
    ],
)
def test_release_file_names_stand_for_their_tool(name: str, tool: str) -> None:
    assert release_base(name) == tool


def test_release_named_binary_is_the_tool(analyzer: Analyzer) -> None:
    assert hits(analyzer, "!./ttyd.x86_64 -W -p 7681 bash") == {"tool"}
    assert hits(analyzer, "!./ngrok-v3-stable-linux-amd64 http 8000") == {"tool"}
    assert hits(analyzer, "!./ttydemo -p 1") == set()


@pytest.mark.parametrize(
    "loop",
    ["while True:", "while 1:", "while 0x1:", "for _ in itertools.count():"],
)
def test_looped_call_inside_endless_loops_at_any_depth(analyzer: Analyzer, loop: str) -> None:
    body = "        if ok:\n            net.send(x)\n"
    cell = f"import net, itertools\ndef worker():\n    {loop}\n{body}"
    assert "flood" in hits(analyzer, cell)


@pytest.mark.parametrize(
    "cell",
    [
        "import net\nnet.send(x)",
        "import net\nfor i in range(10):\n    net.send(x)",
        "import net\nwhile n < 3:\n    net.send(x)\n    n += 1",
        "import net\nwhile True:\n    break\nnet.send(x)",
        "import net\nwhile True:\n    if net.send(x):\n        break",  # a loop that ends
        "import net\ndef f():\n    while True:\n        net.send(x)\n        return 1",
        "import net\nfor item in iter(q.get, None):\n    net.send(item)",  # until a sentinel
    ],
)
def test_looped_call_not_outside_endless_loops(analyzer: Analyzer, cell: str) -> None:
    assert "flood" not in hits(analyzer, cell)


@pytest.mark.parametrize(
    "cell",
    [
        "import net\nfor i in range(5000):\n    net.send(i)",  # each item once: a crawl
        "import net\nfor page in range(1, 3000):\n    net.send(url, page=page)",
    ],
)
def test_loop_counted_far_over_its_items_is_not_endless(analyzer: Analyzer, cell: str) -> None:
    assert "flood" not in hits(analyzer, cell)
    assert "flood" in hits(analyzer, cell.replace("range(", "itertools.count(").replace("5000", ""))


@pytest.mark.parametrize(
    ("cell", "flood"),
    [
        ("n = int(input('How many? '))\nfor _ in range(n):\n    net.send(x)", True),
        ("N = 5000\nfor _ in range(N):\n    net.send(x)", True),
        ("N = 50\nfor _ in range(N):\n    net.send(x)", False),
        ("N = 5000\nwhile sent < N:\n    net.send(x)\n    sent += 1", True),
        ("end = time.time() + 30\nwhile time.time() < end:\n    net.send(x)", True),
        ("for i in range(5000):\n    net.send(x, args=(i,))", False),  # the item, in a tuple
    ],
)
def test_loops_counted_far_through_a_name_or_run_until_a_time(
    analyzer: Analyzer, cell: str, flood: bool
) -> None:
    assert ("flood" in hits(analyzer, f"import net, time\n{cell}")) is flood


def test_given_argument_matches_dot_star_even_when_not_literal(analyzer: Analyzer) -> None:
    assert hits(analyzer, "import vault\nvault.open('db', password=word)") == {"given"}
    assert hits(analyzer, "import vault\nvault.open('db', password='hunter2')") == {
        "given",
        "literal",
    }
    assert hits(analyzer, "import vault\nvault.open('db')") == set()


def test_printed_strings_are_prose_but_used_strings_are_not(analyzer: Analyzer) -> None:
    assert hits(analyzer, 'print("e.g. hashcat -a 0 h.txt rockyou.txt")') == set()
    assert hits(analyzer, 'w = "rockyou.txt"\nprint(w)') == {"wordlist"}
    assert hits(analyzer, 'import os\nprint(os.system("cat rockyou.txt"))') == {"wordlist"}


def test_shlex_split_of_fstring_with_earlier_cell_values(analyzer: Analyzer) -> None:
    session = analyzer.session()
    assert session.check('host = "pool.example"\nport = 3333') == []
    cell = "import shlex, subprocess\nsubprocess.Popen(shlex.split(f'./m -o {host}:{port}'))"
    assert {f.rule for f in session.check(cell)} == {"pool"}


@pytest.mark.parametrize(
    "cell",
    [
        "!npm install webtorrent@1",
        "!npm i -g webtorrent",
        "!yarn add webtorrent",
        "!pnpm add webtorrent",
    ],
)
def test_npm_installs_local_or_global(analyzer: Analyzer, cell: str) -> None:
    assert hits(analyzer, cell) == {"webtorrent"}


def test_looped_must_be_a_boolean(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(HEAD + rule("flood", "      call: {name: [net.send], looped: maybe}"))
    with pytest.raises(PolicyError) as err:
        load_policy(path)
    assert any(
        p.key.endswith("match.call.looped") and "true or false" in p.message
        for p in err.value.problems
    ), err.value.problems


@pytest.mark.parametrize(
    "setup",
    ["%env T=/opt/bin/ttyd", "%env T /opt/bin/ttyd", 'import os\nos.environ["T"] = "/opt/ttyd"'],
)
@pytest.mark.parametrize("run", ["!$T -W -p 7681 bash", "%%bash\n${T} -p 7681 bash"])
def test_environment_set_in_an_earlier_cell_reaches_shell_lines(
    analyzer: Analyzer, setup: str, run: str
) -> None:
    session = analyzer.session()
    session.check(setup)
    assert {f.rule for f in session.check(run)} == {"tool"}
    assert analyzer.session().check(run) == []  # without the earlier cell: nothing known


def test_braced_expressions_in_shell_lines_are_evaluated(analyzer: Analyzer) -> None:
    # IPython evaluates any expression in braces, not only names: `!tt{"yd"}` runs ttyd
    assert hits(analyzer, '!tt{"yd"} -p 7681 bash') == {"tool"}
    assert hits(analyzer, "!echo {1..3} '{\"a\": 1}'") == set()


def test_imports_of_earlier_cells_are_context_for_later_cells(analyzer: Analyzer) -> None:
    session = analyzer.session()
    assert session.check("import zipfile\nimport torpy") != []  # torpy fires where imported
    later = session.check('z = zipfile.ZipFile("a.zip")\nz.extractall(pwd=word)')
    assert [(f.rule, f.line) for f in later] == [("archive", 2)]
    assert session.check("x = 1") == []  # an import alone never fires again in later cells
    # without the earlier import, the same cell is not the rule's match
    assert hits(analyzer, 'z = zipfile.ZipFile("a.zip")\nz.extractall(pwd=word)') == set()


def test_loop_ended_only_by_an_inner_loop_is_still_endless(analyzer: Analyzer) -> None:
    cell = "import net\nwhile True:\n    for i in range(3):\n        break\n    net.send(x)"
    assert "flood" in hits(analyzer, cell)


def test_print_to_a_file_is_not_prose(analyzer: Analyzer) -> None:
    assert hits(analyzer, 'print("rockyou.txt", file=open("run.sh", "w"))') == {"wordlist"}


def test_env_magic_alone_is_remembered(analyzer: Analyzer) -> None:
    session = analyzer.session()
    assert session.check("%env T=ttyd") == []
    assert {f.rule for f in session.check("!$T -p 1 bash")} == {"tool"}


def test_renamed_release_build_is_the_tool(analyzer: Analyzer) -> None:
    cell = "!mv ngrok-v3-stable-linux-amd64 helper && ./helper http 8080"
    findings = analyzer.check(cell)
    assert {f.rule for f in findings} == {"tool"}
    assert "release build of ngrok" in findings[-1].evidence


def test_yarn_global_remove_installs_nothing(analyzer: Analyzer) -> None:
    assert hits(analyzer, "!yarn global remove webtorrent") == set()
    assert hits(analyzer, "!yarn global add webtorrent") == {"webtorrent"}


def test_calls_in_braces_of_shell_lines_are_checked(analyzer: Analyzer) -> None:
    assert hits(analyzer, '!echo {os.system("ttyd -p 1")}') == {"tool"}


def test_remembered_imports_do_not_mark_later_cells(analyzer: Analyzer) -> None:
    from jupyter_colab_guard.analysis.pyscan import Memory

    memory = Memory(imports={"subprocess", "base64"})
    deep, _live, _words = analyzer.gate("x = 1\ny = x + 2", memory)
    assert not deep


@pytest.mark.parametrize(
    "header",
    [
        "while True:",
        "while (1):",
        "while 0x1:",
        "while 'go':",
        "while ...:",
        "while \\\n  True:",
        "for _ in itertools.count():",
        "for _ in cycle (items):",
    ],
)
def test_prefilter_sees_every_endless_loop_the_analysis_accepts(
    analyzer: Analyzer, header: str
) -> None:
    cell = f"import net, itertools\nfrom itertools import cycle\n{header}\n    net.send(x)\n"
    exhaustive = Analyzer(analyzer.policy, exhaustive=True)
    assert {f.rule for f in exhaustive.check(cell)} == {"flood"}
    assert hits(analyzer, cell) == {"flood"}


def test_an_import_again_in_a_later_cell_is_flagged_again(analyzer: Analyzer) -> None:
    """The earlier cell's import is context for later cells; it must not stand in for the
    later cell's own import (which would leave that cell without its finding)."""
    session = analyzer.session()
    cell = "import json\nimport torpy\nprint('x')\n"
    first = [(f.rule, f.line) for f in session.check(cell)]
    again = [(f.rule, f.line) for f in session.check(cell)]
    assert first == again == [("tor-import", 2)]


def record_visits(analyzer: Analyzer) -> list[int]:
    """The first lines of the statements ``analyzer`` analyses in depth from now on."""
    visited: list[int] = []
    visit = analyzer._visit

    def spy(snip, *args):  # type: ignore[no-untyped-def]
        visited.append(snip.first_line)
        return visit(snip, *args)

    analyzer._visit = spy  # type: ignore[method-assign]
    return visited


def watched(
    tmp_path_factory: pytest.TempPathFactory, rule_id: str, match: str
) -> tuple[Analyzer, Analyzer, list[int]]:
    """An analyzer of one rule whose visits are recorded, and its exhaustive twin."""
    analyzer = analyzer_of(tmp_path_factory, [rule(rule_id, match)])
    return analyzer, Analyzer(analyzer.policy, exhaustive=True), record_visits(analyzer)


def test_not_parts_are_read_once_the_rest_of_the_rule_matches(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """The lines of a rule's `not` part are visited only when the rest of the rule has
    matched; then the `not` part is decided as if every line had been read."""
    analyzer, exhaustive, visited = watched(
        tmp_path_factory,
        "push",
        "      all:\n        - call: {name: [net.send]}\n        - not: {string: 'quietmirror'}",
    )
    quiet = "import net\nhost = 'quietmirror.example'\nnet.send(host)\n"
    loud = "import net\nother = 'elsewhere.example'\nnet.send(other)\n"
    unused = "import net\nhost = 'quietmirror.example'\nprint(host)\n"
    assert hits(exhaustive, quiet) == set() and hits(exhaustive, loud) == {"push"}
    assert hits(analyzer, quiet) == set()  # the `not` line was read: no finding
    assert 2 in visited
    assert hits(analyzer, loud) == {"push"}
    visited.clear()
    assert hits(analyzer, unused) == hits(exhaustive, unused) == set()
    assert 2 not in visited  # net.send is not called: the `not` line is never parsed


def test_parts_of_an_all_are_read_cheapest_first(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Of a rule whose parts must all match, the part with the fewest lines in the cell is
    read first, and the others only once it matched (an `all` under a top-level `any`
    too); the outcome is the one reading every line gives."""
    analyzer, exhaustive, visited = watched(
        tmp_path_factory,
        "staged",
        "      any:\n        - all:\n            - call: {name: [net.send]}\n"
        "            - string: 'widewordx'\n        - string: 'lonewordz'",
    )
    sent = "import net\nnote = 'widewordx here'\nnet.send(note)\n"
    kept = "import net\nnote = 'widewordx here'\nprint(note)\n"
    many = "import net\nnet.send(1)\nnet.send(2)\nx = 'lonewordz'\n"
    for cell, expected in ((sent, {"staged"}), (kept, set()), (many, {"staged"})):
        visited.clear()
        assert hits(analyzer, cell) == hits(exhaustive, cell) == expected
        if cell is kept:  # nothing sent: the string's line is never parsed
            assert 2 not in visited
        if cell is many:  # no 'widewordx' at all: the sends are never parsed
            assert not {2, 3} & set(visited) and 4 in visited


def test_a_call_like_a_name_matches_the_function_s_own_name(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """`like` matches the last part of the called name, wherever the function comes from
    (a local module, a method of any object, a function the cell defines), with the other
    call conditions beside it."""
    analyzer = analyzer_of(
        tmp_path_factory,
        [rule("signup", "      call: {like: '^create_\\w*_account$', looped: repeated}")],
    )
    made = [
        "from web.trimble import create_trimble_account\n"
        "for _ in range(count):\n    create_trimble_account(email=new_mail())\n",
        "for _ in range(500):\n    bot.create_fresh_account()\n",
    ]
    quiet = [
        "from web.trimble import create_trimble_account\ncreate_trimble_account(email=me)\n",
        "for address in addresses:\n    bot.create_user_account(address)\n",  # each item once
        "for _ in range(count):\n    create_account_page()\n",
    ]
    assert [hits(analyzer, cell) for cell in made] == [{"signup"}] * len(made)
    assert [hits(analyzer, cell) for cell in quiet] == [set()] * len(quiet)


def test_a_call_needs_a_name_or_like_not_both(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(HEAD + rule("both", "      call: {name: [a.b], like: 'b'}"))
    with pytest.raises(PolicyError, match="give name or like, not both"):
        load_policy(path)


def test_like_also_reads_the_functions_a_cell_defines(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """A `like` leaf with no condition on the call also matches a function or class the
    cell defines by that name (a key rotator defined in a module nobody calls there)."""
    analyzer = analyzer_of(
        tmp_path_factory,
        [
            rule("rotator", "      call: {like: '(?i)^rotate_key$|keyrotator$'}"),
            rule("looped", "      call: {like: '(?i)^rotate_key$', looped: true}"),
        ],
    )
    assert hits(analyzer, "def rotate_key(self):\n    self.i += 1\n") == {"rotator"}
    assert hits(analyzer, "class KeyRotator:\n    pass\n") == {"rotator"}
    assert hits(analyzer, "def rotate_keys_of(ring):\n    pass\n") == set()
    assert hits(analyzer, "while True:\n    rotate_key()\n") == {"rotator", "looped"}
