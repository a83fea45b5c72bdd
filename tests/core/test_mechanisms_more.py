"""Analyzer mechanisms of issue 9, second part: relative imports, endless iterators,
payload sizes, decorators, instances kept in containers (a small policy of their own, the
real analyzer). Each case has the cell a gap let through and a benign counterpart."""

from __future__ import annotations

import ast

import libcst as cst
import pytest
from test_analysis_mechanics import HEAD, analyzer_of, rule

from jupyter_colab_guard.analysis import Analyzer
from jupyter_colab_guard.analysis.facts import FactSet
from jupyter_colab_guard.analysis.loops import COUNTED, ENDLESS_TEXT, REPEATED, endless
from jupyter_colab_guard.analysis.pyscan import Memory, PythonScanner
from jupyter_colab_guard.policy import load_policy

RULES = [
    rule("leech-import", "      import: [helper.mirror_leech_utils]"),
    rule(
        "flood", "      call: {name: [requests.Session.post, socket.socket.sendto], looped: true}"
    ),
    rule(
        "big-payload",
        "      call: {name: [socket.socket.sendto, socket.socket.send], args: {0: '.{1000}'}}",
    ),
    rule("bot-command", "      call: {name: [pyrogram.Client.on_message]}"),
    rule("upload-route", "      call: {name: [flask.Flask.route], args: {0: '^/upload$'}}"),
    rule("session-post", "      call: {name: [requests.Session.post], kwargs: {data: '.*'}}"),
]


@pytest.fixture(scope="module")
def analyzer(tmp_path_factory: pytest.TempPathFactory) -> Analyzer:
    return analyzer_of(tmp_path_factory, RULES)


def found(analyzer: Analyzer, cell: str) -> set[str]:
    return {f.rule for f in analyzer.session().check(cell)}


# -- 1. relative imports -------------------------------------------------------------


@pytest.mark.parametrize(
    "cell",
    [
        "from ..helper.mirror_leech_utils.download_utils import add_aria2c_download\n",
        "from .helper.mirror_leech_utils import status_utils\n",
        "from ... helper . mirror_leech_utils import x as y\n",
    ],
)
def test_relative_import_has_facts_by_its_dotted_tail(analyzer: Analyzer, cell: str) -> None:
    assert "leech-import" in found(analyzer, cell)


@pytest.mark.parametrize(
    "cell",
    [
        "from ..helper import mirror_utils\n",
        "from . import helpers\n",
        "from .mirror_leech_utils_docs import x\n",
    ],
)
def test_other_relative_imports_stay_quiet(analyzer: Analyzer, cell: str) -> None:
    assert "leech-import" not in found(analyzer, cell)


# a line Python cannot parse sends the cell to the line-by-line pass (linear.py), which
# reads relative imports by their dotted tail too (one line at a time: an import spread
# over lines in parentheses is not read there)
BROKEN = "x = = 1\n"


@pytest.mark.parametrize(
    ("cell", "caught"),
    [
        ("from ..helper.mirror_leech_utils.download_utils import add\n", True),
        ("from .helper.mirror_leech_utils import status_utils\n", True),
        ("from ..helper import mirror_utils\n", False),
        ("from . import helpers\n", False),
    ],
)
def test_relative_imports_in_a_cell_that_does_not_parse(
    analyzer: Analyzer, cell: str, caught: bool
) -> None:
    assert ("leech-import" in found(analyzer, cell + BROKEN)) is caught


