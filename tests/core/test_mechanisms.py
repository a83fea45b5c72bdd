"""Analyzer mechanisms of issue 9: user wrapper functions, decompression after base64,
downloads that rename, configuration files, repository names in URLs (a small policy of
their own, the real analyzer, sessions of cells)."""

from __future__ import annotations

import base64
import bz2
import gzip
import lzma
import time
import zlib
from pathlib import Path

import pytest
from leaf_cases import schema_errors
from test_analysis_mechanics import HEAD, rule

from jupyter_colab_guard.analysis import Analyzer
from jupyter_colab_guard.analysis.repos import repository
from jupyter_colab_guard.policy import load_policy
from jupyter_colab_guard.policy.loader import PolicyError, parse_policy

RULES = [
    rule("miner", "      shell: {program: [xmrig]}"),
    rule("tunnel", "      shell: {program: [cloudflared], args: '\\btunnel\\b'}"),
    rule("pool", "      string: 'stratum\\+tcp://'"),
    rule("vmess", "      string: '(?m)^(?:\\S*\\.)?protocol = vmess$'"),
    rule("frp", "      string: '(?m)^common\\.server_addr = '"),
    rule("xmrig-releases", "      url: 'github\\.com/xmrig/xmrig/releases'"),
]
REPO_RULES = [
    rule("ddos-repo", "      repo: [MHDDoS, ddos-ripper]"),
    rule("owned-repo", "      repo: [vanhauser-thc/thc-hydra]"),
]


def make(tmp_path_factory: pytest.TempPathFactory, rules: list[str], name: str) -> Analyzer:
    path = tmp_path_factory.mktemp("policy") / f"{name}.yaml"
    path.write_text(HEAD + "".join(rules))
    return Analyzer(load_policy(path))


@pytest.fixture(scope="module")
def analyzer(tmp_path_factory: pytest.TempPathFactory) -> Analyzer:
    return make(tmp_path_factory, RULES, "mechanisms")


@pytest.fixture(scope="module")
def repo_analyzer(tmp_path_factory: pytest.TempPathFactory) -> Analyzer:
    return make(tmp_path_factory, RULES + REPO_RULES, "repos")


def last(analyzer: Analyzer, cells: list[str]) -> set[str]:
    """Rules found in the last cell of a session."""
    session = analyzer.session()
    found: set[str] = set()
    for cell in cells:
        found = {f.rule for f in session.check(cell)}
    return found


# -- 1. user wrapper functions ----------------------------------------------------------

WRAPPERS = {
    "join-same-cell": [
        "import os\ndef sh(*a):\n    os.system(' '.join(a))\nsh('xmrig', '-o', 'p')"
    ],
    "join-later-cell": [
        "import os\ndef sh(*a):\n    os.system(' '.join(a))\n",
        "x = 1",
        "sh('xmrig', '-o', 'p')",
    ],
    "subprocess-fstring": [
        "import subprocess\ndef run(cmd, flags=''):\n"
        "    subprocess.run(f'{cmd} {flags}', shell=True, check=True)\n",
        "run('./xmrig', flags='--donate-level 1')",
    ],
    "format-and-plus": [
        "import os\ndef go(tool, pool):\n"
        "    line = '{} -o '.format(tool) + pool\n    os.system(line)\n",
        "go('xmrig', 'p:3333')",
    ],
    "keyword-argument": [
        "import os\ndef sh(cmd=''):\n    os.system(cmd)\n",
        "sh(cmd='xmrig -o p')",
    ],
    "ipython-system": [
        "def run(cmd):\n    get_ipython().system(cmd)\n",
        "run('xmrig -o p')",
    ],
    "bang-in-function": ["def run(cmd):\n    !{cmd}\n", "run('xmrig -o p')"],
    "subprocess-imported-earlier": [
        "import subprocess as sp",
        "def sh(c):\n    return sp.run(c, shell=True)\n",
        "sh('xmrig')",
    ],
    "wrapper-of-wrapper": [
        "import os\ndef sh(c):\n    os.system(c)\n",
        "def quiet(c):\n    sh(c + ' >/dev/null')\n",
        "quiet('xmrig -o p')",
    ],
    "hidden-command": [
        "import os\ndef sh(c):\n    os.system(c)\n",
        "tool = 'xm' + 'rig'",
        "sh(tool)",
    ],
    "known-tool-command-line": [
        "import subprocess\ndef launch(argv):\n    subprocess.Popen(argv)\n",
        "launch(['cloudflared', 'tunnel', '--url', 'http://localhost:8888'])",
    ],
}


