"""One policy across many servers: two real jupyter servers in store mode on one
PostgreSQL store.

- `colab-guard policy publish` stores a new version with a rule the old one lacks; both
  servers refuse a cell matching it within seconds (each polls every 0.5 s);
- a kernel started before the publish enforces the new policy at its next cell, inside
  the kernel: the cell reads the program's name from a file at run time, so no static
  check (the server's or the kernel's) can see it; only the kernel guard's runtime hook
  judges the real argv, and it does so by the policy the kernel has in force. The
  in-server process watcher (which would kill the process after it started) is off, so
  the refusal can only come from the kernel; the program leaves a file when it runs,
  and does not here. The control: before the publish, the same cell runs;
- an invalid policy is refused by the command line and by the admin API, nothing is
  stored and both servers keep the policy in force;
- a rollback (the old document published again through the admin API) reaches both.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from policy_texts import oldtool_policy
from serverproc import ServerProc, refused
from tornado.httpclient import HTTPClientError

pytestmark = pytest.mark.postgres

OLD = oldtool_policy("fleet-policy")
NEW = (
    OLD
    + """\
  - id: newtool
    category: tools
    message: Runs the new tool.
    match: {shell: {program: [newtool]}}
    examples: {match: ["!newtool"], no_match: ["print(1)"]}
"""
)
BROKEN = NEW.replace("action: block", "action: explode")
STATIC = "!./newtool --static"  # any check sees the program here
# the name exists only at run time: only the kernel's runtime hook sees it
RUNTIME = (
    "import subprocess\nargv = open('cmd.txt').read().split()\nsubprocess.run(argv)\nprint('after')"
)
ENFORCED = (
    "from jupyter_colab_guard.kernel.extension import guard_of\n"
    "print(guard_of(get_ipython()).policy_version)"
)


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "jupyter_colab_guard.cli", "policy", *args],
        cwd=cwd, capture_output=True, text=True, timeout=120,
        env={k: v for k, v in os.environ.items() if k != "COLAB_GUARD_STORE_URL"},
    )  # fmt: skip


def tool_in(folder: Path) -> Path:
    """./newtool (it leaves side-effect.txt when it runs) and cmd.txt naming it, in the
    kernels' working directory; returns the file the tool leaves."""
    tool = folder / "newtool"
    tool.write_text("#!/bin/sh\necho ran >> side-effect.txt\n")
    tool.chmod(0o755)
    (folder / "cmd.txt").write_text("./newtool --runtime\n")
    return folder / "side-effect.txt"


def server(root: Path, url: str) -> ServerProc:
    return ServerProc(
        root,
        {
            "ColabGuardApp": {
                "store_url": url,
                "policy_source": "store",
                "policy_poll_interval": 0.5,
                "owner": "ops",
                "admin_users": ["ops"],
                "watch_processes": False,  # only the kernel can refuse RUNTIME
                "escalation": [{"level": "warning", "strikes": 1000}],
            }
        },
    )


async def in_force(s: ServerProc) -> dict[str, Any]:
    return (await s.fetch("colab-guard/api/admin/policy"))["in_force"]  # type: ignore[no-any-return]


