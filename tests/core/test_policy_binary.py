"""`binary:` leaves: judging an executable by its bytes (a renamed miner is still a miner).

Cell examples cannot show a file's bytes, so the binary leaves of the shipped policy are
tested here: fake executables (random bytes with the signatures embedded), and real
binaries of this machine that must not match.
"""

from __future__ import annotations

import os
import sysconfig
import time
from pathlib import Path

import leaf_cases
import pytest
from leaf_cases import assert_problem_at, schema_errors

from jupyter_colab_guard.analysis import Analyzer, Finding, Identity
from jupyter_colab_guard.analysis.binary import CHUNK, SignatureScanner
from jupyter_colab_guard.policy import load_policy, parse_policy

DEFAULT = Analyzer(load_policy(None))

POLICY = """\
version: 1
name: binary-test
tiers: [free, paid]
categories:
  - id: mining
    title: Mining
    description: Test mining category.
    action: block
    severity: high
  - id: remote
    title: Remote
    description: Test category of the free tier.
    action: warn
    severity: medium
    tiers: [free]
rules:
  - id: fake-miner
    category: mining
    message: Runs the fake miner.
    match:
      any:
        - shell:
            program: [fakeminer]
        - binary: [fakeminer, fakestratum://, fake-donate]
          min: 2
    examples:
      match: ["!./fakeminer"]
      no_match: ["print('fakeminer fakestratum:// fake-donate')"]
  - id: fake-agent
    category: remote
    message: Runs the fake agent.
    match:
      all:
        - binary: [fakeagent]
        - not:
            binary: [harmless-build]
    examples:
      match: ["!fakeagent"]
      no_match: ["!ls"]
exceptions:
  - id: alice-mines
    reason: Alice studies the fake miner.
    users: [alice]
    categories: [mining]
"""


def rules(findings: list[Finding]) -> set[str]:
    return {f.rule for f in findings}


def fake_file(path: Path, signatures: list[bytes], size: int, spanning: bytes = b"") -> Path:
    """Random bytes with the signatures embedded; ``spanning`` straddles the first chunk
    boundary (half of it in each chunk)."""
    data = bytearray(os.urandom(size))
    for i, signature in enumerate(signatures):
        at = 4096 + i * 1000
        data[at : at + len(signature)] = signature
    if spanning:
        at = CHUNK - len(spanning) // 2
        data[at : at + len(spanning)] = spanning
    path.write_bytes(bytes(data))
    return path


# -- the language ---------------------------------------------------------------------
LEAF = "rules[r].match.binary"
MIN = "rules[r].match.min"
# (id, matcher, text on the problem's line, key, message fragment, the schema rejects it too)
BAD_LEAVES = [
    ("empty-list", "binary: []", "binary: []", LEAF, "non-empty list", True),
    ("not-a-list", "binary: xmrig", "binary: xmrig", LEAF, "non-empty list", True),
    ("short", "binary: [xmrig, abc]", "binary:", f"{LEAF}[1]", "at least 4 characters", True),
    ("duplicate", "binary: [xmrig, xmrig]", "binary:", f"{LEAF}[1]", "duplicate", True),
    ("not-a-string", "binary: [xmrig, [a]]", "binary:", f"{LEAF}[1]", "must be a string", True),
    ("min-zero", "binary: [xmrig, randomx]\n      min: 0", "min: 0", MIN, "between 1 and 2", True),
    (
        "min-too-high",
        "binary: [xmrig, randomx]\n      min: 3",
        "min: 3",
        MIN,
        "between 1 and 2",
        False,
    ),  # a schema cannot compare min with the length of the list
    (
        "min-not-integer",
        "binary: [xmrig, randomx]\n      min: two",
        "min: two",
        MIN,
        "must be an integer",
        True,
    ),
    (
        "min-beside-shell",
        "shell: {program: [xmrig]}\n      min: 1",
        "min: 1",
        MIN,
        "beside binary only",
        True,
    ),
    (
        "keywords-beside-binary",
        "binary: [xmrig]\n      keywords: [xmrig]",
        "keywords:",
        "rules[r].match.keywords",
        "no keywords",
        True,
    ),
]