@pytest.mark.parametrize("cells", list(WRAPPERS.values()), ids=list(WRAPPERS))
def test_a_wrapper_call_is_judged_as_its_command(analyzer: Analyzer, cells: list[str]) -> None:
    assert last(analyzer, cells) & {"miner", "tunnel"}


def test_the_finding_points_at_the_call(analyzer: Analyzer) -> None:
    session = analyzer.session()
    session.check("import os\ndef sh(*a):\n    os.system(' '.join(a))\n")
    (finding,) = session.check("print(1)\nsh('xmrig', '-o', 'p')")
    assert (finding.rule, finding.line, finding.evidence) == ("miner", 2, "xmrig -o p")


@pytest.mark.parametrize(
    "cells",
    [
        ["import os\ndef sh(*a):\n    os.system(' '.join(a))\n", "sh('ls', '-la')"],
        ["def show(cmd):\n    print(cmd)\n", "show('xmrig -o p')"],  # reaches no sink
        [
            "import os\ndef sh(c):\n    os.system(c)\n",
            "def sh(c):\n    print(c)\n",  # redefined: the summary is gone
            "sh('xmrig')",
        ],
    ],
    ids=["benign-command", "no-sink", "redefined"],
)
def test_calls_that_run_nothing_prohibited_stay_quiet(analyzer: Analyzer, cells: list[str]) -> None:
    assert last(analyzer, cells) == set()


def test_a_recursive_wrapper_ends(analyzer: Analyzer) -> None:
    cell = (
        "import os\ndef f(c):\n    f(c)\n    g(c)\n"
        "def g(c):\n    f(c)\n    os.system(c)\nf('xmrig')"
    )
    assert last(analyzer, [cell]) == {"miner"}


def test_many_wrapper_calls_are_bounded(analyzer: Analyzer) -> None:
    define = "import os\ndef sh(c):\n    os.system(c)\n    sh(c)\n"
    start = time.perf_counter()
    assert "miner" in last(analyzer, [define, "\n".join(["sh('ls')"] * 500) + "\nsh('xmrig')"])
    assert time.perf_counter() - start < 5


# -- 2. decompression after base64 ----------------------------------------------------------

PAYLOAD = b"import os\nos.system('xmrig -o p')\n"


@pytest.mark.parametrize(
    ("module", "compress"),
    [
        ("zlib", zlib.compress),
        ("gzip", gzip.compress),
        ("bz2", bz2.compress),
        ("lzma", lzma.compress),
    ],
)
def test_decompressed_base64_is_read(analyzer: Analyzer, module: str, compress) -> None:  # type: ignore[no-untyped-def]
    blob = base64.b64encode(compress(PAYLOAD)).decode()
    cell = f"import {module}, base64\nexec({module}.decompress(base64.b64decode('{blob}')))"
    assert last(analyzer, [cell]) == {"miner"}


def test_codecs_decompression_is_read(analyzer: Analyzer) -> None:
    blob = base64.b64encode(zlib.compress(PAYLOAD)).decode()
    cell = f"import codecs\nexec(codecs.decode(codecs.decode('{blob}', 'base64'), 'zlib'))"
    assert last(analyzer, [cell]) == {"miner"}


