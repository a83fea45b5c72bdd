"""The escalation ladder: from strike times to a level.

A step is a dict: ``{"level": "restricted", "strikes": 3, "window": 86400,
"cooldown": 3600}``.

- ``strikes``: how many strikes reach the step.
- ``window`` (seconds, 0 = since the last admin reset): the strikes must fall in one
  window of this length.
- ``cooldown`` (seconds, 0 = none): a step with a cool-down is active from the strike
  that reached it until that strike + cooldown; a step without one is active while the
  strikes in the last ``window`` (or since the reset) reach ``strikes``.

Levels, weakest first: none, warning, restricted, suspended. ``restricted`` refuses every
execution until the cool-down ends; ``suspended`` refuses executions and kernels until an
admin resets the user (so give it no cool-down).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Any

LEVELS = ("none", "warning", "restricted", "suspended")
DEFAULT_LADDER: list[dict[str, Any]] = [
    {"level": "warning", "strikes": 1, "window": 0, "cooldown": 0},
    {"level": "restricted", "strikes": 3, "window": 24 * 3600, "cooldown": 3600},
    {"level": "suspended", "strikes": 5, "window": 0, "cooldown": 0},
]


@dataclass(frozen=True)
class Step:
    level: str
    strikes: int
    window: float = 0.0
    cooldown: float = 0.0


@dataclass(frozen=True)
class Status:
    """Where a user stands now."""

    level: str
    strikes: int  # strikes since the last reset
    until: float | None = None  # end of a cool-down, None = no end (or no restriction)
    next_level: str | None = None
    strikes_to_next: int | None = None  # more strikes before the next step (roughly)

    @property
    def refuses(self) -> bool:
        return self.level in ("restricted", "suspended")


def parse_ladder(raw: list[dict[str, Any]]) -> list[Step]:
    """Validate the ladder config; raise ValueError naming the bad step."""
    steps = []
    for i, item in enumerate(raw):
        unknown = set(item) - {"level", "strikes", "window", "cooldown"}
        if unknown:
            raise ValueError(f"escalation step {i}: unknown keys {sorted(unknown)}")
        level = item.get("level")
        if level not in LEVELS[1:]:
            raise ValueError(f"escalation step {i}: level must be one of {LEVELS[1:]}")
        strikes = item.get("strikes")
        if not isinstance(strikes, int) or strikes < 1:
            raise ValueError(f"escalation step {i}: strikes must be an integer >= 1")
        window, cooldown = float(item.get("window", 0)), float(item.get("cooldown", 0))
        if window < 0 or cooldown < 0:
            raise ValueError(f"escalation step {i}: window and cooldown must be >= 0")
        steps.append(Step(level, strikes, window, cooldown))
    return sorted(steps, key=lambda s: (LEVELS.index(s.level), s.strikes))


def _trigger_time(step: Step, times: list[float], now: float) -> float | None:
    """The latest strike at which ``step`` was reached (None: never)."""
    n = step.strikes
    for i in range(len(times) - 1, n - 2, -1):
        if times[i] > now:
            continue
        if not step.window or times[i] - times[i - n + 1] <= step.window:
            return times[i]
    return None


def _active(step: Step, times: list[float], now: float) -> tuple[bool, float | None]:
    if step.cooldown:
        t = _trigger_time(step, times, now)
        if t is not None and now < t + step.cooldown:
            return True, t + step.cooldown
        return False, None
    if step.window:
        recent = len(times) - bisect.bisect_right(times, now - step.window)
        return recent >= step.strikes, None
    return len(times) >= step.strikes, None


def evaluate(ladder: list[Step], times: list[float], now: float) -> Status:
    """The strongest active step for strike ``times`` (sorted, since the last reset)."""
    level, until = "none", None
    for step in ladder:
        on, end = _active(step, times, now)
        if on and LEVELS.index(step.level) >= LEVELS.index(level):
            level, until = step.level, end
    nxt = next((s for s in ladder if LEVELS.index(s.level) > LEVELS.index(level)), None)
    to_next = None
    if nxt is not None:
        have = (
            len(times) - bisect.bisect_right(times, now - nxt.window) if nxt.window else len(times)
        )
        to_next = max(nxt.strikes - have, 1)
    return Status(
        level=level,
        strikes=len(times),
        until=until,
        next_level=nxt.level if nxt else None,
        strikes_to_next=to_next,
    )
