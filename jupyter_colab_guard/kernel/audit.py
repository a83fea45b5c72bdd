"""Runtime backstop: a PEP 578 audit hook for process launches and connects.

Static analysis cannot see a command read from a file or the network at run time.
The hook checks every process launch against the policy's shell rules and every
connect against its address rules, and refuses what the policy blocks. It also
catches attribute writes on the guard's own functions/classes and checks the
guard's hooks on every ``exec``. Audit hooks cannot be removed; the early exit on
the event name keeps the cost on ordinary code to one set lookup per event.
"""

from __future__ import annotations

import os
import pathlib
import sys
import threading
from collections.abc import Callable
from typing import Any

from .errors import ProhibitedCodeError
from .guard import Guard, GuardFinding, sha256, strongest
from .warning import build_notice

PROCESS_EVENTS = frozenset(
    {
        "subprocess.Popen",
        "os.system",
        "os.exec",
        "os.posix_spawn",
        "os.spawn",
        "os.forkpty",
        "os.fork",
    }
)
SOCKET_EVENTS = frozenset({"socket.connect", "socket.getaddrinfo"})
SETATTR_EVENTS = frozenset({"object.__setattr__", "object.__delattr__"})
# libc's own process doors, looked up through ctypes, start programs no audit event shows
CTYPES_EVENTS = frozenset({"ctypes.dlsym", "ctypes.dlsym/handle"})
EXEC_SYMBOLS = frozenset(
    {
        "system", "popen", "execv", "execve", "execvp", "execvpe", "execl", "execle",
        "execlp", "fexecve", "posix_spawn", "posix_spawnp",
    }
)  # fmt: skip
WATCH = PROCESS_EVENTS | SOCKET_EVENTS | SETATTR_EVENTS | CTYPES_EVENTS | {"exec"}
PATH_TYPES = (pathlib.PosixPath, pathlib.PurePosixPath)
MAX_DEPTH = 4


class Runtime:
    """What the process-wide hook consults; one per process."""

    def __init__(self) -> None:
        self.guard: Guard | None = None
        self.protected: frozenset[int] = frozenset()
        self.hook: Callable[[str, tuple[Any, ...]], None] | None = None
        self.nesting = threading.local()  # depth of the hook in this thread

    def exec_ok(self) -> bool:
        """True when an ``exec`` needs no further look (hooks intact, same process)."""
        g = self.guard
        try:
            return g is None or g.integrity is None or g.integrity.intact()
        except Exception:
            return False

    def on_audit(self, event: str, args: tuple[Any, ...]) -> None:
        g = self.guard
        if g is None or not (g.armed or event == "exec"):  # exec re-arms a disarmed guard
            return
        # No "already in the hook" flag that user code could set: events raised while
        # the hook runs are checked too (the hook itself never calls user code, see
        # ``plain``); only the depth is bounded, and past it launches are refused.
        depth = getattr(self.nesting, "depth", 0)
        self.nesting.depth = depth + 1
        try:
            if depth >= MAX_DEPTH:
                if event in PROCESS_EVENTS or event in SOCKET_EVENTS:
                    raise ProhibitedCodeError("Refused: nested too deep in the guard's check")
                return
            self._dispatch(g, event, args)
        except ProhibitedCodeError:
            raise
        except Exception:
            pass  # the guard must never break the audited operation by accident
        finally:
            self.nesting.depth = depth

    def _dispatch(self, g: Guard, event: str, args: tuple[Any, ...]) -> None:
        if event == "exec":
            if os.getpid() == g.pid and g.integrity is not None and g.integrity.check(deep=False):
                self._refuse_tamper(g, "code ran after the guard's hooks were removed")
            return
        if event in SETATTR_EVENTS:
            if args and id(args[0]) in self.protected:
                name = args[1] if len(args) > 1 else "?"
                g.report_tamper("function-replaced", f"{event} {name!s}", action="block")
                self._refuse_tamper(g, f"attempt to change the guard ({name})", report=False)
            return
        if event in CTYPES_EVENTS:
            name = plain(args[1]) if len(args) > 1 else None
            if name in EXEC_SYMBOLS:
                g.report_tamper("ctypes-exec", f"ctypes lookup of libc {name}()", action="block")
                self._refuse_tamper(
                    g,
                    f"starting programs through ctypes ({name}); use subprocess or !command, "
                    "which the guard can check",
                    report=False,
                )
            return
        if event in SOCKET_EVENTS:
            if g.reporter.is_own_thread():
                return
            target = _address(event, args)
            if target is None:
                return
            host, port = target
            findings = g.check_connect(host, port)
            detail = f"connect {host}:{port}" if port is not None else f"resolve {host}"
        else:
            argv = _argv(event, args)
            if not argv:
                return
            findings = g.check_command(argv)
            detail = (argv if isinstance(argv, str) else " ".join(argv))[:2000]
        if findings:
            self._enforce(g, findings, detail)

    def _enforce(self, g: Guard, findings: list[Any], detail: str) -> None:
        if os.getpid() != g.pid:
            # a forked child (pexpect, os.fork): no display, no threads; refuse and log
            if strongest(findings) == "block":
                for f in findings:
                    if f.action == "block":
                        g.report("runtime_block", finding=f, detail=detail)
                raise ProhibitedCodeError(f"Refused by the acceptable-use policy: {detail}")
            return
        g.enforce(
            "rt:" + sha256(detail),
            lambda: findings,
            cell_hash=g.state().cell_hash,
            loose=True,
            detail=detail,
            kind="runtime",
        )

    def _refuse_tamper(self, g: Guard, what: str, report: bool = True) -> None:
        finding = GuardFinding(
            category="tamper",
            rule="tamper.blocked",
            action="block",
            severity="high",
            message=what,
            title="Tampering with the acceptable-use guard",
        )
        if report:
            g.report_tamper("blocked", what, action="block")
        notice = build_notice([finding], g.settings, note="This code was not run.")
        raise ProhibitedCodeError(f"Not run: {what}", notice)


