"""Drive a real kernel through jupyter_client (no mocks)."""

from __future__ import annotations

import json
import os
import queue
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.manager import KernelManager

REPO = Path(__file__).resolve().parents[2]
TEST_POLICY = Path(__file__).with_name("policy.yaml")


@dataclass
class Result:
    reply: dict[str, Any]
    outputs: list[dict[str, Any]] = field(default_factory=list)
    prompts: list[str] = field(default_factory=list)

    @property
    def status(self) -> str:
        return str(self.reply.get("status"))

    def stream(self, name: str = "stdout") -> str:
        return "".join(
            m["content"]["text"]
            for m in self.outputs
            if m["msg_type"] == "stream" and m["content"]["name"] == name
        )

    def displays(self) -> list[dict[str, Any]]:
        return [m["content"]["data"] for m in self.outputs if m["msg_type"] == "display_data"]

    def errors(self) -> list[dict[str, Any]]:
        return [m["content"] for m in self.outputs if m["msg_type"] == "error"]

    def results(self) -> list[dict[str, Any]]:
        return [m["content"]["data"] for m in self.outputs if m["msg_type"] == "execute_result"]


def kernel_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    for name in ("COLAB_GUARD_REPORT_URL", "COLAB_GUARD_REPORT_TOKEN"):
        env.pop(name, None)
    env.update(extra or {})
    return env


@contextmanager
def running_kernel(
    workdir: Path,
    *,
    guard: bool = True,
    policy: str | None = str(TEST_POLICY),
    options: list[str] | None = None,
    env: dict[str, str] | None = None,
    ext: bool = True,
    audit_log: bool = True,
) -> Iterator[BlockingKernelClient]:
    """A kernel with the extension (``--ext``) and its audit log in ``workdir``.

    ``ext=False`` keeps the settings but leaves loading to ``%load_ext``;
    ``audit_log=False`` leaves the log at its default place.
    """
    args: list[str] = []
    if guard:
        args += ["--ext=jupyter_colab_guard"] if ext else []
        if audit_log:
            args.append(f"--KernelGuard.audit_log={workdir / 'audit.jsonl'}")
        if policy is not None:
            args.append(f"--KernelGuard.policy_path={policy}")
        args += options or []
    km = KernelManager(kernel_name="python3")
    km.start_kernel(extra_arguments=args, env=kernel_env(env), cwd=str(workdir))
    kc = km.blocking_client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)
        yield kc
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def execute(
    kc: BlockingKernelClient,
    code: str,
    *,
    allow_stdin: bool = False,
    answers: list[str] | None = None,
    user_expressions: dict[str, str] | None = None,
    timeout: float = 60,
    metadata: dict[str, Any] | None = None,
) -> Result:
    """Run one cell; answer input requests from ``answers``; wait for reply and idle.
    ``metadata``: the execute_request's metadata (as a server would set it)."""
    if metadata is None:
        msg_id = kc.execute(
            code,
            allow_stdin=allow_stdin,
            user_expressions=user_expressions or {},
            stop_on_error=False,
        )
    else:
        content = {
            "code": code,
            "silent": False,
            "store_history": True,
            "user_expressions": user_expressions or {},
            "allow_stdin": allow_stdin,
            "stop_on_error": False,
        }
        msg = kc.session.msg("execute_request", content, metadata=metadata)
        kc.shell_channel.send(msg)
        msg_id = msg["header"]["msg_id"]
    answers = list(answers or [])
    result = Result(reply={})
    idle = False
    deadline = time.monotonic() + timeout
    while not (result.reply and idle):
        if time.monotonic() > deadline:
            raise TimeoutError(f"no reply for {code!r}")
        if allow_stdin:
            try:
                msg = kc.get_stdin_msg(timeout=0.01)
            except queue.Empty:
                pass
            else:
                if msg["msg_type"] == "input_request":
                    result.prompts.append(msg["content"]["prompt"])
                    kc.input(answers.pop(0) if answers else "")
        try:
            msg = kc.get_iopub_msg(timeout=0.02)
        except queue.Empty:
            pass
        else:
            if msg["parent_header"].get("msg_id") == msg_id:
                if msg["msg_type"] == "status":
                    idle = idle or msg["content"]["execution_state"] == "idle"
                elif msg["msg_type"] != "execute_input":
                    result.outputs.append(msg)
        if not result.reply:
            try:
                msg = kc.get_shell_msg(timeout=0.01)
            except queue.Empty:
                continue
            if msg["parent_header"].get("msg_id") == msg_id:
                result.reply = msg["content"]
    return result


def audit_events(workdir: Path) -> list[dict[str, Any]]:
    path = workdir / "audit.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# (here, not in conftest.py: several test directories each have a conftest module)
FORBIDDEN_TOOL = "#!/bin/sh\necho ran >> side-effect.txt\n"


def make_workdir(path: Path) -> Path:
    """A kernel cwd holding ./forbidden-tool, which leaves side-effect.txt when run."""
    path.mkdir(parents=True, exist_ok=True)
    tool = path / "forbidden-tool"
    tool.write_text(FORBIDDEN_TOOL)
    tool.chmod(0o755)
    (path / "cmd.txt").write_text("./forbidden-tool --go\n")
    (path / "port.txt").write_text("39123\n")
    return path
