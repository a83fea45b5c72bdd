"""The admin console (HTML under /colab-guard/admin) and appeal answers, on a real server:
authorization, XSRF, escaping, paging and search, reset, exception expiry, accept/reject."""

from __future__ import annotations

import asyncio
import json
import re
import time
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from guard_helpers import auth_header, cookie_header

from jupyter_colab_guard.server import events as E
from jupyter_colab_guard.server.render import fmt_time
from jupyter_colab_guard.store import StrikeEvent

BLOCKED = "!forbidden-tool --go"
HOSTILE = "<script>alert('x')</script><img src=x onerror=alert(1)>"


@pytest.fixture
def web(http_server_client: Any, jp_base_url: str) -> Any:
    """``await web(path, user=..., method=..., form=..., headers=...)``: the response,
    whatever its status (redirects are not followed)."""

    async def go(
        path: str,
        *,
        user: str | None = "root",
        method: str = "GET",
        form: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        body: str | None = None,
    ) -> Any:
        hdrs = dict(auth_header(user)) if user else {}
        hdrs.update(headers or {})
        if form is not None:
            body = urlencode(form)
            hdrs["Content-Type"] = "application/x-www-form-urlencoded"
        if method == "POST" and body is None:
            body = ""
        url = path if path.startswith("/") else jp_base_url + path  # "/...": a Location
        return await http_server_client.fetch(
            url, method=method, headers=hdrs, body=body,
            follow_redirects=False, raise_error=False,
        )  # fmt: skip

    return go


def strike(guard: Any, user: str, n: int = 1) -> None:
    for _ in range(n):
        assert guard.check_execute(user_obj=user, kernel_id="k", code=BLOCKED).refuse


def text(r: Any) -> str:
    return r.body.decode()


async def appeal(fetch_json: Any, user: str, message: str, event_id: int | None = None) -> int:
    body: dict[str, Any] = {"message": message}
    if event_id is not None:
        body["event_id"] = event_id
    made = await fetch_json("colab-guard", "api", "appeals", user=user, method="POST", body=body)
    return int(made["id"])


CONSOLE_GETS = [
    "colab-guard/admin",
    "colab-guard/admin/users/bob",
    "colab-guard/admin/appeals",
    "colab-guard/admin/exceptions",
]


async def test_non_admin_gets_403_on_every_console_page_and_action(guard, web, fetch_json):
    strike(guard, "bob", 2)
    aid = await appeal(fetch_json, "bob", "mine")
    xid = guard.store.grant_exception("bob", "root", "noisy", None, "course")
    for path in CONSOLE_GETS:
        r = await web(path, user="alice")
        assert r.code == 403, path
        assert "text/html" in r.headers["Content-Type"]
        assert "Only TestLab administrators may use this page." in text(r)
    actions = [
        ("colab-guard/admin/users/bob/reset", {}),
        ("colab-guard/admin/exceptions", {"user": "alice", "category": "forbidden_tools"}),
        (f"colab-guard/admin/exceptions/{xid}/revoke", {}),
        (f"colab-guard/admin/appeals/{aid}/accept", {"note": "x"}),
        (f"colab-guard/admin/appeals/{aid}/reject", {"note": "x"}),
    ]
    for path, form in actions:
        r = await web(path, user="alice", method="POST", form=form)
        assert r.code == 403, path
    for verdict in ("accept", "reject"):  # the JSON API too
        r = await web(f"colab-guard/api/admin/appeals/{aid}/{verdict}", user="alice",
                      method="POST", body="{}")  # fmt: skip
        assert r.code == 403
    # nothing changed
    assert guard.status("bob").strikes == 2
    assert guard.store.get_appeal(aid)["status"] == "open"
    assert [x["id"] for x in guard.store.exceptions(user="bob")] == [xid]
    assert guard.store.exceptions(user="alice") == []
    # without a login: GETs go to the login page, POSTs are refused
    r = await web("colab-guard/admin", user=None)
    assert r.code == 302 and "login" in r.headers["Location"]
    r = await web("colab-guard/admin/users/bob/reset", user=None, method="POST", form={})
    assert r.code == 403
    assert guard.status("bob").strikes == 2
    # control: the admin sees the page
    assert (await web("colab-guard/admin", user="root")).code == 200


