"""End to end: a guarded JupyterLab 4 (``colab-guard lab``) driven in headless Chromium.

The guard's JupyterLab extension is disabled in ``lab``: these are the in-output warning
and the kernel's text prompt that clients without the extension get (the dialogs are
tested in test_browser_dialogs.py and test_browser_consent.py)."""

from __future__ import annotations

import importlib.util
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser_helpers import REPO, STANDARD_WARNING, Lab, start_lab, write_notebook
from notebook_page import NotebookPage
from test_browser_dialogs import EXTENSION, set_page_config

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]

HERE = Path(__file__).parent

BENIGN = 'print("benign", 6 * 7)'
BLOCKED = 'open("block_ran.txt", "w").write("ran")\n!forbidden-tool --go "<b>bold</b>"'
WARN_CANCEL = 'open("warn_cancel_ran.txt", "w").write("ran")\nimport wave\nprint("cancel-cell ran")'
WARN_RUN = 'open("warn_run_ran.txt", "w").write("ran")\nimport wave\nprint("run-cell ran")'

NB7_BLOCKED = 'open("nb7_block_ran.txt", "w").write("ran")\n!forbidden-tool'
NB7_WARN = 'import wave\nprint("nb7-warn ran")'


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory, chromium: Any) -> Iterator[Lab]:
    """The guarded JupyterLab of this module's tests (after ``chromium``: no server is
    started when the browser tests are skipped)."""
    home = tmp_path_factory.mktemp("lab-home")
    notebooks = tmp_path_factory.mktemp("notebooks")
    write_notebook(notebooks / "guard.ipynb", [BENIGN, BLOCKED, WARN_CANCEL, WARN_RUN])
    write_notebook(notebooks / "nb7.ipynb", [BENIGN, NB7_BLOCKED, NB7_WARN])
    policy = home / "policy.yaml"
    shutil.copy(HERE / "policy.yaml", policy)
    server = start_lab(home, notebooks, ["--policy", str(policy), "--notebook-dir", "."])
    set_page_config(server, {EXTENSION: True})  # a client without the extension
    try:
        yield server
    finally:
        server.stop()


def test_lab_block_warn_faq_strikes(lab: Lab, context: Any, artifacts: Path) -> None:
    page = context.new_page()
    nb = NotebookPage(page, artifacts, "lab")
    nb.open(lab.url("lab/tree/guard.ipynb"))

    # a benign cell runs and its output appears
    nb.run_cell(0)
    nb.wait_output(0, "benign 42")
    nb.shot("1-benign")

    # a prohibited cell: the standard warning, and no line of it ran
    nb.run_cell(1)
    warning = nb.wait_output(1, STANDARD_WARNING)
    assert "This code was not run" in warning
    assert "Running forbidden tools" in warning
    assert '"<b>bold</b>"' in warning or "<b>bold</b>" in warning  # evidence shown as text
    assert nb.output_locator(1).locator("code b").count() == 0  # ... not as markup
    nb.shot("2-blocked")
    assert not (lab.notebook_dir / "block_ran.txt").exists()

    # a warn cell: the warning and the consent prompt; Cancel counts nothing
    strikes = lab.api("colab-guard/api/strikes/me")["strikes"]
    nb.run_cell(2)
    nb.wait_output(2, STANDARD_WARNING)
    assert "Noisy modules: Imports the wave module. (line 2)" in nb.output_text(2)  # why
    nb.answer_stdin(2, "cancel", shot="3-warn-prompt")
    nb.wait_idle()
    nb.shot("4-warn-cancelled")
    assert "cancel-cell ran" not in nb.output_text(2)
    assert not (lab.notebook_dir / "warn_cancel_ran.txt").exists()
    assert page.locator(".jp-Dialog").count() == 0  # no extension, no dialog
    assert lab.api("colab-guard/api/strikes/me")["strikes"] == strikes

    # ... and Still run
    nb.run_cell(3)
    nb.wait_output(3, STANDARD_WARNING)
    nb.answer_stdin(3, "run")
    nb.wait_output(3, "run-cell ran")
    nb.shot("5-warn-still-run")
    assert (lab.notebook_dir / "warn_run_ran.txt").read_text() == "ran"
    # the kernel's warning links to this server's FAQ too
    kernel_faq = nb.output_locator(3).get_by_role("link", name="Prohibited actions (FAQ)")
    assert kernel_faq.get_attribute("href").endswith("/colab-guard/faq")

    # the FAQ link of the warning opens the FAQ at the category
    with context.expect_page() as new:
        nb.output_locator(1).get_by_role("link", name="Running forbidden tools").click()
    faq = new.value
    faq.wait_for_load_state()
    assert faq.url.split("?")[0].endswith("/colab-guard/faq#forbidden_tools")
    assert faq.locator("section#forbidden_tools").is_visible()
    faq.screenshot(path=artifacts / "lab-6-faq.png")

    # the user's page shows the strikes
    me = context.new_page()
    me.goto(lab.url("colab-guard/"))
    body = me.locator("body").inner_text()
    me.screenshot(path=artifacts / "lab-7-strikes.png", full_page=True)
    status = lab.api("colab-guard/api/strikes/me")
    # the block and the warn cell answered "run"; the cancelled one counts nothing
    assert status["strikes"] == 2, status
    assert sorted(e["kind"] for e in status["events"] if e["rule"] == "wave-import") == [
        "consent",
        "declined",
        "warned",
        "warned",
    ], status["events"]
    assert "Strikes since the last review: 2." in body
    assert "forbidden-tool-shell" in body and "wave-import" in body


