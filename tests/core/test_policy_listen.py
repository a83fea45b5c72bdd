"""`listen:` leaves: judging the sockets a process listens on (an SSH daemon, a remote
desktop, a game server, a torrent client, a proxy served to the public).

Cell examples cannot show a listening socket, so the listen leaves of the shipped policy
are tested here, through ``Analyzer.check_listen`` as a process watcher calls it.
"""

from __future__ import annotations

from pathlib import Path

import leaf_cases
import pytest
from leaf_cases import assert_problem_at, schema_errors

from jupyter_colab_guard.analysis import Analyzer, Finding, Identity
from jupyter_colab_guard.cli import describe
from jupyter_colab_guard.policy import load_policy, parse_policy
from jupyter_colab_guard.policy.model import Leaf, Matcher

DEFAULT = Analyzer(load_policy(None))

POLICY = """\
version: 1
name: listen-test
tiers: [free, paid]
categories:
  - id: games
    title: Games
    description: Test game category.
    action: warn
    severity: medium
  - id: remote
    title: Remote
    description: Test category of the free tier.
    action: block
    severity: high
    tiers: [free]
rules:
  - id: fake-game
    category: games
    message: Serves a fake game.
    action: block
    match:
      any:
        - shell:
            program: [fakegame-server]
        - listen:
            ports: [25565, 2456-2458]
    examples:
      match: ["!fakegame-server"]
      no_match: ["s.bind(('0.0.0.0', 25565))"]
  - id: fake-sshd
    category: remote
    message: Serves fake SSH.
    match:
      any:
        - shell:
            program: [fakesshd]
        - listen: {ports: [22, '2222']}
    examples:
      match: ["!fakesshd"]
      no_match: ["!ssh host"]
  - id: fake-debugger
    category: remote
    message: Serves a fake debugger, also on loopback.
    match:
      all:
        - listen: {ports: [5678], addresses: any}
        - not:
            listen: {ports: [5678], addresses: public}
    examples:
      match: ["!fakedebug"]
      no_match: ["!ls"]
  - id: fake-connect
    category: games
    message: Connects to port 22.
    match:
      connect: {port: 22}
    examples:
      match: ["import socket\\nsocket.create_connection(('h', 22))"]
      no_match: ["!ls"]
exceptions:
  - id: alice-plays
    reason: Alice tests the fake game.
    users: [alice]
    categories: [games]
"""


def rules(findings: list[Finding]) -> set[str]:
    return {f.rule for f in findings}


# -- the language ---------------------------------------------------------------------
LEAF = "rules[r].match.listen"
PORTS = f"{LEAF}.ports"
# (id, matcher, text on the problem's line, key, message fragment, the schema rejects it too)
BAD_LEAVES = [
    ("not-a-mapping", "listen: 22", "listen: 22", LEAF, "must be a mapping", True),
    ("no-ports", "listen: {addresses: any}", "listen:", PORTS, "required key is missing", True),
    ("empty-ports", "listen: {ports: []}", "listen:", PORTS, "non-empty list", True),
    ("ports-not-a-list", "listen: {ports: 22}", "listen:", PORTS, "non-empty list", True),
    ("zero", "listen: {ports: [22, 0]}", "listen:", f"{PORTS}[1]", "1-65535", True),
    ("too-high", "listen: {ports: [65536]}", "listen:", f"{PORTS}[0]", "1-65535", True),
    (
        "range-too-high",
        "listen: {ports: [60000-70000]}",
        "listen:",
        f"{PORTS}[0]",
        "1-65535",
        False,
    ),  # the schema's pattern takes any 5 digits
    (
        "range-reversed",
        "listen: {ports: [2458-2456]}",
        "listen:",
        f"{PORTS}[0]",
        "low to high, not 2458-2456",
        False,
    ),  # a schema cannot compare the two ends
    ("word", "listen: {ports: [ssh]}", "listen:", f"{PORTS}[0]", "a range 'a-b'", True),
    ("float", "listen: {ports: [22.5]}", "listen:", f"{PORTS}[0]", "a range 'a-b'", True),
    ("bool", "listen: {ports: [true]}", "listen:", f"{PORTS}[0]", "a range 'a-b'", True),
    ("open-range", "listen: {ports: [5900-]}", "listen:", f"{PORTS}[0]", "a range 'a-b'", True),
    (
        "bad-addresses",
        "listen: {ports: [22], addresses: all}",
        "listen:",
        f"{LEAF}.addresses",
        "must be one of public, any",
        True,
    ),
    ("unknown-key", "listen: {port: 22}", "listen:", f"{LEAF}.port", "unknown key", True),
    (
        "item-line",
        "listen:\n        ports:\n          - 22\n          - 99999",
        "- 99999",
        f"{PORTS}[1]",
        "1-65535",
        True,
    ),
    (
        "keywords-beside-listen",
        "listen: {ports: [22]}\n      keywords: [ssh]",
        "keywords:",
        "rules[r].match.keywords",
        "no keywords",
        True,
    ),
    (
        "min-beside-listen",
        "listen: {ports: [22]}\n      min: 1",
        "min: 1",
        "rules[r].match.min",
        "beside binary only",
        True,
    ),
]


