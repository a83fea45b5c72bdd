"""The process watcher on its own (polling /proc, and the process connector where this
runs as root), with real processes below a stand-in kernel: a harmless stand-in miner
(a script named xmrig that writes a marker) is killed; without the watcher it runs."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from jupyter_colab_guard.analysis import Analyzer
from jupyter_colab_guard.policy import load_policy
from jupyter_colab_guard.watcher import Owner, ProcessJudge, ProcessWatcher
from jupyter_colab_guard.watcher.judge import script_of
from jupyter_colab_guard.watcher.procs import Proc

ANALYZER = Analyzer(load_policy(None))
POOL = "stratum+tcp://pool.example.com:3333"


@pytest.fixture
def upload(tmp_path: Path) -> Path:
    miner = tmp_path / "xmrig"
    miner.write_text(f"#!/bin/sh\nwhile true; do date >> {tmp_path / 'marker'}; sleep 0.1; done\n")
    miner.chmod(0o755)
    (tmp_path / "run.sh").write_text(f"./xmrig -o {POOL} &\nsleep 30\n")
    return tmp_path


def kernel(folder: Path) -> subprocess.Popen[bytes]:
    """A stand-in kernel that starts the uploaded script after a moment."""
    code = "import subprocess, time\ntime.sleep(0.3)\n"
    code += "subprocess.Popen(['bash', 'run.sh'])\ntime.sleep(30)"
    return subprocess.Popen([sys.executable, "-c", code], cwd=folder)


def grows(marker: Path) -> bool:
    before = marker.stat().st_size if marker.exists() else 0
    time.sleep(0.8)
    return marker.exists() and marker.stat().st_size > before


@pytest.mark.parametrize("watched", [True, False], ids=["watched", "unwatched"])
def test_polling_kills_a_script_started_below_the_kernel(upload: Path, watched: bool) -> None:
    k = kernel(upload)
    try:
        watcher = ProcessWatcher(
            ProcessJudge(lambda: ANALYZER), lambda: {k.pid: Owner("k1", "alice")}, connector=False
        )
        time.sleep(1.0)
        verdicts = watcher.poll() if watched else []
        assert grows(upload / "marker") != watched
        if watched:
            (verdict,) = [v for v in verdicts if v.killed]
            assert verdict.owner == Owner("k1", "alice")
            assert verdict.proc.argv[:2] == ("bash", "run.sh")
            assert {f.category for f in verdict.findings} == {"crypto_mining"}
            assert watcher.counters.kills == 1
    finally:
        for p in psutil.Process(k.pid).children(recursive=True):
            p.kill()
        k.kill()


@pytest.mark.skipif(os.geteuid() != 0, reason="the process connector needs root")
def test_the_connector_kills_within_100ms(upload: Path) -> None:
    k = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    watcher = ProcessWatcher(
        ProcessJudge(lambda: ANALYZER), lambda: {os.getpid(): Owner("k1", "alice")}, interval=30
    )
    watcher.start()
    try:
        time.sleep(0.5)
        assert watcher.counters.connector
        took = []
        for _ in range(5):
            start = time.monotonic()
            p = subprocess.Popen([str(upload / "xmrig"), "-o", POOL])
            while p.poll() is None and time.monotonic() - start < 5:
                time.sleep(0.002)
            took.append(time.monotonic() - start)
        assert max(took) < 0.1, took  # the poll interval is 30 s: only exec events did it
    finally:
        watcher.stop()
        k.kill()


def test_script_of_reads_what_an_interpreter_runs(upload: Path) -> None:
    def proc(*argv: str) -> Proc:
        return Proc(1, 0.0, 0, argv, "", str(upload), None)

    assert script_of(proc("bash", "run.sh")) == ("shell", (upload / "run.sh").read_text())
    assert script_of(proc("sh", "-c", "echo hi")) == ("shell", "echo hi")
    assert script_of(proc("python3", "-c", "print(1)")) == ("python", "print(1)")
    assert script_of(proc("python3", "-m", "ipykernel_launcher")) is None
    assert script_of(proc("/usr/bin/sleep", "3")) is None


def test_listening_sockets_and_their_holders() -> None:
    import socket

    from jupyter_colab_guard.watcher.sockets import holders, listening

    opened = []
    for family, host in (
        (socket.AF_INET, "0.0.0.0"),
        (socket.AF_INET6, "::"),
        (socket.AF_INET, "127.0.0.1"),
    ):
        s = socket.socket(family)
        s.bind((host, 0))
        s.listen()
        opened.append((s, host, s.getsockname()[1]))
    try:
        table = listening()
        mine = {(host, port) for _, host, port in opened}
        found = {ino: hp for ino, hp in table.items() if hp in mine}
        assert set(found.values()) == mine
        held = holders(set(found), [os.getpid()])
        assert list(held) == [os.getpid()] and sorted(held[os.getpid()]) == sorted(found)
    finally:
        for s, _, _ in opened:
            s.close()
