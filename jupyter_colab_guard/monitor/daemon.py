"""The monitor: the process watcher over every user process of the machine, as root,
with the policy in force and the shared strike store. ``run`` returns when ``stop`` is
set (SIGTERM, SIGINT)."""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from dataclasses import dataclass

from ..policy import Identity
from ..store import StrikeStore
from ..watcher import Owner, ProcessJudge, ProcessWatcher, signature_scanner
from .metrics import MetricsServer, Snapshot, summary
from .owners import OwnerResolver
from .policy import PolicySource
from .strikes import StrikeWriter

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class MonitorSettings:
    interval: float = 1.0  # seconds between full /proc passes
    connector: bool = True  # exec events (process connector) where allowed (root)
    policy_poll: float = 2.0  # seconds between checks of the policy file
    store_retry: float = 30.0  # seconds between retries of spooled events
    stats_interval: float = 300.0  # seconds between counter lines in the log (0: never)
    default_tier: str | None = None  # the policy tier of every user
    metrics_port: int | None = None
    metrics_addr: str = "127.0.0.1"


class Monitor:
    def __init__(
        self,
        policy: PolicySource,
        store: StrikeStore,
        owners: OwnerResolver,
        settings: MonitorSettings,
    ) -> None:
        self.policy = policy
        self.store = store
        self.owners = owners
        self.settings = settings
        self.strikes = StrikeWriter(store)
        self.metrics: MetricsServer | None = None
        self.watcher = ProcessWatcher(
            ProcessJudge(lambda: policy.analyzer, signature_scanner(), through_proc=True),
            roots=dict,  # no kernels of our own: ``watched`` picks the processes
            identity_of=self.identity,
            excepted=lambda owner, found: self.strikes.drop_excepted(owner.user, found),
            act=self.strikes.record,
            interval=settings.interval,
            watched=owners.watched,
            owner_of=owners.owner_of,
            connector=settings.connector,
        )

    def identity(self, owner: Owner) -> Identity:
        return Identity(user=owner.user, tier=self.settings.default_tier)

    def snapshot(self) -> Snapshot:
        return Snapshot(self.watcher.counters, self.strikes.recorded, self.store.pending)

    def run(self, stop: threading.Event) -> None:
        try:
            self._start()
            self._loop(stop)
        finally:
            self.close()

    def _start(self) -> None:
        s = self.settings
        if s.metrics_port is not None:
            self.metrics = MetricsServer(self.snapshot, s.metrics_port, s.metrics_addr)
        self.watcher.start()
        log.info(
            "colab-guard monitor: running as uid %d, watching uids %d-%d%s, every %.1f s%s%s",
            os.geteuid(),
            self.owners.min_uid,
            self.owners.max_uid,
            " (only with JUPYTERHUB_USER)" if self.owners.hub_only else "",
            s.interval,
            ", exec events on" if self.watcher.counters.connector else ", polling only",
            f", metrics on {s.metrics_addr}:{self.metrics.port}" if self.metrics else "",
        )

    def _loop(self, stop: threading.Event) -> None:
        """Until ``stop``: policy reloads, retries of spooled events, counter lines."""
        s = self.settings
        now = time.monotonic()
        next_policy, next_retry = now, now + s.store_retry
        next_stats = now + s.stats_interval if s.stats_interval > 0 else math.inf
        while not stop.wait(max(0.05, min(next_policy, next_retry, next_stats) - time.monotonic())):
            now = time.monotonic()
            if now >= next_policy:
                self.policy.poll()
                next_policy = now + s.policy_poll
            if now >= next_retry:
                if self.store.pending or not self.store.ready:
                    self.store.flush_pending()
                next_retry = now + s.store_retry
            if now >= next_stats:
                log.info("colab-guard monitor: %s", summary(self.snapshot()))
                next_stats = now + s.stats_interval

    def close(self) -> None:
        self.watcher.stop()
        if self.metrics is not None:
            self.metrics.close()
        if self.store.pending:
            self.store.flush_pending()
        log.info("colab-guard monitor: stopped; %s", summary(self.snapshot()))
        self.store.close()