def one_rule(matcher: str) -> str:
    return leaf_cases.one_rule(matcher, "!sshd")


@pytest.mark.parametrize(
    ("matcher", "needle", "key", "fragment", "schema"),
    [pytest.param(m, n, k, f, s, id=name) for name, m, n, k, f, s in BAD_LEAVES],
)
def test_bad_listen_leaf_names_file_line_and_key(
    tmp_path: Path, matcher: str, needle: str, key: str, fragment: str, schema: bool
) -> None:
    assert_problem_at(tmp_path, one_rule(matcher), needle, key, fragment, schema)


def test_ports_as_yaml_writes_them() -> None:
    # 0x16 is 22 in YAML (the loader used to fail on it with a ValueError, for connect too)
    policy = parse_policy(one_rule("listen: {ports: [0x16, '1000 - 1002', 65535, 1-1]}"))
    (leaf,) = policy.leaves
    assert (leaf.spans, leaf.addresses) == (
        ((22, 22), (1000, 1002), (65535, 65535), (1, 1)),
        "public",
    )
    (connect,) = parse_policy(one_rule("connect: {port: 0x16}")).leaves
    assert connect.ports == (22,)


def test_listen_leaf_loads_and_never_gates_cells() -> None:
    policy = parse_policy(POLICY)
    game, sshd, debug_any, debug_public = [x for x in policy.leaves if x.kind == "listen"]
    assert game.spans == ((25565, 25565), (2456, 2458))
    assert sshd.spans == ((22, 22), (2222, 2222))
    assert (game.addresses, debug_any.addresses, debug_public.addresses) == (
        "public",
        "any",
        "public",
    )
    assert (game.keywords, sshd.keywords) == ((), ())
    assert policy.warnings == []
    assert schema_errors(POLICY) == []
    analyzer = Analyzer(policy)
    # a rule with only listen leaves is never live for a cell, nor always deep
    assert analyzer.engine.always_live == set()
    assert not analyzer.engine.always_deep
    assert "fake-debugger" not in analyzer.engine.live_rules("!fakedebug 5678", shell=True)
    assert "fake-sshd" in analyzer.engine.live_rules("!fakesshd", shell=True)
    # a cell that opens a server on port 22 is text, not a listening socket
    cell = "import socket\ns = socket.socket()\ns.bind(('0.0.0.0', 22))\ns.listen()\n# 25565"
    for checker in (analyzer, Analyzer(policy, exhaustive=True)):
        assert "fake-sshd" not in rules(checker.check(cell))
        assert not any(f.evidence.startswith("listen") for f in checker.check(cell))
    # the cell still meets the connect rule of port 22 only if it connects
    assert rules(analyzer.check("import socket\nsocket.create_connection(('h', 22))")) == {
        "fake-connect"
    }