def test_from_dot_import_name_is_an_import_of_that_name(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "p.yaml"
    path.write_text(HEAD + rule("helper", "      import: [mirror_leech_utils]"))
    one = Analyzer(load_policy(path))
    assert {f.rule for f in one.session().check("from . import mirror_leech_utils\n")} == {"helper"}
    assert not one.session().check("from . import mirror_utils\n")


# -- 3. payload sizes ----------------------------------------------------------------

SEND = "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"


@pytest.mark.parametrize(
    "payload",
    ['b"X" * 1400', '"A" * 65000', "1490 * b'\\x00'", "random._urandom(1490)", "os.urandom(4096)"],
)
def test_repeated_literal_and_random_bytes_have_a_size(analyzer: Analyzer, payload: str) -> None:
    cell = f"import os, random\n{SEND}data = {payload}\ns.sendto(data, ('203.0.113.5', 80))\n"
    assert "big-payload" in found(analyzer, cell)


@pytest.mark.parametrize(
    "payload", ['b"X" * 64', "os.urandom(16)", '"A" * 70000', "random._urandom(n)"]
)
def test_small_or_unbounded_payloads_stay_quiet(analyzer: Analyzer, payload: str) -> None:
    # 64 bytes is a ping; past 64 KB (or an unknown size) nothing is built: memory stays bounded
    cell = f"import os, random\n{SEND}data = {payload}\ns.sendto(data, ('203.0.113.5', 80))\n"
    assert "big-payload" not in found(analyzer, cell)


def test_repeat_is_capped() -> None:
    from jupyter_colab_guard.analysis.facts import UNKNOWN
    from jupyter_colab_guard.analysis.fold import MAX_PAYLOAD, _repeated

    assert _repeated(b"XY", MAX_PAYLOAD // 2) == b"XY" * (MAX_PAYLOAD // 2)
    assert _repeated(b"XY", MAX_PAYLOAD // 2 + 1) is UNKNOWN
    assert _repeated("A", 10**12) is UNKNOWN
    assert _repeated([1], 1001) is UNKNOWN


# -- 5. instances kept in containers ---------------------------------------------------

POOL = "import requests, random, threading\n"


@pytest.mark.parametrize(
    "cell",
    [
        POOL + "sessions = [requests.Session() for _ in range(8)]\n"
        "s = sessions[3]\ns.post(url, data=form)\n",
        POOL + "sessions = {k: requests.Session() for k in keys}\n"
        "sessions[k].post(url, data=form)\n",
        POOL + "pool = [requests.Session(), requests.Session()]\n"
        "random.choice(pool).post(url, data=form)\n",
        POOL + "sessions = [requests.Session() for _ in range(8)]\n"
        "for s in sessions:\n    s.post(url, data=form)\n",
        POOL + "tls = threading.local()\ntls.session = requests.Session()\n"
        "tls.session.post(url, data=form)\n",
    ],
)
def test_instances_in_containers_resolve(analyzer: Analyzer, cell: str) -> None:
    assert "session-post" in found(analyzer, cell)


@pytest.mark.parametrize(
    "cell",
    [
        POOL + "sessions = [requests.Session() for _ in range(8)]\ns = sessions[3]\ns.get(url)\n",
        POOL + "clients = [make_client() for _ in range(8)]\nclients[0].post(url, data=form)\n",
        POOL + "mixed = [requests.Session(), Other()]\nmixed[0].post(url, data=form)\n",
        POOL + "tls = Config()\ntls.session = requests.Session()\ntls.other.post(url, data=1)\n",
        POOL + "names = [str(1), str(2)]\nnames[0].post(url, data=form)\n",
    ],
)
def test_other_containers_stay_unresolved(analyzer: Analyzer, cell: str) -> None:
    assert "session-post" not in found(analyzer, cell)


# -- 2. endless iterators --------------------------------------------------------------

FLOOD = "import itertools, requests, socket\nfrom itertools import repeat, count\n"
ENDLESS_LOOPS = [
    "for _ in iter(int, 1):",
    "for _ in iter(str, 'stop'):",
    "for _ in itertools.repeat(None):",
    "for _ in repeat(1):",
    "for _ in itertools.count():",
    "for i in count(5):",
    "for _ in itertools.cycle(targets):",
    "while 1:",
    "while not False:",
    "while not 0:",
    "while 'forever':",
    "for _ in range(100000):",  # counted far
    "for i in range(1, 5001):",
    "for _ in range(int(input('How many? '))):",
    "while sent < 5000:",
    "while (self.sent) <= 1000:",
    "while n != int(input()):",
    "while time.time() < end:",  # runs for a while
    "while (time.monotonic()) <= deadline:",
]
NEW_ENDLESS = [
    h
    for h in ENDLESS_LOOPS
    if any(w in h for w in ("repeat", "iter(", "not", "range", "sent", "time"))
]
FINITE_LOOPS = [
    "for _ in iter(int, 0):",  # int() is 0: stops at once
    "for _ in iter(f.readline, ''):",  # a reader: stops at the end of the file
    "for _ in itertools.repeat(None, 100):",
    "for _ in repeat(1, times=3):",
    "for _ in range(100):",
    "for _ in range(999):",
    "for _ in range(n):",
    "for _ in range(5000, 5010):",
    "while sent < limit:",
    "while sent > 5000:",
    "while time.time() > end:",
    "while not done:",
    "while 0:",
]


def _loop(header: str) -> ast.AST:
    return ast.parse(f"{header}\n    s.sendto(b'x', ('203.0.113.5', 80))\n").body[0]


@pytest.mark.parametrize("header", ENDLESS_LOOPS)
def test_endless_loops(header: str) -> None:
    assert endless(_loop(header))
    assert any(p.search(header.lower()) for p in ENDLESS_TEXT)  # the prefilter sees it


@pytest.mark.parametrize("header", FINITE_LOOPS)
def test_loops_that_end(header: str) -> None:
    assert endless(_loop(header)) < COUNTED  # not `looped: true`


CALLED_FROM_LOOPS = [
    # a function called from an endless loop runs in one
    "def blast():\n    s.sendto(b'x', ('203.0.113.5', 80))\nwhile True:\n    blast()\n",
    # through a caller of its own, and as a method
    "class A:\n    def one(self):\n        s.sendto(b'x', ('203.0.113.5', 80))\n"
    "    def run(self):\n        while True:\n            self.one()\n",
    "def one():\n    s.sendto(b'x', ('203.0.113.5', 80))\ndef two():\n    one()\n"
    "for _ in itertools.count():\n    two()\n",
]
NOT_CALLED_FROM_LOOPS = [
    # called once; a menu that waits for the user each round; another object's `one()`
    "def blast():\n    s.sendto(b'x', ('203.0.113.5', 80))\nblast()\n",
    "def blast():\n    s.sendto(b'x', ('203.0.113.5', 80))\nwhile True:\n"
    "    if input('again? ') == 'y':\n        blast()\n",
    "class A:\n    def one(self):\n        s.sendto(b'x', ('203.0.113.5', 80))\n"
    "while True:\n    other.one()\n",
]


@pytest.mark.parametrize("body", CALLED_FROM_LOOPS)
def test_a_function_called_from_an_endless_loop_runs_in_it(analyzer: Analyzer, body: str) -> None:
    assert "flood" in found(analyzer, f"{FLOOD}s = socket.socket()\n{body}")


@pytest.mark.parametrize("body", NOT_CALLED_FROM_LOOPS)
def test_a_function_not_called_from_an_endless_loop(analyzer: Analyzer, body: str) -> None:
    assert "flood" not in found(analyzer, f"{FLOOD}s = socket.socket()\n{body}")


# `looped: repeated`: counted to a number the code does not show, or to 20 or more
REPEATED_LOOPS = [
    "for _ in range(100):",
    "for _ in range(n):",
    "for i in range(1, count + 1):",
    "for _ in range(self.count):",
    "while sent < limit:",
    "while howmany > 0:",
    "while self.left >= 1:",
]
ONCE_OR_A_FEW = [
    "for _ in range(3):",
    "for i in range(len(recipients)):",
    "for _ in range(5000, 5010):",
    "while sent > 5000:",
    "while n > limit:",
    "for x in items:",
]


@pytest.mark.parametrize("header", REPEATED_LOOPS)
def test_repeated_loops(header: str) -> None:
    assert endless(_loop(header)) == REPEATED
    assert any(p.search(header.lower()) for p in ENDLESS_TEXT)


@pytest.mark.parametrize("header", ONCE_OR_A_FEW)
def test_loops_that_do_not_repeat(header: str) -> None:
    assert not endless(_loop(header))


def test_an_endless_loop_with_a_break_ends() -> None:
    tree = ast.parse("for _ in iter(int, 1):\n    if s.recv(1):\n        break\n")
    assert not endless(tree.body[0])


@pytest.mark.parametrize("header", NEW_ENDLESS)
def test_flood_in_endless_iterator_is_caught(analyzer: Analyzer, header: str) -> None:
    cell = f"{FLOOD}s = socket.socket()\n{header}\n    s.sendto(b'x', ('203.0.113.5', 80))\n"
    assert "flood" in found(analyzer, cell)


@pytest.mark.parametrize("header", FINITE_LOOPS)
def test_send_in_finite_loop_stays_quiet(analyzer: Analyzer, header: str) -> None:
    cell = f"{FLOOD}s = socket.socket()\n{header}\n    s.sendto(b'x', ('203.0.113.5', 80))\n"
    assert "flood" not in found(analyzer, cell)


# -- 4. decorators ---------------------------------------------------------------------

BOT = "from pyrogram import Client, filters\nbot = Client('leech')\n"
WEB = "from flask import Flask\napp = Flask(__name__)\n"


def test_bare_decorator_is_a_call_fact() -> None:
    facts = FactSet()
    code = "import telebot\nbot = telebot.TeleBot(t)\n@bot.message_handler\ndef on(m):\n    pass\n"
    PythonScanner(facts, Memory()).visit_snippet(cst.parse_module(code))
    assert "telebot.TeleBot.message_handler" in {f.name for f in facts.of("call")}


def test_decorator_call_has_its_arguments() -> None:
    facts = FactSet()
    code = WEB + "@app.route('/upload', methods=['POST'])\ndef up():\n    return 'ok'\n"
    PythonScanner(facts, Memory()).visit_snippet(cst.parse_module(code))
    route = [f for f in facts.of("call") if f.name == "flask.Flask.route"]
    assert route and route[0].args == ("/upload",) and route[0].kwargs == {"methods": ["POST"]}


@pytest.mark.parametrize(
    "cell",
    [
        BOT + "@bot.on_message(filters.command('mirror'))\nasync def mirror(c, m):\n    pass\n",
        WEB + "@app.route('/upload', methods=['POST'])\ndef up():\n    return 'ok'\n",
        WEB + "class Views:\n    @staticmethod\n    @app.route('/upload')\n    def up():\n"
        "        return 'ok'\n",
    ],
)
def test_decorators_are_calls(analyzer: Analyzer, cell: str) -> None:
    assert found(analyzer, cell) & {"bot-command", "upload-route"}


@pytest.mark.parametrize(
    "cell",
    [
        WEB + "@app.route('/predict', methods=['POST'])\ndef predict():\n    return 'ok'\n",
        BOT + "@functools.lru_cache\ndef on_message(c, m):\n    pass\n",
        "@property\ndef route(self):\n    return '/upload'\n",
    ],
)
def test_other_decorators_stay_quiet(analyzer: Analyzer, cell: str) -> None:
    assert not found(analyzer, cell) & {"bot-command", "upload-route"}


def test_names_dropped_while_folding_others_do_not_break_the_name_list() -> None:
    # `x` (bound first) folds through `duration`, which folds to nothing and is dropped
    scanner = PythonScanner(FactSet(), Memory())
    scanner.visit_snippet(
        cst.parse_module("x = 1\nduration = a + b\nx = duration\nrun = os.system\n")
    )
    assert ("run", "os.system") in scanner.qual_bindings()
