"""The guard's Prometheus series, served with jupyter_server's own on ``/metrics``.

prometheus_client's default registry is per process and refuses a name twice, while one
process may start several servers (the tests do). So the series are created and
registered once per process, on first use (``series()``), and the state that belongs to
one running guard (spooled events, the policy in force) is read at scrape time from the
guard installed last (``install``, called when a ``GuardService`` is built), the way
jupyter_server's own ``last_activity`` gauge reads the server started last.

Label values that come from a kernel's reports (any code in the kernel can post them)
are kept only when they name a category or rule of the policy in force, and every
labelled series is capped, so nothing a user sends can make the series grow without
bound.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily, Metric

from ..analysis.analyzer import INCOMPLETE_RULE, INTERNAL_RULE, TIMEOUT_RULE

if TYPE_CHECKING:
    from .service import GuardService

log = logging.getLogger(__name__)

PREFIX = "colab_guard"
# the reasons a Decision refuses with (checker.py)
REASONS = (
    "block",
    "restricted",
    "suspended",
    "unavailable",
    "timeout",
    "too_large",
    "unguarded",
)
# StrikeStore's on_error operations
STORE_OPERATIONS = ("open", "record", "retry")
# event kinds that carry a finding (the server's check, the watcher, kernel reports)
FINDING_KINDS = frozenset({"finding", "warned", "runtime", "runtime_block"})
ANALYSIS_CATEGORY = "analysis"
ANALYSIS_RULES = frozenset({INCOMPLETE_RULE, INTERNAL_RULE, TIMEOUT_RULE})
OTHER = "other"  # a label value not kept (unknown to the policy, or over the cap)
MAX_SERIES = 1000  # label sets per labelled series
# seconds; check_timeout defaults to 10 and may be set higher
CHECK_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class Series:
    """The process's guard series (counters, the check histogram)."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        self.findings = Counter(
            f"{PREFIX}_findings",
            "Findings recorded, by where they were found (server check, kernel report, "
            "process watcher), category, rule and action.",
            ["source", "category", "rule", "action"],
            registry=None,
        )
        self.refusals = Counter(
            f"{PREFIX}_refusals",
            "Executions (cells and debugger evaluations) the server refused, by reason.",
            ["reason"],
            registry=None,
        )
        self.runtime_kills = Counter(
            f"{PREFIX}_runtime_kills",
            "Process trees the process watcher killed, by category and rule.",
            ["category", "rule"],
            registry=None,
        )
        self.check_seconds = Histogram(
            f"{PREFIX}_check_duration_seconds",
            "Time from handing a cell to the check pool to its decision (waiting for a "
            "slot, analysis, store reads and writes); a check past check_timeout is "
            "observed when it is given up.",
            buckets=CHECK_BUCKETS,
            registry=None,
        )
        self.checks_in_progress = Gauge(
            f"{PREFIX}_checks_in_progress",
            "Checks waiting for or running in the check pool.",
            registry=None,
        )
        self.store_failures = Counter(
            f"{PREFIX}_store_write_failures",
            "Failed store operations, by operation: record (new events were spooled), "
            "retry (a replay of spooled events failed), open (schema set-up failed).",
            ["operation"],
            registry=None,
        )
        self.policy_failures = Counter(
            f"{PREFIX}_policy_load_failures",
            "Policy loads and reloads refused (the previous policy, if any, stays).",
            registry=None,
        )
        self._label_sets: dict[str, set[tuple[str, ...]]] = {}
        self._lock = threading.Lock()
        for reason in REASONS:  # present at 0 from the start, so rate() has a base
            self.refusals.labels(reason)
        for op in STORE_OPERATIONS:
            self.store_failures.labels(op)
        self.collectors: list[Any] = [
            self.findings,
            self.refusals,
            self.runtime_kills,
            self.check_seconds,
            self.checks_in_progress,
            self.store_failures,
            self.policy_failures,
            GuardStateCollector(),
        ]
        if registry is not None:
            for collector in self.collectors:
                try:
                    registry.register(collector)
                except ValueError as err:  # a second copy of this module in the process
                    log.warning("colab-guard: metrics not registered: %s", err)

    def bounded(self, name: str, values: tuple[str, ...]) -> tuple[str, ...]:
        """``values`` as labels, or all ``other`` once ``MAX_SERIES`` sets are in use."""
        with self._lock:
            seen = self._label_sets.setdefault(name, set())
            if values in seen:
                return values
            if len(seen) >= MAX_SERIES:
                return (OTHER,) * len(values)
            seen.add(values)
            return values


