"""The admin console in real Chromium: on a single-user ``colab-guard lab`` the owner is
an admin; they appeal a strike on their page, accept it in the console (real forms with
their XSRF tokens, POST-redirect-GET), and their page shows the answer and one strike
less. Screenshots of each page go to $COLAB_GUARD_SCREENSHOTS (default
artifacts/screenshots/)."""

from __future__ import annotations

import getpass
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser_helpers import REPO, Lab, start_lab

from jupyter_colab_guard.store import StrikeEvent, StrikeStore

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]

HERE = Path(__file__).parent
HOSTILE_USER = "<b>mallory</b><script>document.title='owned'</script>"


@pytest.fixture
def shots() -> Path:
    folder = Path(os.environ.get("COLAB_GUARD_SCREENSHOTS") or REPO / "artifacts" / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def console_lab(tmp_path: Path, chromium: Any) -> Iterator[Lab]:
    """``colab-guard lab`` whose store already holds strikes: two of the owner's, one of
    another user and one of a user with a hostile name."""
    home, notebooks = tmp_path / "home", tmp_path / "notebooks"
    notebooks.mkdir()
    store = StrikeStore(f"sqlite:///{home}/data/colab_guard/strikes.sqlite")
    store.open()
    owner, t0 = getpass.getuser(), time.time() - 600
    rows = [(owner, "forbidden_tools", "forbidden-tool-shell", t0),
            (owner, "noisy", "wave-import", t0 + 60),
            ("student-b", "forbidden_tools", "forbidden-tool-shell", t0),
            (HOSTILE_USER, "forbidden_tools", "forbidden-tool-shell", t0)]  # fmt: skip
    store.record_many([
        StrikeEvent(user=u, kind="finding", category=c, rule=r, action="block", strike=True,
                    message="Runs the forbidden tool.", ts=ts)
        for u, c, r, ts in rows
    ])  # fmt: skip
    store.close()
    policy = home / "policy.yaml"
    shutil.copy(HERE / "policy.yaml", policy)
    config = {"policy_poll_interval": 0, "service_name": "GPU Hub"}
    server = start_lab(home, notebooks, ["--policy", str(policy)], guard_config=config)
    try:
        yield server
    finally:
        server.stop()


def test_admin_accepts_an_appeal_and_the_user_sees_it(
    console_lab: Lab, context: Any, shots: Path
) -> None:
    lab = console_lab
    page = context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))

    def shot(name: str) -> None:
        page.screenshot(path=shots / f"console-{name}.png", full_page=True)

    # the user's page: two strikes; appeal the first one
    page.goto(lab.url("colab-guard/"))  # the token logs in: a cookie session from here on
    assert page.title() == "GPU Hub: your standing"
    body = page.locator("body").inner_text()
    assert "Strikes since the last review: 2." in body and "admin console" in body
    assert "Colab" not in body
    page.select_option("select[name=event_id]", index=2)  # the older strike
    page.fill("textarea[name=message]", "I was testing the <course> tool, sorry")
    page.click("text=Send appeal")
    page.locator("#my-appeals", has_text="waiting for review").wait_for()
    shot("1-user-appealed")

    # the console: users (the hostile name shown as text), then the owner's page
    page.click("text=admin console")
    page.locator("h1", has_text="Users").wait_for()
    users = page.locator("table").inner_text()
    assert HOSTILE_USER in users and "student-b" in users
    assert page.title() == "GPU Hub: admin: users"
    shot("2-users")
    page.fill("input[name=q]", "student")
    page.click("text=Search")
    assert page.locator("table tr").count() == 2  # the header and student-b
    page.click("text=student-b")
    page.locator("h1", has_text="User student-b").wait_for()
    # grant an exception with an expiry date (a real form with its _xsrf token)
    page.select_option("form.grant select[name=category]", "noisy")
    page.fill("form.grant input[name=reason]", "audio course")
    page.fill(
        "form.grant input[name=expires]",
        time.strftime("%Y-%m-%d", time.gmtime(time.time() + 7 * 86400)),
    )
    page.click("text=Grant exception")
    page.locator(".notice", has_text="The exception was granted.").wait_for()
    assert "audio course" in page.locator("table").first.inner_text()
    shot("3-user-detail")

    # the appeals queue: accept with a note
    page.click("nav >> text=Appeals")
    page.locator("h1", has_text="Appeals").wait_for()
    assert "I was testing the <course> tool, sorry" in page.locator("table").inner_text()
    shot("4-appeals-open")
    page.fill("textarea[name=note]", "Accepted: the course needs it.")
    page.click("text=Accept (remove the strike)")
    page.locator(".notice", has_text="The appeal was accepted").wait_for()
    assert "?done=accepted" in page.url
    page.click("text=all")
    page.locator(".answer", has_text="Accepted: the course needs it.").wait_for()
    shot("5-appeals-answered")
    page.click("nav >> text=Exceptions")
    page.locator("h1", has_text="Exceptions").wait_for()
    assert "student-b" in page.locator("table").inner_text()
    shot("6-exceptions")

    # the user's page: the answer, and one strike less
    page.click("nav >> text=My page")
    page.locator("#my-appeals", has_text="Accepted: the course needs it.").wait_for()
    body = page.locator("body").inner_text()
    assert "Strikes since the last review: 1." in body
    assert "[strike removed on appeal]" in body
    shot("7-user-answered")
    assert lab.api("colab-guard/api/strikes/me")["strikes"] == 1
    assert dialogs == [] and page.title() == "GPU Hub: your standing"  # no script ran

    # the FAQ: each rule with its own action, the operator's name
    page.click("text=FAQ")
    page.locator("section#noisy").wait_for()
    assert page.title() == "GPU Hub: prohibited actions"
    assert "warned first" in page.locator("#rule-wave-import").inner_text()
    assert "Not run" in page.locator("#rule-forbidden-tool-shell").inner_text()
    shot("8-faq")


def test_console_refuses_a_non_admin(tmp_path: Path, chromium: Any, context: Any,
                                     shots: Path) -> None:  # fmt: skip
    """owner_is_admin off: the owner is no admin; every console page is a 403 page."""
    config = {"policy_poll_interval": 0, "service_name": "GPU Hub", "owner_is_admin": False}
    (tmp_path / "nb").mkdir()
    lab = start_lab(tmp_path / "home", tmp_path / "nb", [], guard_config=config)
    try:
        page = context.new_page()
        for path in ("colab-guard/admin", "colab-guard/admin/appeals"):
            response = page.goto(lab.url(path))
            assert response.status == 403, path
            assert "Only GPU Hub administrators may use this page." in page.inner_text("body")
        assert page.title() == "GPU Hub: 403 Forbidden"
        page.screenshot(path=shots / "console-9-forbidden.png", full_page=True)
        page.goto(lab.url("colab-guard/"))
        assert "admin console" not in page.inner_text("body")
    finally:
        lab.stop()
