"""Fixtures for the browser tests: headless Chromium (Playwright driving the system's
Chromium) and guarded JupyterLab servers. Skipped when either is missing."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from browser_helpers import ARTIFACTS, CHROMIUM_ARGS, find_chromium

SETUP_HINT = "run .ci/setup-browser.sh"


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """A headless Chromium browser (Playwright, ``executable_path`` = system Chromium).

    Module scope, not session: Playwright's sync API runs an asyncio loop on the main
    thread while it is open, which breaks later asyncio-based tests of the session."""
    if importlib.util.find_spec("playwright") is None:
        pytest.skip(f"browser tests need the Python package playwright ({SETUP_HINT})")
    if importlib.util.find_spec("jupyterlab") is None:
        pytest.skip(f"browser tests need JupyterLab ({SETUP_HINT})")
    path = find_chromium()
    if path is None:
        pytest.skip(
            "browser tests need Chromium: no chromium/google-chrome on PATH, or "
            f"$COLAB_GUARD_CHROMIUM is not a file ({SETUP_HINT})"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=path, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call":
        item.stash[FAILED] = report.failed
    return report


FAILED = pytest.StashKey[bool]()


@pytest.fixture
def context(request: pytest.FixtureRequest, chromium: Any, artifacts: Path) -> Iterator[Any]:
    """A fresh browser context; on failure every open page is saved as a screenshot."""
    ctx = chromium.new_context(viewport={"width": 1280, "height": 900})
    ctx.set_default_timeout(30_000)
    try:
        yield ctx
        if request.node.stash.get(FAILED, False):
            for i, page in enumerate(ctx.pages):
                page.screenshot(path=artifacts / f"FAILED-{request.node.name}-{i}.png")
    finally:
        ctx.close()


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
