"""What the server tells a kernel about its user (tier, groups, admin exceptions), the
kernel guard's "armed" hello, and the limits on kernel reports."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from guard_helpers import V1, post_report, server_refusal
from tornado.httpclient import HTTPClientError

BLOCKED = "!forbidden-tool --go"
RUNTIME = "runtime_block"


async def report(jp_fetch: Any, token: str, events: list[dict[str, Any]]) -> dict[str, Any]:
    return await post_report(jp_fetch, f"Bearer {token}", {"events": events})


def runtime_event(**kw: Any) -> dict[str, Any]:
    ev = {"kind": RUNTIME, "category": "forbidden_tools", "rule": "forbidden-tool-shell"}
    ev["action"] = "block"
    ev.update(kw)
    return ev


async def test_admin_exception_reaches_the_kernel(kernel_client, fetch_json, jp_fetch, guard):
    grant = {"user": "alice", "category": "forbidden_tools", "reason": "teaching"}
    await fetch_json("colab-guard", "api", "admin", "exceptions", user="root", body=grant,
                     method="POST")  # fmt: skip
    kc = await kernel_client("alice", V1)
    # neither the server nor the kernel guard refuses: the tool really is looked for
    res = await kc.execute(BLOCKED)
    assert server_refusal(res) is None
    assert res["reply"]["status"] == "ok", res["reply"]
    # bash says "command not found", dash says "not found": either way the shell ran it
    assert "forbidden-tool" in res["text"] and "not found" in res["text"], res["text"]
    # the kernel's report of its runtime check is dropped too
    token = await kc.execute("import os; print(os.environ['COLAB_GUARD_REPORT_TOKEN'])")
    counts = await report(jp_fetch, token["text"].strip(), [runtime_event()])
    assert counts["excepted"] == 1 and counts["recorded"] == 0
    assert guard.status("alice").strikes == 0


async def test_exception_granted_while_the_kernel_runs(kernel_client, fetch_json, guard, tmp_path):
    kc = await kernel_client("bob", V1)
    # a command the server cannot see (read from a file at run time): the kernel's
    # runtime check stops it
    name = tmp_path / "name.txt"
    name.write_text("forbidden-tool")
    cell = f"import subprocess\nsubprocess.run([open({str(name)!r}).read()])"
    res = await kc.execute(cell)
    assert server_refusal(res) is None and res["reply"]["ename"] == "ProhibitedCodeError"
    grant = {"user": "bob", "rule": "forbidden-tool-shell"}
    out = await fetch_json("colab-guard", "api", "admin", "exceptions", user="root", body=grant,
                           method="POST")  # fmt: skip
    res = await kc.execute(cell)  # now the program is looked for (and is not there)
    assert res["reply"]["ename"] == "FileNotFoundError", res["reply"]
    await fetch_json("colab-guard", "api", "admin", "exceptions", str(out["id"]), user="root",
                     method="DELETE")  # fmt: skip
    res = await kc.execute(cell)
    assert res["reply"]["ename"] == "ProhibitedCodeError"


async def test_admin_exception_input_is_validated(fetch_json):
    async def post(body: dict[str, Any]) -> int:
        try:
            await fetch_json("colab-guard", "api", "admin", "exceptions", user="root",
                             body=body, method="POST")  # fmt: skip
        except HTTPClientError as err:
            return err.code
        return 201

    assert await post({"user": ["alice"], "category": "forbidden_tools"}) == 400
    assert await post({"user": "alice", "category": {"x": 1}}) == 400
    assert await post({"user": "alice", "category": "no_such_category"}) == 400
    assert await post({"user": "alice", "rule": "no-such-rule"}) == 400
    assert await post({"user": "alice"}) == 400
    assert await post({"user": "alice", "rule": "noisy-import"}) == 201


async def test_report_limits(guard, jp_fetch):
    token = guard.register_kernel("kernel-r", "alice")
    # body size
    with pytest.raises(HTTPClientError) as err:
        await report(jp_fetch, token, [runtime_event(detail="x" * 300_000)])
    assert err.value.code == 413
    # strikes one kernel's reports can add per window
    guard.report_strikes = (2, 3600.0)
    counts = await report(jp_fetch, token, [runtime_event() for _ in range(5)])
    assert counts["recorded"] == 5 and counts["capped"] == 3
    assert guard.status("alice").strikes == 2
    assert len(guard.store.events("alice")) == 5  # all kept, for the admins
    # reports per kernel per window
    guard.report_rate = (3, 60.0)
    for _ in range(2):  # the 2nd and 3rd accepted report this minute
        await report(jp_fetch, token, [{"kind": "tamper", "rule": "tamper.x"}])
    with pytest.raises(HTTPClientError) as err:
        await report(jp_fetch, token, [{"kind": "tamper", "rule": "tamper.x"}])
    assert err.value.code == 429
    assert guard.status("alice").strikes == 2


@pytest.fixture
def unguarded_spec(jp_data_dir: Path, tmp_path: Path) -> str:
    """A Python kernelspec whose interpreter cannot import the guard."""
    fake = tmp_path / "broken-path" / "jupyter_colab_guard"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('not installed here')\n")
    spec = jp_data_dir / "kernels" / "unguarded"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "Python without the guard",
                "language": "python",
                "env": {"PYTHONPATH": str(fake.parent)},
            }
        )
    )
    return "unguarded"


@pytest.mark.parametrize(
    "guard_config",
    [{"require_kernel_guard": True, "arm_timeout": 3.0, "trust_user_kernelspecs": True}],
)
async def test_kernel_whose_guard_never_arms(
    unguarded_spec, kernel_client, jp_fetch, auth, guard, tmp_path
):
    kc = await kernel_client("alice", V1)
    assert (await kc.execute("print(6 * 7)"))["text"].strip() == "42"
    info = guard.kernel(kc.kernel_id)
    assert info.armed_at is not None and info.armed_policy  # the guard said hello

    r = await jp_fetch("api", "kernels", method="POST", headers=auth("alice"),
                       body=json.dumps({"name": unguarded_spec}))  # fmt: skip
    kid = json.loads(r.body)["id"]
    bare = await kernel_client("alice", V1, kernel_id=kid)
    side = tmp_path / "side-effect"
    res = await bare.execute(f"open({str(side)!r}, 'w').write('ran')")
    assert server_refusal(res) == "unguarded"
    assert not side.exists()
    # the server's timer records it and shuts the kernel down
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        kernels = json.loads((await jp_fetch("api", "kernels", headers=auth("alice"))).body)
        kinds = [e["kind"] for e in guard.store.events("alice")]
        if kid not in [k["id"] for k in kernels] and "unguarded_kernel" in kinds:
            break
        await asyncio.sleep(0.3)
    assert kid not in [k["id"] for k in kernels]
    assert "unguarded_kernel" in kinds
    assert kc.kernel_id in [k["id"] for k in kernels]  # the guarded kernel stays
