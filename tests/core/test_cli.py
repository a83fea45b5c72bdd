"""The `colab-guard` command line, run for real as a subprocess on files in tmp_path."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from jupyter_colab_guard import cli as cli_module

POLICY = """\
version: 1
name: cli-test
tiers: [free, paid]
categories:
  - id: forbidden_tools
    title: Running forbidden tools
    description: The forbidden tool must not run here.
    action: block
    severity: high
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
"""

FINDING_KEYS = {
    "path",
    "cell",
    "line",
    "column",
    "category",
    "rule",
    "action",
    "severity",
    "message",
}


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "jupyter_colab_guard.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def notebook(*cells: dict[str, Any]) -> str:
    return json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": list(cells)})


def code(source: str, outputs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "cell_type": "code",
        "metadata": {},
        "execution_count": None,
        "source": source.splitlines(keepends=True),
        "outputs": outputs or [],
    }


def markdown(source: str) -> dict[str, Any]:
    return {"cell_type": "markdown", "metadata": {}, "source": source}


def stream(text: str) -> dict[str, Any]:
    return {"output_type": "stream", "name": "stdout", "text": [text]}


@pytest.fixture
def policy(tmp_path: Path) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY, encoding="utf-8")
    return path


def check_json(tmp_path: Path, policy: Path, *paths: str) -> tuple[int, dict[str, Any]]:
    proc = run("check", "--policy", str(policy), "--format", "json", *paths, cwd=tmp_path)
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stdout + proc.stderr  # exactly one JSON object
    data = json.loads(lines[0])
    assert isinstance(data, dict)
    return proc.returncode, data


# -- check --format json ---------------------------------------------------------------
def test_json_shape_and_notebook_cell_indexes(tmp_path: Path, policy: Path) -> None:
    (tmp_path / "nb.ipynb").write_text(
        notebook(
            markdown("# Title\n!forbidden-tool in markdown is prose"),
            code("x = 1\n"),
            {"cell_type": "raw", "metadata": {}, "source": "!forbidden-tool --raw"},
            code("print('first')\n!forbidden-tool --go\n"),
        ),
        encoding="utf-8",
    )
    status, data = check_json(tmp_path, policy, "nb.ipynb")
    assert set(data) == {"version", "findings", "errors"}
    assert data["errors"] == []
    (finding,) = data["findings"]
    assert set(finding) == FINDING_KEYS
    assert finding == {
        "path": "nb.ipynb",
        "cell": 3,
        "line": 2,
        "column": finding["column"],
        "category": "forbidden_tools",
        "rule": "forbidden-tool-shell",
        "action": "block",
        "severity": "high",
        "message": "Runs the forbidden tool.",
    }
    assert isinstance(finding["column"], int) and finding["column"] >= 1
    assert status == 1


def test_notebook_cells_are_one_session(tmp_path: Path, policy: Path) -> None:
    (tmp_path / "nb.ipynb").write_text(
        notebook(
            code("tool = 'forbidden' + '-tool'\n"),
            markdown("Now run it"),
            code("import os\n\n!{tool} --go\n"),
        ),
        encoding="utf-8",
    )
    status, data = check_json(tmp_path, policy, "nb.ipynb")
    assert [(f["cell"], f["line"], f["rule"]) for f in data["findings"]] == [
        (2, 3, "forbidden-tool-shell")
    ]
    assert status == 1


def test_the_variable_alone_is_not_a_finding(tmp_path: Path, policy: Path) -> None:
    # control for the session test: without the earlier cell, `!{tool}` is unknown
    (tmp_path / "nb.ipynb").write_text(
        notebook(code("import os\n\n!{tool} --go\n")), encoding="utf-8"
    )
    status, data = check_json(tmp_path, policy, "nb.ipynb")
    assert [f["rule"] for f in data["findings"]] == []
    assert status == 0


def test_outputs_and_markdown_never_produce_findings(tmp_path: Path, policy: Path) -> None:
    (tmp_path / "nb.ipynb").write_text(
        notebook(
            markdown("!forbidden-tool --go\n\nsketchy-token-1\n\nimport auditmod"),
            code("print('done')\n", outputs=[stream("!forbidden-tool --go sketchy-token-9\n")]),
            code(
                "1 + 1\n",
                outputs=[
                    {
                        "output_type": "execute_result",
                        "execution_count": 2,
                        "metadata": {},
                        "data": {"text/plain": ["'sketchy-token-3'"]},
                    }
                ],
            ),
        ),
        encoding="utf-8",
    )
    status, data = check_json(tmp_path, policy, "nb.ipynb")
    assert data == {"version": data["version"], "findings": [], "errors": []}
    assert status == 0


def test_py_and_sh_files_have_null_cell_and_right_lines(tmp_path: Path, policy: Path) -> None:
    (tmp_path / "script.sh").write_text(
        "#!/bin/bash\nset -e\necho starting\n\nforbidden-tool --go\n", encoding="utf-8"
    )
    (tmp_path / "mod.py").write_text(
        "import os\n\n\nTOKEN = 'sketchy-token-77'\n", encoding="utf-8"
    )
    status, data = check_json(tmp_path, policy, "script.sh", "mod.py")
    got = [(f["path"], f["cell"], f["line"], f["rule"], f["action"]) for f in data["findings"]]
    assert got == [
        ("script.sh", None, 5, "forbidden-tool-shell", "block"),
        ("mod.py", None, 4, "sketchy-token", "warn"),
    ]
    assert status == 1


def test_sh_finding_on_first_line(tmp_path: Path, policy: Path) -> None:
    (tmp_path / "one.sh").write_text("forbidden-tool --now\necho done\n", encoding="utf-8")
    _, data = check_json(tmp_path, policy, "one.sh")
    assert [(f["line"], f["cell"]) for f in data["findings"]] == [(1, None)]


# -- exit codes ---------------------------------------------------------------------------
def test_exit_0_when_nothing_found(tmp_path: Path, policy: Path) -> None:
    (tmp_path / "clean.py").write_text("print('hello')\n", encoding="utf-8")
    status, data = check_json(tmp_path, policy, "clean.py")
    assert (status, data["findings"], data["errors"]) == (0, [], [])


def test_exit_0_with_only_log_findings(tmp_path: Path, policy: Path) -> None:
    (tmp_path / "audit.py").write_text("import auditmod\n", encoding="utf-8")
    status, data = check_json(tmp_path, policy, "audit.py")
    assert [(f["rule"], f["action"], f["severity"]) for f in data["findings"]] == [
        ("audit-import", "log", "low")
    ]
    assert status == 0


@pytest.mark.parametrize(
    ("source", "action"),
    [("x = 'sketchy-token-5'\n", "warn"), ("import os\nos.system('forbidden-tool')\n", "block")],
)
def test_exit_1_with_warn_or_block(tmp_path: Path, policy: Path, source: str, action: str) -> None:
    (tmp_path / "bad.py").write_text(source, encoding="utf-8")
    status, data = check_json(tmp_path, policy, "bad.py")
    assert [f["action"] for f in data["findings"]] == [action]
    assert status == 1


def test_text_format_exit_codes_match(tmp_path: Path, policy: Path) -> None:
    (tmp_path / "bad.py").write_text("x = 'sketchy-token-5'\n", encoding="utf-8")
    (tmp_path / "clean.py").write_text("x = 1\n", encoding="utf-8")
    bad = run("check", "--policy", str(policy), "bad.py", cwd=tmp_path)
    clean = run("check", "--policy", str(policy), "clean.py", cwd=tmp_path)
    assert bad.returncode == 1 and "sketchy-token" in bad.stdout
    assert "bad.py:1:" in bad.stdout
    assert clean.returncode == 0 and "0 finding(s)" in clean.stdout


BROKEN = """\
version: 1
categories:
  - id: tools
    title: Tools
    description: Tools.
    action: block
    severity: high
