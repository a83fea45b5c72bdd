"""Runtime enforcement in the server: the process watcher over the guarded kernels and
terminals, its verdicts recorded as strikes of kind ``runtime`` for the right user."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Any

from ..analysis.findings import top_finding
from ..watcher import Owner, ProcessJudge, ProcessWatcher, Verdict, become_subreaper
from ..watcher.judge import signature_scanner
from . import metrics
from .service import GuardService

log = logging.getLogger(__name__)


class RuntimeEnforcer:
    """Builds the watcher from the server's kernels, terminals and strike store."""

    def __init__(
        self,
        guard: GuardService,
        kernel_manager: Any,
        terminal_manager: Callable[[], Any],
        owner: str,
        *,
        interval: float,
        watch_uid: bool,
        connector: bool = True,
    ) -> None:
        self.guard = guard
        self.kernel_manager = kernel_manager
        self.terminal_manager = terminal_manager
        self.owner = owner
        self.subreaper = become_subreaper()
        self.watcher = ProcessWatcher(
            ProcessJudge(lambda: guard.policies.analyzer, signature_scanner()),
            self.roots,
            owner_of_token=self._owner_of_token,
            identity_of=lambda o: guard.identity(o.user),
            excepted=lambda o, found: guard.drop_excepted(o.user, found),
            act=self.record,
            notify=self.notify,
            exclude=self._helpers,
            fallback=Owner(None, owner),
            interval=interval,
            watch_uid=watch_uid,
            connector=connector,
        )

    def start(self) -> None:
        log.info(
            "colab-guard: process watcher on (every %.1f s, subreaper %s, whole uid %s)",
            self.watcher.interval,
            self.subreaper,
            self.watcher.uid is not None,
        )
        self.watcher.start()

    def stop(self) -> None:
        self.watcher.stop()

    def roots(self) -> dict[int, Owner]:
        """pid -> owner of every kernel process and terminal shell."""
        out: dict[int, Owner] = {}
        mkm = self.kernel_manager
        for kid in list(mkm.list_kernel_ids()) if mkm is not None else []:
            with contextlib.suppress(KeyError, AttributeError):
                pid = getattr(mkm.get_kernel(kid).provisioner, "pid", None)
                info = self.guard.kernel(kid)
                if pid:
                    out[pid] = Owner(kid, info.user if info else self.owner)
        tm = self.terminal_manager()
        for term in list(getattr(tm, "terminals", {}).values()) if tm is not None else []:
            pid = getattr(getattr(term, "ptyproc", None), "pid", None)
            if pid:
                out[pid] = Owner(None, self.owner)
        return out

    def _owner_of_token(self, token: str) -> Owner | None:
        info = self.guard.kernel_for_token(token)
        return Owner(info.kernel_id, info.user) if info else None

    def _helpers(self) -> set[int]:
        workers = self.guard.policies.workers
        return {w.process.pid for w in workers.workers} if workers is not None else set()

    def record(self, verdict: Verdict) -> None:
        """A strike of kind ``runtime`` (a stopped process) or a finding (warn, log)."""
        top = top_finding(verdict.findings)
        detail = verdict.detail()
        if verdict.killed:
            metrics.runtime_kill(top.category, top.rule)
        self.guard.record(
            user=verdict.owner.user,
            kind="runtime" if verdict.killed else "finding",
            source="watcher",
            kernel_id=verdict.owner.kernel_id,
            finding=top,
            strike=top.action in ("block", "warn"),
            detail=detail,
        )

    def notify(self, verdict: Verdict) -> None:
        """The warning in the running cell, sent before the kill ends that cell."""
        findings = [f for f in verdict.findings if f.action in ("block", "warn")]
        if not verdict.owner.kernel_id or not findings:
            return
        blocked = any(f.action == "block" for f in findings)
        proc = verdict.proc
        self.guard.notices.send(
            verdict.owner.kernel_id,
            "runtime",
            [f.to_dict() for f in findings],
            f"{'Stopped' if blocked else 'Seen'}: process {proc.pid} ({' '.join(proc.argv)[:200]})",
        )
