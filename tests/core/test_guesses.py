"""The `guessed` condition of a call leaf: an argument that is each item of a `for` loop (a
guessing loop), with the real analyzer and a small policy of its own. Each guessing cell
has a counterpart with the same call whose argument is not the loop's item."""

from __future__ import annotations

import ast

import pytest
from test_analysis_mechanics import HEAD, analyzer_of, rule
from test_mechanisms_more import found

from jupyter_colab_guard.analysis import Analyzer
from jupyter_colab_guard.analysis.guesses import loop_items
from jupyter_colab_guard.policy import PolicyError, load_policy

RULES = [
    rule("vault-guess", "      call: {name: [vault.open], guessed: '^password$'}"),
    rule("vault-any", "      call: {name: [vault.open], kwargs: {password: '.*'}}"),
    rule("form-guess", "      call: {name: [requests.post], guessed: '^data\\.pwd$'}"),
    rule("pin-guess", "      call: {name: [box.unlock], guessed: '^0$'}"),
]


@pytest.fixture(scope="module")
def analyzer(tmp_path_factory: pytest.TempPathFactory) -> Analyzer:
    return analyzer_of(tmp_path_factory, RULES)


GUESSING = [
    "import vault\nfor w in words:\n    vault.open('v.kdbx', password=w)\n",
    "import vault\nfor w in words: vault.open('v.kdbx', password=w.strip())\n",
    "import vault\nfor line in open('list.txt'):\n    pw = line.strip()\n"
    "    try:\n        vault.open('v', password=pw.encode())\n"
    "    except Exception:\n        pass\n",
    "import vault\ndef crack(path, cands):\n    for c in cands:\n        try:\n"
    "            vault.open(path, password=f'{c}!')\n            return c\n"
    "        except ValueError:\n            continue\n",
    "import vault\nfor a in x:\n    for b in y:\n        vault.open('v', password=str(a) + b)\n",
    "import vault\nasync def go():\n    async for w in feed():\n"
    "        vault.open('v', password=w)\n",
    # an enumerated pair: its second element is the item
    "import vault\nfor line in enumerate(f):\n    pw = str(line[1]).strip()\n"
    "    vault.open('v', password=pw)\n",
    "import vault\nfor pair in enumerate(words):\n    vault.open('v', password=pair[1])\n",
    # through the user's own function, called in the loop with the item
    "import vault\ndef attempt(path, secret):\n    key = secret.strip()\n"
    "    return vault.open(path, password=key)\n"
    "for w in open('words.txt'):\n    if attempt('v.kdbx', w):\n        break\n",
    "import vault\nclass Cracker:\n    def attempt(self, secret):\n"
    "        return vault.open('v', password=secret)\n"
    "    def run(self, words):\n        for w in words:\n            self.attempt(secret=w)\n",
]


@pytest.mark.parametrize("cell", GUESSING)
def test_an_argument_that_is_each_item_of_a_loop_is_guessed(analyzer: Analyzer, cell: str) -> None:
    assert {"vault-guess", "vault-any"} <= found(analyzer, cell)


NOT_GUESSING = [
    "import vault\nvault.open('v', password=os.environ['PW'])\n",
    "import vault\nfor cfg in servers:\n    vault.open(cfg['path'], password=cfg['password'])\n",
    "import vault\nfor acc in accounts:\n    vault.open(acc.path, password=acc.password)\n",
    "import vault\nfor path in files:\n    vault.open(path, password=PW)\n",
    "import vault\npw = next(iter(words))\nvault.open('v', password=pw)\n",
    # the index of an enumerated pair, and a field of a plain loop's item, are not
    "import vault\nfor pair in enumerate(words):\n    vault.open('v', password=pair[0])\n",
    "import vault\nfor row in rows:\n    vault.open('v', password=row[1])\n",
    # the function is called in a loop, but not with the item as the password
    "import vault\ndef attempt(path, secret):\n    return vault.open(path, password=secret)\n"
    "for p in paths:\n    attempt(p, PW)\n",
]


@pytest.mark.parametrize("cell", NOT_GUESSING)
def test_a_field_of_the_item_or_a_value_from_outside_is_not_guessed(
    analyzer: Analyzer, cell: str
) -> None:
    rules = found(analyzer, cell)
    assert "vault-any" in rules and "vault-guess" not in rules  # the call is seen either way


def test_a_literal_dict_argument_names_its_fields(analyzer: Analyzer) -> None:
    guess = (
        "import requests\nfor p in cands:\n    requests.post(U, data={'u': 'admin', 'pwd': p})\n"
    )
    assert "form-guess" in found(analyzer, guess)
    other = "import requests\nfor p in rows:\n    requests.post(U, data={'u': p, 'pwd': PW})\n"
    assert "form-guess" not in found(analyzer, other)


def test_positional_arguments_count_by_index(analyzer: Analyzer) -> None:
    assert "pin-guess" in found(analyzer, "import box\nfor i in range(10000):\n    box.unlock(i)\n")
    assert "pin-guess" not in found(
        analyzer, "import box\nfor i in range(3):\n    box.unlock(KEY, i)\n"
    )


def test_loop_items_follow_assignments_from_the_item_only() -> None:
    tree = ast.parse(
        "for line in f:\n    pw = line.strip()\n    b = pw.encode()\n    n = len(rows)\n"
        "    host = line['host']\n"
    )
    loop = tree.body[0]
    assert isinstance(loop, ast.For)
    assert loop_items(loop) == {"line", "pw", "b"}


def test_guessed_must_be_a_valid_regex(tmp_path: pytest.TempPathFactory) -> None:
    path = tmp_path / "bad.yaml"  # type: ignore[operator]
    path.write_text(HEAD + rule("bad", "      call: {name: [vault.open], guessed: '(?=x)'}"))
    with pytest.raises(PolicyError, match="guessed"):
        load_policy(path)


@pytest.mark.parametrize(
    "step",
    ["idx = (idx + 1) % len(keys)", "idx += 1", "idx = idx + 1"],
)
def test_a_pick_by_an_index_the_code_moves_on_rotates(analyzer: Analyzer, step: str) -> None:
    cell = (
        "import vault\nidx = 0\ndef ask(q):\n    global idx\n    try:\n"
        "        return vault.open('v', password=keys[idx])\n    except OSError:\n"
        f"        {step}\n"
    )
    assert "vault-guess" in found(analyzer, cell)
    fixed = cell.replace(f"        {step}\n", "        raise\n")
    assert "vault-guess" not in found(analyzer, fixed)  # the same pick, never moved on
