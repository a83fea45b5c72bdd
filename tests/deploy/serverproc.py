"""A guarded jupyter_server in a subprocess on loopback, and a websocket kernel client."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from guard_helpers import V1, KernelClient
from pgcluster import free_port
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from tornado.websocket import websocket_connect

REPO = Path(__file__).resolve().parents[2]
TEST_POLICY = REPO / "tests" / "server" / "policy.yaml"


class ServerProc:
    """``jupyter server`` with the guard and ``config`` (jupyter_server_config.json)."""

    def __init__(self, root: Path, config: dict[str, Any], token: str = "secret") -> None:
        self.root = root
        self.token = token
        self.port = free_port()
        for d in ("config", "data", "runtime", "work"):
            (root / d).mkdir(parents=True, exist_ok=True)
        cfg = {"ServerApp": {"jpserver_extensions": {"jupyter_colab_guard": True}}}
        for section, values in config.items():
            cfg.setdefault(section, {}).update(values)
        (root / "config" / "jupyter_server_config.json").write_text(json.dumps(cfg))
        self.proc: subprocess.Popen[bytes] | None = None
        self.kernel_pids: list[int] = []
        self._ws: list[Any] = []

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            JUPYTER_CONFIG_DIR=str(self.root / "config"),
            JUPYTER_DATA_DIR=str(self.root / "data"),
            JUPYTER_RUNTIME_DIR=str(self.root / "runtime"),
        )
        return env

    async def start(self) -> ServerProc:
        cmd = [
            sys.executable, "-m", "jupyter_server", "--no-browser", f"--port={self.port}",
            "--ip=127.0.0.1", "--allow-root", f"--IdentityProvider.token={self.token}",
            f"--ServerApp.root_dir={self.root / 'work'}",
        ]  # fmt: skip
        log = open(self.root / "server.log", "wb")
        self.proc = subprocess.Popen(cmd, env=self.env(), stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log_text()[-3000:]}")
            try:
                await self.fetch("api/status")
                return self
            except (OSError, HTTPClientError):
                await asyncio.sleep(0.2)
        raise TimeoutError("server did not start")

    def log_text(self) -> str:
        return (self.root / "server.log").read_text(errors="replace")

    async def fetch(self, path: str, method: str = "GET", body: Any = None) -> Any:
        req = HTTPRequest(
            f"http://127.0.0.1:{self.port}/{path}", method=method,
            headers={"Authorization": f"token {self.token}"},
            body=json.dumps(body) if body is not None else None,
        )  # fmt: skip
        r = await AsyncHTTPClient().fetch(req)
        return json.loads(r.body) if r.body else None

    async def kernel(self) -> KernelClient:
        kid = (await self.fetch("api/kernels", "POST", {"name": "python3"}))["id"]
        ws = await websocket_connect(
            HTTPRequest(
                f"ws://127.0.0.1:{self.port}/api/kernels/{kid}/channels",
                headers={"Authorization": f"token {self.token}"},
            ),
            subprotocols=[V1],
        )
        self._ws.append(ws)
        kc = KernelClient(ws, V1)
        kc.kernel_id = kid  # type: ignore[attr-defined]
        return kc

    async def stop(self) -> None:
        for ws in self._ws:
            ws.close()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def refused(res: dict[str, Any]) -> str | None:
    """The guard's reason when the server refused the execution, else None."""
    if res["reply"].get("ename") != "ProhibitedCodeError":
        return None
    for m in res["iopub"]:
        meta = m["content"].get("metadata", {}).get("colab_guard")
        if meta:
            return str(meta["reason"])
    return None  # refused by the kernel-side guard, not the server