def one_rule(matcher: str) -> str:
    return leaf_cases.one_rule(matcher, "!xmrig")


@pytest.mark.parametrize(
    ("matcher", "needle", "key", "fragment", "schema"),
    [pytest.param(m, n, k, f, s, id=name) for name, m, n, k, f, s in BAD_LEAVES],
)
def test_bad_binary_leaf_names_file_line_and_key(
    tmp_path: Path, matcher: str, needle: str, key: str, fragment: str, schema: bool
) -> None:
    assert_problem_at(tmp_path, one_rule(matcher), needle, key, fragment, schema)


def test_binary_leaf_loads_and_never_gates_cells() -> None:
    policy = parse_policy(POLICY)
    (miner, agent, _) = [leaf for leaf in policy.leaves if leaf.kind == "binary"]
    assert miner.names == ("fakeminer", "fakestratum://", "fake-donate")
    assert (miner.minimum, agent.minimum, miner.keywords) == (2, 1, ())
    assert policy.warnings == []
    assert schema_errors(POLICY) == []
    analyzer = Analyzer(policy)
    # a rule with only binary leaves is never live for a cell, nor always deep
    assert analyzer.engine.always_live == set()
    assert not analyzer.engine.always_deep
    assert "fake-agent" not in analyzer.engine.live_rules("fakeagent", shell=True)
    assert "fake-miner" in analyzer.engine.live_rules("!fakeminer", shell=True)
    # a cell that spells the signatures is text, not an executable
    cell = "s = 'fakeminer fakestratum:// fake-donate fakeagent'"
    assert analyzer.check(cell) == []
    assert Analyzer(policy, exhaustive=True).check(cell) == []
    assert analyzer.binary_signatures == sorted(
        [b"fakeminer", b"fakestratum://", b"fake-donate", b"fakeagent", b"harmless-build"]
    )


def test_check_binary_min_combinators_and_identity() -> None:
    analyzer = Analyzer(parse_policy(POLICY))
    both = analyzer.check_binary({"fakeminer", "fake-donate"}, "/tmp/worker")
    assert [(f.rule, f.action, f.evidence) for f in both] == [
        ("fake-miner", "block", "binary /tmp/worker: fakeminer, fake-donate")
    ]
    assert analyzer.check_binary({"fakeminer"}, "/tmp/worker") == []  # below min
    assert rules(analyzer.check_binary({"fakeagent"}, "a")) == {"fake-agent"}
    assert analyzer.check_binary({"fakeagent", "harmless-build"}, "a") == []  # not
    # identities: exceptions and tiers as for check_command
    found = {"fakeminer", "fakestratum://", "fakeagent"}
    assert rules(analyzer.check_binary(found, "w", Identity(user="alice"))) == {"fake-agent"}
    assert rules(analyzer.check_binary(found, "w", Identity(user="bob"))) == {
        "fake-miner",
        "fake-agent",
    }
    assert rules(analyzer.check_binary(found, "w", Identity(user="bob", tier="paid"))) == {
        "fake-miner"
    }
    assert rules(analyzer.check_command("./fakeminer", Identity(user="alice"))) == set()
    assert rules(analyzer.check_command("./fakeminer", Identity(user="bob"))) == {"fake-miner"}
    # the other runtime checks never see binary leaves
    assert analyzer.check_command("./worker --donate") == []