async def test_forms_need_their_xsrf_token(guard, web):
    strike(guard, "bob", 2)
    # a browser-like session (cookie login): a form posted without _xsrf is refused
    r = await web("colab-guard/admin/users/bob/reset", user=None, method="POST", form={},
                  headers=cookie_header("root"))  # fmt: skip
    assert r.code == 403 and guard.status("bob").strikes == 2
    # a wrong token too
    wrong = cookie_header("root", "2|11|11|11")
    r = await web("colab-guard/admin/users/bob/reset", user=None, method="POST",
                  form={"_xsrf": "2|00|00|00"}, headers=wrong)  # fmt: skip
    assert r.code == 403 and guard.status("bob").strikes == 2
    # the page's own form token with the session's _xsrf cookie: done, and redirected
    page = await web("colab-guard/admin/users/bob", user=None, headers=cookie_header("root"))
    assert page.code == 200
    cookie = re.search(r"_xsrf=([^;]+)", page.headers["Set-Cookie"]).group(1)
    token = re.search(r"name='_xsrf' value='([^']+)'", text(page)).group(1)
    r = await web("colab-guard/admin/users/bob/reset", user=None, method="POST",
                  form={"_xsrf": token}, headers=cookie_header("root", cookie))  # fmt: skip
    assert r.code == 303
    assert r.headers["Location"].endswith("/colab-guard/admin/users/bob?done=reset")
    assert guard.status("bob").strikes == 0


async def test_hostile_names_notes_and_messages_are_escaped(guard, web, fetch_json):
    bad_user = HOSTILE + "'\"&"
    strike(guard, bad_user)
    aid = guard.store.add_appeal(bad_user, "please " + HOSTILE)
    guard.store.grant_exception(bad_user, "root", "noisy", None, "because " + HOSTILE)
    user_url = "colab-guard/admin/users/" + quote(bad_user, safe="")
    pages = ["colab-guard/admin", "colab-guard/admin/appeals", "colab-guard/admin/exceptions",
             user_url]  # fmt: skip
    for path in pages:
        r = await web(path)
        assert r.code == 200, path
        body = text(r)
        assert "<script>" not in body and "<img" not in body, path
        assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in body, path
    # the admin's note reaches the user escaped too
    await fetch_json("colab-guard", "api", "admin", "appeals", str(aid), "reject", user="root",
                     method="POST", body={"note": "no: " + HOSTILE})  # fmt: skip
    guard.store.add_appeal("alice", "mine")
    alice_aid = guard.store.appeals("alice")[0]["id"]
    await web(f"colab-guard/admin/appeals/{alice_aid}/reject", method="POST",
              form={"note": HOSTILE})  # fmt: skip
    mine = text(await web("colab-guard/", user="alice"))
    assert "<img" not in mine and "&lt;img src=x onerror=alert(1)&gt;" in mine
    # an error page does not echo markup either
    r = await web("colab-guard/admin/exceptions", method="POST",
                  form={"user": "bob", "category": "<b>nope</b>"})  # fmt: skip
    assert r.code == 400 and "<b>nope" not in text(r) and "&lt;b&gt;nope" in text(r)


async def test_users_are_paged_and_searchable(guard, web):
    from jupyter_colab_guard.server.console_handlers import PAGE_SIZE

    users = [f"pupil{i:03d}" for i in range(120)] + ["a_b", "axb", "Mixed.Case"]
    guard.store.record_many([StrikeEvent(user=u, kind="finding", strike=True) for u in users])

    def names(body: str) -> list[str]:
        return re.findall(r"<tr><td><a href='[^']*'>([^<]+)</a>", body)

    first = text(await web("colab-guard/admin"))
    assert names(first) == sorted(users)[:PAGE_SIZE]
    assert f"Page 1 of 3 ({len(users)} users)" in first and "page=2" in first
    last = text(await web("colab-guard/admin?page=3"))
    assert names(last) == sorted(users)[2 * PAGE_SIZE :]
    assert "page=2" in last and "page=4" not in last
    found = text(await web("colab-guard/admin?q=PUPIL01"))  # case-insensitive
    assert names(found) == [f"pupil{i:03d}" for i in range(10, 20)]
    assert "(10 users)" in found and "value='PUPIL01'" in found
    assert names(text(await web("colab-guard/admin?q=a_b"))) == ["a_b"]  # _ is literal
    assert names(text(await web("colab-guard/admin?q=%25"))) == []  # so is %
    assert names(text(await web("colab-guard/admin?q=mixed"))) == ["Mixed.Case"]
    assert (await web("colab-guard/admin?page=x")).code == 400


