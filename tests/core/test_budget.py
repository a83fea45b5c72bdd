"""The check's time budget counts the thread's CPU time, with a wall-clock cap.

A check kept waiting (here: sleeping, which spends no CPU) does not run out of budget
before the cap; one that computes does; nested budgets keep the tighter one.
"""

from __future__ import annotations

import time

import pytest

from jupyter_colab_guard.analysis.budget import WALL_CAP, OutOfTime, tick, unlimited, within

BUDGET = 0.2  # seconds


def _spend_cpu(seconds: float) -> None:
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


def test_waiting_spends_no_budget() -> None:
    with within(BUDGET):
        time.sleep(BUDGET * 1.5)  # past the budget in wall time, not in CPU time
        tick()  # no OutOfTime


def test_computing_spends_the_budget() -> None:
    with within(BUDGET), pytest.raises(OutOfTime):
        _spend_cpu(BUDGET * 1.2)
        tick()


def test_a_starved_check_still_ends_at_the_wall_clock_cap() -> None:
    with within(BUDGET), pytest.raises(OutOfTime):
        time.sleep(BUDGET * (WALL_CAP + 0.5))
        tick()


def test_the_cpu_clock_is_read_again_after_a_wait() -> None:
    """A wait moves the next CPU reading later; computing after it still runs out."""
    with within(BUDGET):
        time.sleep(BUDGET * 1.2)
        tick()  # reads the CPU clock: almost all of the budget is left
        with pytest.raises(OutOfTime):
            _spend_cpu(BUDGET * 1.2)
            tick()


def test_nested_budgets_and_unlimited() -> None:
    with within(10.0):
        with within(BUDGET), pytest.raises(OutOfTime):  # the inner, tighter one applies
            _spend_cpu(BUDGET * 1.2)
            tick()
        tick()  # the outer one is not spent
        with within(BUDGET):
            _spend_cpu(BUDGET * 1.2)
            with unlimited():
                tick()  # no budget inside
    tick()  # none outside
