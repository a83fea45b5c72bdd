"""The process watcher against a real guarded server and real processes (issue 8): a
harmless stand-in "miner" (a shell script named like one, writing a marker file) started
in ways the cell text does not show is killed and counted for the kernel's user; with
the watcher off the same payload runs (so each test can fail)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
from guard_helpers import V1

MINER = "#!/bin/sh\nwhile true; do date >> {marker}; sleep 0.1; done\n"
POOL = "stratum+tcp://pool.example.com:3333"


@pytest.fixture(params=[True, False], ids=["watched", "unwatched"])
def watched(request: Any) -> bool:
    return bool(request.param)


@pytest.fixture
def guard_config(watched: bool) -> dict[str, Any]:
    # the kernel-side guard off: the server's cell check lets these cells through (their
    # text shows nothing prohibited), so only the watcher stands between them and a run
    # terminals on: they are watched like kernels
    return {
        "kernel_extension": False,
        "watch_processes": watched,
        "watch_interval": 0.2,
        "disable_terminals": False,
    }


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    """A copy of the shipped Colab policy folder (it knows miners and pools)."""
    path = tmp_path / "colab"
    shutil.copytree(Path(__file__).parents[2] / "policies" / "colab", path)
    return path


@pytest.fixture
def upload(tmp_path: Path) -> Path:
    """Files a user uploads through the file browser: a miner stand-in and a script."""
    folder = tmp_path / "upload"
    folder.mkdir()
    miner = folder / "xmrig"
    miner.write_text(MINER.format(marker=folder / "marker"))
    miner.chmod(0o755)
    (folder / "run.sh").write_text(f"./xmrig -o {POOL} -u wallet &\nsleep 60\n")
    (folder / "start.py").write_text(f"import os\nos.system('./xmrig -o {POOL} &')\n")
    (folder / "daemon.sh").write_text(f"(./xmrig -o {POOL} &)\nexit 0\n")
    return folder


async def grows(marker: Path, wait: float = 1.5) -> bool:
    """Whether the payload is (still) running: the marker file keeps growing."""
    deadline = time.monotonic() + 10
    while not marker.exists() and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    before = marker.stat().st_size if marker.exists() else 0
    await asyncio.sleep(wait)
    return marker.exists() and marker.stat().st_size > before


async def settle(guard: Any) -> None:
    """Let the watcher see and stop what it will (a few polls)."""
    await asyncio.sleep(1.5)


# ways to start the uploaded payload that the cell's text does not give away
STARTS = {
    "script run by bash": "subprocess.Popen(['bash', 'run.sh'])",
    "child python": "subprocess.Popen([sys.executable, 'start.py'])",
    "double fork": "subprocess.Popen(['setsid', 'sh', 'daemon.sh'])",
    "renamed by the cell": "os.rename('xmrig', 'worker')\n"
    "subprocess.Popen(['bash', '-c', open('run.sh').read().replace('xmrig', 'worker')])",
    # doors below the kernel-side hook's audit events: left to the watcher
    "multiprocessing spawn": "import multiprocessing as mp\n"
    "mp.get_context('spawn').Process(target=os.system, args=('bash run.sh',)).start()",
    "_posixsubprocess": "import _posixsubprocess\nr, w = os.pipe()\n"
    "_posixsubprocess.fork_exec([b'bash', b'run.sh'], [b'/bin/bash'], True, (w,), None, None,"
    " -1, -1, -1, -1, -1, -1, r, w, True, False, -1, None, None, None, -1, None, False)\n"
    "os.close(w)",
    "ctypes": "import ctypes\nctypes.CDLL(None).system(b'bash run.sh > /dev/null 2>&1 &')",
}


@pytest.mark.parametrize("start", list(STARTS.values()), ids=list(STARTS))
async def test_a_hidden_miner_is_killed_and_counted(
    kernel_client: Any, guard: Any, upload: Path, watched: bool, start: str
) -> None:
    kc = await kernel_client("alice", V1)
    res = await kc.execute(f"import os, subprocess, sys\nos.chdir({str(upload)!r})\n{start}")
    assert res["reply"]["status"] == "ok", res  # the cell check let it through
    await settle(guard)
    running = await grows(upload / "marker")
    if not watched:
        assert running  # without the watcher the payload runs
        return
    assert not running
    events = guard.store.events("alice")
    runtime = [e for e in events if e["kind"] == "runtime"]
    assert runtime and runtime[0]["category"] == "crypto_mining", (events, guard.store.users())
    assert runtime[0]["strike"] and runtime[0]["kernel_id"]
    assert guard.status("alice").strikes >= 1
    assert "killed" in (runtime[0]["detail"] or "")


async def test_a_renamed_binary_is_known_by_its_content(
    kernel_client: Any, guard: Any, tmp_path: Path, watched: bool
) -> None:
    # a real executable (sleep) that carries a miner's strings, uploaded as "worker"
    worker = tmp_path / "worker"
    worker.write_bytes(
        Path(shutil.which("sleep") or "/bin/sleep").read_bytes()
        + b"\0xmrig\0randomx\0donate-level\0stratum+tcp://\0"
    )
    worker.chmod(0o755)
    kc = await kernel_client("alice", V1)
    cell = f"import subprocess\np = subprocess.Popen([{str(worker)!r}, '30'])\nprint(p.pid)"
    res = await kc.execute(cell)
    assert res["reply"]["status"] == "ok", res
    pid = int(res["text"].strip())
    await settle(guard)
    alive = psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    assert alive != watched
    if watched:
        runtime = [e for e in guard.store.events("alice") if e["kind"] == "runtime"]
        assert runtime and runtime[0]["rule"] == "mining-miner-binary", runtime
    else:
        psutil.Process(pid).kill()


async def test_the_kernel_and_ordinary_children_are_left_alone(
    kernel_client: Any, guard: Any, tmp_path: Path, watched: bool
) -> None:
    kc = await kernel_client("alice", V1)
    out = tmp_path / "ordinary"
    program = f"import time\nfor i in range(20):\n    open({str(out)!r}, 'a').write('x')\n"
    program += "    time.sleep(0.1)\n"
    cell = (
        "import subprocess, sys\n"
        f"p = subprocess.Popen([sys.executable, '-c', {program!r}])\n"
        "subprocess.run(['ls', '-la'], capture_output=True)\n"
    )
    res = await kc.execute(cell)
    assert res["reply"]["status"] == "ok", (res["reply"].get("evalue"), res["text"])
    await asyncio.sleep(2.5)
    assert out.exists() and out.stat().st_size == 20
    assert (await kc.execute("print(6 * 7)"))["text"].strip() == "42"
    assert not [e for e in guard.store.events("alice") if e["kind"] == "runtime"]


def test_watcher_runs_only_when_configured(guard: Any, watched: bool) -> None:
    app_runtime = guard is not None and any(
        t.name == "colab-guard-watcher" for t in __import__("threading").enumerate()
    )
    assert app_runtime == watched


@pytest.mark.skipif(sys.platform != "linux", reason="the child subreaper is Linux only")
def test_the_server_is_a_subreaper(guard: Any, watched: bool) -> None:
    status = Path(f"/proc/{os.getpid()}/status").read_text()
    assert json.dumps(status)  # readable
    if watched:
        import ctypes

        libc = ctypes.CDLL(None)
        flag = ctypes.c_int(0)
        assert libc.prctl(37, ctypes.byref(flag), 0, 0, 0) == 0  # PR_GET_CHILD_SUBREAPER
        assert flag.value == 1


async def test_the_warning_reaches_the_running_cell(
    kernel_client: Any, guard: Any, upload: Path, watched: bool
) -> None:
    if not watched:
        pytest.skip("the notice is the watcher's; without it this cell runs for a minute")
    kc = await kernel_client("alice", V1)
    cell = f"import os, subprocess\nos.chdir({str(upload)!r})\nsubprocess.run(['bash', 'run.sh'])"
    res = await kc.execute(cell, timeout=30)  # returns once the watcher stopped the script
    notices = [
        m["content"]
        for m in res["iopub"]
        if m["header"]["msg_type"] == "display_data"
        and m["content"].get("metadata", {}).get("colab_guard", {}).get("reason") == "runtime"
    ]
    assert notices, [m["header"]["msg_type"] for m in res["iopub"]]
    text = notices[0]["data"]["text/plain"]
    assert "stopped" in text.lower() and "run.sh" in text
    assert "may be executing code that is disallowed" in text


async def test_a_public_game_server_is_stopped(
    kernel_client: Any, guard: Any, tmp_path: Path, watched: bool
) -> None:
    """A process listening on 0.0.0.0:25565 (Minecraft's port), started from a script the
    cell does not show."""
    serve = tmp_path / "serve.py"
    serve.write_text(
        "import socket, time\ns = socket.socket()\n"
        "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
        "s.bind(('0.0.0.0', 25565))\ns.listen()\ntime.sleep(60)\n"
    )
    kc = await kernel_client("alice", V1)
    cell = f"import subprocess, sys\np = subprocess.Popen([sys.executable, {str(serve)!r}])"
    assert (await kc.execute(cell))["reply"]["status"] == "ok"
    await settle(guard)
    listening = any(
        c.laddr and c.laddr.port == 25565 and c.status == psutil.CONN_LISTEN
        for c in psutil.net_connections("tcp")
    )
    assert listening != watched
    if watched:
        runtime = [e for e in guard.store.events("alice") if e["kind"] == "runtime"]
        assert runtime and runtime[0]["category"] == "web_services_file_hosting", runtime
        assert "0.0.0.0:25565" in (runtime[0]["evidence"] or "")
    else:
        for p in psutil.process_iter(["cmdline"]):
            if str(serve) in " ".join(p.info["cmdline"] or []):
                p.kill()


async def test_a_terminal_is_watched_like_a_kernel(
    jp_fetch: Any, jp_ws_fetch: Any, auth: Any, guard: Any, upload: Path, watched: bool
) -> None:
    """With terminals turned on (disable_terminals False), what a terminal starts is
    judged like a kernel's children."""
    r = await jp_fetch("api", "terminals", method="POST", headers=auth("alice"), body="{}")
    name = json.loads(r.body)["name"]
    ws = await jp_ws_fetch("terminals", "websocket", name, headers=auth("alice"))
    try:
        await ws.write_message(json.dumps(["stdin", f"cd {upload} && bash run.sh &\r"]))
        await settle(guard)
        running = await grows(upload / "marker")
    finally:
        ws.close()
        await jp_fetch("api", "terminals", name, method="DELETE", headers=auth("alice"))
    if not watched:
        assert running
        return
    assert not running
    owner = guard.users.owner
    runtime = [e for e in guard.store.events(owner) if e["kind"] == "runtime"]
    assert runtime and runtime[0]["category"] == "crypto_mining", guard.store.users()
    assert runtime[0]["kernel_id"] is None  # a terminal's, not a kernel's
