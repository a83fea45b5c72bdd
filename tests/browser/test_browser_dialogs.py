"""The guard's JupyterLab extension (``labextension/``, shipped in the wheel) in real
Chromium: the server's refusals and notices shown as JupyterLab's own Dialog
(``jp-Dialog``), the in-output warning kept, and no dialog when the extension is off."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser_helpers import REPO, STANDARD_WARNING, Lab, start_lab, write_notebook
from notebook_page import NotebookPage

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]

HERE = Path(__file__).parent
EXTENSION = "jupyter-colab-guard"
SERVICE = "TestLab"
MESSAGE = (
    f"You may be executing code that is disallowed, and this may restrict your ability to "
    f"use {SERVICE} in the future. Please note the prohibited actions specified in our FAQ."
)

BENIGN = 'print("benign", 6 * 7)'
BLOCKED = 'open("dialog_block_ran.txt", "w").write("ran")\n!forbidden-tool --go "<b>bold</b>"'
# the text shows nothing prohibited: the process watcher stops what run.sh starts
RUNTIME = "import subprocess, time\np = subprocess.Popen(['bash', 'run.sh'])\ntime.sleep(8)"
STAND_IN = "#!/bin/sh\nwhile true; do date >> marker; sleep 0.1; done\n"


def guard_config(**extra: Any) -> dict[str, Any]:
    return {"policy_poll_interval": 0, "show_evidence": True, "service_name": SERVICE, **extra}


def lab_with(
    factory: pytest.TempPathFactory, name: str, notebooks: dict[str, list[str]], **extra: Any
) -> Lab:
    home = factory.mktemp(f"{name}-home")
    folder = factory.mktemp(f"{name}-notebooks")
    for nb, sources in notebooks.items():
        write_notebook(folder / nb, sources)
    policy = home / "policy.yaml"
    shutil.copy(HERE / "policy.yaml", policy)
    args = ["--policy", str(policy), "--notebook-dir", "."]
    return start_lab(home, folder, args, guard_config=guard_config(**extra))


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory, chromium: Any) -> Iterator[Lab]:
    """Default escalation (restricted after 3 strikes): room for two blocked cells."""
    server = lab_with(
        tmp_path_factory,
        "dialogs",
        {"block.ipynb": [BENIGN, BLOCKED], "off.ipynb": [BLOCKED], "nb7.ipynb": [BLOCKED]},
    )
    try:
        yield server
    finally:
        server.stop()


def set_page_config(lab: Lab, disabled: dict[str, bool]) -> None:
    """JupyterLab reads labconfig/page_config.json on every page load."""
    page_config = lab.log.parent / "config" / "labconfig" / "page_config.json"  # start_lab's
    data = json.loads(page_config.read_text())
    data["disabledExtensions"] = {**data.get("disabledExtensions", {}), **disabled}
    page_config.write_text(json.dumps(data))


def urllib_get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as r:
        return str(r.read().decode())


def test_labextension_is_installed_and_served(lab: Lab) -> None:
    """The build is installed (``jupyter labextension list``) and the server hands it to
    the page (JupyterLab's page config lists it as a federated extension)."""
    out = subprocess.run(
        [sys.executable, "-m", "jupyter", "labextension", "list"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    listing = re.sub(r"\x1b\[[0-9;]*m", "", out.stdout + out.stderr)
    line = next((x for x in listing.splitlines() if EXTENSION in x.split()), "")
    assert re.search(rf"{EXTENSION} v\S+ enabled\s+OK", line), listing
    # the bundle the build produced, with the source's version, is what is installed
    built = json.loads((REPO / "jupyter_colab_guard" / "labextension" / "package.json").read_text())
    source = json.loads((REPO / "labextension" / "package.json").read_text())
    assert built["version"] == source["version"] and built["jupyterlab"]["_build"]["load"]
    page = urllib_get(lab.url("lab"))
    found = re.search(r'id="jupyter-config-data"[^>]*>(.*?)</script>', page, re.S)
    assert found, page[:500]
    config = json.loads(found.group(1))
    names = [e["name"] for e in config["federated_extensions"]]
    assert EXTENSION in names, names


def test_blocked_cell_shows_the_block_dialog(lab: Lab, context: Any, artifacts: Path) -> None:
    page = context.new_page()
    nb = NotebookPage(page, artifacts, "dialog-block")
    nb.open(lab.url("lab/tree/block.ipynb?reset"))
    nb.run_cell(0)
    nb.wait_output(0, "benign 42")
    assert nb.guard_dialog().count() == 0  # a benign cell: no dialog

    nb.run_cell(1)
    dialog = nb.guard_dialog()
    dialog.wait_for()
    text = dialog.inner_text()
    nb.shot("1-dialog")
    strikes = lab.api("colab-guard/api/strikes/me")["strikes"]
    assert MESSAGE in " ".join(text.split())
    assert "Running forbidden tools: Runs the forbidden tool. (line 2)" in text  # category, why
    assert "This code was not run." in text
    assert f"You have {strikes} strike" in text
    assert f"more strikes, your use of {SERVICE} will be limited" in text
    # the cell's text is shown as text, never as markup
    assert "<b>bold</b>" in text and dialog.locator("code b").count() == 0
    faq = dialog.get_by_role("link", name="Prohibited actions (FAQ)")
    assert faq.get_attribute("href").endswith("/colab-guard/faq")
    assert (
        dialog.get_by_role("link", name="Running forbidden tools")
        .get_attribute("href")
        .endswith("/colab-guard/faq#forbidden_tools")
    )
    appeal = dialog.get_by_role("link", name="File an appeal")
    assert "/colab-guard/" in appeal.get_attribute("href")
    assert dialog.locator("button").all_inner_texts() == ["OK"]
    # the in-output warning stays (for clients without the extension, and as a record)
    assert "This code was not run" in nb.wait_output(1, STANDARD_WARNING)
    assert not (lab.notebook_dir / "dialog_block_ran.txt").exists()

    dialog.locator(".jp-mod-accept").click()
    dialog.wait_for(state="detached")
    assert page.locator(".jp-Dialog").count() == 0
    nb.shot("2-closed")


def test_without_the_extension_only_the_output_warns(
    lab: Lab, context: Any, artifacts: Path
) -> None:
    """The control: the extension disabled in JupyterLab's page config, the same refusal
    gives the in-output warning and no dialog (so the dialog above is the extension's)."""
    set_page_config(lab, {EXTENSION: True})
    try:
        page = context.new_page()
        nb = NotebookPage(page, artifacts, "dialog-off")
        nb.open(lab.url("lab/tree/off.ipynb?reset"))
        nb.run_cell(0)
        assert "This code was not run" in nb.wait_output(0, STANDARD_WARNING)
        page.wait_for_timeout(1500)
        nb.shot("1-output-only")
        assert page.locator(".jp-Dialog").count() == 0
    finally:
        set_page_config(lab, {EXTENSION: False})


def test_notebook7_shows_the_block_dialog(lab: Lab, context: Any, artifacts: Path) -> None:
    """The same extension in Notebook 7 (``/notebooks/...``)."""
    page = context.new_page()
    nb = NotebookPage(page, artifacts, "dialog-nb7")
    nb.open(lab.url("notebooks/nb7.ipynb"))
    nb.run_cell(0)
    dialog = nb.guard_dialog()
    dialog.wait_for()
    nb.shot("1-dialog")
    assert MESSAGE in " ".join(dialog.inner_text().split())
    assert "Running forbidden tools: Runs the forbidden tool." in dialog.inner_text()
    dialog.locator(".jp-mod-accept").click()
    dialog.wait_for(state="detached")
    assert STANDARD_WARNING in nb.output_text(0)


@pytest.fixture
def runtime_lab(tmp_path_factory: pytest.TempPathFactory, chromium: Any) -> Iterator[Lab]:
    # the kernel-side guard off, as in tests/server/test_server_runtime.py: only the
    # server's process watcher stands between the cell and the stand-in
    server = lab_with(
        tmp_path_factory,
        "runtime",
        {"runtime.ipynb": [RUNTIME]},
        kernel_extension=False,
        watch_processes=True,
        watch_interval=0.2,
    )
    tool = server.notebook_dir / "forbidden-tool"
    tool.write_text(STAND_IN)
    tool.chmod(0o755)
    (server.notebook_dir / "run.sh").write_text("./forbidden-tool --go\n")
    try:
        yield server
    finally:
        server.stop()


def test_a_stopped_process_shows_the_runtime_dialog(
    runtime_lab: Lab, context: Any, artifacts: Path
) -> None:
    page = context.new_page()
    nb = NotebookPage(page, artifacts, "dialog-runtime")
    nb.open(runtime_lab.url("lab/tree/runtime.ipynb"))
    nb.run_cell(0)
    dialog = nb.guard_dialog()
    dialog.wait_for()
    text = dialog.inner_text()
    nb.shot("1-dialog")
    assert dialog.locator(".jp-Dialog-header").inner_text().strip() == "A process was stopped"
    assert "Running forbidden tools: Runs the forbidden tool." in text
    assert "A process this notebook started was stopped." in text
    assert re.search(r"Stopped: process \d+", text), text
    dialog.locator(".jp-mod-accept").click()
    dialog.wait_for(state="detached")
    events = runtime_lab.api("colab-guard/api/strikes/me")["events"]
    assert any(e["kind"] == "runtime" for e in events), events


@pytest.fixture
def restricted_lab(tmp_path_factory: pytest.TempPathFactory, chromium: Any) -> Iterator[Lab]:
    ladder = [{"level": "restricted", "strikes": 1, "cooldown": 3600}]
    server = lab_with(
        tmp_path_factory, "restricted", {"r.ipynb": [BLOCKED, BENIGN]}, escalation=ladder
    )
    try:
        yield server
    finally:
        server.stop()


def test_restricted_dialog_in_local_time(
    restricted_lab: Lab, chromium: Any, artifacts: Path
) -> None:
    """Restricted after one strike: a benign cell gets the restricted dialog, with the
    end of the restriction in the browser's time zone, not the disallowed-code warning."""
    ctx = chromium.new_context(viewport={"width": 1280, "height": 900}, timezone_id="Asia/Kolkata")
    ctx.set_default_timeout(30_000)
    try:
        page = ctx.new_page()
        nb = NotebookPage(page, artifacts, "dialog-restricted")
        nb.open(restricted_lab.url("lab/tree/r.ipynb"))
        nb.run_cell(0)
        nb.guard_dialog().wait_for()
        nb.run_cell(1)  # closes the block dialog first, as a user would
        dialog = nb.guard_dialog()
        dialog.wait_for()
        text = dialog.inner_text()
        nb.shot("1-dialog")
        until = restricted_lab.api("colab-guard/api/strikes/me")["until"]
        local = page.evaluate(
            "t => new Date(t * 1000).toLocaleString(undefined, "
            "{dateStyle: 'medium', timeStyle: 'short'})",
            until,
        )
        header = dialog.locator(".jp-Dialog-header").inner_text().strip()
        assert header == f"Your use of {SERVICE} is restricted"
        assert f"Every execution is refused until {local} (your local time)." in text
        assert "disallowed" not in text
        assert "UTC" not in text
    except BaseException:
        for i, pg in enumerate(ctx.pages):
            pg.screenshot(path=artifacts / f"FAILED-test_restricted_dialog_in_local_time-{i}.png")
        raise
    finally:
        ctx.close()


@pytest.fixture
def suspended_lab(tmp_path_factory: pytest.TempPathFactory, chromium: Any) -> Iterator[Lab]:
    server = lab_with(
        tmp_path_factory,
        "suspended",
        {"s.ipynb": [BLOCKED, BENIGN], "later.ipynb": [BENIGN]},
        escalation=[{"level": "suspended", "strikes": 1}],
        # the kernel stays, so its next cell is refused as "suspended" (by default the
        # suspension shuts it down, and JupyterLab's restart gets the kernel dialog)
        shutdown_on_suspend=False,
    )
    try:
        yield server
    finally:
        server.stop()


def test_suspended_and_a_refused_kernel(suspended_lab: Lab, context: Any, artifacts: Path) -> None:
    """Suspended after one strike: the next cell gets the suspended dialog, and a notebook
    opened then gets the guard's "kernel not started" dialog instead of JupyterLab's raw
    "Error Starting Kernel"."""
    page = context.new_page()
    nb = NotebookPage(page, artifacts, "dialog-suspended")
    nb.open(suspended_lab.url("lab/tree/s.ipynb"))
    nb.run_cell(0)
    nb.guard_dialog().wait_for()
    nb.run_cell(1)
    dialog = nb.guard_dialog()
    dialog.wait_for()
    nb.shot("1-dialog")
    header = dialog.locator(".jp-Dialog-header").inner_text().strip()
    assert header == f"Your use of {SERVICE} is suspended"
    assert "until an administrator reviews your account" in dialog.inner_text()
    nb.close_guard_dialogs()

    later = context.new_page()
    later.goto(suspended_lab.url("lab/tree/later.ipynb"))
    refused = later.locator(".jp-Dialog", has=later.locator(".jp-ColabGuard-dialog"))
    refused.wait_for()
    text = refused.inner_text()
    assert refused.locator(".jp-Dialog-header").inner_text().strip() == "Kernel not started"
    assert "The server did not start a kernel for this notebook" in text
    assert "is suspended" in text  # the server's own sentence
    # the user's standing, from the server, is added to the dialog
    refused.get_by_text("Your use is suspended").wait_for()
    later.screenshot(path=artifacts / "dialog-suspended-2-kernel-refused.png")
    # JupyterLab's raw error never shows (its "Select Kernel" may follow ours)
    assert later.locator(".jp-Dialog", has_text="Error Starting Kernel").count() == 0
    refused.locator(".jp-mod-accept").click()
    refused.wait_for(state="detached")
    later.wait_for_timeout(1000)
    assert later.locator(".jp-Dialog", has_text="Error Starting Kernel").count() == 0