_series: Series | None = None
_series_lock = threading.Lock()
_current: weakref.ref[GuardService] | None = None


def series() -> Series:
    """The series, created and registered in the default registry once per process."""
    global _series
    if _series is None:
        with _series_lock:
            if _series is None:
                _series = Series(REGISTRY)
    return _series


def current_guard() -> GuardService | None:
    return _current() if _current is not None else None


def install(guard: GuardService) -> None:
    """Report the state of ``guard`` (the last one installed in this process) and count
    the failures its store reports."""
    global _current
    series()
    _current = weakref.ref(guard)
    store = guard.store
    if getattr(store, "_colab_guard_metrics", False):
        return
    store._colab_guard_metrics = True  # type: ignore[attr-defined]
    chained = store.on_error

    def on_error(op: str, err: Exception, pending: int) -> None:
        series().store_failures.labels(op if op in STORE_OPERATIONS else OTHER).inc()
        if chained is not None:
            chained(op, err, pending)

    store.on_error = on_error


# -- counting -------------------------------------------------------------------------------


def _policy_labels(category: str, rule: str) -> tuple[str, str]:
    """(category, rule) as named by a kernel report: kept only when the policy in force
    (or the analyzer itself) has them."""
    guard = current_guard()
    policy = guard.policy if guard is not None else None
    if policy is None:
        return OTHER, OTHER
    known_cat = category in policy.categories or category == ANALYSIS_CATEGORY
    known_rule = rule in policy.rules_by_id or rule in ANALYSIS_RULES
    return (category if known_cat else OTHER), (rule if known_rule else OTHER)


def finding(source: str, category: str | None, rule: str | None, action: str | None) -> None:
    """One finding recorded (``source``: server, kernel or watcher)."""
    s = series()
    labels = (category or "", rule or "")
    if source not in ("server", "watcher"):  # a claim of code running in the kernel
        labels = _policy_labels(*labels)
    act = action if action in ("block", "warn", "log") else OTHER
    src = source if source in ("server", "kernel", "watcher") else OTHER
    s.findings.labels(*s.bounded("findings", (src, *labels, act))).inc()


def findings(source: str, found: Iterable[Any]) -> None:
    """Several ``Finding`` objects recorded together."""
    for f in found:
        finding(source, f.category, f.rule, f.action)


def refusal(reason: str) -> None:
    series().refusals.labels(reason if reason in REASONS else OTHER).inc()


def runtime_kill(category: str | None, rule: str | None) -> None:
    s = series()
    s.runtime_kills.labels(*s.bounded("runtime_kills", (category or "", rule or ""))).inc()


def policy_refused() -> None:
    series().policy_failures.inc()


# -- the state of the guard installed last, read at scrape time ----------------------------


class GuardStateCollector:
    """Spooled events and the policy in force of the guard installed last."""

    def describe(self) -> Iterator[Metric]:
        yield from self._families(None)

    def collect(self) -> Iterator[Metric]:
        yield from self._families(current_guard())

    @staticmethod
    def _families(guard: GuardService | None) -> Iterator[Metric]:
        pending = GaugeMetricFamily(
            f"{PREFIX}_store_pending_events",
            "Events spooled (file and memory) while the store cannot be written, "
            "waiting for a retry.",
        )
        loaded = GaugeMetricFamily(
            f"{PREFIX}_policy_loaded",
            "1 when a policy is in force; 0: none could be loaded (fail_mode decides).",
        )
        info = InfoMetricFamily(
            f"{PREFIX}_policy",
            "The policy in force: its name and version (content hash).",
            labels=["name", "version"],
        )
        store_version = GaugeMetricFamily(
            f"{PREFIX}_policy_store_version",
            "policy_source = store: the published version number in force (absent in "
            "file mode and until a stored version is in force).",
        )
        if guard is not None:
            if guard.store_version is not None:
                store_version.add_metric([], float(guard.store_version))
            pending.add_metric([], float(guard.store.pending))
            policy = guard.policy
            loaded.add_metric([], 1.0 if policy is not None else 0.0)
            if policy is not None:
                info.add_metric([policy.name, policy.version], {})
        yield pending
        yield loaded
        yield info
        yield store_version