def test_notebook7_block_and_warn(lab: Lab, context: Any, artifacts: Path) -> None:
    """The same server serves Notebook 7 (``/notebooks/...``); it is guarded the same way."""
    if importlib.util.find_spec("notebook") is None:
        pytest.skip("Notebook 7 is not installed (pip install notebook)")
    before = lab.api("colab-guard/api/strikes/me")["strikes"]
    page = context.new_page()
    nb = NotebookPage(page, artifacts, "nb7")
    nb.open(lab.url("notebooks/nb7.ipynb"))
    nb.run_cell(0)
    nb.wait_output(0, "benign 42")
    nb.run_cell(1)
    assert "This code was not run" in nb.wait_output(1, STANDARD_WARNING)
    nb.run_cell(2)
    nb.wait_output(2, STANDARD_WARNING)
    nb.answer_stdin(2, "run")
    nb.wait_output(2, "nb7-warn ran")
    nb.shot("1-block-and-warn")
    assert not (lab.notebook_dir / "nb7_block_ran.txt").exists()
    assert lab.api("colab-guard/api/strikes/me")["strikes"] == before + 2


@pytest.fixture
def newcomer_lab(tmp_path: Path, chromium: Any) -> Iterator[Lab]:
    """``colab-guard lab`` run in a copy of the repository: no options at all."""
    repo = tmp_path / "repo"
    shutil.copytree(REPO / "samples", repo / "samples")
    server = start_lab(tmp_path / "home", repo, [], guard_config={})  # all defaults
    try:
        yield server
    finally:
        server.stop()


def test_default_policy_on_the_sample(newcomer_lab: Lab, context: Any, artifacts: Path) -> None:
    """What a newcomer sees: the default policy and the shipped samples, then the sample
    notebook's mining cell."""
    samples = newcomer_lab.notebook_dir / "samples"
    banner = newcomer_lab.output()
    assert f"Serving:     {samples}" in banner
    assert "Policy:      (shipped default)" in banner
    assert newcomer_lab.url("lab/tree/prohibited.ipynb") in banner
    page = context.new_page()
    nb = NotebookPage(page, artifacts, "sample")
    nb.open(newcomer_lab.url("lab/tree/prohibited.ipynb"))
    miner = nb.cell_with_text("xmrig -o")
    nb.run_cell(miner)
    text = nb.wait_output(miner, STANDARD_WARNING)
    nb.output_locator(miner).scroll_into_view_if_needed()
    nb.shot("1-miner-blocked")
    assert "This code was not run" in text
    assert "Mining cryptocurrency" in text
    assert "You have 1 strike. After 2 more, your use of Colab will be limited." in text
    assert "strike 0" not in text
    assert not list(samples.glob("xmrig*"))