rules:
  - id: r1
    category: tools
    message: m
    match:
      string: 'oops(['
    examples:
      match: [x]
      no_match: [y]
"""


@pytest.mark.parametrize(
    "command", [["policy", "validate"], ["policy", "test"], ["policy", "explain"]]
)
def test_exit_2_on_a_broken_policy(tmp_path: Path, command: list[str]) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(BROKEN, encoding="utf-8")
    proc = run(*command, str(path), cwd=tmp_path)
    assert proc.returncode == 2
    line = BROKEN.splitlines().index("      string: 'oops(['") + 1
    assert f"{path}:{line}: rules[r1].match.string:" in proc.stderr
    assert "invalid regex" in proc.stderr


def test_check_with_a_broken_policy_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(BROKEN, encoding="utf-8")
    (tmp_path / "a.py").write_text("x = 1\n", encoding="utf-8")
    proc = run("check", "--policy", str(path), "--format", "json", "a.py", cwd=tmp_path)
    assert proc.returncode == 2
    assert f"{path}:13: rules[r1].match.string:" in proc.stderr


def test_validate_a_good_policy(tmp_path: Path, policy: Path) -> None:
    proc = run("policy", "validate", str(policy), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "OK" in proc.stdout and "3 categories, 3 rules" in proc.stdout


# -- unreadable inputs ----------------------------------------------------------------------
def test_unreadable_files_are_errors_and_the_rest_is_checked(tmp_path: Path, policy: Path) -> None:
    (tmp_path / "latin1.py").write_bytes(b"# caf\xe9\nx = 1\n")
    (tmp_path / "broken.ipynb").write_text("{not json", encoding="utf-8")
    (tmp_path / "notanotebook.ipynb").write_text('{"hello": 1}', encoding="utf-8")
    (tmp_path / "bad.py").write_text("import os\nos.system('forbidden-tool')\n", encoding="utf-8")
    status, data = check_json(
        tmp_path, policy, "latin1.py", "broken.ipynb", "notanotebook.ipynb", "bad.py", "missing.py"
    )
    assert [e["path"] for e in data["errors"]] == [
        "latin1.py",
        "broken.ipynb",
        "notanotebook.ipynb",
        "missing.py",
    ]
    assert all(set(e) >= {"path", "message"} and e["message"] for e in data["errors"])
    assert [(f["path"], f["line"]) for f in data["findings"]] == [("bad.py", 2)]
    assert status == 1  # a block finding wins over read errors


def test_only_unreadable_files_exit_2(tmp_path: Path, policy: Path) -> None:
    (tmp_path / "broken.ipynb").write_text("{not json", encoding="utf-8")
    (tmp_path / "clean.py").write_text("x = 1\n", encoding="utf-8")
    status, data = check_json(tmp_path, policy, "broken.ipynb", "clean.py")
    assert [e["path"] for e in data["errors"]] == ["broken.ipynb"]
    assert data["findings"] == []
    assert status == 2


# -- directories --------------------------------------------------------------------------
def test_directories_are_scanned_recursively(tmp_path: Path, policy: Path) -> None:
    root = tmp_path / "project"
    (root / "a" / "b").mkdir(parents=True)
    (root / ".ipynb_checkpoints").mkdir()
    (root / "top.py").write_text("x = 'sketchy-token-1'\n", encoding="utf-8")
    (root / "a" / "run.sh").write_text("echo hi\nforbidden-tool\n", encoding="utf-8")
    (root / "a" / "b" / "deep.ipynb").write_text(
        notebook(markdown("hi"), code("!forbidden-tool --deep\n")), encoding="utf-8"
    )
    (root / "a" / "b" / "clean.py").write_text("x = 1\n", encoding="utf-8")
    (root / "notes.txt").write_text("!forbidden-tool\nsketchy-token-2\n", encoding="utf-8")
    (root / "data.json").write_text('["sketchy-token-3"]', encoding="utf-8")
    (root / ".ipynb_checkpoints" / "deep-checkpoint.ipynb").write_text(
        notebook(code("!forbidden-tool --old\n")), encoding="utf-8"
    )
    status, data = check_json(tmp_path, policy, "project")
    got = sorted(
        (Path(f["path"]).as_posix(), f["cell"], f["line"], f["rule"]) for f in data["findings"]
    )
    assert got == [
        ("project/a/b/deep.ipynb", 1, 1, "forbidden-tool-shell"),
        ("project/a/run.sh", None, 2, "forbidden-tool-shell"),
        ("project/top.py", None, 1, "sketchy-token"),
    ]
    assert data["errors"] == []
    assert status == 1


# -- SARIF ----------------------------------------------------------------------------------
def test_sarif_shape(tmp_path: Path, policy: Path) -> None:
    (tmp_path / "nb.ipynb").write_text(
        notebook(markdown("x"), code("y = 2\n!forbidden-tool --go\n")), encoding="utf-8"
    )
    (tmp_path / "warn.py").write_text("\nx = 'sketchy-token-5'\n", encoding="utf-8")
    (tmp_path / "log.py").write_text("import auditmod\n", encoding="utf-8")
    proc = run(
        "check",
        "--policy",
        str(policy),
        "--format",
        "sarif",
        "nb.ipynb",
        "warn.py",
        "log.py",
        cwd=tmp_path,
    )
    assert proc.returncode == 1
    sarif = json.loads(proc.stdout)
    assert sarif["version"] == "2.1.0"
    assert "sarif" in sarif["$schema"]
    (run_,) = sarif["runs"]
    assert run_["tool"]["driver"]["name"] == "colab-guard"
    assert {r["id"] for r in run_["tool"]["driver"]["rules"]} == {
        "forbidden-tool-shell",
        "sketchy-token",
        "audit-import",
    }
    results = {r["ruleId"]: r for r in run_["results"]}
    assert set(results) == {"forbidden-tool-shell", "sketchy-token", "audit-import"}
    assert {k: r["level"] for k, r in results.items()} == {
        "forbidden-tool-shell": "error",
        "sketchy-token": "warning",
        "audit-import": "note",
    }
    for result in run_["results"]:
        assert result["message"]["text"]
        (location,) = result["locations"]
        physical = location["physicalLocation"]
        assert physical["artifactLocation"]["uri"]
        assert isinstance(physical["region"]["startLine"], int)
    starts = {
        k: r["locations"][0]["physicalLocation"]["region"]["startLine"] for k, r in results.items()
    }
    # json.dumps without indent: the whole notebook is line 1 of its file; the line in the
    # cell is a property (tests/core/test_sarif.py: notebooks written as Jupyter does)
    assert starts == {"forbidden-tool-shell": 1, "sketchy-token": 2, "audit-import": 1}
    notebook_result = results["forbidden-tool-shell"]["properties"]
    assert (notebook_result["cell"], notebook_result["cellLine"]) == (1, 2)
    uris = {
        k: r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
        for k, r in results.items()
    }
    assert uris == {
        "forbidden-tool-shell": "nb.ipynb",
        "sketchy-token": "warn.py",
        "audit-import": "log.py",
    }


# -- policy test / explain ------------------------------------------------------------------
def test_policy_test_passes_on_a_good_policy(tmp_path: Path, policy: Path) -> None:
    proc = run("policy", "test", str(policy), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "6 passed, 0 failed" in proc.stdout


@pytest.mark.parametrize(
    ("old", "new", "rule", "words"),
    [
        (
            '      match: ["!forbidden-tool --go"]\n',
            '      match: ["!allowed-tool --go"]\n',
            "forbidden-tool-shell",
            "should match but did not",
        ),
        (
            "      no_match: ['x = \"harmless\"']\n",
            "      no_match: ['x = \"sketchy-token-1\"']\n",
            "sketchy-token",
            "should not match but did",
        ),
    ],
)
def test_policy_test_fails_on_a_wrong_example(
    tmp_path: Path, old: str, new: str, rule: str, words: str
) -> None:
    assert POLICY.count(old) == 1
    path = tmp_path / "wrong.yaml"
    path.write_text(POLICY.replace(old, new), encoding="utf-8")
    proc = run("policy", "test", str(path), cwd=tmp_path)
    assert proc.returncode == 1
    fails = [line for line in proc.stdout.splitlines() if line.startswith("FAIL")]
    assert len(fails) == 1
    assert rule in fails[0] and words in fails[0]
    assert "5 passed, 1 failed" in proc.stdout


def test_policy_explain(tmp_path: Path, policy: Path) -> None:
    proc = run("policy", "explain", str(policy), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for text in (
        "Running forbidden tools",
        "Sketchy text",
        "Audited modules",
        "Runs the forbidden tool.",
        "Holds a sketchy token.",
        "Imports the audited module.",
        "forbidden-tool-shell",
        "forbidden-tool",
    ):
        assert text in out, text
    # rules are listed under their own category
    assert out.index("Running forbidden tools") < out.index("Runs the forbidden tool.")
    assert out.index("Sketchy text") < out.index("Holds a sketchy token.")
    assert out.index("Runs the forbidden tool.") < out.index("Sketchy text")


def test_default_policy_commands(tmp_path: Path) -> None:
    explain = run("policy", "explain", cwd=tmp_path)
    assert explain.returncode == 0, explain.stderr
    assert "Mining cryptocurrency" in explain.stdout
    validate = run("policy", "validate", cwd=tmp_path)
    assert validate.returncode == 0, validate.stderr
    assert "9 categories" in validate.stdout


# -- --jobs, progress, --output -----------------------------------------------------------------
def many_files(root: Path) -> list[str]:
    """Files of every kind, some with findings, some unreadable, in nested folders."""
    (root / "nbs" / "deep").mkdir(parents=True)
    for i in range(6):
        (root / "nbs" / f"n{i}.ipynb").write_text(
            notebook(
                markdown(f"# notebook {i}"),
                code(f"x = {i}\n" + ("!forbidden-tool --go\n" if i % 2 else "")),
                code(f"y = 'sketchy-token-{i}'\n" if i % 3 == 0 else "print(1)\n"),
            ),
            encoding="utf-8",
        )
    for i in range(5):
        (root / "nbs" / "deep" / f"m{i}.py").write_text(
            "import auditmod\n" * (i % 2) + f"z = {i}\n", encoding="utf-8"
        )
        (root / f"s{i}.sh").write_text(
            f"echo {i}\n" + "forbidden-tool\n" * (i % 2), encoding="utf-8"
        )
    (root / "nbs" / "broken.ipynb").write_text("{not json", encoding="utf-8")
    (root / "latin1.py").write_text("x = 1\n", encoding="latin-1")
    (root / "bad.py").write_bytes(b"# caf\xe9\n")
    return ["nbs", "s0.sh", "s1.sh", "s2.sh", "s3.sh", "s4.sh", "bad.py", "missing.py", "latin1.py"]


@pytest.mark.parametrize("fmt", ["json", "sarif", "text"])
def test_jobs_2_gives_the_same_report_as_jobs_1(tmp_path: Path, policy: Path, fmt: str) -> None:
    paths = many_files(tmp_path)
    one = run(
        "check", "--policy", str(policy), "--format", fmt, "--jobs", "1", *paths, cwd=tmp_path
    )
    two = run(
        "check", "--policy", str(policy), "--format", fmt, "--jobs", "2", *paths, cwd=tmp_path
    )
    every = run("check", "--policy", str(policy), "--format", fmt, *paths, cwd=tmp_path)
    assert one.returncode == two.returncode == every.returncode == 1
    assert one.stdout == two.stdout == every.stdout  # same findings, same order, byte for byte
    assert one.stderr == two.stderr == every.stderr == ""  # no progress when not a terminal
    if fmt == "json":
        data = json.loads(one.stdout)
        assert len(data["findings"]) == 9
        assert [e["path"] for e in data["errors"]] == ["nbs/broken.ipynb", "bad.py", "missing.py"]
        order = [f["path"] for f in data["findings"]]
        assert order.index("nbs/deep/m1.py") < order.index("nbs/n1.ipynb") < order.index("s1.sh")


def test_jobs_must_be_a_count(tmp_path: Path, policy: Path) -> None:
    (tmp_path / "a.py").write_text("x = 1\n", encoding="utf-8")
    bad = run("check", "--policy", str(policy), "--jobs", "-1", "a.py", cwd=tmp_path)
    assert bad.returncode == 2 and "--jobs" in bad.stderr
    every = run("check", "--policy", str(policy), "--jobs", "0", "a.py", cwd=tmp_path)
    assert every.returncode == 0, every.stderr


def run_with_terminal_stderr(*args: str, cwd: Path) -> tuple[int, str, str]:
    """Run the CLI with stderr on a pseudo-terminal; (status, stdout, what the terminal got)."""
    import pty

    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyter_colab_guard.cli", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=follower,
        text=True,
    )
    os.close(follower)
    screen = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # EIO: the process is gone and the terminal drained
            break
        if not chunk:
            break
        screen += chunk
    stdout, _ = proc.communicate(timeout=120)
    os.close(leader)
    return proc.returncode, stdout, screen.decode()


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_progress_on_a_terminal(tmp_path: Path, policy: Path, jobs: str) -> None:
    paths = many_files(tmp_path)
    status, stdout, screen = run_with_terminal_stderr(
        "check", "--policy", str(policy), "--format", "json", "--jobs", jobs, *paths, cwd=tmp_path
    )
    assert status == 1
    assert len(json.loads(stdout)["findings"]) == 9
    total = 7 + 5 + 5 + 3  # notebooks and .py found in nbs/, the .sh files, the other files
    assert f"checked {total}/{total} files" in screen
    assert screen.startswith("\rchecked ") and screen.endswith("\n")
    assert "checked" not in stdout  # the report stays clean


def test_output_file(tmp_path: Path, policy: Path) -> None:
    (tmp_path / "bad.py").write_text("x = 'sketchy-token-5'\n", encoding="utf-8")
    proc = run(
        "check",
        "--policy",
        str(policy),
        "--format",
        "json",
        "-o",
        "out/r.json",
        "bad.py",
        cwd=tmp_path,
    )
    assert proc.returncode == 1 and proc.stdout == ""
    data = json.loads((tmp_path / "out" / "r.json").read_text(encoding="utf-8"))
    assert [f["rule"] for f in data["findings"]] == ["sketchy-token"]


_real_check_in_worker = cli_module._check_in_worker


def _die_on_b(path: str) -> Any:
    """Stands in for the worker function: the process checking b.py dies."""
    if path.endswith("b.py"):
        os._exit(3)
    return _real_check_in_worker(path)


def test_a_dying_worker_turns_files_into_errors(
    tmp_path: Path, policy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("the stand-in reaches the workers by fork")
    names = ["a.py", "b.py", "c.py", "d.py"]
    for name in names:
        (tmp_path / name).write_text("x = 'sketchy-token-1'\n", encoding="utf-8")
    monkeypatch.setattr(cli_module, "_check_in_worker", _die_on_b)
    analyzer = cli_module.Analyzer(cli_module.load_policy(str(policy)))
    files = [tmp_path / n for n in names]
    found, errors = cli_module.check_files(
        files, analyzer, str(policy), None, 2, cli_module.Progress(len(files))
    )
    died = {Path(e["path"]).name for e in errors}
    assert "b.py" in died
    assert all("worker process died" in e["message"] for e in errors)
    checked = {Path(x.path).name for x in found}
    assert checked | died == set(names) and not checked & died  # every file accounted for


def test_an_nbformat_3_notebook_is_read_by_its_worksheets(tmp_path: Path, policy: Path) -> None:
    old = {
        "nbformat": 3,
        "metadata": {"name": ""},
        "worksheets": [
            {"cells": [{"cell_type": "markdown", "source": ["# Notes"]}]},
            {
                "cells": [
                    {"cell_type": "code", "input": ["x = 1"], "language": "python"},
                    {"cell_type": "code", "input": ["!forbidden-tool --go"], "outputs": []},
                ]
            },
        ],
    }
    (tmp_path / "old.ipynb").write_text(json.dumps(old), encoding="utf-8")
    status, data = check_json(tmp_path, policy, "old.ipynb")
    assert data["errors"] == []
    # cells count from 0 across worksheets, as in nbformat 4 files
    assert [(f["cell"], f["line"], f["rule"]) for f in data["findings"]] == [
        (2, 1, "forbidden-tool-shell")
    ]
    assert status == 1
