"""Recording: one user's events committed together (spooled on failure), emitted, and a
new suspension acted on."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

from ..analysis.findings import Finding
from ..store import StrikeEvent, StrikeStore
from . import events as E
from . import metrics
from .escalation import Step, evaluate
from .kernels import KernelInfo
from .settings import GuardSettings

log = logging.getLogger(__name__)

MAX_FIELD = 4000  # characters of a stored text field


def clip(value: Any, limit: int = MAX_FIELD) -> str | None:
    if value is None:
        return None
    return str(value)[:limit]


class Recorder:
    def __init__(
        self,
        store: StrikeStore,
        ladder: list[Step],
        events: E.GuardEvents,
        settings: GuardSettings,
        on_suspended: Callable[[str], None] | None = None,
    ) -> None:
        self.store = store
        self.ladder = ladder
        self.events = events
        self.settings = settings
        # shuts down a user's kernels (thread-safe)
        self.on_suspended = on_suspended

    def record(self, *, user: str, **spec: Any) -> bool:
        """Commit one event (spooled on failure), emit it, act on a new suspension.
        ``spec``: the keyword arguments of ``_event``."""
        return self.record_many(user, [spec])

    def record_unarmed(self, info: KernelInfo) -> None:
        self.record(
            user=info.user,
            kind="unguarded_kernel",
            source="server",
            kernel_id=info.kernel_id,
            path=info.path,
            detail=f"the kernel-side guard did not arm within {self.settings.arm_timeout:.0f} s",
        )

    def _event(
        self,
        user: str,
        *,
        kind: str,
        source: str,
        kernel_id: str | None = None,
        path: str | None = None,
        finding: Finding | None = None,
        others: list[Finding] | None = None,
        cell_hash: str | None = None,
        cell_text: str | None = None,
        strike: bool = False,
        action: str | None = None,
        detail: str | None = None,
        category: str | None = None,
        rule: str | None = None,
        severity: str | None = None,
        message: str | None = None,
    ) -> StrikeEvent:
        if finding is not None:
            category, rule = finding.category, finding.rule
            action, severity, message = finding.action, finding.severity, finding.message
            if others:
                detail = json.dumps(
                    [{"category": f.category, "rule": f.rule, "action": f.action} for f in others]
                )
        return StrikeEvent(
            user=user,
            kind=kind,
            source=source,
            kernel_id=kernel_id,
            path=path,
            category=category,
            rule=rule,
            action=action,
            severity=severity,
            message=clip(message),
            evidence=clip(finding.evidence if finding else None, 500),
            cell_hash=cell_hash,
            cell_text=clip(cell_text, 100_000) if self.settings.store_cell_text else None,
            detail=clip(detail),
            strike=strike,
        )

    def record_many(self, user: str, specs: list[dict[str, Any]]) -> bool:
        """Commit the events of one user in one transaction (spooled on failure), emit
        them, act on a new suspension."""
        try:
            times = self.store.strike_times(user)
        except Exception:  # the store is down: still spool the events below
            log.exception("colab-guard: cannot read strikes of %s", user)
            times = None
        before = evaluate(self.ladder, times, time.time()).level if times is not None else None
        evs = [self._event(user, **spec) for spec in specs]
        after = before
        if times is not None:
            # the level each event leads to, computed before the write so it is stored
            running = sorted(times)
            for ev in evs:
                if ev.strike:
                    running = sorted([*running, ev.ts])
                ev.level = evaluate(self.ladder, running, ev.ts).level
                after = ev.level
        stored = self.store.record_many(evs)  # a failure is counted by the store's on_error
        for spec, ev in zip(specs, evs, strict=True):
            self.events.emit(E.STRIKE, self._strike_event(user, ev, stored))
            if ev.kind in metrics.FINDING_KINDS and (ev.category or ev.rule):
                metrics.finding(ev.source, ev.category, ev.rule, ev.action)
                metrics.findings(ev.source, spec.get("others") or [])
        new_strike = any(ev.strike for ev in evs)
        if new_strike and after == "suspended" and before != "suspended" and self.on_suspended:
            self.on_suspended(user)
        return stored

    @staticmethod
    def _strike_event(user: str, ev: StrikeEvent, stored: bool) -> dict[str, Any]:
        """The event-bus payload of one recorded event."""
        return {
            "user": user,
            "kernel_id": ev.kernel_id,
            "path": ev.path,
            "source": ev.source,
            "kind": ev.kind,
            "category": ev.category,
            "rule": ev.rule,
            "action": ev.action,
            "cell_hash": ev.cell_hash,
            "strike": ev.strike,
            "level": ev.level or "unknown",
            "stored": stored,
        }
