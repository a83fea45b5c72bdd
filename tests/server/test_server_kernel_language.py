"""A shell kernel's cells are checked as shell (issue 8): the language comes from the
kernelspec the server launched, never from what the kernel says. Real bash_kernel; a
stand-in "forbidden-tool" on PATH leaves a marker file when it runs."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from guard_helpers import V1, server_refusal

from jupyter_colab_guard.server import checker

pytest.importorskip("bash_kernel", reason="bash_kernel (a test dependency) is not installed")

# valid Python up to its last line (t = forbidden - tool), which Python cannot parse:
# read as Python it shows nothing; read as shell it runs forbidden-tool
CELL = "t=forbidden-tool\n$t --go"


@pytest.fixture
def guard_config() -> dict[str, Any]:
    # the test's kernelspec lives in the (test) user's data dir: trusted here
    return {"kernel_extension": False, "trust_user_kernelspecs": True}


@pytest.fixture
def bash_spec(jp_data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    tool = tmp_path / "bin" / "forbidden-tool"
    tool.parent.mkdir()
    marker = tmp_path / "ran"
    tool.write_text(f"#!/bin/sh\necho ran > {marker}\n")
    tool.chmod(0o755)
    spec = jp_data_dir / "kernels" / "bash"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "bash_kernel", "-f", "{connection_file}"],
                "display_name": "Bash",
                "language": "bash",
                "env": {"PATH": f"{tool.parent}:/usr/bin:/bin"},
            }
        )
    )
    return marker


@pytest.mark.parametrize("by_language", [True, False], ids=["as shell", "as Python"])
async def test_a_bash_kernel_cell_is_checked_as_shell(
    jp_fetch: Any,
    kernel_client: Any,
    auth: Any,
    guard: Any,
    bash_spec: Path,
    by_language: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if not by_language:  # every cell read as Python, as before: the door this closes
        monkeypatch.setattr(checker, "as_python", lambda code, language: code)
    r = await jp_fetch(
        "api", "kernels", method="POST", headers=auth("alice"), body=json.dumps({"name": "bash"})
    )
    kid = json.loads(r.body)["id"]
    assert guard.kernel(kid).language == "bash"
    kc = await kernel_client("alice", V1, kernel_id=kid)
    res = await kc.execute(CELL, timeout=60)
    if by_language:
        assert server_refusal(res) == "block", res
        assert not bash_spec.exists()
        assert guard.status("alice").strikes == 1
    else:
        assert server_refusal(res) is None
        assert bash_spec.exists()  # the shell ran the tool
