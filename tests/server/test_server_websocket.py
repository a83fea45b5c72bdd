"""The authoritative check on the kernel websocket, with real kernels."""

from __future__ import annotations

import pytest
from guard_helpers import V1, post_report

PROTOCOLS = [V1, "json"]


def refused(result: dict) -> bool:
    """Refused by the server (the kernel's own refusals have no colab_guard metadata)."""
    reply = result["reply"]
    types = [m["header"]["msg_type"] for m in result["iopub"]]
    return (
        reply["status"] == "error"
        and reply["ename"] == "ProhibitedCodeError"
        and types[0] == "status"
        and "display_data" in types
        and "error" in types
        and any("colab_guard" in m["content"].get("metadata", {}) for m in result["iopub"])
    )


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_blocked_cell_never_reaches_kernel(kernel_client, tmp_path, protocol, fetch_json):
    side = tmp_path / "side-effect"
    kc = await kernel_client("alice", protocol)
    ok = await kc.execute("print('ready')")
    assert ok["reply"]["status"] == "ok" and "ready" in ok["text"]

    res = await kc.execute(f"open({str(side)!r}, 'w').write('ran')\n!forbidden-tool --go")
    assert refused(res), res
    html = next(m for m in res["iopub"] if m["header"]["msg_type"] == "display_data")
    assert "You may be executing code that is disallowed" in html["content"]["data"]["text/html"]
    assert "#forbidden_tools" in html["content"]["data"]["text/html"]

    # the user_expressions of a request are checked too
    res = await kc.execute(
        "pass", {"x": f"open({str(side)!r}, 'w') and __import__('os').system('forbidden-tool')"}
    )
    assert refused(res)

    check = await kc.execute(f"import os; print(os.path.exists({str(side)!r}))")
    assert "False" in check["text"]
    assert not side.exists()
    me = await fetch_json("colab-guard", "api", "strikes", "me", user="alice")
    assert me["strikes"] == 2 and me["events"][0]["kernel_id"] == kc.kernel_id


async def test_refused_even_with_kernel_hook_cleared(kernel_client, tmp_path):
    side = tmp_path / "side-effect"
    kc = await kernel_client("bob", V1)
    res = await kc.execute("get_ipython().input_transformers_post.clear()")
    assert res["reply"]["status"] == "ok"
    res = await kc.execute(f"open({str(side)!r}, 'w').write('ran')\n!forbidden-tool --go")
    assert refused(res)
    await kc.execute("1")
    assert not side.exists()


async def test_kernel_gets_guard_and_reports_for_its_starter(kernel_client, jp_fetch, guard):
    kc = await kernel_client("alice", "json")
    res = await kc.execute(
        "import os, sys\n"
        "print(os.environ['COLAB_GUARD_REPORT_URL'])\n"
        "print(os.environ['COLAB_GUARD_REPORT_TOKEN'])\n"
        "print(' '.join(sys.argv))"
    )
    url, token, argv = res["text"].strip().splitlines()
    assert url.endswith("/colab-guard/api/kernel/reports")
    assert "--ext=jupyter_colab_guard" in argv and "--KernelGuard.policy_path=" in argv
    # a report with this kernel's token counts for alice whatever the body claims
    body = {
        "user": "bob",
        "events": [
            {
                "kind": "runtime_block",
                "category": "forbidden_tools",
                "rule": "forbidden-tool-shell",
                "action": "block",
            }
        ],
    }
    out = await post_report(jp_fetch, f"Bearer {token}", body)
    assert out["kernel_id"] == kc.kernel_id
    assert guard.status("alice").strikes == 1 and guard.status("bob").strikes == 0
