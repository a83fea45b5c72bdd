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


# -- code that would run before the guard: the user's IPython/Jupyter config -----------
PROFILE_CODE = "import pathlib; pathlib.Path({marker!r}).write_text('ran before the guard')\n"


@pytest.fixture
def user_profile(jp_home_dir: Path, tmp_path: Path, monkeypatch: Any):
    """Config files and startup files in the user's own folders (code in a kernel can
    write them), each leaving a marker when it runs."""
    names = ("config", "startup", "pythonstartup")
    markers = {name: tmp_path / f"{name}.marker" for name in names}
    profile = jp_home_dir / ".ipython" / "profile_default"
    (profile / "startup").mkdir(parents=True)
    (profile / "ipython_kernel_config.py").write_text(
        PROFILE_CODE.format(marker=str(markers["config"]))
    )
    (profile / "startup" / "00-mine.py").write_text(
        PROFILE_CODE.format(marker=str(markers["startup"]))
    )
    startup = tmp_path / "pythonstartup.py"
    startup.write_text(PROFILE_CODE.format(marker=str(markers["pythonstartup"])))
    monkeypatch.setenv("PYTHONSTARTUP", str(startup))
    monkeypatch.delenv("IPYTHONDIR", raising=False)
    return markers


@pytest.mark.parametrize(
    "guard_config", [{}, {"trust_user_profile": True}], ids=["default", "trusted"]
)
async def test_the_users_profile_does_not_run_before_the_guard(
    kernel_client: Any, guard: Any, user_profile: dict[str, Path], guard_config: dict[str, Any]
) -> None:
    kc = await kernel_client("alice", V1)
    res = await kc.execute("print(6 * 7)")
    assert res["text"].strip() == "42", res
    assert await armed(guard, kc.kernel_id)
    ran = {name for name, marker in user_profile.items() if marker.exists()}
    if guard_config.get("trust_user_profile"):
        # the doors are real: trusted, each file runs at the kernel's start
        assert ran == set(user_profile), ran
    else:
        assert ran == set(), ran


# -- kernelspecs whose argv would not carry the guard ----------------------------------
def user_spec(jp_data_dir: Path, name: str, argv: list[str], language: str = "python") -> str:
    spec = jp_data_dir / "kernels" / name
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": name, "language": language})
    )
    return name


LAUNCH = f"exec {sys.executable} -m ipykernel_launcher -f $0"
WRAPPED = ["/bin/sh", "-c", LAUNCH, "{connection_file}"]  # the guard's options go to sh


async def start(jp_fetch: Any, auth: Any, name: str) -> tuple[int, bytes]:
    """(HTTP status, body) of starting kernelspec ``name`` as alice."""
    body = json.dumps({"name": name})
    try:
        r = await jp_fetch("api", "kernels", method="POST", headers=auth("alice"), body=body)
    except HTTPClientError as err:
        return err.code, (err.response.body if err.response is not None else b"") or b""
    return r.code, r.body


@pytest.mark.parametrize(
    "guard_config",
    [
        {"trust_user_kernelspecs": True},
        {"trust_user_kernelspecs": True, "require_kernel_guard": False},
    ],
    ids=["required", "not required"],
)
async def test_a_kernelspec_that_would_drop_the_guard_is_refused(
    jp_fetch: Any, jp_data_dir: Path, auth: Any, guard_config: dict[str, Any]
) -> None:
    code, body = await start(jp_fetch, auth, user_spec(jp_data_dir, "wrapped", WRAPPED))
    if guard_config.get("require_kernel_guard") is False:
        assert code == 201  # it starts (logged); the server's check still applies
    else:
        assert code == 403 and b"cannot be put in the kernel" in body, (code, body)


@pytest.mark.parametrize(
    "guard_config",
    [
        {"trust_user_kernelspecs": True},
        {"trust_user_kernelspecs": True, "refuse_unchecked_languages": True},
    ],
    ids=["default", "refused"],
)
async def test_kernels_of_unchecked_languages(
    jp_fetch: Any, jp_data_dir: Path, auth: Any, guard_config: dict[str, Any]
) -> None:
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    code, body = await start(jp_fetch, auth, user_spec(jp_data_dir, "rlang", argv, "R"))
    if not guard_config.get("refuse_unchecked_languages"):
        assert code == 201
        return
    assert code == 403 and b"language r" in body.lower(), (code, body)
    assert (await start(jp_fetch, auth, "python3"))[0] == 201  # a Python kernel still starts
