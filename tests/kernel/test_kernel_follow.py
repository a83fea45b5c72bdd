"""A running kernel takes the policy version the server marks on an execute_request
(kernel/follow.py), read from its policy folder and checked against the version's hash.

The server's side (marking every forwarded request, replacing a client's value) is
tested in tests/server/test_server_policy_store.py and, with two servers on one
PostgreSQL store, in tests/deploy/test_policy_store.py. Here a real kernel gets the
marks directly, as the server sends them.
"""

from __future__ import annotations

import hashlib
import queue
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from jupyter_client.blocking.client import BlockingKernelClient
from kernel_client import Result, audit_events, running_kernel
from policy_texts import oldtool_policy

from jupyter_colab_guard.kernel.follow import FIELD

pytestmark = pytest.mark.analyzer

HEAD = oldtool_policy("follow-test")
NEW_RULE = """\
  - id: newtool
    category: tools
    message: Runs the new tool.
    match: {shell: {program: [newtool]}}
    examples: {match: ["!newtool"], no_match: ["print(1)"]}
"""
# the program name exists only at run time (read from a file): only the kernel's
# runtime hook can judge it, never a static check of the cell
RUN_NEWTOOL = (
    "import subprocess\nargv = open('cmd.txt').read().split()\nsubprocess.run(argv)\nprint('after')"
)


def version_of(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """(work dir, policy dir holding the new version, new version)."""
    root = tmp_path_factory.mktemp("follow")
    work, policies = root / "work", root / "policies"
    work.mkdir()
    policies.mkdir()
    tool = work / "newtool"
    tool.write_text("#!/bin/sh\necho ran >> side-effect.txt\n")
    tool.chmod(0o755)
    (work / "cmd.txt").write_text("./newtool --go\n")
    (root / "old.yaml").write_text(HEAD)
    new = HEAD + NEW_RULE
    version = version_of(new)
    (policies / f"policy-{version}.yaml").write_text(new)
    return work, policies, version


@pytest.fixture(scope="module")
def kc(setup: tuple[Path, Path, str]) -> Iterator[BlockingKernelClient]:
    work, policies, _ = setup
    with running_kernel(
        work,
        policy=str(work.parent / "old.yaml"),
        options=[f"--KernelGuard.policy_dir={policies}"],
    ) as client:
        yield client


def run(kc: BlockingKernelClient, code: str, mark: str | None) -> Result:
    """One cell, its execute_request marked with ``mark`` as the server marks it."""
    content = {
        "code": code, "silent": False, "store_history": True, "user_expressions": {},
        "allow_stdin": False, "stop_on_error": False,
    }  # fmt: skip
    msg = kc.session.msg("execute_request", content, metadata={FIELD: mark} if mark else {})
    kc.shell_channel.send(msg)
    mid = msg["header"]["msg_id"]
    result, idle, deadline = Result(reply={}), False, time.monotonic() + 60
    while not (result.reply and idle):
        assert time.monotonic() < deadline, f"no reply for {code!r}"
        try:
            m = kc.get_iopub_msg(timeout=0.05)
            if m["parent_header"].get("msg_id") == mid:
                if m["msg_type"] == "status":
                    idle = idle or m["content"]["execution_state"] == "idle"
                elif m["msg_type"] != "execute_input":
                    result.outputs.append(m)
        except queue.Empty:
            pass
        if not result.reply:
            try:
                m = kc.get_shell_msg(timeout=0.01)
            except queue.Empty:
                continue
            if m["parent_header"].get("msg_id") == mid:
                result.reply = m["content"]
    return result


def enforced(kc: BlockingKernelClient, mark: str | None) -> str:
    code = "from jupyter_colab_guard.kernel.extension import guard_of\n"
    code += "print(guard_of(get_ipython()).policy_version)"
    return run(kc, code, mark).stream().strip()


def test_marked_version_is_put_in_force_before_the_cell(
    kc: BlockingKernelClient, setup: tuple[Path, Path, str]
) -> None:
    work, _, version = setup
    effect = work / "side-effect.txt"
    old = enforced(kc, None)
    assert old == version_of(HEAD)

    # control: under the old policy the program runs
    r = run(kc, RUN_NEWTOOL, None)
    assert r.status == "ok" and "after" in r.stream(), r.reply
    assert effect.exists()
    effect.unlink()

    # hostile marks: not a version, a path, a version with no file: nothing changes
    for mark in ("../../etc/passwd", "NEWTOOL", "0123456789abcdef"):
        r = run(kc, RUN_NEWTOOL, mark)
        assert r.status == "ok", (mark, r.reply)
        assert effect.exists()
        effect.unlink()
    assert enforced(kc, None) == old
    reports = [e for e in audit_events(work) if e.get("rule") == "tamper.policy"]
    assert len(reports) == 1 and "0123456789abcdef" in reports[0]["detail"]

    # the server's mark: the new version is in force before this very cell
    r = run(kc, RUN_NEWTOOL, version)
    assert r.status == "error" and r.reply["ename"] == "ProhibitedCodeError", r.reply
    assert "after" not in r.stream()
    assert not effect.exists()
    assert enforced(kc, version) == version
    armed = [e for e in audit_events(work) if e["kind"] == "armed"]
    assert armed[-1]["policy_version"] == version and "reloaded" in armed[-1]["detail"]
    # a later request without a mark keeps the version in force
    r = run(kc, RUN_NEWTOOL, None)
    assert r.reply["ename"] == "ProhibitedCodeError"
    assert not effect.exists()
    # and the guard's integrity check took the new analyzer as its own (no repair)
    assert not [e for e in audit_events(work) if e.get("rule", "").startswith("tamper.function")]


def test_a_file_that_does_not_hash_to_its_name_is_refused(
    setup: tuple[Path, Path, str], tmp_path: Path
) -> None:
    """A policy file placed under a version's name with other content (e.g. a policy
    with no rules, written by code in a kernel) is never put in force."""
    work, _, _ = setup
    policies = tmp_path / "policies"
    policies.mkdir()
    lax = "version: 1\nname: lax\ncategories: []\nrules: []\n"
    claimed = version_of(HEAD + NEW_RULE + "# other\n")
    (policies / f"policy-{claimed}.yaml").write_text(lax)
    with running_kernel(
        work,
        policy=str(work.parent / "old.yaml"),
        options=[f"--KernelGuard.policy_dir={policies}"],
        audit_log=True,
    ) as client:
        before = enforced(client, None)
        assert enforced(client, claimed) == before
        r = run(client, "!oldtool", claimed)
        assert r.reply["ename"] == "ProhibitedCodeError"
