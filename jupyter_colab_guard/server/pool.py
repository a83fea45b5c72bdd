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

    async def run(self, fn: Callable[[], Any], timeout: float | None = None) -> Any:
        """Run ``fn`` in the pool (off the event loop), within ``timeout`` (default
        ``check_timeout``; raises TimeoutError)."""
        loop = asyncio.get_running_loop()
        if self.loop is not loop:  # events and suspensions from the pool go to this loop
            self.loop = loop
            self.events.bind_loop(loop, threading.get_ident())
        fut = loop.run_in_executor(self.executor, fn)
        limit = self.settings.check_timeout if timeout is None else timeout
        return await asyncio.wait_for(fut, limit)
