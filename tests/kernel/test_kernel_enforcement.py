"""What the user sees: block, warn (consent), log, user_expressions, unchanged benign cells."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
from jupyter_client.blocking.client import BlockingKernelClient
from kernel_client import Result, audit_events, execute, running_kernel

pytestmark = pytest.mark.analyzer

MESSAGE = "You may be executing code that is disallowed"
ANSI = re.compile(r"\x1b\[")


def sha(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


def events_for(workdir: Path, code: str, kind: str | None = None) -> list[dict]:
    return [
        e
        for e in audit_events(workdir)
        if e["cell_hash"] == sha(code) and (kind is None or e["kind"] == kind)
    ]


def assert_warning_shown(r: Result, title: str) -> None:
    displays = r.displays()
    assert len(displays) == 1, displays  # shown once though IPython renders twice
    html, text = displays[0]["text/html"], displays[0]["text/plain"]
    for body in (html, text):
        assert MESSAGE in body
        assert "use Colab in the future" in body
        assert title in body
        assert "faq" in body.lower()


def assert_no_traceback(r: Result) -> None:
    tb = r.reply.get("traceback") or []
    assert len(tb) <= 1
    assert not any("Traceback" in line or ANSI.search(line) for line in tb)
    for err in r.errors():
        assert len(err["traceback"]) <= 1


def test_blocked_cell_never_runs(
    kc: BlockingKernelClient, workdir: Path, side_effect: Path
) -> None:
    code = "open('before-block.txt', 'w').write('ran')\n!./forbidden-tool --go"
    r = execute(kc, code)
    assert r.status == "error"
    assert r.reply["ename"] == "ProhibitedCodeError"
    assert not (workdir / "before-block.txt").exists()  # not even the first line ran
    assert not side_effect.exists()
    assert_warning_shown(r, "Forbidden test tool")
    assert "line 2" in r.displays()[0]["text/plain"]
    assert_no_traceback(r)
    found = events_for(workdir, code, "finding")
    assert [e["rule"] for e in found] == ["test-forbidden-tool"]  # once, despite two transforms
    event = found[0]
    assert event["execution_count"] == r.reply["execution_count"]
    assert event["action"] == "block" and event["line"] == 2
    assert event["timestamp"] and "kernel_id" in event


def test_same_blocked_cell_again_is_blocked_and_reported_again(
    kc: BlockingKernelClient, workdir: Path, side_effect: Path
) -> None:
    code = "!./forbidden-tool again"
    first, second = execute(kc, code), execute(kc, code)
    assert first.status == second.status == "error"
    assert len(second.displays()) == 1
    counts = [e["execution_count"] for e in events_for(workdir, code, "finding")]
    assert counts == [first.reply["execution_count"], second.reply["execution_count"]]
    assert not side_effect.exists()


def test_benign_output_unchanged(kc: BlockingKernelClient, tmp_path: Path) -> None:
    cells = [
        "print('hello'); 6 * 7",
        "from IPython.display import HTML, display\ndisplay(HTML('<b>x</b>'))",
        "!echo shell-ok",
        "%%bash\necho bash-ok",
        "out = !echo captured\nprint(out)",
        "import subprocess\nprint(subprocess.run(['echo', 'sub'], capture_output=True).stdout)",
        "1/0",
    ]

    def shape(r: Result) -> tuple:
        ename = r.reply.get("ename")
        return (r.status, ename, r.stream(), r.results(), r.displays())

    guarded = [shape(execute(kc, c)) for c in cells]
    with running_kernel(tmp_path, guard=False) as plain:
        unguarded = [shape(execute(plain, c)) for c in cells]
    assert guarded == unguarded
    assert guarded[0][2] == "hello\n" and guarded[-1][1] == "ZeroDivisionError"


def test_log_cell_runs_and_is_recorded_once(kc: BlockingKernelClient, workdir: Path) -> None:
    code = "x = 'LOG-ME'\nprint(x)"
    r = execute(kc, code)
    assert r.status == "ok"
    assert r.stream() == "LOG-ME\n"
    assert r.displays() == []
    found = events_for(workdir, code)
    assert len(found) == 1
    assert found[0]["kind"] == "finding" and found[0]["rule"] == "test-log-string"
    assert found[0]["action"] == "log"
    assert found[0]["execution_count"] == r.reply["execution_count"]


def test_warn_consent_run(kc: BlockingKernelClient, workdir: Path) -> None:
    code = "y = 'WARN-ME'\nprint('warned and ran')"
    r = execute(kc, code, allow_stdin=True, answers=["run"])
    assert r.status == "ok"
    assert len(r.prompts) == 1 and "Still run the code" in r.prompts[0]
    assert "warned and ran" in r.stream()
    assert_warning_shown(r, "Questionable test marker")
    consent = events_for(workdir, code, "consent")
    assert [(e["choice"], e["rule"]) for e in consent] == [("run", "test-warn-string")]
    assert len(events_for(workdir, code, "finding")) == 1


def test_warn_consent_cancel(kc: BlockingKernelClient, workdir: Path) -> None:
    code = "open('warn-cancel.txt', 'w').write('ran')\ny = 'WARN-ME'"
    r = execute(kc, code, allow_stdin=True, answers=["cancel"])
    assert r.status == "error" and r.reply["ename"] == "ProhibitedCodeError"
    assert len(r.prompts) == 1
    assert not (workdir / "warn-cancel.txt").exists()
    assert_no_traceback(r)
    consent = events_for(workdir, code, "consent")
    assert [e["choice"] for e in consent] == ["cancel"]


def test_warn_headless_uses_default(kc: BlockingKernelClient, workdir: Path) -> None:
    code = "open('warn-headless.txt', 'w').write('ran')\ny = 'WARN-ME'"
    r = execute(kc, code, allow_stdin=False)
    assert r.status == "error" and r.reply["ename"] == "ProhibitedCodeError"
    assert r.prompts == []
    assert not (workdir / "warn-headless.txt").exists()
    assert_warning_shown(r, "Questionable test marker")
    consent = events_for(workdir, code, "consent")
    assert [e["choice"] for e in consent] == ["cancel"]
    assert consent[0]["detail"].startswith("headless")


def test_user_expressions_are_checked(
    kc: BlockingKernelClient, workdir: Path, side_effect: Path
) -> None:
    r = execute(
        kc,
        "",
        user_expressions={
            "fine": "6 * 7",
            "marker": "str('BLOCK-ME')",
            "shell": "__import__('os').system('./forbidden-tool expr')",
        },
    )
    assert r.status == "ok"
    ue = r.reply["user_expressions"]
    assert ue["fine"]["status"] == "ok" and ue["fine"]["data"]["text/plain"] == "42"
    for key in ("marker", "shell"):
        assert ue[key]["status"] == "error"
        assert ue[key]["ename"] == "ProhibitedCodeError"
    assert not side_effect.exists()


def test_blank_and_plain_cells(kc: BlockingKernelClient) -> None:
    assert execute(kc, "").status == "ok"
    assert execute(kc, "   \n").status == "ok"
    r = execute(kc, "print('forbidden-tool is only a word here')")
    assert r.status == "ok" and r.displays() == []
