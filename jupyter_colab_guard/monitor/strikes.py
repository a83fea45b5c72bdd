"""The monitor's verdicts as events of the shared strike store, in the shape the
server's watcher records them (kind ``runtime`` for a stopped process, ``finding`` for
warn/log), so the user's own server counts and shows them; admin exceptions of the
store honoured the way the server honours them."""

from __future__ import annotations

import logging
import time
from typing import Any

from ..analysis.findings import Finding, top_finding
from ..store import StrikeEvent, StrikeStore
from ..watcher import Verdict

log = logging.getLogger(__name__)

SOURCE = "monitor"
EXCEPTIONS_TTL = 10.0  # seconds a user's admin exceptions are cached
MAX_TEXT = 4000  # characters of a stored text field


def clip(value: str | None, limit: int = MAX_TEXT) -> str | None:
    return None if value is None else value[:limit]


def event_of(verdict: Verdict) -> StrikeEvent:
    """The store event of one verdict."""
    top = top_finding(verdict.findings)
    detail = verdict.detail()
    return StrikeEvent(
        user=verdict.owner.user,
        kind="runtime" if verdict.killed else "finding",
        source=SOURCE,
        category=top.category,
        rule=top.rule,
        action=top.action,
        severity=top.severity,
        message=clip(top.message),
        evidence=clip(top.evidence, 500),
        detail=clip(detail),
        strike=top.action in ("block", "warn"),
    )


def covered(exception: dict[str, Any], finding: Finding) -> bool:
    category, rule = exception.get("category"), exception.get("rule")
    return bool((category and category == finding.category) or (rule and rule == finding.rule))


class StrikeWriter:
    def __init__(self, store: StrikeStore) -> None:
        self.store = store
        self.recorded = 0  # events committed or spooled
        self._exceptions: dict[str, tuple[float, list[dict[str, Any]]]] = {}

    def record(self, verdict: Verdict) -> None:
        """Commit (or spool, when the store is down) the event of one verdict."""
        self.store.record(event_of(verdict))
        self.recorded += 1

    def drop_excepted(self, user: str, findings: list[Finding]) -> list[Finding]:
        """Findings without those an admin-granted exception of ``user`` covers."""
        if not findings:
            return findings
        excs = self._admin_exceptions(user)
        return [f for f in findings if not any(covered(x, f) for x in excs)]

    def _admin_exceptions(self, user: str) -> list[dict[str, Any]]:
        """Cached; when the store cannot be read, the last known list (else none): a
        store failure never grants anything."""
        hit = self._exceptions.get(user)
        if hit and hit[0] > time.monotonic():
            return hit[1]
        try:
            rows = self.store.exceptions(user=user)
        except Exception as err:
            log.error("colab-guard monitor: cannot read the exceptions of %s: %s", user, err)
            return hit[1] if hit else []
        self._exceptions[user] = (time.monotonic() + EXCEPTIONS_TTL, rows)
        return rows
