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
import sys
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
WATCH = PROCESS_EVENTS | SOCKET_EVENTS | SETATTR_EVENTS | {"exec"}


class Runtime:
    """What the process-wide hook consults; one per process."""

    def __init__(self) -> None:
        self.guard: Guard | None = None
        self.protected: frozenset[int] = frozenset()
        self.hook: Callable[[str, tuple[Any, ...]], None] | None = None

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
        local = g.local
        if getattr(local, "in_hook", False):
            return  # events caused by the guard's own work
        local.in_hook = True
        try:
            self._dispatch(g, event, args)
        except ProhibitedCodeError:
            raise
        except Exception:
            pass  # the guard must never break the audited operation by accident
        finally:
            local.in_hook = False

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


def _s(x: Any) -> str:
    try:
        return os.fsdecode(x) if isinstance(x, bytes | os.PathLike) else str(x)
    except Exception:
        return str(x)


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
    if value is None:
        return None
    try:
        return [_s(a) for a in value]
    except TypeError:
        return None


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
            if isinstance(argv, list | tuple) and argv:
                return [_s(a) for a in argv]
        frame = frame.f_back
    return None


def _address(event: str, args: tuple[Any, ...]) -> tuple[str, int | None] | None:
    if event == "socket.connect":
        addr = args[1] if len(args) > 1 else None
        if not (isinstance(addr, tuple) and len(addr) >= 2):
            return None  # AF_UNIX and other families
        host, port = addr[0], addr[1]
    else:
        host = args[0] if args else None
        port = args[1] if len(args) > 1 else None
    if host is None:
        return None
    if isinstance(port, bytes):
        port = port.decode("ascii", "replace")
    if isinstance(port, str):
        port = int(port) if port.isdigit() else None
    return _s(host), port if isinstance(port, int) else None


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
