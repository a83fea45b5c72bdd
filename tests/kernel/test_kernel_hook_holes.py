"""In-kernel hook holes (issue 8): state user code can reach must not silence the audit
hook, objects whose conversion runs user code cannot smuggle a launch past it, libc's
process doors looked up through ctypes are refused, and a forked child that tries to
exec a refused command is stopped. Each payload runs in a kernel without the guard."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from jupyter_client.blocking.client import BlockingKernelClient
from kernel_client import audit_events, execute, make_workdir, running_kernel

pytestmark = pytest.mark.analyzer

FLAG = """\
import gc, threading, os
for obj in gc.get_objects():
    if type(obj) is threading.local:
        obj.in_hook = True
        obj.depth = -1000
os.system(open('cmd.txt').read())
"""

FSPATH = """\
import os, subprocess
class Sneaky:
    def __fspath__(self):
        os.system(open('cmd.txt').read())
        return '/bin/true'
subprocess.run([Sneaky()])
"""

CTYPES = """\
import ctypes
libc = ctypes.CDLL(None)
libc.system(open('cmd.txt').read().encode())
"""

FORK_EXEC = """\
import os, time
argv = open('cmd.txt').read().split()
pid = os.fork()
if pid == 0:
    try:
        os.execv(argv[0], argv)
    finally:
        os._exit(3)
_, status = os.waitpid(pid, 0)
print('child exit', os.waitstatus_to_exitcode(status))
"""

PAYLOADS = {
    "thread-local flag": FLAG,
    "__fspath__": FSPATH,
    "ctypes": CTYPES,
    "fork+exec": FORK_EXEC,
}


@pytest.fixture(scope="module")
def plain_kc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BlockingKernelClient]:
    with running_kernel(make_workdir(tmp_path_factory.mktemp("plain")), guard=False) as kc:
        yield kc


@pytest.mark.parametrize("code", list(PAYLOADS.values()), ids=list(PAYLOADS))
def test_the_payload_runs_without_the_guard(plain_kc: BlockingKernelClient, code: str) -> None:
    r = execute(
        plain_kc, code + "\nimport pathlib\nprint(pathlib.Path('side-effect.txt').exists())"
    )
    assert "True" in r.stream(), r.reply


@pytest.mark.parametrize("code", list(PAYLOADS.values()), ids=list(PAYLOADS))
def test_the_payload_is_stopped_by_the_guard(
    kc: BlockingKernelClient, workdir: Path, side_effect: Path, code: str
) -> None:
    before = len(audit_events(workdir))
    r = execute(kc, code)
    assert not side_effect.exists(), r.reply
    new = audit_events(workdir)[before:]
    kinds = {e["kind"] for e in new}
    assert kinds & {"runtime_block", "tamper"}, new


def test_the_forked_child_is_refused_and_reported(
    kc: BlockingKernelClient, workdir: Path, side_effect: Path
) -> None:
    before = len(audit_events(workdir))
    r = execute(kc, FORK_EXEC)
    assert "child exit 3" in r.stream(), r.reply  # execv refused, the child left
    blocks = [e for e in audit_events(workdir)[before:] if e["kind"] == "runtime_block"]
    assert blocks and blocks[0]["pid"] != blocks[0].get("kernel_pid"), blocks
    assert "forbidden-tool" in blocks[0]["detail"]


def test_ordinary_ctypes_and_paths_still_work(kc: BlockingKernelClient) -> None:
    code = (
        "import ctypes, pathlib, subprocess\n"
        "print(ctypes.CDLL(None).getpid() > 0)\n"
        "print(subprocess.run([pathlib.Path('/bin/echo'), 'hi'], capture_output=True,"
        " text=True).stdout.strip())\n"
    )
    r = execute(kc, code)
    assert r.status == "ok", r.reply
    assert r.stream().split() == ["True", "hi"]
