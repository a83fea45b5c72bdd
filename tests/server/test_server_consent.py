"""Consent to a ``warn`` cell (issue 10), with a real server, real kernels and real
websocket clients: the dialog round trip (held request, one-use token, POST
colab-guard/api/consent) and its hostile cases, and the kernel's text prompt followed on
the websocket for clients without the extension. A strike counts only when the cell runs.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from guard_helpers import V1, KernelClient, auth_header
from tornado.httpclient import HTTPClientError

from jupyter_colab_guard.kernel.consent import PROMPT

PROTOCOLS = [V1, "json"]


def warn_cell(marker: Path) -> str:
    """A harmless stand-in: writes a marker file; the warn rule matches ``import noisymod``."""
    return (
        f"open({str(marker)!r}, 'w').write('ran')\n"
        "try:\n    import noisymod\nexcept ImportError:\n    pass\n"
        "print('cell ran')"
    )


def request(kc: KernelClient, code: str, *, dialogs: bool = False, **extra: Any) -> dict[str, Any]:
    msg = kc.execute_msg(code)
    msg["content"]["allow_stdin"] = extra.pop("allow_stdin", False)
    guard: dict[str, Any] = {"dialogs": True} if dialogs else {}
    guard.update(extra)
    if guard:
        msg["metadata"] = {"colab_guard": guard}
    return msg


async def until(kc: KernelClient, mid: str, kinds: set[str], timeout: float = 60) -> list[dict]:
    """Messages of request ``mid`` up to and including the first of a type in ``kinds``."""
    got: list[dict] = []

    async def loop() -> None:
        while True:
            m = await kc.recv()
            if m.get("parent_header", {}).get("msg_id") != mid:
                continue
            got.append(m)
            if m["header"]["msg_type"] in kinds:
                return

    await asyncio.wait_for(loop(), timeout)
    return got


async def held_token(kc: KernelClient, msg: dict[str, Any]) -> tuple[str, list[dict]]:
    """Send a warn request from a dialog client: the server holds it and sends the
    warning with the token (in transient), and no reply."""
    await kc.send("shell", msg)
    got = await until(kc, msg["header"]["msg_id"], {"display_data", "execute_reply"})
    last = got[-1]
    assert last["header"]["msg_type"] == "display_data", got
    assert last["content"]["metadata"]["colab_guard"]["reason"] == "warn"
    dialog = last["content"]["metadata"]["colab_guard"]["dialog"]
    assert dialog["findings"][0]["reason"] == "Imports the noisy module."
    return last["content"]["transient"]["colab_guard_consent"]["token"], got


async def answer(jp_fetch: Any, user: str, token: str, choice: str) -> int:
    try:
        r = await jp_fetch(
            "colab-guard",
            "api",
            "consent",
            method="POST",
            body=json.dumps({"token": token, "choice": choice}),
            headers=auth_header(user),
        )
    except HTTPClientError as err:
        return int(err.code)
    return int(r.code)


async def reply_of(kc: KernelClient, msg: dict[str, Any]) -> dict[str, Any]:
    got = await until(kc, msg["header"]["msg_id"], {"execute_reply"})
    return got[-1]["content"]  # type: ignore[no-any-return]


async def no_reply_within(kc: KernelClient, msg: dict[str, Any], seconds: float) -> None:
    with pytest.raises(TimeoutError):
        await until(kc, msg["header"]["msg_id"], {"execute_reply"}, timeout=seconds)


async def events(fetch_json: Any, user: str) -> list[tuple[str, bool]]:
    me = await fetch_json("colab-guard", "api", "strikes", "me", user=user)
    return sorted((e["kind"], bool(e["strike"])) for e in me["events"])


async def strikes(fetch_json: Any, user: str) -> int:
    return int((await fetch_json("colab-guard", "api", "strikes", "me", user=user))["strikes"])


# -- the dialog round trip -----------------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_run_anyway_runs_once_and_counts_one_strike(
    kernel_client: Any, jp_fetch: Any, fetch_json: Any, tmp_path: Path, protocol: str
) -> None:
    kc = await kernel_client("alice", protocol)
    marker = tmp_path / "ran"
    msg = request(kc, warn_cell(marker), dialogs=True)
    token, _ = await held_token(kc, msg)
    await asyncio.sleep(0.5)
    assert not marker.exists()  # held: the kernel has not seen it
    assert await events(fetch_json, "alice") == [("warned", False)]
    assert await answer(jp_fetch, "alice", token, "run") == 200
    reply = await reply_of(kc, msg)
    assert reply["status"] == "ok" and marker.read_text() == "ran"
    assert await strikes(fetch_json, "alice") == 1
    assert await events(fetch_json, "alice") == [("consent", True), ("warned", False)]
    # the kernel did not ask again (the server's consent field), and the token is spent
    assert await answer(jp_fetch, "alice", token, "run") == 404
    assert await answer(jp_fetch, "alice", token, "cancel") == 404
    assert await strikes(fetch_json, "alice") == 1


async def test_cancel_runs_nothing_and_counts_nothing(
    kernel_client: Any, jp_fetch: Any, fetch_json: Any, tmp_path: Path
) -> None:
    kc = await kernel_client("alice", V1)
    marker = tmp_path / "ran"
    msg = request(kc, warn_cell(marker), dialogs=True)
    token, _ = await held_token(kc, msg)
    assert await answer(jp_fetch, "alice", token, "cancel") == 200
    reply = await reply_of(kc, msg)
    assert (reply["status"], reply["ename"]) == ("error", "ProhibitedCodeError")
    assert reply["evalue"].startswith("Cancelled")
    assert not marker.exists()
    assert await strikes(fetch_json, "alice") == 0
    assert await events(fetch_json, "alice") == [("declined", False), ("warned", False)]
    # the connection goes on: a benign cell runs
    res = await kc.execute("print('after')")
    assert res["reply"]["status"] == "ok" and "after" in res["text"]


async def test_another_users_token_is_refused_and_records_nothing(
    kernel_client: Any, jp_fetch: Any, fetch_json: Any, tmp_path: Path
) -> None:
    kc = await kernel_client("alice", V1)
    marker = tmp_path / "ran"
    msg = request(kc, warn_cell(marker), dialogs=True)
    token, _ = await held_token(kc, msg)
    assert await answer(jp_fetch, "bob", token, "run") == 403
    assert await answer(jp_fetch, "bob", token, "cancel") == 403
    await no_reply_within(kc, msg, 1.0)  # still held for alice
    assert not marker.exists()
    assert await events(fetch_json, "bob") == []
    assert await events(fetch_json, "alice") == [("warned", False)]
    # alice's own answer still works
    assert await answer(jp_fetch, "alice", token, "cancel") == 200
    assert (await reply_of(kc, msg))["status"] == "error"
    assert await strikes(fetch_json, "alice") == 0


async def test_a_token_releases_only_its_own_cell(
    kernel_client: Any, jp_fetch: Any, fetch_json: Any, tmp_path: Path
) -> None:
    """Two warn cells held in two kernels: cell A's token runs A, never B; A's token put
    in B's request (the client's consent field) is dropped by the server."""
    ka = await kernel_client("alice", V1)
    kb = await kernel_client("alice", "json")
    assert ka.kernel_id != kb.kernel_id
    ma, mb = tmp_path / "a", tmp_path / "b"
    msg_a = request(ka, warn_cell(ma), dialogs=True)
    token_a, _ = await held_token(ka, msg_a)
    forged = {"rules": ["noisy-import"], "token": token_a}
    msg_b = request(kb, warn_cell(mb), dialogs=True, consent=forged)
    token_b, _ = await held_token(kb, msg_b)  # held all the same
    assert token_b != token_a
    assert await answer(jp_fetch, "alice", token_a, "run") == 200
    assert (await reply_of(ka, msg_a))["status"] == "ok" and ma.exists()
    await no_reply_within(kb, msg_b, 1.0)
    assert not mb.exists()
    assert await answer(jp_fetch, "alice", token_a, "run") == 404  # used
    assert await answer(jp_fetch, "alice", token_b, "cancel") == 200
    assert (await reply_of(kb, msg_b))["status"] == "error"
    assert not mb.exists()
    assert await strikes(fetch_json, "alice") == 1


async def test_expired_token(
    kernel_client: Any, jp_fetch: Any, fetch_json: Any, guard: Any, tmp_path: Path
) -> None:
    guard.settings.consent_timeout = 1.0
    kc = await kernel_client("alice", V1)
    marker = tmp_path / "ran"
    msg = request(kc, warn_cell(marker), dialogs=True)
    token, _ = await held_token(kc, msg)
    reply = await reply_of(kc, msg)
    assert reply["status"] == "error" and "not answered in time" in reply["evalue"]
    assert await answer(jp_fetch, "alice", token, "run") == 404
    await asyncio.sleep(0.5)
    assert not marker.exists()
    assert await strikes(fetch_json, "alice") == 0
    assert await events(fetch_json, "alice") == [("declined", False), ("warned", False)]


async def test_consent_endpoint_rejects_bad_requests(jp_fetch: Any) -> None:
    with pytest.raises(HTTPClientError) as err:  # not logged in
        await jp_fetch(
            "colab-guard", "api", "consent", method="POST", body=json.dumps({"token": "x"})
        )
    assert err.value.code == 403
    assert await answer(jp_fetch, "alice", "no-such-token", "run") == 404
    assert await answer(jp_fetch, "alice", "no-such-token", "maybe") == 400


# -- no extension: the kernel's text prompt, followed on the websocket ----------------------


async def test_forged_consent_field_is_dropped_kernel_asks(
    kernel_client: Any, fetch_json: Any, tmp_path: Path
) -> None:
    """A client's own ``colab_guard.consent`` never reaches the kernel: the kernel asks
    (the control, in tests/kernel, shows a kernel that gets the field does not ask)."""
    kc = await kernel_client("alice", V1)
    marker = tmp_path / "ran"
    forged = {"rules": ["noisy-import"], "cell_hash": "x"}
    msg = request(kc, warn_cell(marker), allow_stdin=True, consent=forged)
    await kc.send("shell", msg)
    got = await until(kc, msg["header"]["msg_id"], {"input_request", "execute_reply"})
    assert got[-1]["header"]["msg_type"] == "input_request", got
    assert got[-1]["content"]["prompt"] == PROMPT
    await answer_prompt(kc, got[-1], "cancel")
    assert (await reply_of(kc, msg))["status"] == "error"
    assert not marker.exists()


async def answer_prompt(kc: KernelClient, input_request: dict[str, Any], value: str) -> None:
    reply = kc._msg("input_reply", {"value": value})
    reply["parent_header"] = input_request["header"]
    await kc.send("stdin", reply)


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize(("value", "runs"), [("run", True), ("cancel", False), ("no", False)])
async def test_text_prompt_counts_only_run(
    kernel_client: Any,
    fetch_json: Any,
    tmp_path: Path,
    protocol: str,
    value: str,
    runs: bool,
) -> None:
    kc = await kernel_client("alice", protocol)
    marker = tmp_path / "ran"
    msg = request(kc, warn_cell(marker), allow_stdin=True)
    await kc.send("shell", msg)
    got = await until(kc, msg["header"]["msg_id"], {"input_request"})
    assert await strikes(fetch_json, "alice") == 0  # not at check time
    await answer_prompt(kc, got[-1], value)
    reply = await reply_of(kc, msg)
    assert (reply["status"] == "ok") is runs and marker.exists() is runs
    await asyncio.sleep(0.5)  # the record is written off the event loop
    assert await strikes(fetch_json, "alice") == (1 if runs else 0)
    outcome = ("consent", True) if runs else ("declined", False)
    assert await events(fetch_json, "alice") == sorted([outcome, ("warned", False)])


async def test_headless_default_cancel_counts_nothing(
    kernel_client: Any, fetch_json: Any, tmp_path: Path
) -> None:
    """stdin not allowed (nbclient, papermill): the kernel's default (cancel) decides."""
    kc = await kernel_client("alice", "json")
    marker = tmp_path / "ran"
    msg = request(kc, warn_cell(marker), allow_stdin=False)
    await kc.send("shell", msg)
    reply = await reply_of(kc, msg)
    assert reply["ename"] == "ProhibitedCodeError" and not marker.exists()
    await asyncio.sleep(0.5)
    assert await strikes(fetch_json, "alice") == 0
    assert await events(fetch_json, "alice") == [("declined", False), ("warned", False)]