# -- the scanner ----------------------------------------------------------------------
def test_renamed_fake_miner_is_found_and_blocked(tmp_path: Path) -> None:
    scanner = SignatureScanner(DEFAULT.binary_signatures)
    path = fake_file(
        tmp_path / "xmrig", [b"xmrig", b"randomx", b"stratum+tcp://"], 3 * CHUNK, b"donate-level"
    )
    found = scanner.scan(str(path))
    # overlapping signatures are all reported ("stratum" is in "stratum+tcp://")
    assert found == {"xmrig", "randomx", "stratum+tcp://", "stratum", "donate-level"}
    findings = DEFAULT.check_binary(found, str(path))
    assert [(f.category, f.rule, f.action) for f in findings] == [
        ("crypto_mining", "mining-miner-binary", "block")
    ]
    assert findings[0].evidence.startswith(f"binary {path}: xmrig, ")
    renamed = path.rename(tmp_path / "worker")
    assert scanner.scan(str(renamed)) == found
    copied = tmp_path / "kworker"
    copied.write_bytes(renamed.read_bytes())  # a new file: read again, same answer
    fresh = SignatureScanner(DEFAULT.binary_signatures)
    assert rules(DEFAULT.check_binary(fresh.scan(str(copied)), str(copied))) == {
        "mining-miner-binary"
    }


def test_signature_across_a_chunk_boundary(tmp_path: Path) -> None:
    scanner = SignatureScanner([b"stratum+tcp://", b"xmrig"], chunk_size=4096)
    data = bytearray(os.urandom(3 * 4096))
    data[4096 - 7 : 4096 + 7] = b"stratum+tcp://"
    data[2 * 4096 - 2 : 2 * 4096 + 3] = b"xmrig"
    (tmp_path / "f").write_bytes(bytes(data))
    assert scanner.scan(str(tmp_path / "f")) == {"stratum+tcp://", "xmrig"}


def test_one_signature_is_below_min(tmp_path: Path) -> None:
    scanner = SignatureScanner(DEFAULT.binary_signatures)
    path = fake_file(tmp_path / "editor", [b"xmrig"], 200_000)
    found = scanner.scan(str(path))
    assert found == {"xmrig"}
    assert DEFAULT.check_binary(found, str(path)) == []


def test_cache_and_rescan_after_rewrite(tmp_path: Path) -> None:
    scanner = SignatureScanner(DEFAULT.binary_signatures)
    path = fake_file(tmp_path / "w", [b"xmrig", b"randomx", b"nicehash"], 8 * CHUNK)
    start = time.perf_counter()
    first = scanner.scan(str(path))
    read = time.perf_counter() - start
    start = time.perf_counter()
    assert scanner.scan(str(path)) == first
    cached = time.perf_counter() - start
    assert scanner.reads == 1 and cached < read
    fake_file(path, [b"randomx"], 8 * CHUNK)  # rewritten, same size
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert scanner.scan(str(path)) == {"randomx"}
    assert scanner.reads == 2


def test_cache_is_bounded(tmp_path: Path) -> None:
    scanner = SignatureScanner([b"xmrig"], cache_size=2)
    paths = [fake_file(tmp_path / f"f{i}", [b"xmrig"], 5000) for i in range(3)]
    for path in paths:
        scanner.scan(str(path))
    scanner.scan(str(paths[0]))  # evicted: read again
    assert scanner.reads == 4


def test_unreadable_and_odd_files_give_nothing(tmp_path: Path) -> None:
    scanner = SignatureScanner(DEFAULT.binary_signatures)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # never waited on
    for path in [str(tmp_path / "missing"), str(tmp_path), str(fifo), "bad\0path", ""]:
        assert scanner.scan(path) == frozenset()
    assert SignatureScanner([]).scan(__file__) == frozenset()


def test_only_the_first_max_bytes_are_read(tmp_path: Path) -> None:
    data = os.urandom(10_000) + b"xmrig" + os.urandom(100)
    (tmp_path / "f").write_bytes(data)
    assert SignatureScanner([b"xmrig"], max_bytes=8192).scan(str(tmp_path / "f")) == set()
    assert SignatureScanner([b"xmrig"]).scan(str(tmp_path / "f")) == {"xmrig"}


