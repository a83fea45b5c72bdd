"""The websocket check without the kernel-side guard (``kernel_extension=False``), so
whatever the server lets through really runs: other channels, queued requests after a
refusal, the size cap, the time limit, debugger requests, a slow check."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from guard_helpers import V1, server_refusal

PROTOCOLS = [V1, "json"]
BLOCKED = "!forbidden-tool --go"


@pytest.fixture
def guard_config() -> dict[str, Any]:
    return {"kernel_extension": False}


def touch(path: Any) -> str:
    return f"open({str(path)!r}, 'w').write('ran')\n"


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_execute_request_on_control_channel_is_checked(kernel_client, tmp_path, protocol):
    kc = await kernel_client("alice", protocol)
    # ipykernel 7 runs an execute_request that arrives on the control channel
    ran = tmp_path / "ran-on-control"
    ok = await kc.execute(touch(ran), channel="control")
    assert ok["reply"]["status"] == "ok" and ran.exists()

    side = tmp_path / "side-effect"
    res = await kc.execute(touch(side) + BLOCKED, channel="control")
    assert server_refusal(res) == "block", res
    await kc.execute("1")
    assert not side.exists()


async def test_requests_sent_with_a_refused_one_are_aborted(kernel_client, tmp_path, guard):
    kc = await kernel_client("alice", V1)
    assert (await kc.execute("print('ready')"))["reply"]["status"] == "ok"
    second, third = tmp_path / "second", tmp_path / "third"
    msgs = [kc.execute_msg(BLOCKED), kc.execute_msg(touch(second)), kc.execute_msg(touch(third))]
    for m in msgs:  # "run all": sent at once, before any reply
        await kc.send("shell", m)
    out = await kc.collect([m["header"]["msg_id"] for m in msgs])
    first, r2, r3 = (out[m["header"]["msg_id"]] for m in msgs)
    assert server_refusal(first) == "block"
    assert r2["reply"]["status"] == "aborted" and r3["reply"]["status"] == "aborted"
    assert not second.exists() and not third.exists()
    # a request sent after the refusal was seen runs normally
    later = await kc.execute(touch(second) + "print('later')")
    assert later["reply"]["status"] == "ok" and "later" in later["text"]
    assert second.exists()


async def test_oversized_cell_is_refused_with_a_message(kernel_client, guard, tmp_path):
    guard.max_cell_size = 2000
    kc = await kernel_client("alice", "json")
    side = tmp_path / "side-effect"
    res = await kc.execute(touch(side) + "x = 1\n" * 400)
    assert server_refusal(res) == "too_large"
    assert "larger than 2000 characters" in res["reply"]["evalue"]
    text = next(m for m in res["iopub"] if m["header"]["msg_type"] == "display_data")
    assert "too large to be checked" in text["content"]["data"]["text/plain"]
    # user_expressions count towards the size; the message is the operator's
    guard.message = "Stop & think: {service} rules apply."
    res = await kc.execute("1", {"x": "1" * 3000})
    assert server_refusal(res) == "too_large"
    shown = next(m for m in res["iopub"] if m["header"]["msg_type"] == "display_data")
    assert "Stop &amp; think: TestLab rules apply." in shown["content"]["data"]["text/html"]
    assert "Warning: Stop & think: TestLab rules apply." in shown["content"]["data"]["text/plain"]
    assert not side.exists()
    assert (await kc.execute("print(6 * 7)"))["text"].strip() == "42"


async def test_check_over_time_limit_fails_closed(kernel_client, guard, tmp_path):
    kc = await kernel_client("alice", "json")
    assert (await kc.execute("print('ready')"))["reply"]["status"] == "ok"
    guard.check_timeout = 0.001
    side = tmp_path / "side-effect"
    cell = touch(side) + "\n".join(f"x{i} = chr({i}) + 'a'" for i in range(2000))
    res = await kc.execute(cell)
    assert server_refusal(res) == "unavailable"
    guard.check_timeout = 10.0
    await kc.execute("1")
    assert not side.exists()


async def test_slow_check_does_not_stall_other_users(kernel_client, guard):
    alice = await kernel_client("alice", V1)
    bob = await kernel_client("bob", V1)
    assert (await bob.execute("print('ready')"))["reply"]["status"] == "ok"
    # a big cell whose analysis takes a while (seconds on a small machine)
    big = "\n".join(f"x{i} = chr({i}) + 'a' + str({i})" for i in range(20000))
    assert len(big) < guard.max_cell_size
    msg = alice.execute_msg(big + "\nprint('alice done')")
    await alice.send("shell", msg)
    started = time.monotonic()
    alice_task = asyncio.ensure_future(alice.collect([msg["header"]["msg_id"]], timeout=120))
    await asyncio.sleep(0.05)
    res = await bob.execute("print('bob served')")
    bob_took = time.monotonic() - started
    assert "bob served" in res["text"]
    assert not alice_task.done(), "alice's check was too fast to show anything"
    alice_res = (await alice_task)[msg["header"]["msg_id"]]
    alice_took = time.monotonic() - started
    # it ran, or it passed the check's time budget and was refused as too costly to check
    assert alice_res["reply"]["status"] == "ok" or server_refusal(alice_res) == "timeout"
    assert bob_took < alice_took


async def test_debug_requests_that_evaluate_are_checked(kernel_client, guard):
    kc = await kernel_client("alice", V1)
    assert (await kc.execute("print('ready')"))["reply"]["status"] == "ok"

    async def debug(command: str, arguments: dict[str, Any]) -> dict[str, Any]:
        msg = kc._msg(
            "debug_request",
            {"seq": 7, "type": "request", "command": command, "arguments": arguments},
        )
        await kc.send("control", msg)
        return (await kc.collect([msg["header"]["msg_id"]], timeout=30))[msg["header"]["msg_id"]]

    evil = "__import__('os').system('forbidden-tool')"
    for command, args in (
        ("evaluate", {"expression": evil, "context": "repl"}),
        ("setVariable", {"variablesReference": 1, "name": "x", "value": evil}),
        ("setExpression", {"expression": "x", "value": evil, "frameId": 1}),
    ):
        res = await debug(command, args)
        assert res["reply"]["success"] is False, (command, res)
        assert "acceptable-use" in res["reply"]["message"]

    # a check that fails (here: over its time limit) still answers, and refuses
    guard.check_timeout = 0.0
    res = await debug("evaluate", {"expression": "1 + 1", "context": "repl"})
    assert res["reply"]["success"] is False and res["reply"]["command"] == "evaluate"
    guard.check_timeout = 10.0
    assert guard.status("alice").strikes == 3  # the refused evaluations were strikes
    guard.store.reset("alice", by="root")
    me = await kc.execute("print('still fine')")
    assert "still fine" in me["text"], me


async def test_breakpoint_code_is_checked(kernel_client, guard):
    """Conditions, hit conditions and log messages ({expr} parts) of breakpoints run in the
    kernel when the breakpoint is hit: they are checked like cells."""
    kc = await kernel_client("alice", V1)
    assert (await kc.execute("print('ready')"))["reply"]["status"] == "ok"
    evil = "__import__('os').system('forbidden-tool')"
    for point in ({"condition": evil}, {"hitCondition": evil}, {"logMessage": "{" + evil + "}"}):
        args = {"source": {"path": "x.py"}, "breakpoints": [{"line": 1, **point}]}
        msg = kc._msg(
            "debug_request",
            {"seq": 7, "type": "request", "command": "setBreakpoints", "arguments": args},
        )
        await kc.send("control", msg)
        mid = msg["header"]["msg_id"]
        res = (await kc.collect([mid], timeout=30))[mid]
        assert res["reply"]["success"] is False, (point, res)
        assert "acceptable-use" in res["reply"]["message"]
    assert guard.status("alice").strikes == 3