async def until(predicate: Any, timeout: float = 20.0) -> float:
    """Seconds until ``predicate()`` holds (fails the test after ``timeout``)."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if await predicate():
            return time.monotonic() - start
        await asyncio.sleep(0.1)
    raise AssertionError(f"not within {timeout} s")


async def test_two_servers_follow_published_policies(pg_cluster, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    url = pg_cluster.url(pg_cluster.create_database())
    (tmp_path / "old.yaml").write_text(OLD)
    (tmp_path / "new.yaml").write_text(NEW)
    (tmp_path / "broken.yaml").write_text(BROKEN)
    effect = tool_in(tmp_path)  # the servers' (and so the kernels') working directory
    out = cli("publish", "old.yaml", "--store", url, "--by", "ops", "--comment", "v1", cwd=tmp_path)
    assert out.returncode == 0 and "published version 1" in out.stdout, out.stderr

    servers = [server(tmp_path / name, url) for name in ("a", "b")]
    try:
        await asyncio.gather(*(s.start() for s in servers))
        for s in servers:
            assert (await in_force(s))["store_version"] == 1
        # kernels started before the publish: one held back for RUNTIME, one probing
        held = [await s.kernel() for s in servers]
        probes = [await s.kernel() for s in servers]
        old_version = (await held[0].execute(ENFORCED))["text"].strip()

        # control: under version 1 both cells run, and the program leaves its file
        for kc in held:
            res = await kc.execute(RUNTIME)
            assert res["reply"]["status"] == "ok" and "after" in res["text"], res["reply"]
            assert effect.exists()
            effect.unlink()
        for kc in probes:
            assert refused(await kc.execute(STATIC)) is None
        effect.unlink()

        # publish version 2: both servers refuse the static cell within seconds
        out = cli("publish", "new.yaml", "--store", url, "--by", "alice-ops",
                  "--comment", "newtool too", cwd=tmp_path)  # fmt: skip
        assert out.returncode == 0 and "published version 2" in out.stdout, out.stderr

        refused_at: dict[int, float] = {}

        async def refuses(i: int) -> bool:
            if refused(await probes[i].execute(STATIC)) != "block":
                return False
            refused_at[i] = time.time()
            return True

        await asyncio.gather(*(until(lambda i=i: refuses(i)) for i in range(2)))
        infos = [await in_force(s) for s in servers]
        assert {i["store_version"] for i in infos} == {2}
        new_version = infos[0]["version"]
        assert new_version != old_version and infos[1]["version"] == new_version

        effect.unlink(missing_ok=True)  # left by probes that ran before their server switched
        # the kernels started before the publish refuse RUNTIME themselves at their next
        # cell: the server let it through (nothing static to see), the kernel's runtime
        # hook refused the process under version 2, and the program never ran
        for kc in held:
            res = await kc.execute(RUNTIME)
            assert res["reply"].get("ename") == "ProhibitedCodeError", res["reply"]
            assert refused(res) is None  # not the server's refusal: the kernel's
            assert "after" not in res["text"]
            assert not effect.exists()
            assert (await kc.execute(ENFORCED))["text"].strip() == new_version

        # an invalid policy: refused by the CLI and the admin API, nothing stored
        out = cli("publish", "broken.yaml", "--store", url, cwd=tmp_path)
        assert out.returncode == 2 and "action" in out.stderr and "error:" in out.stderr
        with pytest.raises(HTTPClientError) as err:
            await servers[0].fetch("colab-guard/api/admin/policy", "POST", {"document": BROKEN})
        assert err.value.code == 400
        assert "action" in json.loads(err.value.response.body)["message"]
        listed = cli("versions", "--store", url, "--json", cwd=tmp_path)
        rows = json.loads(listed.stdout)["versions"]
        assert [r["version"] for r in rows] == [2, 1]
        assert rows[0]["published_by"] == "alice-ops" and rows[0]["comment"] == "newtool too"
        # from the commit of version 2 to each server's first refusal (poll every 0.5 s)
        delays = [refused_at[i] - rows[0]["published_at"] for i in range(2)]
        print(f"publish -> refused: server a {delays[0]:.2f} s, server b {delays[1]:.2f} s")
        assert max(delays) < 10
        await asyncio.sleep(2)  # four polls
        for s, kc in zip(servers, probes, strict=True):
            assert (await in_force(s))["store_version"] == 2
            assert refused(await kc.execute(STATIC)) == "block"

        # rollback through the admin API of server b: version 3 = version 1's document
        shown = cli("show", "--store", url, "--version", "1", cwd=tmp_path)
        assert shown.returncode == 0 and shown.stdout == OLD
        posted = await servers[1].fetch(
            "colab-guard/api/admin/policy", "POST", {"document": shown.stdout, "comment": "undo"}
        )
        assert posted["version"] == 3 and posted["in_force"]["store_version"] == 3

        async def rolled_back() -> bool:
            return all([(await in_force(s))["store_version"] == 3 for s in servers])

        await until(rolled_back)
        for kc in held:
            assert refused(await kc.execute(STATIC)) is None
            assert (await kc.execute(ENFORCED))["text"].strip() == old_version
        for s in servers:
            assert "policy reloaded from the store version 2" in s.log_text()
    finally:
        await asyncio.gather(*(s.stop() for s in servers))