# -- the shipped policy ---------------------------------------------------------------
SHIPPED = [
    ("xmrig-fork", {"randomx", "donate-level", "nicehash"}, "mining-miner-binary", "block"),
    ("t-rex", {"T-Rex", "stratum+tcp://", "stratum"}, "mining-miner-binary", "block"),
    ("lolminer", {"lolMiner", "mining.subscribe"}, "mining-miner-binary", "block"),
    ("ngrok", {"ngrok.yml", "ngrok.com", "add-authtoken"}, "web-ngrok-tunnel", "warn"),
    (
        "cloudflared",
        {"github.com/cloudflare/cloudflared", "trycloudflare.com"},
        "web-cloudflared-tunnel",
        "warn",
    ),
    ("frpc", {"github.com/fatedier/frp"}, "proxy-tools", "block"),
    (
        "torrent",
        {"BitTorrent protocol", "get_peers", "announce_peer", "info_hash"},
        "torrent-clients",
        "block",
    ),
    ("qbittorrent", {"qBittorrent", "libtorrent"}, "torrent-clients", "block"),
]
QUIET = [
    ("xmrig-mentioned", {"xmrig", "stratum"}),
    ("miner-name-alone", {"T-Rex", "lolMiner"}),
    ("stratum-alone", {"stratum", "stratum+tcp://"}),
    ("ngrok-docs", {"ngrok.com"}),
    ("aria2c", {"BitTorrent protocol", "get_peers", "announce_peer", "find_node", "aria2c"}),
    ("libtorrent-alone", {"libtorrent", "info_hash"}),
]


@pytest.mark.parametrize(
    ("found", "rule", "action"), [pytest.param(f, r, a, id=n) for n, f, r, a in SHIPPED]
)
def test_shipped_binary_leaves(found: set[str], rule: str, action: str) -> None:
    assert set(found) <= {s.decode() for s in DEFAULT.binary_signatures}
    findings = DEFAULT.check_binary(found, "/tmp/x")
    assert [(f.rule, f.action) for f in findings] == [(rule, action)]


@pytest.mark.parametrize("found", [pytest.param(f, id=n) for n, f in QUIET])
def test_shipped_binary_leaves_stay_quiet(found: set[str]) -> None:
    assert DEFAULT.check_binary(found, "/tmp/x") == []


def test_shipped_policy_has_no_always_live_rule() -> None:
    assert DEFAULT.engine.always_live == set()
    with_binary = {r.id for r in DEFAULT.policy.rules if "binary" in _kinds(r.match)}
    assert with_binary >= {"mining-miner-binary", "torrent-clients", "web-ngrok-tunnel"}
    for rule_id in with_binary:  # still gated by the keywords of their cell leaves
        assert any(
            rule_id in ids for gate in DEFAULT.engine.gate_rules.values() for ids in gate.values()
        ), rule_id


def _kinds(matcher: object) -> list[str]:
    children = getattr(matcher, "children", None)
    if children is None:
        return [getattr(matcher, "kind", "")]
    return [k for c in children for k in _kinds(c)]


def real_binaries() -> list[Path]:
    """python3 (the file its link names), bash, curl, git, and the venv's extensions."""
    paths = [Path(os.path.realpath("/usr/bin/python3")), Path("/bin/bash")]
    paths += [Path(p) for p in ("/usr/bin/curl", "/usr/bin/git") if Path(p).is_file()]
    paths += sorted(Path(sysconfig.get_paths()["platlib"]).glob("**/*.so"))[:300]
    return [p for p in paths if p.is_file()]


def test_real_binaries_raise_no_alarm() -> None:
    scanner = SignatureScanner(DEFAULT.binary_signatures)
    paths = real_binaries()
    assert len(paths) >= 3
    alarms = []
    for path in paths:
        for finding in DEFAULT.check_binary(scanner.scan(str(path)), str(path)):
            if finding.action in ("warn", "block"):
                alarms.append((finding.rule, finding.evidence))
    assert alarms == []