async def test_reset_from_the_console_emits_the_admin_event(guard, web, jp_serverapp):
    seen: list[dict[str, Any]] = []

    async def listener(logger: Any, schema_id: str, data: dict[str, Any]) -> None:
        seen.append(dict(data))

    jp_serverapp.event_logger.add_listener(schema_id=E.ADMIN, listener=listener)
    strike(guard, "bob", 3)
    assert guard.status("bob").strikes == 3
    page = text(await web("colab-guard/admin/users/bob"))
    assert "Strikes since the last reset: <b>3</b>" in page
    r = await web("colab-guard/admin/users/bob/reset", method="POST", form={})
    assert r.code == 303 and guard.status("bob").strikes == 0
    page = text(await web(r.headers["Location"]))
    assert "The user&#x27;s strikes were reset." in page
    assert "Strikes since the last reset: <b>0</b>" in page
    for _ in range(50):
        if seen:
            break
        await asyncio.sleep(0.05)
    assert seen == [{"admin": "root", "action": "reset", "user": "bob", "detail": None}]


async def test_exceptions_with_expiry(guard, web, fetch_json):
    strike(guard, "bob")
    # a console grant with a date: valid through that day (UTC), listed with it
    tomorrow = time.strftime("%Y-%m-%d", time.gmtime(time.time() + 86400))
    r = await web("colab-guard/admin/exceptions", method="POST",
                  form={"user": "bob", "category": "noisy", "reason": "course",
                        "expires": tomorrow})  # fmt: skip
    assert r.code == 303 and r.headers["Location"].endswith("/admin/users/bob?done=granted")
    (x,) = guard.store.exceptions(user="bob")
    assert x["category"] == "noisy" and x["expires_at"] > time.time() + 86400
    listed = text(await web("colab-guard/admin/exceptions"))
    assert f"<td>{fmt_time(x['expires_at'])}</td>" in listed and " 00:00 UTC" in listed
    # a date in the past is refused
    r = await web("colab-guard/admin/exceptions", method="POST",
                  form={"user": "bob", "category": "noisy", "expires": "2001-01-01"})  # fmt: skip
    assert r.code == 400 and "already passed" in text(r)
    # revoke from the console
    r = await web(f"colab-guard/admin/exceptions/{x['id']}/revoke", method="POST", form={})
    assert r.code == 303 and guard.store.exceptions(user="bob") == []
    assert (await web(f"colab-guard/admin/exceptions/{x['id']}/revoke", method="POST",
                      form={})).code == 404  # fmt: skip

    # an exception that expires in 2 s (JSON API): it applies, then it does not
    assert guard.check_execute(user_obj="bob", kernel_id="k", code=BLOCKED).refuse  # control
    made = await fetch_json("colab-guard", "api", "admin", "exceptions", user="root",
                            method="POST", body={"user": "bob", "category": "forbidden_tools",
                                                 "expires_at": time.time() + 2})  # fmt: skip
    assert not guard.check_execute(user_obj="bob", kernel_id="k", code=BLOCKED).refuse
    await asyncio.sleep(2.2)
    assert guard.check_execute(user_obj="bob", kernel_id="k", code=BLOCKED).refuse
    assert guard.store.exceptions(user="bob") == []
    assert [x["id"] for x in guard.store.exceptions(user="bob", active=False)][-1] == made["id"]


