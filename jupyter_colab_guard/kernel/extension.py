"""``load_ipython_extension`` / ``unload_ipython_extension`` for the kernel guard."""

from __future__ import annotations

import os
import sys
from typing import Any

from . import audit
from .config import KernelGuard
from .errors import ProhibitedCodeError
from .guard import Guard
from .tamper import Installation

_GUARDS: dict[int, Guard] = {}  # id(shell) -> its guard
SITE_DIRS = ("site-packages", "dist-packages")


def load_ipython_extension(shell: Any) -> None:
    """Guard this shell. Loading again re-checks (and repairs) an existing guard."""
    try:
        guard = _GUARDS.get(id(shell))
        if guard is not None and guard.armed:
            guard.tamper_full()
            return
        settings = KernelGuard(parent=shell)
        guard = Guard(shell, settings)
        inst = Installation(guard)
        runtime = audit.install(guard)
        inst.runtime = runtime
        inst.extra_functions = [runtime.hook]
        inst.install()
        runtime.protected = inst.protected_ids()
        _GUARDS[id(shell)] = guard
        if not guard.load_error:
            guard.report_armed()
        _user_path(shell)
        if guard.load_error:
            mode = "every cell is blocked" if settings.fail_closed else "cells run unchecked"
            print(
                f"colab-guard: the policy could not be loaded ({guard.load_error}); {mode}.",
                file=sys.stderr,
            )
    except Exception as err:  # never crash the kernel
        print(f"colab-guard: could not install the kernel guard: {err!r}", file=sys.stderr)
        if _fail_closed(shell):
            _refuse_every_cell(shell, f"the acceptable-use guard could not start ({err!r})")


def _user_path(shell: Any) -> None:
    """The server starts kernels with ``python -P`` so that the working directory cannot
    shadow ipykernel or the guard; with the guard armed, it goes back on sys.path (where
    IPython would have put it) for the user's own modules."""
    if not sys.flags.safe_path or "" in sys.path:
        return
    if getattr(getattr(shell, "parent", None), "ignore_cwd", False):
        return
    # before the first site-packages, after the standard library (as IPython does)
    where = next(
        (i for i, p in enumerate(sys.path) if os.path.basename(p) in SITE_DIRS), len(sys.path)
    )
    sys.path.insert(where, "")


def _fail_closed(shell: Any) -> bool:
    """KernelGuard.fail_closed from the shell's config; closed when it cannot be read."""
    try:
        return bool(KernelGuard(parent=shell).fail_closed)
    except Exception:
        return True


def _refuse_every_cell(shell: Any, reason: str) -> None:
    """The last resort of a guard that failed to install: no cell runs unchecked."""

    def refuse(lines: list[str]) -> list[str]:
        raise ProhibitedCodeError(f"Execution is disabled: {reason}.")

    try:
        shell.input_transformers_post.append(refuse)
    except Exception as err:
        print(f"colab-guard: could not block execution either: {err!r}", file=sys.stderr)


def unload_ipython_extension(shell: Any) -> None:
    """Refused and reported unless ``KernelGuard.allow_unload`` is set."""
    guard = _GUARDS.get(id(shell))
    if guard is None:
        return
    if not guard.settings.allow_unload:
        guard.report_tamper("unload", "%unload_ext refused; the guard stays active")
        print(
            "colab-guard: the acceptable-use guard cannot be unloaded in this runtime.",
            file=sys.stderr,
        )
        return
    guard.report_tamper("unload", "%unload_ext allowed by KernelGuard.allow_unload")
    if guard.integrity is not None:
        guard.integrity.uninstall()
    _GUARDS.pop(id(shell), None)


def guard_of(shell: Any) -> Guard | None:
    """The guard of a shell (tests, benchmarks)."""
    return _GUARDS.get(id(shell))
