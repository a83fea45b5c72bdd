"""A notebook open in JupyterLab 4 / Notebook 7, driven through Playwright."""

from __future__ import annotations

from pathlib import Path
from typing import Any

CELL = ".jp-Notebook .jp-Cell"
GUARD_DIALOG = ".jp-ColabGuard-dialog"  # the body of the guard's dialogs
CONSENT_DIALOG = ".jp-ColabGuard-consent"  # ... of its warn dialog (Cancel / Run anyway)
OUTPUT = ".jp-OutputArea-output"
STDIN = "input.jp-Stdin-input"
# a session whose kernel has a websocket connection (this page's) and is idle
KERNEL_CONNECTED = """async () => {
  const r = await fetch(location.origin + '/api/sessions', {credentials: 'same-origin'});
  if (!r.ok) return false;
  const sessions = await r.json();
  return sessions.some(s => s.kernel && s.kernel.connections > 0
                            && s.kernel.execution_state === 'idle');
}"""
RUN_BUTTON = ".jp-NotebookPanel-toolbar [data-command='notebook:run-cell-and-select-next']"
# the cell was sent: a prompt other than "[ ]:" (queued "[*]:" or a count), or outputs
STARTED = """el => {
  const prompt = el.querySelector('.jp-InputPrompt');
  return (prompt && prompt.textContent.trim() !== '[ ]:')
    || el.querySelectorAll('.jp-OutputArea-output').length > 0
    || document.querySelector('.jp-Dialog .jp-ColabGuard-dialog') !== null;
}"""


class NotebookPage:
    def __init__(self, page: Any, artifacts: Path, prefix: str) -> None:
        self.page = page
        self.artifacts = artifacts
        self.prefix = prefix

    def shot(self, name: str) -> None:
        self.page.screenshot(path=self.artifacts / f"{self.prefix}-{name}.png")

    def open(self, url: str) -> None:
        """Open the notebook and wait until its kernel is connected and idle. (The
        toolbar says "idle" before the kernel even starts, so ask the server too.)"""
        self.page.goto(url)
        self.page.locator(CELL).first.wait_for()
        self.page.wait_for_function(KERNEL_CONNECTED, polling=250)
        self.wait_idle()

    def wait_idle(self) -> None:
        """The kernel is connected and idle (the toolbar's kernel status)."""
        self.page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").wait_for()

    def cell(self, index: int) -> Any:
        return self.page.locator(CELL).nth(index)

    def cell_with_text(self, text: str) -> int:
        """Index of the first cell whose input contains ``text`` (JupyterLab renders the
        cells of a long notebook progressively: wait for it)."""
        cell = self.page.locator(CELL).filter(has=self.page.locator(".jp-InputArea", has_text=text))
        cell.first.wait_for()
        index = cell.first.evaluate(
            "(el, sel) => Array.from(document.querySelectorAll(sel)).indexOf(el)", CELL
        )
        return int(index)

    def run_cell(self, index: int) -> None:
        """Select the cell, then the toolbar's Run button (no keyboard focus involved).

        Retried once when nothing started: a click during JupyterLab's start-up can be
        lost, and a lost click ran nothing, so the retry never runs a cell twice."""
        cell = self.cell(index)
        self.close_guard_dialogs()
        for attempt in range(2):
            # a run clicked while JupyterLab asked for a kernel waits behind the question
            # and goes ahead once it is answered: then it has started, do not click again
            if self.accept_kernel_dialog() and attempt and self._started(cell):
                return
            cell.locator(".jp-InputPrompt").click()
            self.page.wait_for_function(
                "el => el.classList.contains('jp-mod-active')", arg=cell.element_handle()
            )
            self.page.locator(RUN_BUTTON).first.click()
            if self._started(cell):
                return
            print(f"run_cell({index}): nothing started, retrying")
            self.shot(f"retry-{index}")
            if attempt:
                raise TimeoutError(f"cell {index} did not start")

    def _started(self, cell: Any) -> bool:
        """Whether the cell was sent (see STARTED), waiting up to 20 s: a verdict can take a
        while on a loaded machine, and a retry that clicks while the guard's dialog opens
        is refused by the dialog."""
        try:
            self.page.wait_for_function(STARTED, arg=cell.element_handle(), timeout=20_000)
            return True
        except Exception:  # it may have started slowly (a refusal leaves the prompt "[ ]:")
            return bool(self.guard_dialog().count() or cell.locator(OUTPUT).count())

    def accept_kernel_dialog(self) -> bool:
        """JupyterLab sometimes asks "Select Kernel" when a click races its session start-up
        (seen on a slow CI machine): keep the preferred kernel, as a user would, and wait
        until it is connected again."""
        dialog = self.page.locator(".jp-Dialog", has_text="Select Kernel")
        if dialog.count() == 0:
            return False
        print("accepting JupyterLab's Select Kernel dialog")
        dialog.locator(".jp-mod-accept").first.click()
        dialog.first.wait_for(state="detached")
        self.page.wait_for_function(KERNEL_CONNECTED, polling=250)
        self.wait_idle()
        return True

    def output_locator(self, index: int) -> Any:
        return self.cell(index).locator(".jp-OutputArea")

    def output_text(self, index: int) -> str:
        return str(self.output_locator(index).inner_text())

    def wait_output(self, index: int, text: str) -> str:
        """Wait until the cell's output contains ``text``; return the output's text."""
        self.output_locator(index).locator(OUTPUT, has_text=text).first.wait_for()
        return self.output_text(index)

    def answer_stdin(self, index: int, answer: str, shot: str | None = None) -> None:
        box = self.cell(index).locator(STDIN)
        box.wait_for()
        if shot:
            self.shot(shot)
        box.fill(answer)
        box.press("Enter")

    # -- the guard's dialogs (labextension/) ------------------------------------------------

    def guard_dialog(self) -> Any:
        """The open dialog of the guard's JupyterLab extension (a jp-Dialog)."""
        return self.page.locator(".jp-Dialog", has=self.page.locator(GUARD_DIALOG))

    def close_guard_dialogs(self) -> None:
        """Click OK on the guard's dialogs still open, as a user does before running the
        next cell (the dialog is modal); a consent dialog is answered "Cancel"."""
        dialog = self.guard_dialog()
        while dialog.count():
            first = dialog.first
            consent = first.locator(CONSENT_DIALOG).count() > 0
            first.locator(".jp-mod-reject" if consent else ".jp-mod-accept").click()
            first.wait_for(state="detached")
