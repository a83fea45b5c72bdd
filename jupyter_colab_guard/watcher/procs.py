"""Processes below the guarded kernels, read from /proc through psutil."""

from __future__ import annotations

import contextlib
import ctypes
import os
from collections.abc import Iterable
from dataclasses import dataclass

import psutil

PR_SET_CHILD_SUBREAPER = 36
TOKEN_ENV = "COLAB_GUARD_REPORT_TOKEN"  # set in every guarded kernel's environment


@dataclass(frozen=True, slots=True)
class Proc:
    """One process, as it was when first seen."""

    pid: int
    started: float  # psutil create_time: (pid, started) names one process for good
    ppid: int
    argv: tuple[str, ...]
    exe: str
    cwd: str
    token: str | None  # the guarded kernel's report token found in its environment

    @property
    def key(self) -> tuple[int, float]:
        return self.pid, self.started


def become_subreaper() -> bool:
    """Orphans of our descendants come back to this process instead of PID 1, so
    `setsid`, double forks and `nohup … &` stay in the watched tree (Linux only)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def parents() -> dict[int, tuple[int, float]]:
    """pid -> (ppid, create_time) of every process on the machine (one /proc pass)."""
    out: dict[int, tuple[int, float]] = {}
    for p in psutil.process_iter(["ppid", "create_time"]):
        info = p.info
        if info.get("ppid") is not None and info.get("create_time") is not None:
            out[p.pid] = (info["ppid"], info["create_time"])
    return out


def descendants(roots: Iterable[int], table: dict[int, tuple[int, float]]) -> dict[int, int]:
    """Every descendant of ``roots`` -> the root it descends from."""
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found: dict[int, int] = {}
    for root in roots:
        stack = list(children.get(root, ()))
        while stack:
            pid = stack.pop()
            if pid in found or pid == root:
                continue
            found[pid] = root
            stack.extend(children.get(pid, ()))
    return found


def read(pid: int, started: float) -> Proc | None:
    """What a new process runs (None when it is already gone or is another process)."""
    try:
        p = psutil.Process(pid)
        with p.oneshot():
            if abs(p.create_time() - started) > 0.01:
                return None
            argv = tuple(p.cmdline())
            exe = _quiet(p.exe) or ""
            cwd = _quiet(p.cwd) or ""
            environ = _quiet(p.environ) or {}
            ppid = p.ppid()
    except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
        return None
    return Proc(pid, started, ppid, argv, exe, cwd, environ.get(TOKEN_ENV))


def _quiet(getter):  # type: ignore[no-untyped-def]
    try:
        return getter()
    except (psutil.AccessDenied, psutil.ZombieProcess, OSError):
        return None


def kill_tree(pid: int, started: float) -> list[int]:
    """SIGKILL a process and all its descendants (children first seen, then the parent);
    the pids killed. Nothing when ``pid`` is now another process."""
    try:
        top = psutil.Process(pid)
        if abs(top.create_time() - started) > 0.01:
            return []
        tree = [*top.children(recursive=True), top]
    except psutil.NoSuchProcess:
        return []
    killed = []
    for p in tree:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            p.kill()
            killed.append(p.pid)
    for p in tree:  # reap our own children (we are their parent or their subreaper)
        with contextlib.suppress(psutil.NoSuchProcess, psutil.TimeoutExpired, ChildProcessError):
            if p.ppid() == os.getpid():
                p.wait(timeout=0.5)
    return killed
