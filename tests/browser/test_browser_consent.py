"""The consent dialog of a ``warn`` cell (issue 10) in real Chromium, in JupyterLab 4 and
Notebook 7: "Cancel" runs nothing and counts nothing, "Run anyway" runs the cell and
counts one strike; a ``block`` cell still gets the block dialog. The stand-in payload
writes a marker file, so whether the cell ran is seen on disk."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser_helpers import STANDARD_WARNING, TEST_LADDER, Lab
from notebook_page import CONSENT_DIALOG, NotebookPage
from test_browser_dialogs import MESSAGE, lab_with

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]


def warn_cell(marker: str) -> str:
    # line 1: the stand-in payload; line 2: what the warn rule matches
    return f'open("{marker}", "w").write("ran")\nimport wave\nprint("{marker} ran")'


BLOCKED = 'open("consent_block_ran.txt", "w").write("ran")\n!forbidden-tool --go'


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory, chromium: Any) -> Iterator[Lab]:
    notebooks = {
        name: [warn_cell(f"{prefix}_cancel.txt"), warn_cell(f"{prefix}_run.txt"), BLOCKED]
        for name, prefix in (("consent.ipynb", "lab"), ("consent7.ipynb", "nb7"))
    }
    server = lab_with(tmp_path_factory, "consent", notebooks, escalation=TEST_LADDER)
    try:
        yield server
    finally:
        server.stop()


def me(lab: Lab) -> dict[str, Any]:
    return lab.api("colab-guard/api/strikes/me")  # type: ignore[no-any-return]


def new_events(before: dict[str, Any], after: dict[str, Any]) -> list[tuple[str, bool]]:
    """(kind, strike) of the events recorded between two reads, sorted."""
    seen = {e["id"] for e in before["events"]}
    return sorted((e["kind"], bool(e["strike"])) for e in after["events"] if e["id"] not in seen)


def consent_dialog(nb: NotebookPage) -> Any:
    dialog = nb.page.locator(".jp-Dialog", has=nb.page.locator(CONSENT_DIALOG))
    dialog.wait_for()
    return dialog


def check_consent_flow(lab: Lab, nb: NotebookPage, prefix: str) -> None:
    """Cell 0: Cancel; cell 1: Run anyway; cell 2: a blocked cell."""
    folder = lab.notebook_dir
    before = me(lab)

    # Cancel: nothing runs, nothing counts
    nb.run_cell(0)
    dialog = consent_dialog(nb)
    text = dialog.inner_text()
    nb.shot("1-warn-dialog")
    assert dialog.locator(".jp-Dialog-header").inner_text().strip() == "Warning"
    assert MESSAGE in " ".join(text.split())
    assert "Noisy modules: Imports the wave module. (line 2)" in text  # category, the rule's why
    assert "Running it anyway counts as a strike" in text
    assert dialog.locator(".jp-Dialog-footer button").all_inner_texts() == [
        "Cancel",
        "Run anyway",
    ]
    assert "ran" not in nb.output_text(0)  # held: the cell has not run
    dialog.get_by_role("button", name="Cancel").click()
    dialog.wait_for(state="detached")
    nb.wait_output(0, "Cancelled")
    nb.wait_idle()
    nb.shot("2-cancelled")
    assert not (folder / f"{prefix}_cancel.txt").exists()
    after_cancel = me(lab)
    assert after_cancel["strikes"] == before["strikes"], after_cancel
    new = new_events(before, after_cancel)
    assert new == [("declined", False), ("warned", False)], new

    # Run anyway: it runs, one strike
    nb.run_cell(1)
    dialog = consent_dialog(nb)
    nb.shot("3-warn-dialog-again")
    dialog.get_by_role("button", name="Run anyway").click()
    dialog.wait_for(state="detached")
    nb.wait_output(1, f"{prefix}_run.txt ran")
    assert (folder / f"{prefix}_run.txt").read_text() == "ran"
    nb.shot("4-run-anyway")
    after_run = me(lab)
    assert after_run["strikes"] == before["strikes"] + 1, after_run
    new = new_events(after_cancel, after_run)
    assert new == [("consent", True), ("warned", False)], new
    # the warning stays in the output as the record
    assert STANDARD_WARNING in nb.output_text(1)

    # a blocked cell still gets the block dialog (OK only) and counts
    nb.run_cell(2)
    block = nb.guard_dialog()
    block.wait_for()
    nb.shot("5-block-dialog")
    assert "Running forbidden tools: Runs the forbidden tool. (line 2)" in block.inner_text()
    assert block.locator(".jp-Dialog-footer button").all_inner_texts() == ["OK"]
    block.locator(".jp-mod-accept").click()
    block.wait_for(state="detached")
    assert not (folder / "consent_block_ran.txt").exists()
    assert me(lab)["strikes"] == before["strikes"] + 2


def test_jupyterlab_consent_dialog(lab: Lab, context: Any, artifacts: Path) -> None:
    nb = NotebookPage(context.new_page(), artifacts, "consent-lab")
    nb.open(lab.url("lab/tree/consent.ipynb"))
    check_consent_flow(lab, nb, "lab")


def test_notebook7_consent_dialog(lab: Lab, context: Any, artifacts: Path) -> None:
    if importlib.util.find_spec("notebook") is None:
        pytest.skip("Notebook 7 is not installed (pip install notebook)")
    nb = NotebookPage(context.new_page(), artifacts, "consent-nb7")
    nb.open(lab.url("notebooks/consent7.ipynb"))
    check_consent_flow(lab, nb, "nb7")
