"""Pages and API of a real server with the extension (strikes recorded by real checks)."""

from __future__ import annotations

import json
import re

import pytest
from guard_helpers import post_report
from tornado.httpclient import HTTPClientError

BLOCKED = "!forbidden-tool --go"


async def test_strikes_per_user(guard, fetch_json):
    for _ in range(2):
        assert guard.check_execute(user_obj="alice", kernel_id="k1", code=BLOCKED).refuse
    assert guard.check_execute(user_obj="bob", kernel_id="k2", code=BLOCKED).refuse
    assert not guard.check_execute(user_obj="bob", kernel_id="k2", code="print(1)").refuse

    alice = await fetch_json("colab-guard", "api", "strikes", "me", user="alice")
    bob = await fetch_json("colab-guard", "api", "strikes", "me", user="bob")
    assert (alice["user"], alice["strikes"], alice["level"]) == ("alice", 2, "warning")
    assert (bob["user"], bob["strikes"], bob["level"]) == ("bob", 1, "warning")
    assert {e["rule"] for e in alice["events"]} == {"forbidden-tool-shell"}
    assert all(e["user"] == "alice" for e in alice["events"])


async def test_non_admin_gets_403_and_cannot_see_others(guard, jp_fetch, fetch_json, auth):
    guard.check_execute(user_obj="bob", kernel_id="k", code=BLOCKED)
    admin_urls = [
        ("GET", ("colab-guard", "api", "admin", "users")),
        ("GET", ("colab-guard", "api", "admin", "users", "bob", "events")),
        ("POST", ("colab-guard", "api", "admin", "users", "bob", "reset")),
        ("GET", ("colab-guard", "api", "admin", "appeals")),
        ("GET", ("colab-guard", "api", "admin", "exceptions")),
        ("POST", ("colab-guard", "api", "admin", "exceptions")),
    ]
    for method, parts in admin_urls:
        with pytest.raises(HTTPClientError) as err:
            await jp_fetch(
                *parts,
                method=method,
                headers=auth("alice"),
                body="{}" if method == "POST" else None,
            )
        assert err.value.code == 403, parts
    # the user endpoint takes no user argument: alice only ever sees alice
    me = await fetch_json("colab-guard", "api", "strikes", "me", user="alice")
    assert me["user"] == "alice" and me["strikes"] == 0 and me["events"] == []
    page = await jp_fetch("colab-guard/", headers=auth("alice"))
    assert b"forbidden-tool" not in page.body
    # unauthenticated: no access at all
    with pytest.raises(HTTPClientError) as err:
        await jp_fetch("colab-guard", "api", "strikes", "me", headers={"Authorization": "x"})
    assert err.value.code == 403


async def test_admin_api(guard, fetch_json):
    guard.check_execute(user_obj="bob", kernel_id="k", code=BLOCKED)
    users = await fetch_json("colab-guard", "api", "admin", "users", user="root")
    assert [(u["user"], u["strikes"]) for u in users["users"]] == [("bob", 1)]
    evs = await fetch_json("colab-guard", "api", "admin", "users", "bob", "events", user="root")
    assert evs["events"][0]["cell_text"] == BLOCKED

    # exception: bob may run the forbidden tool
    x = await fetch_json(
        "colab-guard",
        "api",
        "admin",
        "exceptions",
        user="root",
        method="POST",
        body={"user": "bob", "category": "forbidden_tools", "reason": "course"},
    )
    assert not guard.check_execute(user_obj="bob", kernel_id="k", code=BLOCKED).refuse
    assert guard.check_execute(user_obj="alice", kernel_id="k", code=BLOCKED).refuse
    await fetch_json(
        "colab-guard", "api", "admin", "exceptions", str(x["id"]), user="root", method="DELETE"
    )
    assert guard.check_execute(user_obj="bob", kernel_id="k", code=BLOCKED).refuse

    st = await fetch_json(
        "colab-guard", "api", "admin", "users", "bob", "reset", user="root", method="POST"
    )
    assert (st["strikes"], st["level"]) == (0, "none")


async def test_appeals(guard, jp_fetch, fetch_json, auth):
    guard.check_execute(user_obj="alice", kernel_id="k", code=BLOCKED)
    ev = (await fetch_json("colab-guard", "api", "strikes", "me", user="alice"))["events"][0]
    made = await fetch_json(
        "colab-guard",
        "api",
        "appeals",
        user="alice",
        method="POST",
        body={"message": "It was <b>my own</b> tool", "event_id": ev["id"]},
    )
    assert made["status"] == "open"
    # an event of another user cannot be appealed
    with pytest.raises(HTTPClientError) as err:
        await jp_fetch(
            "colab-guard",
            "api",
            "appeals",
            method="POST",
            headers=auth("bob"),
            body=json.dumps({"message": "x", "event_id": ev["id"]}),
        )
    assert err.value.code == 400
    appeals = await fetch_json("colab-guard", "api", "admin", "appeals", user="root")
    assert [(a["user"], a["message"]) for a in appeals["appeals"]] == [
        ("alice", "It was <b>my own</b> tool")
    ]


