"""Notices the server pushes into a notebook without a request: a process the watcher
stopped is announced in the output of the cell that is running (or, when none is, as a
message on the kernel's channels) over every websocket open on that kernel."""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Protocol


class NoticeTarget(Protocol):
    def guard_notice(self, reason: str, findings: list[dict[str, Any]], detail: str) -> None: ...


class Notices:
    def __init__(self) -> None:
        self._open: dict[str, dict[NoticeTarget, asyncio.AbstractEventLoop]] = {}
        self._lock = threading.Lock()

    def add(self, kernel_id: str, target: NoticeTarget, loop: asyncio.AbstractEventLoop) -> None:
        with self._lock:
            self._open.setdefault(kernel_id, {})[target] = loop

    def discard(self, kernel_id: str, target: NoticeTarget) -> None:
        with self._lock:
            targets = self._open.get(kernel_id, {})
            targets.pop(target, None)
            if not targets:
                self._open.pop(kernel_id, None)

    def send(self, kernel_id: str, reason: str, findings: list[dict[str, Any]], detail: str) -> int:
        """From any thread: the notice goes out on each connection's own loop; returns
        how many connections it was handed to."""
        with self._lock:
            targets = list(self._open.get(kernel_id, {}).items())
        for target, loop in targets:
            loop.call_soon_threadsafe(target.guard_notice, reason, findings, detail)
        return len(targets)