def test_decompression_in_a_name_and_decoded(analyzer: Analyzer) -> None:
    blob = base64.b64encode(zlib.compress(b"xmrig -o p")).decode()
    cell = (
        f"import zlib, base64, os\ndata = base64.b64decode('{blob}')\n"
        "os.system(zlib.decompress(data).decode())"
    )
    assert last(analyzer, [cell]) == {"miner"}


@pytest.mark.parametrize("compress", [zlib.compress, bz2.compress, lzma.compress])
def test_a_decompression_bomb_is_cut(analyzer: Analyzer, compress) -> None:  # type: ignore[no-untyped-def]
    bomb = base64.b64encode(compress(b"xmrig -o p\n" * 400_000)).decode()
    module = {zlib.compress: "zlib", bz2.compress: "bz2", lzma.compress: "lzma"}[compress]
    cell = (
        f"import {module}, base64, os\nos.system({module}.decompress(base64.b64decode('{bomb}')))"
    )
    start = time.perf_counter()
    found = {f.rule for f in analyzer.check(cell)}
    assert time.perf_counter() - start < 10
    assert "miner" in found  # its first part is still read


# -- 3. downloads that rename ---------------------------------------------------------------

CF = "https://github.com/cloudflare/cloudflared/releases/latest/download/cloudflared-linux-amd64"
XMRIG = (
    "https://github.com/xmrig/xmrig/releases/download/v6.21.0/xmrig-6.21.0-linux-static-x64.tar.gz"
)
DOWNLOADS = {
    "wget-O": [f"!wget -q {CF} -O cf", "!chmod +x cf; ./cf tunnel --url localhost:8888"],
    "wget-long": [f"!wget --output-document=cf {CF}", "!./cf tunnel run"],
    "curl-o": [f"!curl -L -o cf {CF}", "import subprocess\nsubprocess.run(['./cf', 'tunnel'])"],
    "wget-cluster": [f"!wget -qO cf {CF}", "!./cf tunnel"],
    "curl-cluster": [f"!curl -fsSLo cf {CF} && chmod +x cf", "!./cf tunnel"],
    "aria2c-o": [f"!aria2c -x4 -o cf {CF}", "!nohup ./cf tunnel &"],
    "urlretrieve": [
        f"import urllib.request\nurllib.request.urlretrieve('{CF}', 'cf')",
        "!./cf tunnel",
    ],
    "requests-write": [
        f"import requests\nr = requests.get('{CF}')",
        "with open('cf', 'wb') as f:\n    f.write(r.content)",
        "!./cf tunnel",
    ],
    "renamed-again": [f"!wget -O cf {CF}", "!mv cf /usr/local/bin/helper", "!helper tunnel"],
    "release-archive": [f"!wget -O m.tgz {XMRIG}", "!mv m.tgz m && ./m -o p"],
}


@pytest.mark.parametrize("cells", list(DOWNLOADS.values()), ids=list(DOWNLOADS))
def test_a_renamed_download_runs_as_its_tool(analyzer: Analyzer, cells: list[str]) -> None:
    assert last(analyzer, cells) & {"tunnel", "miner"}


def test_the_url_goes_with_the_run(analyzer: Analyzer) -> None:
    session = analyzer.session()
    session.check(f"!wget -O m {XMRIG}")
    found = {f.rule: f.evidence for f in session.check("!./m -o p")}
    assert set(found) == {"miner", "xmrig-releases"}
    assert XMRIG in found["xmrig-releases"]


def test_an_ordinary_download_stays_quiet(analyzer: Analyzer) -> None:
    cells = ["!wget -O data.zip https://example.org/data/cifar.zip", "!unzip data.zip && ls"]
    assert last(analyzer, cells) == set()


# -- 4. configuration files -----------------------------------------------------------------

