"""How a guarded kernel is launched so that nothing in the user's files can run before
the guard or switch it off: the argv must start ipykernel with Python and carry the
guard's options last, and IPython reads its profile (config files are Python, run before
any extension; startup files run unchecked) from a fresh private folder per kernel start
instead of the user's ``~/.ipython``.
"""

from __future__ import annotations

import os
import shutil
import tempfile

KERNEL_MODULES = ("ipykernel_launcher", "ipykernel")
# read by IPython at start from the user's files; never passed on unless trusted
USER_STARTUP_ENV = ("PYTHONSTARTUP",)
# the languages the server's check reads: Python itself, shell kernels as %%bash
CHECKED_LANGUAGES = frozenset({"python", "bash", "sh", "shell", "zsh"})


def carries_guard(cmd: list[str], kernel_args: list[str]) -> bool:
    """Whether ``cmd`` is ``python [flags] -m ipykernel_launcher ...`` ending with the
    guard's options (a shell wrapper or another program would drop them)."""
    if not cmd or not os.path.basename(cmd[0]).startswith("python"):
        return False
    try:
        m = cmd.index("-m")
    except ValueError:
        return False
    if m + 1 >= len(cmd) or cmd[m + 1] not in KERNEL_MODULES:
        return False
    if any(not a.startswith("-") for a in cmd[1:m]):
        return False  # a script or -c text before -m runs instead of ipykernel
    n = len(kernel_args)
    return n > 0 and cmd[-n:] == kernel_args


def profile_root(snapshot_dir: str | None, kernel_id: str) -> str:
    """A fresh private folder for this start of the kernel (code in an earlier kernel
    could have written into an older one)."""
    if snapshot_dir:
        root = os.path.join(snapshot_dir, "profiles", kernel_id)
        shutil.rmtree(root, ignore_errors=True)
        os.makedirs(root, mode=0o700)
        return root
    return tempfile.mkdtemp(prefix=f"colab-guard-{kernel_id[:8]}-")


def private_profile_env(root: str) -> dict[str, str]:
    """Environment pointing IPython's per-user folder (profiles: config files, startup
    files) at ``root``."""
    ipython = os.path.join(root, "ipython")
    os.makedirs(ipython, mode=0o700, exist_ok=True)
    return {"IPYTHONDIR": ipython}


def drop_profile(root: str | None) -> None:
    if root:
        shutil.rmtree(root, ignore_errors=True)