def test_check_listen_ports_addresses_and_identity() -> None:
    analyzer = Analyzer(parse_policy(POLICY))
    game = analyzer.check_listen("0.0.0.0", 25565)
    assert [(f.rule, f.category, f.action, f.evidence) for f in game] == [
        ("fake-game", "games", "block", "listen 0.0.0.0:25565")
    ]
    ssh = analyzer.check_listen("::", 22)
    assert [(f.rule, f.action, f.evidence) for f in ssh] == [
        ("fake-sshd", "block", "listen [::]:22")
    ]
    assert [f.evidence for f in analyzer.check_listen("[::]", 2222)] == ["listen [::]:2222"]
    assert rules(analyzer.check_listen("10.1.2.3", 2222)) == {"fake-sshd"}
    assert rules(analyzer.check_listen("", 22)) == {"fake-sshd"}  # every interface
    # loopback does not count for addresses: public
    for host in ("127.0.0.1", "127.8.9.10", "::1", "[::1]", "::ffff:127.0.0.1", "localhost"):
        assert analyzer.check_listen(host, 22) == [], host
    # ports: the lists and the ranges' ends, nothing else
    assert rules(analyzer.check_listen("0.0.0.0", 2456)) == {"fake-game"}
    assert rules(analyzer.check_listen("0.0.0.0", 2458)) == {"fake-game"}
    for port in (2455, 2459, 23, 25566, 8888, 0, 70000):
        assert analyzer.check_listen("0.0.0.0", port) == [], port
    # addresses: any takes loopback too (the `not` leaves out the public ones)
    assert rules(analyzer.check_listen("127.0.0.1", 5678)) == {"fake-debugger"}
    assert rules(analyzer.check_listen("::1", 5678)) == {"fake-debugger"}
    assert analyzer.check_listen("0.0.0.0", 5678) == []
    # identities: exceptions and tiers as for check_binary
    assert analyzer.check_listen("0.0.0.0", 25565, Identity(user="alice")) == []
    assert rules(analyzer.check_listen("0.0.0.0", 25565, Identity(user="bob"))) == {"fake-game"}
    assert rules(analyzer.check_listen("0.0.0.0", 22, Identity(user="alice"))) == {"fake-sshd"}
    assert analyzer.check_listen("0.0.0.0", 22, Identity(user="bob", tier="paid")) == []
    assert rules(analyzer.check_listen("0.0.0.0", 25565, Identity(tier="paid"))) == {"fake-game"}
    # listen and connect stay apart
    assert rules(analyzer.check_connect("0.0.0.0", 22)) == {"fake-connect"}
    assert analyzer.check_command("nc -l 0.0.0.0 22") == []
    assert analyzer.check_binary({"fakesshd"}, "/tmp/x") == []


def test_check_listen_never_raises() -> None:
    analyzer = Analyzer(parse_policy(POLICY))
    (error,) = analyzer.check_listen("0.0.0.0", "22")  # type: ignore[arg-type]
    assert (error.rule, error.category, error.action) == ("analysis.error", "analysis", "log")
    for host in ("not an address", "fe80::1%eth0", "*", "[::"):
        assert rules(analyzer.check_listen(host, 22)) == {"fake-sshd"}, host


def test_explain_describes_listen_leaves() -> None:
    policy = parse_policy(POLICY)
    assert describe(policy.rules_by_id["fake-game"].match).endswith(
        "OR listens on port 25565, 2456-2458 on a non-loopback address)"
    )
    assert "listens on port 5678 on any address" in describe(
        policy.rules_by_id["fake-debugger"].match
    )