def plain(x: Any) -> str | None:
    """The text of an argument without running user code: str and bytes (subclasses
    read through the base type's own method) and unmodified paths; None for anything
    else (its ``__fspath__`` or ``__str__`` would run inside the hook)."""
    kind = type(x)
    if kind is str or kind is bytes:
        return os.fsdecode(x)
    if isinstance(x, str):
        return str.__str__(x)
    if isinstance(x, bytes | bytearray):
        return os.fsdecode(bytes(memoryview(x)))
    if kind in PATH_TYPES:
        return str(x)
    return None


def _s(x: Any) -> str:
    text = plain(x)
    return text if text is not None else f"<{type(x).__name__} object>"


def _argv(event: str, args: tuple[Any, ...]) -> str | list[str] | None:
    """The command of a process event: a shell command line (str) or an argv list."""
    if event == "os.system":
        return _s(args[0]) if args else None
    if event in ("os.forkpty", "os.fork"):  # pty.fork falls back to os.fork
        return _spawn_argv()
    seq = {"subprocess.Popen": 1, "os.exec": 1, "os.posix_spawn": 1, "os.spawn": 2}[event]
    value = args[seq] if len(args) > seq else None
    if isinstance(value, str | bytes | os.PathLike):
        return [_s(value)]
    if type(value) not in (list, tuple):  # other sequences would run their own code
        return None
    return [_s(a) for a in value]


def _spawn_argv() -> list[str] | None:
    """argv of the pexpect/ptyprocess/pty.spawn call that is about to fork (``!cmd``)."""
    frame = sys._getframe(1)
    for _ in range(16):
        if frame is None:
            return None
        if frame.f_code.co_name == "spawn":
            argv = frame.f_locals.get("argv")
            if isinstance(argv, str | bytes):
                return [_s(argv)]
            if type(argv) in (list, tuple) and argv:
                return [_s(a) for a in argv]
        frame = frame.f_back
    return None


def _address(event: str, args: tuple[Any, ...]) -> tuple[str, int | None] | None:
    if event == "socket.connect":
        addr = args[1] if len(args) > 1 else None
        if type(addr) is not tuple or len(addr) < 2:
            return None  # AF_UNIX and other families (a tuple subclass: its own code)
        host, port = addr[0], addr[1]
    else:
        host = args[0] if args else None
        port = args[1] if len(args) > 1 else None
    if host is None:
        return None
    if isinstance(port, str | bytes):
        text = plain(port) or ""
        port = int(text) if text.isdigit() else None
    elif isinstance(port, int):
        port = int.__index__(port)
    text = plain(host)
    if text is None:
        return None
    return text, port if isinstance(port, int) else None


_RUNTIME = Runtime()


def install(guard: Guard) -> Runtime:
    """Point the process-wide hook at this guard (adding the hook once per process)."""
    rt = _RUNTIME
    rt.guard = guard
    if rt.hook is None:
        watch = WATCH
        on_audit, exec_ok = rt.on_audit, rt.exec_ok

        def colab_guard_audit(event: str, args: tuple[Any, ...]) -> None:
            if event in watch and not (event == "exec" and exec_ok()):
                on_audit(event, args)

        rt.hook = colab_guard_audit
        sys.addaudithook(colab_guard_audit)
    return rt
