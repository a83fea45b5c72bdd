"""The thread pool that checks run in, off the event loop (analysis, store queries, fsync)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from . import events as E
from .settings import GuardSettings


class CheckPool:
    def __init__(self, events: E.GuardEvents, settings: GuardSettings, workers: int = 4) -> None:
        self.events = events
        self.settings = settings
        self.executor = ThreadPoolExecutor(
            max_workers=max(1, workers), thread_name_prefix="colab-guard-check"
        )
        self.loop: asyncio.AbstractEventLoop | None = None  # the server's event loop
        # per (lane, user): calls at once (checks: checks_per_user; store: one)
        self._slots: dict[tuple[str, str], asyncio.Semaphore] = {}

    async def run(
        self,
        fn: Callable[[], Any],
        timeout: float | None = None,
        user: str | None = None,
        lane: str = "check",
    ) -> Any:
        """Run ``fn`` in the pool (off the event loop), within ``timeout`` (default
        ``check_timeout``; raises TimeoutError). With ``user``: at most
        ``checks_per_user`` of that user's checks run at once, and a call holds its slot
        until its thread is done, even past the timeout (one user cannot fill the pool).
        ``lane="store"``: the store reads and writes of the pages and the API
        (handlers.py), one at a time per user, in slots apart from the user's checks."""
        loop = asyncio.get_running_loop()
        if self.loop is not loop:  # events and suspensions from the pool go to this loop
            self.loop = loop
            self.events.bind_loop(loop, threading.get_ident())
        limit = self.settings.check_timeout if timeout is None else timeout
        if user is None:
            return await asyncio.wait_for(loop.run_in_executor(self.executor, fn), limit)
        slot = self._slots.get((lane, user))
        if slot is None:
            at_once = self.settings.checks_per_user if lane == "check" else 1
            slot = self._slots[(lane, user)] = asyncio.Semaphore(max(1, at_once))
        deadline = loop.time() + limit
        await asyncio.wait_for(slot.acquire(), limit)
        try:
            fut = loop.run_in_executor(self.executor, fn)
        except BaseException:
            slot.release()
            raise
        fut.add_done_callback(lambda _done: slot.release())
        return await asyncio.wait_for(asyncio.shield(fut), max(deadline - loop.time(), 0.001))