# -- the shipped policy ---------------------------------------------------------------
SHIPPED = [
    ("sshd", "0.0.0.0", 22, "ssh-sshd-run"),
    ("sshd-v6", "::", 22, "ssh-sshd-run"),
    ("sshd-2222", "0.0.0.0", 2222, "ssh-sshd-run"),
    ("rdp", "0.0.0.0", 3389, "ssh-remote-desktop"),
    ("vnc-0", "0.0.0.0", 5900, "ssh-remote-desktop"),
    ("vnc-10", "::", 5910, "ssh-remote-desktop"),
    ("novnc", "0.0.0.0", 6080, "ssh-remote-desktop"),
    ("minecraft", "0.0.0.0", 25565, "web-game-server"),
    ("minecraft-v6", "::", 25565, "web-game-server"),
    ("bedrock", "0.0.0.0", 19132, "web-game-server"),
    ("terraria", "0.0.0.0", 7777, "web-game-server"),
    ("valheim", "0.0.0.0", 2457, "web-game-server"),
    ("srcds", "0.0.0.0", 27015, "web-game-server"),
    ("factorio", "0.0.0.0", 34197, "web-game-server"),
    ("bittorrent-low", "0.0.0.0", 6881, "torrent-clients"),
    ("bittorrent-high", "::", 6889, "torrent-clients"),
    ("transmission", "0.0.0.0", 51413, "torrent-clients"),
    ("socks", "0.0.0.0", 1080, "proxy-tools"),
    ("squid", "0.0.0.0", 3128, "proxy-tools"),
    ("privoxy", "0.0.0.0", 8118, "proxy-tools"),
    ("tor-public", "0.0.0.0", 9050, "proxy-tools"),
]
CATEGORY = {
    "ssh-sshd-run": "remote_desktop_ssh",
    "ssh-remote-desktop": "remote_desktop_ssh",
    "web-game-server": "web_services_file_hosting",
    "torrent-clients": "torrents_p2p",
    "proxy-tools": "remote_proxies",
}
QUIET = [
    ("sshd-loopback", "127.0.0.1", 22),  # behind a tunnel: the tunnel rules judge it
    ("vnc-loopback", "::1", 5901),
    ("tor-client", "127.0.0.1", 9050),
    ("jupyter", "0.0.0.0", 8888),
    ("jupyter-v6", "::", 8888),
    ("tensorboard", "0.0.0.0", 6006),
    ("gradio", "0.0.0.0", 7860),
    ("streamlit", "0.0.0.0", 8501),
    ("flask", "0.0.0.0", 5000),
    ("http-server", "0.0.0.0", 8000),
    ("http-alt", "0.0.0.0", 8080),
    ("https", "0.0.0.0", 443),
    ("past-bittorrent", "0.0.0.0", 6890),
    ("past-vnc", "0.0.0.0", 5911),
]


@pytest.mark.parametrize(
    ("host", "port", "rule"), [pytest.param(h, p, r, id=n) for n, h, p, r in SHIPPED]
)
def test_shipped_listen_leaves(host: str, port: int, rule: str) -> None:
    findings = DEFAULT.check_listen(host, port)
    assert [(f.rule, f.category, f.action) for f in findings] == [(rule, CATEGORY[rule], "block")]
    assert findings[0].evidence.startswith("listen ") and findings[0].evidence.endswith(f":{port}")


@pytest.mark.parametrize(("host", "port"), [pytest.param(h, p, id=n) for n, h, p in QUIET])
def test_shipped_listen_leaves_stay_quiet(host: str, port: int) -> None:
    assert DEFAULT.check_listen(host, port) == []


def test_shipped_remote_access_is_free_tier_only() -> None:
    paid = Identity(user="bob", tier="paid")
    for port in (22, 5901, 3389):  # remote_desktop_ssh: free tier only
        assert DEFAULT.check_listen("0.0.0.0", port, paid) == []
    assert rules(DEFAULT.check_listen("0.0.0.0", 22, Identity(tier="free"))) == {"ssh-sshd-run"}
    for port in (25565, 6881, 1080):
        assert len(DEFAULT.check_listen("0.0.0.0", port, paid)) == 1


def test_shipped_listen_rules_stay_gated_and_quiet_on_cells() -> None:
    assert DEFAULT.engine.always_live == set()
    with_listen = {
        r.id for r in DEFAULT.policy.rules if any(x.kind == "listen" for x in _leaves(r.match))
    }
    assert with_listen == set(CATEGORY)
    for rule_id in with_listen:  # still gated by the keywords of their cell leaves
        assert any(
            rule_id in ids for gate in DEFAULT.engine.gate_rules.values() for ids in gate.values()
        ), rule_id
    cells = [
        "import socket\ns = socket.socket()\ns.bind(('0.0.0.0', 22))\ns.listen(5)",
        "PORT = 25565  # the port 22 of ssh, 6881 of torrents, 1080 of socks",
        "!python -m http.server 3389 --bind 0.0.0.0",
    ]
    for cell in cells:
        assert not any(f.evidence.startswith("listen") for f in DEFAULT.check(cell)), cell


def _leaves(matcher: Matcher) -> list[Leaf]:
    if isinstance(matcher, Leaf):
        return [matcher]
    return [leaf for c in matcher.children for leaf in _leaves(c)]