CONFIGS = {
    "writefile-json": '%%writefile config.json\n{"outbounds": [{"protocol": "vmess"}]}\n',
    "writefile-yaml": "%%writefile c.yaml\noutbounds:\n  - protocol: vmess\n    tag: out\n",
    "writefile-toml": '%%writefile c.toml\n[[outbounds]]\nprotocol = "vmess"\n',
    "writefile-ini": "%%writefile frpc.ini\n[common]\nserver_addr = 1.2.3.4\nserver_port = 7000\n",
    "open-write": "open('x.json', 'w').write("
    '\'{"inbounds": [], "outbounds": [{"protocol": "vmess"}]}\')',
    "heredoc": '%%bash\ncat > config.json <<EOF\n{"outbounds": [{"protocol": "vmess"}]}\nEOF\n',
    "heredoc-after": "%%bash\ncat <<'EOF' > frpc.ini\n[common]\nserver_addr = 1.2.3.4\nEOF",
}


@pytest.mark.parametrize("cell", list(CONFIGS.values()), ids=list(CONFIGS))
def test_a_configuration_is_seen_as_key_value_lines(analyzer: Analyzer, cell: str) -> None:
    assert last(analyzer, [cell]) & {"vmess", "frp"}


def test_a_heredoc_script_is_remembered_and_run(analyzer: Analyzer) -> None:
    cells = ["%%bash\ncat > start.sh <<EOF\necho hi\nEOF", "!bash start.sh"]
    assert last(analyzer, cells) == set()
    assert last(analyzer, ["%%bash\ncat > s.sh <<'EOF'\n./xmrig -o p\nEOF"]) == {"miner"}


def test_an_ordinary_configuration_stays_quiet(analyzer: Analyzer) -> None:
    cell = '%%writefile config.json\n{"model": "bert", "protocol": "http", "lr": 0.001}\n'
    assert last(analyzer, [cell]) == set()


def test_a_yaml_alias_bomb_is_bounded(analyzer: Analyzer) -> None:
    rows = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    rows += [
        f"{c}: &{c} [{', '.join([f'*{p}'] * 10)}]"
        for p, c in zip("abcdefg", "bcdefgh", strict=True)
    ]
    start = time.perf_counter()
    analyzer.check("%%writefile bomb.yaml\n" + "\n".join(rows) + "\n")
    assert time.perf_counter() - start < 5


# -- 5. repository names in URLs ----------------------------------------------------------

REPOS = {
    "clone": ("!git clone https://github.com/MatrixTM/MHDDoS.git", "ddos-repo"),
    "clone-ssh": ("!git clone git@github.com:someone/ddos-ripper", "ddos-repo"),
    "release": (
        "!wget https://github.com/MatrixTM/MHDDoS/releases/download/v2/start.py",
        "ddos-repo",
    ),
    "raw": (
        "!curl -sL https://raw.githubusercontent.com/MatrixTM/MHDDoS/main/start.py | python3",
        "ddos-repo",
    ),
    "pip-git": ("%pip install git+https://github.com/x/MHDDoS@main", "ddos-repo"),
    "python-clone": (
        "import git\ngit.Repo.clone_from('https://gitlab.com/x/mhddos', 'd')",
        "ddos-repo",
    ),
    "owner-name": ("!git clone https://github.com/vanhauser-thc/thc-hydra", "owned-repo"),
}


@pytest.mark.parametrize(("cell", "expected"), list(REPOS.values()), ids=list(REPOS))
def test_a_repository_rule_matches_the_urls_naming_it(
    repo_analyzer: Analyzer, cell: str, expected: str
) -> None:
    assert expected in last(repo_analyzer, [cell])


@pytest.mark.parametrize(
    "cell",
    [
        "!git clone https://github.com/someone/MHDDoS-detector",
        "!git clone https://github.com/fork/thc-hydra",  # owner/name: only that owner
        "print('see github.com/MatrixTM/MHDDoS')",  # a mention, not a URL used
        "!pip install mhddos-paper",
    ],
)
def test_a_repository_rule_ignores_other_repositories(repo_analyzer: Analyzer, cell: str) -> None:
    assert not last(repo_analyzer, [cell]) & {"ddos-repo", "owned-repo"}