async def test_appeals_are_rate_limited_per_user_and_clipped(jp_fetch, fetch_json, auth):
    from jupyter_colab_guard.server.handlers import APPEALS_PER_HOUR, MAX_APPEAL

    async def appeal(user: str, message: str) -> int:
        try:
            r = await jp_fetch(
                "colab-guard", "api", "appeals", method="POST", headers=auth(user),
                body=json.dumps({"message": message}),
            )  # fmt: skip
        except HTTPClientError as err:
            return err.code
        return r.code

    codes = [await appeal("alice", "x" * (MAX_APPEAL + 100)) for _ in range(APPEALS_PER_HOUR)]
    assert codes == [201] * APPEALS_PER_HOUR
    assert await appeal("alice", "one more") == 429  # a flood of appeals is refused
    assert await appeal("bob", "mine") == 201  # another user's limit is untouched
    assert await appeal("bob", "   ") == 400  # an empty appeal says nothing
    stored = (await fetch_json("colab-guard", "api", "admin", "appeals", user="root"))["appeals"]
    mine = [a for a in stored if a["user"] == "alice"]
    assert len(mine) == APPEALS_PER_HOUR
    assert {len(a["message"]) for a in mine} == {MAX_APPEAL}


async def test_faq_one_anchor_per_category(jp_fetch, auth):
    r = await jp_fetch("colab-guard", "faq", headers=auth("alice"))
    body = r.body.decode()
    assert r.headers["Content-Type"].startswith("text/html")
    assert re.findall(r"<section id='([a-z_]+)'>", body) == ["forbidden_tools", "noisy"]
    assert "Runs the forbidden tool." in body


async def test_cell_text_is_escaped(guard, jp_fetch, auth):
    code = "<script>alert('x')</script>\n!forbidden-tool"
    d = guard.check_execute(user_obj="alice", kernel_id="k", code=code)
    assert d.refuse
    guard.show_evidence = True  # the operator lets users see their cells
    body = (await jp_fetch("colab-guard/", headers=auth("alice"))).body.decode()
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in body
    assert "<script>alert(" not in body


async def test_kernel_report_token_bound_to_kernel(guard, jp_fetch):
    token_a = guard.register_kernel("kernel-a", "alice")
    body = {
        "user": "bob",
        "kernel_id": "kernel-b",  # claims that must be ignored
        "events": [
            {
                "kind": "runtime_block",
                "category": "forbidden_tools",
                "rule": "forbidden-tool-shell",
                "action": "block",
                "detail": "forbidden-tool",
            },
            {"kind": "consent", "choice": "cancel", "category": "noisy", "rule": "noisy-import"},
            {"kind": "nonsense"},
        ],
    }
    out = await post_report(jp_fetch, f"Bearer {token_a}", body)
    assert (out["kernel_id"], out["recorded"], out["invalid"]) == ("kernel-a", 2, 1)
    assert guard.status("alice").strikes == 1
    assert guard.store.events("bob") == []
    for bad in ("Bearer nope", f"token {token_a}", ""):
        with pytest.raises(HTTPClientError) as err:
            await post_report(jp_fetch, bad, body)
        assert err.value.code == 403
    guard.forget_kernel("kernel-a")  # a shut down kernel's token is dead
    with pytest.raises(HTTPClientError) as err:
        await post_report(jp_fetch, f"Bearer {token_a}", body)
    assert err.value.code == 403


async def test_evidence_hidden_from_users_by_default(guard, jp_fetch, fetch_json, auth):
    assert guard.show_evidence is False  # the default
    code = "secret_marker = 1\n!forbidden-tool --hidden-arg"
    assert guard.check_execute(user_obj="alice", kernel_id="k", code=code).refuse
    me = await fetch_json("colab-guard", "api", "strikes", "me", user="alice")
    assert me["strikes"] == 1
    assert all("evidence" not in e and "cell_text" not in e for e in me["events"])
    page = (await jp_fetch("colab-guard/", headers=auth("alice"))).body.decode()
    assert "hidden-arg" not in page and "secret_marker" not in page
    # admins still see everything
    evs = await fetch_json("colab-guard", "api", "admin", "users", "alice", "events", user="root")
    assert evs["events"][0]["cell_text"] == code and "hidden-arg" in evs["events"][0]["evidence"]


async def test_terminals_are_refused(jp_fetch, auth):
    from tornado.httpclient import HTTPClientError

    with pytest.raises(HTTPClientError) as err:
        await jp_fetch("api", "terminals", method="POST", body="{}", headers=auth("alice"))
    assert err.value.code == 403
