"""`colab-guard policy publish | versions | show` on a real SQLite store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from policy_texts import oldtool_policy

from jupyter_colab_guard import cli
from jupyter_colab_guard.store import StrikeStore
from jupyter_colab_guard.store.policies import PolicyVersions

POLICY = oldtool_policy("publish-test")
RULE_FILE = """\
rules:
  - id: newtool
    category: tools
    message: Runs the new tool.
    match: {shell: {program: [$tools]}}
    examples: {match: ["!newtool"], no_match: ["print(1)"]}
lists:
  tools: [newtool]
"""


@pytest.fixture
def store(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'store.sqlite'}"


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli.main(["policy", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def rows(store: str) -> list[int]:
    return [r.version for r in PolicyVersions(StrikeStore(store).engine).history()]


def test_publish_list_show_and_roll_back(tmp_path, store, capsys, monkeypatch):
    monkeypatch.delenv("COLAB_GUARD_STORE_URL", raising=False)
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY)
    code, out, err = run(capsys, "publish", str(path), "--store", store, "--by", "ops",
                         "--comment", "first")  # fmt: skip
    assert code == 0 and "published version 1" in out, err
    # a folder is flattened to one document
    folder = tmp_path / "folder"
    (folder / "rules").mkdir(parents=True)
    (folder / "policy.yaml").write_text(POLICY)
    (folder / "rules" / "new.yaml").write_text(RULE_FILE)
    monkeypatch.setenv("COLAB_GUARD_STORE_URL", store)  # the default store
    code, out, err = run(capsys, "publish", str(folder))
    assert code == 0 and "published version 2" in out, err

    code, out, _ = run(capsys, "versions", "--json")
    listed = json.loads(out)["versions"]
    assert [v["version"] for v in listed] == [2, 1]
    assert listed[1]["published_by"] == "ops" and listed[1]["comment"] == "first"
    assert "document" not in listed[0]
    code, out, _ = run(capsys, "versions")
    assert code == 0 and "newest" in out.splitlines()[1] and "first" in out

    code, out, err = run(capsys, "show", "--version", "1")
    assert code == 0 and out == POLICY and "version 1" in err
    code, out, _ = run(capsys, "show")
    assert "id: newtool" in out and "id: oldtool" in out  # both files in one text

    # rollback: version 1's document again, as version 3
    code, out, _ = run(capsys, "publish", "--from-version", "1", "--by", "ops")
    assert code == 0 and "published version 3" in out
    code, out, _ = run(capsys, "versions", "--json")
    newest = json.loads(out)["versions"][0]
    assert newest["sha256"] == listed[1]["sha256"] and newest["comment"] == "rollback to version 1"


def test_invalid_policy_is_refused_and_nothing_stored(tmp_path, store, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text(POLICY.replace("action: block", "action: explode"))
    code, out, err = run(capsys, "publish", str(path), "--store", store)
    assert code == 2 and "error:" in err and "action" in err and not out
    assert rows(store) == []
    # a folder whose second file breaks it: the problem names that file
    folder = tmp_path / "folder"
    (folder / "rules").mkdir(parents=True)
    (folder / "policy.yaml").write_text(POLICY)
    (folder / "rules" / "new.yaml").write_text(RULE_FILE.replace("$tools", "$nope"))
    code, _, err = run(capsys, "publish", str(folder), "--store", store)
    assert code == 2 and "new.yaml" in err and "nope" in err
    assert rows(store) == []
    # and the store API refuses it too, whoever calls it
    with pytest.raises(Exception, match="action"):
        PolicyVersions(StrikeStore(store).engine).publish(path.read_text(), by="x")


def test_usage_and_store_errors(tmp_path, store, capsys, monkeypatch):
    monkeypatch.delenv("COLAB_GUARD_STORE_URL", raising=False)
    code, _, err = run(capsys, "versions")
    assert code == 2 and "--store" in err
    code, _, err = run(capsys, "show", "--store", store)  # no table yet
    assert code == 2 and "error:" in err
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY)
    with pytest.raises(SystemExit) as exc:
        run(capsys, "publish", str(path), "--from-version", "1", "--store", store)
    assert exc.value.code == 2
    code, _, err = run(capsys, "publish", "--from-version", "7", "--store", store)
    assert code == 2 and "no version 7" in err
    code, _, err = run(capsys, "publish", str(path), "--store", "postgresql://u:pw@127.0.0.1:1/x")
    assert code == 2 and "error:" in err and "pw" not in err
