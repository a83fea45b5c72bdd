"""The monitor's counters: a Prometheus endpoint (``--metrics-port``, prometheus_client)
read at scrape time, and a summary line for the log."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from ..watcher.watcher import Counters

PREFIX = "colab_guard_monitor"


@dataclass(frozen=True, slots=True)
class Snapshot:
    counters: Counters
    recorded: int  # events written to the store (or spooled)
    pending: int  # events spooled, waiting for the store


def summary(s: Snapshot) -> str:
    c = s.counters
    rules = ", ".join(f"{rule}={n}" for rule, n in sorted(dict(c.by_rule).items())) or "none"
    return (
        f"judged {c.judged}, killed {c.kills}, recorded {s.recorded} "
        f"({s.pending} pending), polls {c.polls}, exec events {c.connector}; by rule: {rules}"
    )


class CountersCollector:
    """A prometheus_client collector over the watcher's counters."""

    def __init__(self, snapshot: Callable[[], Snapshot]) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        s = self.snapshot()
        c = s.counters
        for name, text, value in (
            ("processes_judged", "New processes judged against the policy.", c.judged),
            ("kills", "Processes whose tree was killed (block).", c.kills),
            ("events_recorded", "Events written to the strike store or spooled.", s.recorded),
            ("polls", "Full passes over /proc.", c.polls),
        ):
            yield CounterMetricFamily(f"{PREFIX}_{name}", text, value=value)
        by_rule = CounterMetricFamily(
            f"{PREFIX}_findings", "Findings on processes, by rule (any action).", labels=["rule"]
        )
        for rule, n in sorted(dict(c.by_rule).items()):
            by_rule.add_metric([rule], n)
        yield by_rule
        for name, text, gauge in (
            ("events_pending", "Events spooled while the store cannot be written.", s.pending),
            ("exec_events", "1 when exec events of the process connector are used.", c.connector),
            ("last_poll_seconds", "Duration of the last full pass.", c.last_poll_seconds),
        ):
            yield GaugeMetricFamily(f"{PREFIX}_{name}", text, value=float(gauge))


class MetricsServer:
    """``/metrics`` in Prometheus text format on ``addr:port`` (a thread)."""

    def __init__(self, snapshot: Callable[[], Snapshot], port: int, addr: str) -> None:
        from prometheus_client import CollectorRegistry, start_http_server

        registry = CollectorRegistry(auto_describe=False)
        registry.register(CountersCollector(snapshot))
        self._server, self._thread = start_http_server(port, addr=addr, registry=registry)
        self.port = int(self._server.server_port)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
