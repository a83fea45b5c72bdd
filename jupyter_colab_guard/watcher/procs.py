"""Processes below the guarded kernels, read from /proc through psutil."""

from __future__ import annotations

import contextlib
import ctypes
import os
import time
from collections.abc import Callable, Iterable
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
    """pid -> (ppid, create_time) of every process on the machine (one /proc pass:
    /proc/PID/stat read directly, about 10 µs a process; psutil elsewhere)."""
    if os.path.isdir("/proc/self/task"):
        return _proc_parents()
    out: dict[int, tuple[int, float]] = {}
    for p in psutil.process_iter(["ppid", "create_time"]):
        info = p.info
        if info.get("ppid") is not None and info.get("create_time") is not None:
            out[p.pid] = (info["ppid"], info["create_time"])
    return out


_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_BOOT = psutil.boot_time()  # start times as psutil gives them (create_time)
_PROC = os.path.isdir("/proc/self/task")  # Linux: start times read from /proc/PID/stat


def age(started: float) -> float:
    """Seconds since a process started (``started`` as the table gives it): against the
    boot clock where /proc gave the start, exact to a clock tick (``time.time() -
    started`` is off by up to a second: the boot time is given in whole seconds)."""
    if _PROC and hasattr(time, "CLOCK_BOOTTIME"):
        return time.clock_gettime(time.CLOCK_BOOTTIME) - (started - _BOOT)
    return time.time() - started


def _proc_parents(
    known: dict[int, tuple[int, float]] | None = None,
) -> dict[int, tuple[int, float]]:
    """From /proc; with ``known`` (the last table) only new processes, and those whose
    parent is gone (re-parented, to us as subreaper), are read again."""
    pids = [int(e.name) for e in os.scandir("/proc") if e.name.isdigit()]
    out: dict[int, tuple[int, float]] = {}
    alive = set(pids) if known else None
    for pid in pids:
        old = known.get(pid) if known else None
        if old is not None and alive is not None and old[0] in alive:
            out[pid] = old
            continue
        entry = _stat(pid)
        if entry is not None:
            out[pid] = entry
    return out


def _stat(pid: int) -> tuple[int, float] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None  # gone already
    # "pid (comm) state ppid ... starttime(22nd)": comm may hold spaces and ')'
    fields = stat[stat.rfind(b")") + 2 :].split()
    return int(fields[1]), _BOOT + int(fields[19]) / _TICKS


def uid_of(pid: int) -> int | None:
    """The real uid of a process (None when it is gone)."""
    if not _PROC:
        try:
            return int(psutil.Process(pid).uids().real)
        except psutil.Error:
            return None
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"Uid:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def same_uid(uid: int) -> Callable[[int], bool]:
    """A ``watched`` predicate: the processes of ``uid``."""
    return lambda pid: uid_of(pid) == uid


def ancestry(
    pid: int, tops: set[int], watched: Callable[[int], bool] | None = None
) -> tuple[float, int] | None:
    """(start, the first of ``tops`` above it) for a process below one of ``tops``; a
    process ``watched`` accepts counts as below the last of ``tops`` (ourselves) wherever
    it is. None otherwise."""
    entry = _stat(pid)
    if entry is None:
        return None
    started, parent, hops = entry[1], entry[0], 0
    while parent > 1 and hops < 64:
        if parent in tops:
            return started, parent
        above = _stat(parent)
        if above is None:
            break
        parent, hops = above[0], hops + 1
    if watched is not None and watched(pid):
        return started, os.getpid()
    return None


class ProcTable:
    """pid -> (ppid, start) of the machine, refreshed cheaply: a pid (with the kernel's
    4-million pid space) is not reused within one poll, so only new ones are read."""

    def __init__(self) -> None:
        self._last: dict[int, tuple[int, float]] = {}

    def refresh(self) -> dict[int, tuple[int, float]]:
        if not os.path.isdir("/proc/self/task"):
            self._last = parents()
        else:
            self._last = _proc_parents(self._last)
        return self._last


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
