"""A guarded JupyterLab in a subprocess (``python -m jupyter_colab_guard.lab``), and
headless Chromium through Playwright (with the system's Chromium, no browser download)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
# screenshots of the tests (dialogs, pages): $COLAB_GUARD_SCREENSHOTS, else artifacts/screenshots
ARTIFACTS = Path(os.environ.get("COLAB_GUARD_SCREENSHOTS") or REPO / "artifacts" / "screenshots")
STANDARD_WARNING = "You may be executing code that is disallowed"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# escalation for the tests: a strike is counted, nobody is restricted mid-test
TEST_LADDER = [
    {"level": "warning", "strikes": 1},
    {"level": "suspended", "strikes": 1000},
]
# no news / update pop-ups over the notebook
PAGE_CONFIG = {
    "disabledExtensions": {
        "@jupyterlab/apputils-extension:announcements": True,
    }
}


def find_chromium() -> str | None:
    """``$COLAB_GUARD_CHROMIUM``, else Debian's ``chromium`` (or another Chrome) on PATH."""
    env = os.environ.get("COLAB_GUARD_CHROMIUM")
    if env:
        return env if Path(env).is_file() else None
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def code_cell(source: str) -> dict[str, Any]:
    return {
        "cell_type": "code",
        "execution_count": None,
        "metadata": {},
        "outputs": [],
        "source": source,
    }


def write_notebook(path: Path, sources: list[str]) -> Path:
    nb = {
        "cells": [{**code_cell(src), "id": f"c{i}"} for i, src in enumerate(sources)],
        "metadata": {
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    path.write_text(json.dumps(nb, indent=1), encoding="utf-8")
    return path


@dataclass
class Lab:
    """A running guarded JupyterLab."""

    proc: subprocess.Popen[bytes]
    port: int
    token: str
    notebook_dir: Path
    log: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def url(self, path: str) -> str:
        sep = "&" if "?" in path else "?"
        return f"{self.base}{path}{sep}token={self.token}"

    def api(self, path: str) -> Any:
        req = urllib.request.Request(
            self.base + path, headers={"Authorization": f"token {self.token}"}
        )
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def start_lab(
    home: Path,
    cwd: Path,
    lab_args: list[str],
    token: str = "browser-test-token",
    guard_config: dict[str, Any] | None = None,
) -> Lab:
    """Start ``python -m jupyter_colab_guard.lab`` with Jupyter's dirs under ``home``.

    ``guard_config``: ``ColabGuardApp`` settings (default: a ladder nobody climbs)."""
    config = home / "config"
    (config / "labconfig").mkdir(parents=True, exist_ok=True)
    (config / "labconfig" / "page_config.json").write_text(json.dumps(PAGE_CONFIG))
    if guard_config is None:
        # evidence shown, so the test sees the cell's text escaped in the warning
        guard_config = {
            "escalation": TEST_LADDER,
            "policy_poll_interval": 0,
            "show_evidence": True,
        }
    server_config = {"ColabGuardApp": guard_config}
    (config / "jupyter_server_config.json").write_text(json.dumps(server_config))
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(config),
        "JUPYTER_DATA_DIR": str(home / "data"),
        "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
        "IPYTHONDIR": str(home / "ipython"),
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("JUPYTERHUB_USER", None)
    port = free_port()
    log = home / "lab.log"
    argv = [sys.executable, "-m", "jupyter_colab_guard.lab", "--no-browser", "--port", str(port)]
    argv += [*lab_args, "--", f"--IdentityProvider.token={token}", "--ServerApp.port_retries=0"]
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
    lab = Lab(proc, port, token, cwd, log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"colab-guard lab exited {proc.returncode}:\n{lab.output()}")
        if "Guarded JupyterLab is running" in lab.output():
            try:
                lab.api("api/status")
                return lab
            except (OSError, urllib.error.URLError):
                pass
        time.sleep(0.2)
    lab.stop()
    raise RuntimeError(f"colab-guard lab did not start:\n{lab.output()}")
