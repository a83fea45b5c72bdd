"""Policy hot reload: a valid file takes effect, a broken one is refused and logged."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from jupyter_colab_guard.server import events as E

HERE = Path(__file__).parent


def _touch_newer(path: Path) -> None:
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


async def test_hot_reload(guard, policy_file, jp_serverapp):
    seen: list[dict] = []

    async def listener(logger, schema_id, data):
        seen.append(dict(data))

    jp_serverapp.event_logger.add_listener(schema_id=E.POLICY, listener=listener)
    other = "!other-tool"
    assert not guard.check_execute(user_obj="alice", kernel_id="k", code=other).refuse
    old_version = guard.policy.version

    shutil.copy(HERE / "policy_v2.yaml", policy_file)
    _touch_newer(policy_file)
    assert guard.poll_policy() is True
    assert guard.policy.version != old_version
    assert guard.check_execute(user_obj="alice", kernel_id="k", code=other).refuse

    # broken: unknown key and an unknown category; the v2 policy stays in force
    policy_file.write_text(
        policy_file.read_text().replace("severity: high", "severity: high\n    colour: red", 1)
        + "  - id: orphan\n    category: nope\n    message: x\n    match: {import: x}\n"
    )
    _touch_newer(policy_file)
    assert guard.poll_policy() is False
    assert guard.check_execute(user_obj="alice", kernel_id="k", code=other).refuse
    assert guard.poll_policy() is None  # unchanged file: nothing to do

    for _ in range(20):  # listeners run as tasks
        if len(seen) >= 2:
            break
        import asyncio

        await asyncio.sleep(0.05)
    assert [e["status"] for e in seen] == ["reloaded", "refused"]
    assert seen[1]["problems"]


async def test_running_kernel_takes_the_reloaded_policy(guard, kernel_client, policy_file):
    """File mode: a kernel started before a hot reload enforces the new version from its
    next cell (the server marks each execute_request with its version)."""
    enforced = (
        "from jupyter_colab_guard.kernel.extension import guard_of\n"
        "print(guard_of(get_ipython()).policy_version)"
    )
    kc = await kernel_client("alice")
    old = guard.policy.version
    assert (await kc.execute(enforced))["text"].strip() == old
    shutil.copy(HERE / "policy_v2.yaml", policy_file)
    _touch_newer(policy_file)
    assert guard.poll_policy() is True
    assert guard.policy.version != old
    assert (await kc.execute(enforced))["text"].strip() == guard.policy.version
