"""Runtime backstop: commands and addresses that only exist at run time."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from jupyter_client.blocking.client import BlockingKernelClient
from kernel_client import audit_events, execute

pytestmark = pytest.mark.analyzer


def runtime_blocks(workdir: Path, detail_part: str) -> list[dict]:
    return [
        e for e in audit_events(workdir)
        if e["kind"] == "runtime_block" and detail_part in e["detail"]
    ]  # fmt: skip


@pytest.mark.parametrize(
    "code",
    [
        "import subprocess\ncmd = open('cmd.txt').read()\nsubprocess.run(cmd, shell=True)",
        "import subprocess\nargv = open('cmd.txt').read().split()\nsubprocess.Popen(argv).wait()",
        "import os\nos.system(open('cmd.txt').read())",
        "c = open('cmd.txt').read().strip()\n!{c}",
        "c = open('cmd.txt').read().strip()\nout = !{c}",
        "import pty, os\nargv = open('cmd.txt').read().split()\npty.spawn(argv)",
        "import os\nargv = open('cmd.txt').read().split()\nos.posix_spawn(argv[0], argv, {})",
    ],
    ids=["subprocess-shell", "popen-argv", "os-system", "bang", "getoutput", "pty", "posix-spawn"],
)
def test_command_read_from_file_is_refused(
    kc: BlockingKernelClient, workdir: Path, side_effect: Path, code: str
) -> None:
    before = len(runtime_blocks(workdir, "forbidden-tool"))
    r = execute(kc, code + "\nprint('after')")
    assert r.status == "error", r.reply
    assert r.reply["ename"] == "ProhibitedCodeError"
    assert "after" not in r.stream()
    assert not side_effect.exists()
    assert len(r.displays()) == 1 and "text/html" in r.displays()[0]
    assert len(runtime_blocks(workdir, "forbidden-tool")) == before + 1


def test_command_refused_even_when_caught(
    kc: BlockingKernelClient, workdir: Path, side_effect: Path
) -> None:
    code = (
        "import subprocess\ntry:\n    subprocess.run(open('cmd.txt').read(), shell=True)\n"
        "except OSError as e:\n    print('caught', type(e).__name__)"
    )
    r = execute(kc, code)
    assert r.status == "ok"
    assert "caught ProhibitedCodeError" in r.stream()
    assert not side_effect.exists()


@pytest.fixture(scope="module")
def listener() -> Iterator[list[int]]:
    """A local server on the test policy's blocked port (39123); yields accepted conns."""
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 39123))
    srv.listen(5)
    srv.settimeout(0.2)
    accepted: list[int] = []

    def accept() -> None:
        while srv.fileno() != -1:
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            accepted.append(1)
            conn.close()

    threading.Thread(target=accept, daemon=True).start()
    yield accepted
    srv.close()


def test_connect_to_blocked_port_is_refused(
    kc: BlockingKernelClient, workdir: Path, listener: list[int]
) -> None:
    code = (
        "import socket\nport = int(open('port.txt').read())\n"
        "s = socket.socket()\ns.settimeout(2)\ns.connect(('127.0.0.1', port))\nprint('connected')"
    )
    r = execute(kc, code)
    assert r.status == "error" and r.reply["ename"] == "ProhibitedCodeError"
    assert "connected" not in r.stream()
    assert listener == []
    assert runtime_blocks(workdir, "127.0.0.1:39123")


def test_create_connection_to_blocked_port_is_refused(
    kc: BlockingKernelClient, listener: list[int]
) -> None:
    code = (
        "import socket\nport = int(open('port.txt').read())\n"
        "socket.create_connection(('127.0.0.1', port), timeout=2)\nprint('connected')"
    )
    r = execute(kc, code)
    assert r.status == "error" and r.reply["ename"] == "ProhibitedCodeError"
    assert listener == []


def test_ordinary_processes_and_connects_still_work(kc: BlockingKernelClient) -> None:
    code = (
        "import subprocess, socket, threading\n"
        "print(subprocess.run('echo fine', shell=True, capture_output=True, text=True).stdout)\n"
        "srv = socket.socket(); srv.bind(('127.0.0.1', 0)); srv.listen(1)\n"
        "c = socket.create_connection(srv.getsockname(), timeout=2); print('connected'); c.close()"
    )
    r = execute(kc, code)
    assert r.status == "ok", r.reply
    assert "fine" in r.stream() and "connected" in r.stream()
