"""Keep the guard in every kernel (issue 8): a folder in the kernel's working directory
named like a module the guard loads cannot stand in for it; the user's own modules there
still import."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from guard_helpers import V1
from tornado.httpclient import HTTPClientError

from jupyter_colab_guard.server import kernelmanager

SHADOW = """\
import pathlib
pathlib.Path({marker!r}).write_text("the impostor was imported")
raise ImportError("an impostor")
"""
# the guard and what it imports when the kernel loads it (an editable install of the guard
# itself is found by an import hook before sys.path, so its dependencies show the door)
IMPOSTORS = ("jupyter_colab_guard", "libcst", "yaml", "re2", "psutil")


@pytest.fixture
def work(jp_root_dir: Path, tmp_path: Path) -> tuple[str, Path]:
    """A folder in the user's files holding an impostor package and a module of theirs."""
    folder = jp_root_dir / "work"
    marker = tmp_path / "impostor-imported"
    for name in IMPOSTORS:
        (folder / name).mkdir(parents=True)
        (folder / name / "__init__.py").write_text(SHADOW.format(marker=str(marker)))
    (folder / "mymod.py").write_text("X = 42\n")
    return "work", marker


async def armed(guard: Any, kid: str, wait: float = 30.0) -> bool:
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        info = guard.kernel(kid)
        if info is not None and info.armed_at is not None:
            return True
        await asyncio.sleep(0.2)
    return False


@pytest.mark.parametrize("safe", [True, False], ids=["python -P", "without -P"])
async def test_a_folder_in_the_working_directory_cannot_replace_the_guard(
    jp_fetch: Any,
    kernel_client: Any,
    auth: Any,
    guard: Any,
    work: tuple[str, Path],
    safe: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if not safe:  # the launch as it was: shows the door this closes
        monkeypatch.setattr(kernelmanager, "safe_path", lambda cmd: cmd)
    path, marker = work
    r = await jp_fetch(
        "api",
        "kernels",
        method="POST",
        headers=auth("alice"),
        body=json.dumps({"name": "python3", "path": path}),
    )
    kid = json.loads(r.body)["id"]
    kc = await kernel_client("alice", V1, kernel_id=kid)
    res = await kc.execute("import mymod, os\nprint(mymod.X, os.path.basename(os.getcwd()))")
    if safe:
        assert res["text"].split() == ["42", "work"], res  # the user's own module imports
        assert await armed(guard, kid)
        assert not marker.exists()
    else:
        assert marker.exists()  # an impostor was loaded while the guard started
        assert not await armed(guard, kid, wait=5.0)


@pytest.mark.parametrize(
    "guard_config", [{}, {"trust_user_kernelspecs": True}], ids=["default", "trusted"]
)
async def test_a_kernelspec_in_the_users_files_is_refused(
    jp_fetch: Any, jp_data_dir: Path, auth: Any, guard_config: dict[str, Any]
) -> None:
    """Code in a kernel can write ~/.local/share/jupyter/kernels: a kernelspec there
    could start Python without the guard."""
    spec = jp_data_dir / "kernels" / "mine"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "Mine",
                "language": "python",
            }
        )
    )
    body = json.dumps({"name": "mine"})
    if guard_config.get("trust_user_kernelspecs"):
        r = await jp_fetch("api", "kernels", method="POST", headers=auth("alice"), body=body)
        assert r.code == 201
        return
    with pytest.raises(HTTPClientError) as err:
        await jp_fetch("api", "kernels", method="POST", headers=auth("alice"), body=body)
    assert err.value.code == 403
    # the operator's kernelspec still starts
    r = await jp_fetch(
        "api", "kernels", method="POST", headers=auth("alice"), body=json.dumps({"name": "python3"})
    )
    assert r.code == 201
