"""Shell forms the scanner reads as the command they run: numbers before a redirect,
screen/tmux launchers, wrappers and compound commands (while/for/if, braces)."""

from __future__ import annotations

import pytest

from jupyter_colab_guard.analysis import Analyzer
from jupyter_colab_guard.analysis.facts import Anchor, FactSet
from jupyter_colab_guard.analysis.shell import ShellScanner
from jupyter_colab_guard.policy import load_policy


def commands(line: str) -> list[tuple[str, str]]:
    facts = FactSet()
    ShellScanner(facts, {}, {}, lambda *_: None).scan(line, Anchor())
    return [(f.name, f.text) for f in facts.of("shell")]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("ngrok tcp 22 > ngrok.log &", ("ngrok", "tcp 22")),
        ("ngrok tcp 22 >> ngrok.log 2>&1 &", ("ngrok", "tcp 22")),
        ("ngrok tcp 22 &> ngrok.log &", ("ngrok", "tcp 22")),
        ("screen -mS job ./xmrig -o pool:3333", ("xmrig", "-o pool:3333")),
        ("screen -dmS job ./xmrig -o pool:3333", ("xmrig", "-o pool:3333")),
        ("screen -dmSL job ./xmrig -o pool:3333", ("xmrig", "-o pool:3333")),
        ("screen -d -m -S job ./xmrig -o pool:3333", ("xmrig", "-o pool:3333")),
        ("tmux new -d './xmrig -o pool:3333'", ("xmrig", "-o pool:3333")),
        ("tmux new-session -d -s job './xmrig -o pool:3333'", ("xmrig", "-o pool:3333")),
        ("tmux send-keys -t job './xmrig -o pool:3333' Enter", ("xmrig", "-o pool:3333")),
        # the quoted command splits into as many words as the tmux line has (it took the
        # whole cell's analysis down with an IndexError)
        ("tmux new './xmrig -o pool:3333'", ("xmrig", "-o pool:3333")),
        ('tmux new "$DIR/xmrig ${args/-t/} $flag"', ("xmrig", "${args/-t/} $flag")),
        ("nohup setsid timeout 3600 ./xmrig -o pool:3333 &", ("xmrig", "-o pool:3333")),
        ("timeout -s KILL 10h ./xmrig -o pool:3333", ("xmrig", "-o pool:3333")),
        ("while true; do curl -s https://v.example/ & done", ("curl", "-s https://v.example/")),
        (
            "for i in $(seq 1 9); do curl -s https://v.example/ & done",
            ("curl", "-s https://v.example/"),
        ),
        ("until ./xmrig -o pool:3333; do sleep 1; done", ("xmrig", "-o pool:3333")),
        ("if ! pgrep xmrig; then ./xmrig -o pool:3333; fi", ("xmrig", "-o pool:3333")),
        ("{ ./xmrig -o pool:3333; } &", ("xmrig", "-o pool:3333")),
        (
            "docker run --rm -e K=1 --name t img:latest ./slowhttptest -c 1000",
            ("slowhttptest", "-c 1000"),
        ),
        ("podman exec -it box ./xmrig -o pool:3333", ("xmrig", "-o pool:3333")),
    ],
)
def test_the_command_is_read_through_the_form(line: str, expected: tuple[str, str]) -> None:
    assert expected in commands(line)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("python train.py 2>/dev/null", ("python", "train.py")),
        ("python train.py > out.log 2> err.log", ("python", "train.py")),
        ("echo 3 > count.txt", ("echo", "3")),
        ("ls 1>files.txt", ("ls", "")),
    ],
)
def test_file_descriptors_are_not_arguments(line: str, expected: tuple[str, str]) -> None:
    assert expected in commands(line)


def test_reserved_words_are_not_programs() -> None:
    names = {name for name, _ in commands("while true; do if [ -f x ]; then echo y; fi; done")}
    assert not names & {"while", "do", "if", "then"}


@pytest.fixture(scope="module")
def default() -> Analyzer:
    return Analyzer(load_policy(None))


@pytest.mark.parametrize(
    ("cell", "rule"),
    [
        ("!ngrok tcp 22 > /content/ngrok.log &", "ssh-tunnel-port-22"),
        ("!screen -mS m ./xmrig -o gulf.moneroocean.stream:10128", "mining-miner-binary"),
        ("!tmux send-keys -t m './xmrig --donate-level 1' Enter", "mining-miner-binary"),
        ("!while true; do ./xmrig --donate-level 1; sleep 5; done", "mining-miner-binary"),
    ],
)
def test_default_policy_sees_the_command(default: Analyzer, cell: str, rule: str) -> None:
    assert rule in {f.rule for f in default.check(cell)}


def test_control_the_same_words_without_a_command_stay_quiet(default: Analyzer) -> None:
    assert not default.check("# while true; do ./xmrig; done")
    assert not default.check("!echo 22 > port.txt")


def installs(line: str) -> list[str]:
    facts = FactSet()
    ShellScanner(facts, {}, {}, lambda *_: None).scan(line, Anchor())
    return [f.name for f in facts.of("install")]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("npm install @whiskeysockets/baileys", "@whiskeysockets/baileys"),
        ("npm i -g @Scope/Pkg@6.7.0 left-pad", "@scope/pkg"),
        ("npm install discord.js@14", "discord-js"),
        ("pip install Foo_Bar[x]>=1.0", "foo-bar"),
    ],
)
def test_npm_scopes_stay_in_package_names(line: str, expected: str) -> None:
    assert expected in installs(line)
