"""The kernel's side of consent to a ``warn`` cell (issue 10), in real kernels: the text
prompt where no extension answers (run / cancel / the headless default), and the
server's consent field (set by the server only after the user's "Run anyway")."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from jupyter_client.blocking.client import BlockingKernelClient
from kernel_client import audit_events, execute, make_workdir, running_kernel

pytestmark = pytest.mark.analyzer

WARN = "open({marker!r}, 'w').write('ran')\ny = 'WARN-ME'\nprint('warn cell ran')"
RULE = "test-warn-string"


def consents(workdir: Path) -> list[dict]:
    return [e for e in audit_events(workdir) if e["kind"] == "consent"]


@pytest.mark.parametrize(("answer", "runs"), [("run", True), ("cancel", False), ("", False)])
def test_text_prompt(kc: BlockingKernelClient, workdir: Path, answer: str, runs: bool) -> None:
    marker = workdir / f"prompt-{answer or 'empty'}.txt"
    before = len(consents(workdir))
    r = execute(kc, WARN.format(marker=str(marker)), allow_stdin=True, answers=[answer])
    assert len(r.prompts) == 1 and "Type 'run'" in r.prompts[0]
    assert (r.status == "ok") is runs and marker.exists() is runs
    new = consents(workdir)[before:]
    assert [(e["choice"], e["rule"]) for e in new] == [("run" if runs else "cancel", RULE)]
    assert new[0]["detail"].startswith("asked")


@pytest.fixture(scope="module")
def headless_run(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Path, BlockingKernelClient]]:
    workdir = make_workdir(tmp_path_factory.mktemp("headless-run"))
    with running_kernel(workdir, options=["--KernelGuard.warn_default_headless=run"]) as client:
        yield workdir, client


def test_headless_default_run(headless_run: tuple[Path, BlockingKernelClient]) -> None:
    """stdin not allowed and the operator's default is "run": it runs, no prompt, and
    the warning is shown; the consent report says so (the server counts the strike)."""
    workdir, client = headless_run
    marker = workdir / "headless-run.txt"
    r = execute(client, WARN.format(marker=str(marker)), allow_stdin=False)
    assert r.status == "ok" and marker.exists() and r.prompts == []
    assert "Run anyway: this frontend cannot ask" in r.displays()[0]["text/plain"]
    assert [(e["choice"], e["detail"].split(";")[0]) for e in consents(workdir)] == [
        ("run", "headless")
    ]


def test_headless_default_cancel(kc: BlockingKernelClient, workdir: Path) -> None:
    marker = workdir / "headless-cancel.txt"
    r = execute(kc, WARN.format(marker=str(marker)), allow_stdin=False)
    assert r.status == "error" and r.reply["ename"] == "ProhibitedCodeError"
    assert not marker.exists() and r.prompts == []


def test_server_consent_field_runs_without_asking(kc: BlockingKernelClient, workdir: Path) -> None:
    """The control of the server's test that drops a client's consent field: a kernel
    that receives the field (as the server sets it after "Run anyway") does not ask."""
    marker = workdir / "granted.txt"
    before = len(consents(workdir))
    granted = {"colab_guard": {"consent": {"rules": [RULE], "cell_hash": "x"}}}
    r = execute(kc, WARN.format(marker=str(marker)), allow_stdin=True, answers=[], metadata=granted)
    assert r.status == "ok" and marker.exists() and r.prompts == []
    assert r.displays() == []  # the server's warning is already in the output
    new = consents(workdir)[before:]
    assert [(e["choice"], e["detail"].split(";")[0]) for e in new] == [("run", "dialog")]


def test_consent_for_other_rules_still_asks(kc: BlockingKernelClient, workdir: Path) -> None:
    marker = workdir / "other-rule.txt"
    other = {"colab_guard": {"consent": {"rules": ["some-other-rule"], "cell_hash": "x"}}}
    r = execute(
        kc, WARN.format(marker=str(marker)), allow_stdin=True, answers=["cancel"], metadata=other
    )
    assert len(r.prompts) == 1
    assert r.status == "error" and not marker.exists()
