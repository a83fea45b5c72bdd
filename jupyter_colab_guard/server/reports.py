"""Kernel reports: the events the kernel-side guard posts, within per-kernel limits."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from typing import Any

from ..store import StrikeStore
from .kernels import KernelInfo, KernelRegistry
from .recorder import Recorder, clip
from .settings import GuardSettings
from .standing import UserStanding, excepted

log = logging.getLogger(__name__)

KINDS = ("finding", "consent", "runtime_block", "tamper")
MAX_REPORT_EVENTS = 100


class ReportRejected(Exception):
    """A kernel report refused as a whole (HTTP status, reason)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


def _prune(times: deque[float], before: float) -> None:
    """Drop the times older than ``before`` (the deque is in time order)."""
    while times and times[0] < before:
        times.popleft()


class KernelReports:
    def __init__(
        self,
        *,
        store: StrikeStore,
        recorder: Recorder,
        standing: UserStanding,
        kernels: KernelRegistry,
        settings: GuardSettings,
    ) -> None:
        self.store = store
        self.recorder = recorder
        self.standing = standing
        self.kernels = kernels
        self.settings = settings
        self._lock = threading.Lock()  # guards the kernels' report and strike times

    def _seen(self, kernel_id: str, chash: str, rule: str | None, since: float) -> bool:
        try:
            return self.store.seen_recently(kernel_id, chash, rule, since)
        except Exception as err:  # store down: record it (spooled) rather than lose it
            log.error("colab-guard: dedupe lookup failed: %s", err)
            return False

    def kernel_report(self, info: KernelInfo, body: Any, size: int = 0) -> dict[str, int]:
        """Record the events of a kernel report for the kernel's user. Body claims of a
        user or kernel are ignored; only the fields listed in the protocol are read.

        Reports are weaker evidence than the server's own check: any code running in
        the kernel can post them. So they are limited per kernel (body size, reports per
        window, strikes per window), findings the user's admin exceptions cover are
        dropped, and one report is written in one transaction."""
        settings = self.settings
        if size > settings.max_report_bytes:
            raise ReportRejected(413, f"report larger than {settings.max_report_bytes} bytes")
        now = time.time()
        limit, per = settings.report_rate
        with self._lock:
            _prune(info.report_times, now - per)
            if len(info.report_times) >= limit:
                raise ReportRejected(429, "too many reports from this kernel")
            info.report_times.append(now)
        if not isinstance(body, dict) or not isinstance(body.get("events"), list):
            raise ValueError("body must be {'events': [...]}")
        evs = body["events"][:MAX_REPORT_EVENTS]
        counts = {"recorded": 0, "duplicate": 0, "invalid": 0, "excepted": 0, "capped": 0}
        since = now - settings.dedupe_window
        excs = self.standing.admin_exceptions(info.user)
        cap, window = settings.report_strikes
        specs: list[dict[str, Any]] = []
        for raw in evs:
            if isinstance(raw, dict) and raw.get("kind") == "armed":
                self.kernels.armed(info, clip(raw.get("policy_version"), 64))
                continue
            if not isinstance(raw, dict) or raw.get("kind") not in KINDS:
                counts["invalid"] += 1
                continue
            kind = raw["kind"]
            action = raw.get("action") if raw.get("action") in ("log", "warn", "block") else None
            chash = clip(raw.get("cell_hash"), 64)
            rule = clip(raw.get("rule"), 128)
            category = clip(raw.get("category"), 128)
            if kind != "tamper" and excepted(excs, category, rule):
                counts["excepted"] += 1
                continue
            if kind == "finding" and chash and self._seen(info.kernel_id, chash, rule, since):
                counts["duplicate"] += 1
                continue
            # a warn finding counts only when the user lets it run. The server follows
            # the consent of every cell it warned about (its dialog, or the kernel's
            # prompt on the websocket): the kernel's consent report of such a cell is a
            # duplicate; of another cell (a warn found only at run time), it counts
            if kind == "consent" and chash and self._seen(info.kernel_id, chash, None, since):
                counts["duplicate"] += 1
                continue
            ran = kind == "consent" and raw.get("choice") == "run" and action == "warn"
            strike = kind == "runtime_block" or (kind == "finding" and action == "block") or ran
            extra: dict[str, Any] = {}
            if isinstance(raw.get("execution_count"), int):
                extra["execution_count"] = raw["execution_count"]
            if kind == "consent":
                extra["choice"] = raw.get("choice")
            if strike:
                with self._lock:
                    _prune(info.strike_times, now - window)
                    if len(info.strike_times) >= cap:
                        strike = False  # recorded, but no longer counted
                        counts["capped"] += 1
                        extra["capped"] = f"more than {cap} strikes from this kernel"
                    else:
                        info.strike_times.append(now)
            detail = raw.get("detail")
            if extra:
                detail = json.dumps({**extra, "detail": detail})
            specs.append(
                {
                    "kind": kind,
                    "source": "kernel",
                    "kernel_id": info.kernel_id,
                    "path": info.path,
                    "category": category,
                    "rule": rule,
                    "action": action,
                    "severity": clip(raw.get("severity"), 16),
                    "message": raw.get("message"),
                    "cell_hash": chash,
                    "detail": clip(detail),
                    "strike": strike,
                }
            )
        if specs:
            self.recorder.record_many(info.user, specs)
        counts["recorded"] = len(specs)
        return counts
