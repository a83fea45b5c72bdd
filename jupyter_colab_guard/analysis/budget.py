"""A time budget for one check, checked cooperatively where the analyzer loops.

The budget is per thread: ``within(seconds)`` sets it for the code below, and ``tick()``
raises ``OutOfTime`` once it is spent. ``OutOfTime`` derives from BaseException so that
no ``except Exception`` on the way swallows it; the analyzer catches it where a check
begins and reports what it could not finish.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager


class OutOfTime(BaseException):  # not an Exception: nothing on the way may swallow it
    """The check's time budget is spent."""


_state = threading.local()


def tick() -> None:
    """Raise OutOfTime when the current thread's budget is spent (about 0.1 µs)."""
    deadline = getattr(_state, "deadline", None)
    if deadline is not None and time.monotonic() > deadline:
        raise OutOfTime


@contextmanager
def within(seconds: float | None) -> Iterator[None]:
    """Run the block with a budget of ``seconds`` (None: no budget; an outer one stays)."""
    outer = getattr(_state, "deadline", None)
    if seconds is not None:
        mine = time.monotonic() + seconds
        _state.deadline = mine if outer is None else min(outer, mine)
    try:
        yield
    finally:
        _state.deadline = outer


@contextmanager
def unlimited() -> Iterator[None]:
    """Run the block without a budget (the linear pass that must always finish)."""
    outer = getattr(_state, "deadline", None)
    _state.deadline = None
    try:
        yield
    finally:
        _state.deadline = outer
