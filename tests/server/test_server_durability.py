"""A server subprocess killed with SIGKILL right after a strike keeps the strike; and the
installed config file enables the extension."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from guard_helpers import V1, KernelClient
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from tornado.websocket import websocket_connect

REPO = Path(__file__).resolve().parents[2]
TOKEN = "durability-secret"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env_for(tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        JUPYTER_CONFIG_DIR=str(tmp / "config"),
        JUPYTER_DATA_DIR=str(tmp / "data"),
        JUPYTER_RUNTIME_DIR=str(tmp / "runtime"),
        PYTHONPATH=os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p),
    )
    return env


def start_server(tmp: Path, port: int) -> subprocess.Popen[bytes]:
    cmd = [
        sys.executable, "-m", "jupyter_server", "--no-browser", f"--port={port}",
        "--ip=127.0.0.1", "--allow-root", f"--IdentityProvider.token={TOKEN}",
        f"--ServerApp.root_dir={tmp}",
    ]  # fmt: skip
    log = open(tmp / f"server-{port}.log", "wb")
    # cwd: the root dir (ipykernel_launcher drops sys.path[0] when it is the cwd, and
    # PYTHONPATH puts the repository there)
    return subprocess.Popen(cmd, env=env_for(tmp), stdout=log, stderr=subprocess.STDOUT, cwd=tmp)


async def fetch(port: int, path: str, method: str = "GET", body: Any = None) -> Any:
    req = HTTPRequest(
        f"http://127.0.0.1:{port}/{path}", method=method,
        headers={"Authorization": f"token {TOKEN}"},
        body=json.dumps(body) if body is not None else None,
    )  # fmt: skip
    r = await AsyncHTTPClient().fetch(req)
    return json.loads(r.body)


async def wait_ready(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, "server exited"
        try:
            await fetch(port, "api/status")
            return
        except (OSError, HTTPClientError):
            time.sleep(0.2)
    raise TimeoutError("server did not start")


@pytest.fixture
def server_dir(tmp_path: Path) -> Path:
    (tmp_path / "config").mkdir()
    config = {
        "ServerApp": {"jpserver_extensions": {"jupyter_colab_guard": True}},
        "ColabGuardApp": {
            "policy_path": str(Path(__file__).parent / "policy.yaml"),
            "owner": "owner-of-server",
        },
    }
    (tmp_path / "config" / "jupyter_server_config.json").write_text(json.dumps(config))
    return tmp_path


async def test_strike_survives_kill_9(server_dir: Path):
    port = free_port()
    proc = start_server(server_dir, port)
    kernel_pid = None
    try:
        await wait_ready(port, proc)
        kid = (await fetch(port, "api/kernels", "POST", {"name": "python3"}))["id"]
        ws = await websocket_connect(
            HTTPRequest(
                f"ws://127.0.0.1:{port}/api/kernels/{kid}/channels",
                headers={"Authorization": f"token {TOKEN}"},
            ),
            subprotocols=[V1],
        )
        kc = KernelClient(ws, V1)
        kernel_pid = int((await kc.execute("import os; print(os.getpid())"))["text"])
        res = await kc.execute("!forbidden-tool --now")
        assert res["reply"]["ename"] == "ProhibitedCodeError"
        assert any("colab_guard" in m["content"].get("metadata", {}) for m in res["iopub"])
        proc.send_signal(signal.SIGKILL)  # right after the warning was shown
        proc.wait(10)
        ws.close()
    finally:
        if proc.poll() is None:
            proc.kill()
        if kernel_pid:
            try:
                os.kill(kernel_pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    port = free_port()
    proc = start_server(server_dir, port)
    try:
        await wait_ready(port, proc)
        me = await fetch(port, "colab-guard/api/strikes/me")
        # a token-only server has no stable identity: strikes land on the owner
        assert (me["user"], me["strikes"]) == ("owner-of-server", 1)
        assert me["events"][0]["rule"] == "forbidden-tool-shell"
    finally:
        proc.terminate()
        proc.wait(20)


def test_extension_enabled_by_installed_config_file():
    shipped = json.loads(
        (REPO / "etc/jupyter/jupyter_server_config.d/jupyter_colab_guard.json").read_text()
    )
    assert shipped == {"ServerApp": {"jpserver_extensions": {"jupyter_colab_guard": True}}}
    installed = Path(sys.prefix, "etc/jupyter/jupyter_server_config.d/jupyter_colab_guard.json")
    if not installed.exists():
        pytest.fail(f"not installed: run `pip install -e {REPO}` ({installed} missing)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTER_")}
    out = subprocess.run(
        [sys.executable, "-m", "jupyter_server.extension.serverextension", "list"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    text = out.stdout + out.stderr
    assert str(installed.parent.parent) in text
    line = next(ln for ln in text.splitlines() if "jupyter_colab_guard" in ln and "enabled" in ln)
    assert "enabled" in line
    assert "jupyter_colab_guard" in text and "OK" in text
