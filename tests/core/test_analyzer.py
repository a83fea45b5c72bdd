"""The analyzer on a test policy of fake tools: resolution, folding, positions, sessions."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from jupyter_colab_guard.analysis import Analyzer, Finding, Identity
from jupyter_colab_guard.analysis.analyzer import INCOMPLETE_RULE
from jupyter_colab_guard.policy import load_policy

POLICY = Path(__file__).with_name("analyzer_policy.yaml")


@pytest.fixture(scope="module")
def analyzer() -> Analyzer:
    return Analyzer(load_policy(POLICY))


def rules(findings: list[Finding]) -> set[str]:
    return {f.rule for f in findings}


B64_CMD = base64.b64encode(b"./fakeminer -o pool:1").decode()
B64_PY = base64.b64encode(b'import os; os.system("fakeminer --bench")').decode()
HEX_CMD = b"fakeminer -o x".hex()
CHR_LIST = ", ".join(str(ord(c)) for c in "fakeminer")

EVASIVE = {
    "plus": "import os\nos.system('fake' + 'miner -o x')",
    "fstring": "import os\na = 'fake'\nos.system(f'./{a}miner -o x')",
    "join": "import os\nos.system(''.join(['fake', 'mi', 'ner']))",
    "chr list": f"import os\nos.system(''.join(chr(c) for c in [{CHR_LIST}]))",
    "map chr": f"import os\nos.system(''.join(map(chr, [{CHR_LIST}])))",
    "fromhex": f"import os\nos.system(bytes.fromhex('{HEX_CMD}').decode())",
    "b64 exec": f"import base64\nexec(base64.b64decode('{B64_PY}'))",
    "b64 shell": f"!echo {B64_CMD} | base64 -d | bash",
    "rot13": "import codecs, os\nos.system(codecs.decode('snxrzvare', 'rot13'))",
    "reverse": "import os\nos.system('renimekaf'[::-1])",
    "hex escape": "import os\nos.system('\\x66akeminer')",
    "getattr import": "getattr(__import__('o' + 's'), 'sys' + 'tem')('fakeminer')",
    "importlib": "import importlib\nimportlib.import_module('os').system('fakeminer')",
    "builtins dict": "__builtins__.__dict__['__import__']('os').system('fakeminer')",
    "from import as": "from os import system as run\nx = 1\nrun('fakeminer -o x')",
    "module alias": "import subprocess as sp\nsp.Popen(['/tmp/fakeminer', '-t', '2'])",
    "assigned function": "import os\nrun = os.system\nrun('fakeminer')",
    "wrappers": "!sudo -u root env A=1 nohup timeout 100 nice -n 5 ./fakeminer > /dev/null 2>&1 &",
    "bash -c": "!bash -c 'cd /tmp && ./fakeminer -o x'",
    "subprocess shell": "import subprocess\nsubprocess.run('cd /tmp; fake-rex -a x', shell=True)",
    "exec argv": "import os\nos.execv('/usr/bin/fakeminer', ['fakeminer', '-o', 'x'])",
    "pty list": "import pty\npty.spawn(['./fakeminer'])",
    "getoutput assign": "out = !./fakeminer --version",
    "system_raw": "get_ipython().system_raw('./fakeminer &')",
    "percent bash": "%%bash\ncd /tmp\n./fakeminer -o x",
    "script bash": "%%script bash\n./fakeminer",
    "capture body": "%%capture\n!./fakeminer",
    "sx": "%sx ./fakeminer",
    "shell variable": "%%bash\nM=fakeminer\n./$M -o x",
    "renamed binary": "%%bash\nmv fakeminer kworker\n./kworker -o x",
    "screen": "!screen -dmS m ./fakeminer -o x",
    "partial concat": "import os\nos.system('./fakeminer -u ' + os.environ['W'])",
    "pool url concat": "msg = {'url': 'fakestratum' + '+tcp://pool:1'}",
}


@pytest.mark.parametrize("cell", EVASIVE.values(), ids=EVASIVE.keys())
def test_evasive_forms_are_resolved(analyzer: Analyzer, cell: str) -> None:
    found = rules(analyzer.check(cell))
    assert found & {"fake-miner", "fake-pool"}, found


HARMLESS = {
    "comment": "# never run ./fakeminer here\nx = 1",
    "docstring-like comment": "x = 1  # fakeminer is banned",
    "other program": "!./fakeminers -o x",
    "program as argument": "!echo fakeminer",
    "detection only": "import fakeface\nm = fakeface.zoo.get_model('detector.onnx')",
    "similar module": "import fakehashing",
    "markdown magic": "%%markdown\n./fakeminer is prohibited",
    "html magic": "%%html\n<p>fakeminer</p>",
}


@pytest.mark.parametrize("cell", HARMLESS.values(), ids=HARMLESS.keys())
def test_hard_negatives(analyzer: Analyzer, cell: str) -> None:
    assert analyzer.check(cell) == []


def test_finding_fields_and_positions(analyzer: Analyzer) -> None:
    cell = "x = 1\n\n  # note\n!sudo ./fakeminer -o x\n"
    (finding,) = analyzer.check(cell)
    assert (finding.category, finding.rule, finding.action, finding.severity) == (
        "mining",
        "fake-miner",
        "block",
        "high",
    )
    assert (finding.line, finding.column) == (4, 1)
    assert finding.title == "Mining"
    assert "fakeminer" in finding.evidence


def test_position_inside_nested_code(analyzer: Analyzer) -> None:
    cell = "import os\n\ndef f():\n    if True:\n        os.system('fakeminer')\n"
    (finding,) = analyzer.check(cell)
    assert (finding.line, finding.column) == (5, 9)


def test_position_in_cell_magic_body(analyzer: Analyzer) -> None:
    (finding,) = analyzer.check("%%bash\necho hi\n\n./fakeminer\n")
    assert finding.line == 4


def test_position_after_multiline_shell_escape(analyzer: Analyzer) -> None:
    cell = "!echo a \\\n   b\ny = 2\nz = 'fakestratum+tcp://p:1'\n"
    (finding,) = analyzer.check(cell)
    assert finding.rule == "fake-pool"
    assert finding.line == 4


def test_combinator_needs_every_part(analyzer: Analyzer) -> None:
    assert rules(analyzer.check("m = fakeface.zoo.get_model('swapper.onnx')")) == set()
    both = analyzer.check("import fakeface\nm = fakeface.zoo.get_model('swapper.onnx')")
    assert rules(both) == {"fake-swap"}
    assert both[0].line == 2  # located at the call, not the import


def test_install_url_connect_and_warn(analyzer: Analyzer) -> None:
    assert rules(analyzer.check("%pip install -q fake_miner_pkg[all]>=2")) == {"fake-install"}
    assert rules(analyzer.check("pip install fake-miner-pkg")) == {"fake-install"}
    assert rules(analyzer.check("!git clone https://example.org/fakeminer/releases.git")) == {
        "fake-url"
    }
    cell = "import socket\nc = socket.create_connection(('pool.example', 47474))"
    assert rules(analyzer.check(cell)) == {"fake-port"}
    (warn,) = analyzer.check("!faketunnel http 8080")
    assert warn.action == "warn"


def test_session_remembers_variables_files_and_aliases(analyzer: Analyzer) -> None:
    session = analyzer.session()
    assert session.check("name = 'fake'") == []
    assert session.check("full = name + 'miner'") == []
    assert rules(session.check("!./{full} -o x")) == {"fake-miner"}
    assert rules(session.check("!./$full -o x")) == {"fake-miner"}

    session = analyzer.session()
    assert rules(session.check("%%writefile run.sh\ncd /tmp\n./fakeminer\n")) == {"fake-miner"}
    assert rules(session.check("!bash run.sh")) == {"fake-miner"}
    assert rules(session.check("%run run.sh")) == {"fake-miner"}
    assert session.check("!bash other.sh") == []

    session = analyzer.session()
    session.check("%alias_magic shell bash")
    assert rules(session.check("%%shell\n./fakeminer")) == {"fake-miner"}
    session.check("%alias mine ./fakeminer -o x")
    assert rules(session.check("mine")) == {"fake-miner"}

    session = analyzer.session()
    session.check("import subprocess as sp")
    assert rules(session.check("sp.run(['fakeminer'])")) == {"fake-miner"}


def test_python_file_written_then_run(analyzer: Analyzer) -> None:
    session = analyzer.session()
    write = "with open('job.py', 'w') as f:\n    f.write('import os\\nos.system(\"fakeminer\")')"
    assert rules(session.check(write)) == {"fake-miner"}
    assert rules(session.check("!python job.py")) == {"fake-miner"}


def test_tiers_and_exceptions(analyzer: Analyzer) -> None:
    cell = "!fakesshd -D &"
    assert rules(analyzer.check(cell)) == {"fake-remote"}  # no identity: the first tier
    assert rules(analyzer.check(cell, Identity(user="bob", tier="free"))) == {"fake-remote"}
    assert analyzer.check(cell, Identity(user="bob", tier="paid")) == []
    mining = "!./fakeminer"
    assert analyzer.check(mining, Identity(user="alice")) == []
    assert rules(analyzer.check(mining, Identity(user="bob"))) == {"fake-miner"}


def test_runtime_checks(analyzer: Analyzer) -> None:
    assert rules(analyzer.check_command("nohup /opt/fakeminer -o x")) == {"fake-miner"}
    assert rules(analyzer.check_command(["sudo", "fakeminer"])) == {"fake-miner"}
    assert analyzer.check_command(["ls", "-l"]) == []
    assert rules(analyzer.check_connect("pool.example", 47474)) == {"fake-port"}
    assert analyzer.check_connect("pool.example", 443) == []


def test_unparsable_text_falls_back_and_says_so(analyzer: Analyzer) -> None:
    found = analyzer.check("x = (\n!./fakeminer\n")
    assert "fake-miner" in rules(found)
    incomplete = [f for f in found if f.rule == INCOMPLETE_RULE]
    assert len(incomplete) == 1 and incomplete[0].category == "analysis"


def test_fail_closed_policy_blocks_what_cannot_be_analysed(tmp_path: Path) -> None:
    text = POLICY.read_text().replace("name: analyzer-test", "name: closed\non_error: block")
    path = tmp_path / "closed.yaml"
    path.write_text(text)
    closed = Analyzer(load_policy(path))
    # a sum of 2500 strings exhausts the folder's recursion: the policy decides what happens
    deep = "import os\nos.system('a' " + "+ 'a' " * 2500 + ")"
    errors = [f for f in closed.check(deep) if f.category == "analysis"]
    assert errors and all(f.action == "block" for f in errors)
    opened = Analyzer(load_policy(POLICY))
    assert [f.action for f in opened.check(deep) if f.category == "analysis"] == ["log"]


def test_cache_gives_the_same_answer(analyzer: Analyzer) -> None:
    cell = "!./fakeminer -o x"
    first = analyzer.check(cell)
    assert analyzer.check(cell) == first
    assert analyzer.check(cell) is not first  # callers may not mutate the cache


def test_rule_examples_of_the_test_policy(analyzer: Analyzer) -> None:
    for rule in analyzer.policy.rules:
        for cell in rule.examples_match:
            assert rule.id in rules(analyzer.check(cell)), (rule.id, cell)
        for cell in rule.examples_no_match:
            assert rule.id not in rules(analyzer.check(cell)), (rule.id, cell)


def test_docstrings_and_bare_strings_are_prose(analyzer: Analyzer) -> None:
    cell = (
        '"""Connect with fakestratum+tcp://pool:1 here."""\ndef f():\n    "fakestratum+tcp://x"\n'
    )
    assert analyzer.check(cell) == []
    assert rules(analyzer.check("url = 'fakestratum+tcp://pool:1'")) == {"fake-pool"}