def test_a_downloaded_file_keeps_its_repository(repo_analyzer: Analyzer) -> None:
    cells = [
        "!wget -O run.bin https://github.com/MatrixTM/MHDDoS/releases/download/v2/mhd",
        "!./run.bin udp 1.2.3.4",
    ]
    assert "ddos-repo" in last(repo_analyzer, cells)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://github.com/MatrixTM/MHDDoS.git", ("matrixtm", "mhddos")),
        ("git+https://www.github.com/a/b@v1", ("a", "b")),
        ("git@github.com:a/b.git", ("a", "b")),
        ("https://api.github.com/repos/a/b/releases/latest", ("a", "b")),
        ("https://codeload.github.com/a/b/zip/refs/heads/main", ("a", "b")),
        ("https://example.org/a/b", None),
        ("https://github.com/a", None),
    ],
)
def test_repository_of_a_url(url: str, expected: tuple[str, str] | None) -> None:
    assert repository(url) == expected


def test_a_repository_leaf_loads_with_keywords(repo_analyzer: Analyzer) -> None:
    leaves = [leaf for leaf in repo_analyzer.policy.leaves if leaf.kind == "repo"]
    assert [leaf.names for leaf in leaves] == [
        ("mhddos", "ddos-ripper"),
        ("vanhauser-thc/thc-hydra",),
    ]
    assert [leaf.keywords for leaf in leaves] == [
        ("\\bmhddos\\b", "ddos-ripper"),
        ("vanhauser-thc/thc-hydra",),
    ]


@pytest.mark.parametrize("bad", ["'a/b/c'", "'has space'", "''"])
def test_a_bad_repository_name_is_refused(bad: str) -> None:
    text = HEAD + rule("r", f"      repo: [{bad}]")
    with pytest.raises(PolicyError, match="repo"):
        parse_policy(text)
    assert schema_errors(text)


def test_the_schema_takes_a_repository_leaf() -> None:
    assert not schema_errors(HEAD + "".join(REPO_RULES))


# -- the prefilter stays sound ------------------------------------------------------------

SESSIONS = {
    **{f"wrapper/{k}": v for k, v in WRAPPERS.items()},
    **{f"download/{k}": v for k, v in DOWNLOADS.items()},
    **{f"config/{k}": [v] for k, v in CONFIGS.items()},
    **{f"repo/{k}": [v[0]] for k, v in REPOS.items()},
    "decompress": [
        "import zlib, base64\nexec(zlib.decompress(base64.b64decode('"
        + base64.b64encode(zlib.compress(PAYLOAD)).decode()
        + "')))"
    ],
    "wrapper-hidden-same-cell": [
        "import os\ndef sh(c):\n    os.system(c)\nt = 'xm' + 'rig'\nsh(t)"
    ],
}


@pytest.mark.parametrize("cells", list(SESSIONS.values()), ids=list(SESSIONS))
def test_the_prefilter_loses_nothing(repo_analyzer: Analyzer, cells: list[str]) -> None:
    exhaustive = Analyzer(repo_analyzer.policy, exhaustive=True)
    fast, full = repo_analyzer.session(), exhaustive.session()
    for cell in cells:
        assert {(f.rule, f.line) for f in fast.check(cell)} == {
            (f.rule, f.line) for f in full.check(cell)
        }


def test_cells_without_these_features_are_not_analysed(analyzer: Analyzer, tmp_path: Path) -> None:
    session = analyzer.session()
    session.check("import os\ndef sh(c):\n    os.system(c)\n")
    memory = session.memory
    for cell in ["x = 1\nprint(x)", "def train(model):\n    model.run()\n", "df.head()"]:
        assert not analyzer.gate(cell, memory)[0], cell
