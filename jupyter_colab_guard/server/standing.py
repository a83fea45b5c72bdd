"""Where a user stands: the escalation level of their strikes and their admin exceptions."""

from __future__ import annotations

import logging
import time
from typing import Any

from ..analysis.findings import Finding
from ..store import StrikeStore
from .escalation import Status, Step, evaluate

log = logging.getLogger(__name__)

# where a user stands when the store cannot be read (the store is down)
UNKNOWN = Status(level="unknown", strikes=0)

EXCEPTIONS_TTL = 10.0  # seconds a user's admin exceptions are cached


def excepted(excs: list[dict[str, Any]], category: str | None, rule: str | None) -> bool:
    """Whether one of the admin exceptions ``excs`` covers (category, rule)."""
    return any(
        (x.get("category") and x["category"] == category) or (x.get("rule") and x["rule"] == rule)
        for x in excs
    )


def unexpired(excs: list[dict[str, Any]], now: float | None = None) -> list[dict[str, Any]]:
    """The exceptions of ``excs`` whose expiry date (if any) has not passed."""
    now = time.time() if now is None else now
    return [x for x in excs if x.get("expires_at") is None or x["expires_at"] > now]


class UserStanding:
    def __init__(self, store: StrikeStore, ladder: list[Step]) -> None:
        self.store = store
        self.ladder = ladder
        self._exc_cache: dict[str, tuple[float, list[dict[str, Any]]]] = {}

    def status(self, user: str, now: float | None = None) -> Status:
        now = time.time() if now is None else now
        return evaluate(self.ladder, self.store.strike_times(user), now)

    def safe_status(self, user: str) -> Status | None:
        """The user's status, or None when the store cannot be read."""
        try:
            return self.status(user)
        except Exception as err:
            log.error("colab-guard: cannot read the status of %s: %s", user, err)
            return None

    def admin_exceptions(self, user: str) -> list[dict[str, Any]]:
        """Active admin exceptions of a user (cached). When the store cannot be read
        the last known list is used, else none: a store failure never lets a check
        fail open (and never grants anything)."""
        hit = self._exc_cache.get(user)
        if hit and hit[0] > time.monotonic():
            return unexpired(hit[1])  # one that expires stops applying at once
        try:
            rows = self.store.exceptions(user=user)
        except Exception as err:
            log.error("colab-guard: cannot read the exceptions of %s: %s", user, err)
            return unexpired(hit[1]) if hit else []
        self._exc_cache[user] = (time.monotonic() + EXCEPTIONS_TTL, rows)
        return rows

    def invalidate_exceptions(self, user: str) -> None:
        self._exc_cache.pop(user, None)

    def drop_excepted(self, user: str, findings: list[Finding]) -> list[Finding]:
        """Findings without those an admin-granted exception of ``user`` covers."""
        excs = self.admin_exceptions(user)
        if not excs:
            return findings
        return [f for f in findings if not excepted(excs, f.category, f.rule)]
