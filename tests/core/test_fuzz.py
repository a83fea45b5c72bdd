"""The analyzer never raises, whatever the cell holds."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jupyter_colab_guard.analysis import Analyzer, Finding
from jupyter_colab_guard.policy import load_policy

ANALYZER = Analyzer(load_policy(None), cache_size=0)

FRAGMENTS = [
    "!",
    "!!",
    "%",
    "%%bash\n",
    "%%writefile x.sh\n",
    "%%capture\n",
    "%alias_magic b bash\n",
    "import os\n",
    "os.system(",
    "subprocess.run([",
    "getattr(__import__('o'+'s'), 'system')(",
    "exec(",
    "base64.b64decode(",
    "bytes.fromhex(",
    "chr(120)",
    "''.join(",
    "f'{x}'",
    "'xm'",
    "'rig'",
    " + ",
    "./xmrig",
    " -o stratum+tcp://p:3333",
    "{",
    "}",
    "$x",
    "(",
    ")",
    "[",
    "]",
    "\n",
    "    ",
    "\\",
    "'",
    '"',
    '"""',
    "#",
    "lambda:",
    "def f():\n",
    "class A:\n",
    "|",
    "&&",
    "| base64 -d | bash",
    "echo ",
    "<<EOF\n",
    "EOF\n",
    "sudo ",
    "nohup ",
    "magnet:?xt=urn:btih:",
    "\x00",
    "é",
    "\t",
    ":",
    "=",
    "?",
    "%%script bash\n",
    "%run ",
    "x = !",
    "get_ipython().",
]


def check_all(cell: str) -> None:
    findings = ANALYZER.check(cell)
    assert isinstance(findings, list)
    assert all(isinstance(f, Finding) and f.line >= 1 and f.column >= 1 for f in findings)
    session = ANALYZER.session()
    session.check(cell)
    session.check(cell)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=400))
def test_arbitrary_text(cell: str) -> None:
    check_all(cell)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(FRAGMENTS), max_size=30).map("".join))
def test_ipython_shaped_text(cell: str) -> None:
    check_all(cell)


def test_pathological_inputs() -> None:
    for cell in [
        "(" * 5000,
        "x = " + "+".join(["'a'"] * 3000),
        "'''" * 100,
        "!" + "a|" * 2000,
        "%%bash\n" + "echo x | base64 -d | bash\n" * 50,
        "\n" * 10000,
        "exec(" * 200 + ")" * 200,
        "\ufeff\u202e!xmrig",
    ]:
        check_all(cell)
