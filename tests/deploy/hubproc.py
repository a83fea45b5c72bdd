"""A real JupyterHub on loopback for tests: configurable-http-proxy, DummyAuthenticator,
SimpleLocalProcessSpawner running ``jupyterhub-singleuser`` with the guard."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

from pgcluster import free_port
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest


def missing_reason() -> str | None:
    try:
        import jupyterhub  # noqa: F401
    except ImportError:
        return "jupyterhub is not installed: run .ci/setup-services.sh"
    if shutil.which("configurable-http-proxy") is None:
        return "configurable-http-proxy not found: run .ci/setup-services.sh"
    return None


class HubProc:
    def __init__(
        self,
        root: Path,
        *,
        store_url: str,
        singleuser: dict[str, Any],
        ladder: list[dict[str, Any]],
        admins: set[str],
        users: set[str],
    ) -> None:
        self.root = root
        self.port, self.hub_port, self.api_port = free_port(), free_port(), free_port()
        self.token = os.urandom(16).hex()
        (root / "su-config").mkdir(parents=True)
        (root / "homes").mkdir()
        (root / "su-config" / "jupyter_server_config.json").write_text(json.dumps(singleuser))
        config = f"""
            import sys
            from jupyter_colab_guard.hub import ColabGuardHub

            guard = ColabGuardHub({store_url!r}, escalation={ladder!r})
            c.Spawner.pre_spawn_hook = guard.pre_spawn_hook

            c.JupyterHub.ip = "127.0.0.1"
            c.JupyterHub.port = {self.port}
            c.JupyterHub.hub_ip = "127.0.0.1"
            c.JupyterHub.hub_port = {self.hub_port}
            c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{self.api_port}"
            c.JupyterHub.db_url = "sqlite:///{root}/jupyterhub.sqlite"
            c.JupyterHub.cookie_secret_file = "{root}/cookie_secret"
            c.JupyterHub.pid_file = "{root}/jupyterhub.pid"
            c.JupyterHub.authenticator_class = "dummy"
            c.DummyAuthenticator.password = "test-password"
            c.Authenticator.allowed_users = {users!r}
            c.Authenticator.admin_users = {admins!r}
            c.JupyterHub.spawner_class = "simple"
            c.SimpleLocalProcessSpawner.home_dir_template = "{root}/homes/{{username}}"
            c.Spawner.cmd = [sys.executable, "-m", "jupyterhub.singleuser"]
            c.Spawner.args = ["--allow-root"]
            c.Spawner.start_timeout = 60
            c.Spawner.http_timeout = 60
            c.Spawner.environment = {{"JUPYTER_CONFIG_DIR": "{root}/su-config"}}
            c.JupyterHub.services = [{{"name": "tester", "api_token": "{self.token}"}}]
            c.JupyterHub.load_roles = [{{
                "name": "tester",
                "scopes": ["admin:users", "admin:servers", "tokens", "read:users"],
                "services": ["tester"],
            }}]
        """
        (root / "jupyterhub_config.py").write_text(textwrap.dedent(config))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_text(self) -> str:
        return (self.root / "hub.log").read_text(errors="replace")

    async def start(self) -> HubProc:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER", "COLAB_"))}
        log = open(self.root / "hub.log", "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jupyterhub", "-f", str(self.root / "jupyterhub_config.py")],
            cwd=self.root, env=env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"hub exited:\n{self.log_text()[-4000:]}")
            try:
                await self.api("")
                return self
            except (OSError, HTTPClientError):
                await asyncio.sleep(0.3)
        raise TimeoutError(f"hub did not start:\n{self.log_text()[-4000:]}")

    async def request(self, path: str, token: str, method: str = "GET", body: Any = None) -> Any:
        req = HTTPRequest(
            f"{self.url}/{path}", method=method, headers={"Authorization": f"token {token}"},
            body=json.dumps(body) if body is not None else ("" if method == "POST" else None),
            allow_nonstandard_methods=True, request_timeout=90,
        )  # fmt: skip
        r = await AsyncHTTPClient().fetch(req)
        return json.loads(r.body) if r.body else None

    async def api(self, path: str, method: str = "GET", body: Any = None) -> Any:
        return await self.request(f"hub/api/{path}".rstrip("/"), self.token, method, body)

    async def user_token(self, user: str) -> str:
        return (await self.api(f"users/{user}/tokens", "POST", {"note": "test"}))["token"]

    async def spawn(self, user: str, timeout: float = 90) -> None:
        await self.api(f"users/{user}/server", "POST")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            model = await self.api(f"users/{user}")
            server = (model.get("servers") or {}).get("")
            if server and server.get("ready"):
                return
            if not model.get("pending") and not server:
                raise RuntimeError(f"spawn of {user} failed:\n{self.log_text()[-3000:]}")
            await asyncio.sleep(0.3)
        raise TimeoutError(f"{user}'s server did not start")

    async def stop_server(self, user: str, timeout: float = 60) -> None:
        await self.api(f"users/{user}/server", "DELETE")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            model = await self.api(f"users/{user}")
            if not model.get("servers") and not model.get("pending"):
                return
            await asyncio.sleep(0.3)
        raise TimeoutError(f"{user}'s server did not stop")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)  # the Hub stops the servers and the proxy
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
