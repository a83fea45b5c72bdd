"""A time budget for one check, checked cooperatively where the analyzer loops.

The budget is per thread: ``within(seconds)`` sets it for the code below, and ``tick()``
raises ``OutOfTime`` once it is spent. ``OutOfTime`` derives from BaseException so that
no ``except Exception`` on the way swallows it; the analyzer catches it where a check
begins and reports what it could not finish.

The budget counts the thread's CPU time, so a check that other work on a loaded machine
keeps waiting does not run out for that; a wall-clock cap of WALL_CAP budgets still ends
it (below the time after which the server kills a worker, ``2 * check_budget + 2``). The CPU
clock costs a system call, so ``tick`` reads the cheap wall clock and the CPU clock only
once the wall clock passes the point where the CPU time left could at the earliest be
spent (a thread's CPU time never grows faster than the wall clock).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

WALL_CAP = 2.0  # budgets of wall-clock time a starved check may take at most


class OutOfTime(BaseException):  # not an Exception: nothing on the way may swallow it
    """The check's time budget is spent."""


class _Budget:
    __slots__ = ("check_at", "cpu_end", "wall_end")

    def __init__(self, check_at: float, cpu_end: float, wall_end: float) -> None:
        self.check_at = check_at  # wall clock: before it the CPU budget cannot be spent
        self.cpu_end = cpu_end  # the thread's CPU clock
        self.wall_end = wall_end  # the wall-clock cap

    def check(self, now: float) -> None:
        if now > self.wall_end:
            raise OutOfTime
        left = self.cpu_end - time.thread_time()
        if left <= 0:
            raise OutOfTime
        self.check_at = min(now + left, self.wall_end)


_state = threading.local()


def tick() -> None:
    """Raise OutOfTime when the current thread's budget is spent (about 0.1 µs)."""
    budget = getattr(_state, "budget", None)
    if budget is not None:
        now = time.monotonic()
        if now > budget.check_at:
            budget.check(now)


@contextmanager
def within(seconds: float | None) -> Iterator[None]:
    """Run the block with a budget of ``seconds`` of CPU time (None: no budget; an outer
    one stays)."""
    outer: _Budget | None = getattr(_state, "budget", None)
    if seconds is not None:
        now = time.monotonic()
        mine = _Budget(now + seconds, time.thread_time() + seconds, now + WALL_CAP * seconds)
        if outer is not None:
            mine.check_at = min(mine.check_at, outer.check_at)
            mine.cpu_end = min(mine.cpu_end, outer.cpu_end)
            mine.wall_end = min(mine.wall_end, outer.wall_end)
        _state.budget = mine
    try:
        yield
    finally:
        _state.budget = outer


@contextmanager
def unlimited() -> Iterator[None]:
    """Run the block without a budget (the linear pass that must always finish)."""
    outer = getattr(_state, "budget", None)
    _state.budget = None
    try:
        yield
    finally:
        _state.budget = outer