# -- the parts on their own ---------------------------------------------------------------


async def test_consent_book_expiry_and_users() -> None:
    """A token answered after its expiry, before the server's timer cancelled the cell:
    410, and the held request is released as "closed" (cancelled)."""
    from jupyter_colab_guard.server.consent import ConsentBook, ConsentError
    from jupyter_colab_guard.server.settings import GuardSettings

    book = ConsentBook(GuardSettings(consent_timeout=0.05))
    token, held = book.hold("alice", "k1", "hash", ("noisy-import",))
    with pytest.raises(ConsentError) as err:
        book.answer(token, "bob", "run")
    assert err.value.status == 403 and len(book) == 1
    await asyncio.sleep(0.1)
    with pytest.raises(ConsentError) as err:
        book.answer(token, "alice", "run")
    assert err.value.status == 410
    assert held.answer.result() == "closed" and len(book) == 0
    with pytest.raises(ConsentError) as err:
        book.answer(token, "alice", "run")
    assert err.value.status == 404


def test_client_metadata_keeps_only_dialogs() -> None:
    from jupyter_colab_guard.server.consent import client_metadata

    assert client_metadata({"cellId": "c1"}) == (None, False)
    assert client_metadata({"colab_guard": {"dialogs": True}}) == (None, True)
    forged = {"cellId": "c1", "colab_guard": {"dialogs": True, "consent": {"rules": ["x"]}}}
    assert client_metadata(forged) == ({"cellId": "c1", "colab_guard": {"dialogs": True}}, True)
    assert client_metadata({"colab_guard": "consent"}) == ({}, False)
    # only a JSON true declares dialogs
    assert client_metadata({"colab_guard": {"dialogs": "yes"}}) == (None, False)
