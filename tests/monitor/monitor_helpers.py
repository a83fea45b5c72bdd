"""Helpers of the monitor tests: a throw-away unprivileged user, harmless stand-in
payloads, and `colab-guard monitor` as a real root subprocess."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from jupyter_colab_guard.store import StrikeStore

# what miner executables carry (the policy's binary signatures); see test_server_runtime.py
MINER_STRINGS = b"\0xmrig\0randomx\0donate-level\0stratum+tcp://\0"
STARTUP = 60.0  # seconds the monitor may take to say it runs
LOOPS = 20  # marker lines a payload writes, 0.1 s apart, before "done"


def missing_reason() -> str | None:
    """Why the monitor cannot be tested here (None: it can)."""
    if not sys.platform.startswith("linux"):
        return "the monitor reads /proc: Linux only"
    if os.geteuid() != 0:
        return "the monitor runs as root and the test creates a user: run the tests as root"
    for tool in ("useradd", "userdel", "runuser"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    return None


@dataclass
class LocalUser:
    name: str
    uid: int
    gid: int

    @classmethod
    def create(cls) -> LocalUser:
        name = "cgm" + uuid.uuid4().hex[:10]
        subprocess.run(
            ["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
            check=True,
            capture_output=True,
        )
        pw = pwd.getpwnam(name)
        return cls(name, pw.pw_uid, pw.pw_gid)

    def remove(self) -> None:
        for p in psutil.process_iter(["uids"]):  # what the tests started as the user
            uids = p.info["uids"]
            if uids is not None and uids.real == self.uid:
                p.kill()
        subprocess.run(["userdel", self.name], check=False, capture_output=True)

    def start(self, *argv: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """``argv`` as this user (runuser, from root); ``env``: added to a clean copy of
        ours (no JUPYTERHUB_USER unless given)."""
        base = {k: v for k, v in os.environ.items() if k != "JUPYTERHUB_USER"}
        return subprocess.Popen(
            ["runuser", "-u", self.name, "--", *argv],
            env={**base, **(env or {})},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )


def shell_binary() -> Path:
    return Path(shutil.which("dash") or shutil.which("sh") or "/bin/sh").resolve()


def fake_program(path: Path, signatures: bytes = b"") -> Path:
    """A copy of the shell binary under another name (``-c`` runs a script), carrying
    ``signatures``: a real executable, harmless, known by its name or its content."""
    path.write_bytes(shell_binary().read_bytes() + signatures)
    path.chmod(0o755)
    return path


def payload(marker: Path, loops: int = LOOPS) -> str:
    """The ``-c`` script of a stand-in: a marker line every 0.1 s, then "done"."""
    loop = f"while [ $i -lt {loops} ]; do date >> {marker}; sleep 0.1; i=$((i+1)); done"
    return f"i=0; {loop}; echo done >> {marker}"


def finished(marker: Path) -> bool:
    return marker.exists() and marker.read_text().rstrip().endswith("done")


def wait_exit(proc: subprocess.Popen[bytes], timeout: float) -> tuple[int | None, float]:
    """(return code or None when still running, seconds waited)."""
    start = time.monotonic()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        pass
    return proc.returncode, time.monotonic() - start


@dataclass
class MonitorProc:
    """`colab-guard monitor` started as a real subprocess (as root)."""

    policy: Path
    store_url: str
    log: Path
    options: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None
    metrics_port: int | None = None

    def start(self) -> MonitorProc:
        argv = [sys.executable, "-m", "jupyter_colab_guard.cli", "monitor"]
        argv += ["--policy", str(self.policy), "--metrics-port", "0", *self.options]
        env = {**os.environ, "COLAB_GUARD_STORE_URL": self.store_url}
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
        line = self.wait_log(r"colab-guard monitor: running .*", STARTUP)
        port = re.search(r"metrics on [\d.]+:(\d+)", line)
        self.metrics_port = int(port.group(1)) if port else None
        return self

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_log(self, pattern: str, timeout: float = 10.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = re.search(pattern, self.text())
            if found:
                return found.group(0)
            assert self.proc is not None and self.proc.poll() is None, self.text()
            time.sleep(0.05)
        raise AssertionError(f"no {pattern!r} in the monitor's log:\n{self.text()}")

    def metrics(self) -> str:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as resp:
            return str(resp.read().decode())

    def stop(self) -> int:
        """SIGTERM; the exit code (the monitor must stop by itself within 15 s)."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"the monitor ignored SIGTERM:\n{self.text()}") from None
        return self.proc.returncode


def events_of(
    url: str, user: str, timeout: float = 10.0, least: int = 1
) -> list[dict[str, object]]:
    """The user's events in the store, once at least ``least`` are there (or timeout)."""
    store = StrikeStore(url)
    try:
        deadline = time.monotonic() + timeout
        while True:
            events = store.events(user)
            if len(events) >= least or time.monotonic() >= deadline:
                return events
            time.sleep(0.1)
    finally:
        store.close()