async def test_accept_and_reject_appeals(guard, web, fetch_json):
    strike(guard, "alice", 3)
    me = await fetch_json("colab-guard", "api", "strikes", "me", user="alice")
    assert me["strikes"] == 3
    first = me["events"][-1]["id"]  # the oldest strike
    a1 = await appeal(fetch_json, "alice", "That was my course's tool", first)
    a2 = await appeal(fetch_json, "alice", "And that one too")
    a3 = await appeal(fetch_json, "alice", "The third")

    queue = text(await web("colab-guard/admin/appeals"))
    assert "That was my course&#x27;s tool" in queue and "Appeals (3 open)" in queue
    # accept in the console: the appealed strike stops counting, the event stays
    r = await web(f"colab-guard/admin/appeals/{a1}/accept", method="POST",
                  form={"note": "Granted for the course"})  # fmt: skip
    assert r.code == 303 and r.headers["Location"].endswith("/admin/appeals?done=accepted")
    assert guard.status("alice").strikes == 2
    ev = guard.store.get_event(first)
    assert ev["voided_by"] == "root" and ev["voided_at"] and ev["strike"]
    assert len(guard.store.events("alice")) == 3
    # reject: nothing removed
    r = await web(f"colab-guard/admin/appeals/{a2}/reject", method="POST",
                  form={"note": "The log shows the miner"})  # fmt: skip
    assert r.code == 303 and guard.status("alice").strikes == 2
    # an answered appeal cannot be answered again
    r = await web(f"colab-guard/admin/appeals/{a2}/accept", method="POST", form={})
    assert r.code == 404 and guard.status("alice").strikes == 2
    # the JSON API: accepting an appeal without an event removes the latest strike
    out = await fetch_json("colab-guard", "api", "admin", "appeals", str(a3), "accept",
                           user="root", method="POST", body={"note": "ok"})  # fmt: skip
    assert out["status"] == "accepted" and out["voided_event"] == me["events"][0]["id"]
    assert guard.status("alice").strikes == 1

    # the user is told: status and note on their page and in their JSON
    page = text(await web("colab-guard/", user="alice"))
    assert "Strikes since the last review: <b>1</b>" in page
    assert "Granted for the course" in page and "The log shows the miner" in page
    assert page.count("class='status-accepted'") == 2
    assert page.count("class='status-rejected'") == 1
    assert "[strike removed on appeal]" in page
    mine = await fetch_json("colab-guard", "api", "strikes", "me", user="alice")
    answers = {a["id"]: (a["status"], a["note"]) for a in mine["appeals"]}
    assert answers == {
        a1: ("accepted", "Granted for the course"),
        a2: ("rejected", "The log shows the miner"),
        a3: ("accepted", "ok"),
    }
    # the queue's tabs
    assert "No appeals." in text(await web("colab-guard/admin/appeals"))
    assert text(await web("colab-guard/admin/appeals?status=all")).count("<tr id='appeal-") == 3
    assert (await web("colab-guard/admin/appeals?status=bogus")).code == 400


async def test_faq_shows_each_rule_with_its_own_action_and_the_service_name(web):
    body = text(await web("colab-guard/faq", user="alice"))
    assert "<title>TestLab: prohibited actions</title>" in body
    assert "Prohibited actions on TestLab" in body and "Colab" not in body
    block = re.search(r"<tr id='rule-forbidden-tool-shell'>.*?</tr>", body).group(0)
    warn = re.search(r"<tr id='rule-noisy-import'>.*?</tr>", body).group(0)
    assert "action-block" in block and "counts as a strike" in block
    assert "action-warn" in warn and "warned first" in warn
    for path in ("colab-guard/", "colab-guard/admin", "colab-guard/admin/appeals"):
        page = text(await web(path))
        assert "<title>TestLab: " in page and "Colab" not in page, path


async def test_json_exceptions_api_keeps_its_checks(fetch_json, web):
    for body in ({"user": "", "category": "noisy"}, {"user": "bob"},
                 {"user": "bob", "category": "nope"}, {"user": "bob", "rule": 5},
                 {"user": "bob", "category": "noisy", "expires_at": "yesterday"}):  # fmt: skip
        r = await web("colab-guard/api/admin/exceptions", method="POST", body=json.dumps(body))
        assert r.code == 400, body


async def test_an_expired_exception_stops_applying_in_the_kernel(
    kernel_client, fetch_json, tmp_path
):
    from guard_helpers import V1, server_refusal

    kc = await kernel_client("bob", V1)
    # a command only the kernel's runtime check sees (read from a file at run time)
    name = tmp_path / "name.txt"
    name.write_text("forbidden-tool")
    cell = f"import subprocess\nsubprocess.run([open({str(name)!r}).read()])"
    res = await kc.execute(cell)
    assert server_refusal(res) is None and res["reply"]["ename"] == "ProhibitedCodeError"
    grant = {"user": "bob", "rule": "forbidden-tool-shell", "expires_at": time.time() + 3}
    await fetch_json("colab-guard", "api", "admin", "exceptions", user="root", body=grant,
                     method="POST")  # fmt: skip
    res = await kc.execute(cell)  # excepted: the program is looked for (and is not there)
    assert res["reply"]["ename"] == "FileNotFoundError", res["reply"]
    await asyncio.sleep(3.2)
    # expired: the kernel's guard stops it again, with nothing rewritten for it
    res = await kc.execute(cell)
    assert res["reply"]["ename"] == "ProhibitedCodeError", res["reply"]
