"""Call names of the form `*.method`: the method called on any receiver, a handler's
parameter included (`message.reply_document(...)`), with the real analyzer and a small
policy of its own."""

from __future__ import annotations

import pytest
from test_analysis_mechanics import HEAD, analyzer_of, rule
from test_mechanisms_more import found

from jupyter_colab_guard.analysis import Analyzer
from jupyter_colab_guard.policy import PolicyError, load_policy

RULES = [
    rule("sends-file", "      call: {name: ['*.send_document']}"),
    rule("sends-big-file", "      call: {name: ['*.send_document'], kwargs: {size: '^\\d{4,}$'}}"),
]


@pytest.fixture(scope="module")
def analyzer(tmp_path_factory: pytest.TempPathFactory) -> Analyzer:
    return analyzer_of(tmp_path_factory, RULES)


@pytest.mark.parametrize(
    "cell",
    [
        "async def on_file(client, message):\n    await message.send_document(doc)\n",
        "import telebot\nbot = telebot.TeleBot(T)\nbot.send_document(chat, f)\n",
        "ctx.bot.send_document(chat_id=c, document=f)\n",
        "getattr(client, 'send_document')(c, f)\n",
    ],
)
def test_any_receiver_matches(analyzer: Analyzer, cell: str) -> None:
    assert "sends-file" in found(analyzer, cell)


@pytest.mark.parametrize(
    "cell",
    [
        "send_document(chat, f)\n",  # a function of that name, not a method
        "message.send_documents(doc)\n",
        "x = 'message.send_document(doc)'\n",
    ],
)
def test_other_calls_do_not(analyzer: Analyzer, cell: str) -> None:
    assert "sends-file" not in found(analyzer, cell)


def test_argument_conditions_apply(analyzer: Analyzer) -> None:
    assert "sends-big-file" in found(analyzer, "m.send_document(f, size=50000)\n")
    assert "sends-big-file" not in found(analyzer, "m.send_document(f, size=5)\n")


@pytest.mark.parametrize("name", ["*", "a.*.send", "*.send*", "**.x"])
def test_a_star_elsewhere_is_an_error(tmp_path, name: str) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "policy.yaml"
    path.write_text(HEAD + rule("bad", f"      call: {{name: ['{name}']}}"))
    with pytest.raises(PolicyError, match="only as the receiver"):
        load_policy(path)
