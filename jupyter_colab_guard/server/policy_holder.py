"""The policy in force: loading, hot reload, snapshots for kernels, analysis sessions.

Its source is the policy file or folder (``policy_source = "file"``), or the newest
version published in the shared store (``"store"``, with the file as the fallback until
a version is published). A policy that does not load, or a store that cannot be read,
never replaces the policy in force.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any

from ..analysis import Analyzer
from ..analysis.findings import Finding
from ..analysis.worker import PolicyRef
from ..policy import Identity, Policy, PolicyError, Problem, load_policy, parse_policy
from ..policy.folder import flatten, signature
from ..store.policies import PolicyVersions
from . import events as E
from . import metrics
from .settings import GuardSettings
from .workers import AnalysisWorkers, RemoteSession, WorkerTimeout

log = logging.getLogger(__name__)

# an analysis session and the lock serialising its checks
Session = tuple[Any, threading.Lock]


class PolicyHolder:
    def __init__(
        self,
        policy_path: str | None,
        events: E.GuardEvents,
        settings: GuardSettings,
        versions: PolicyVersions | None = None,
    ) -> None:
        self.policy_path = policy_path
        # store mode: the shared store's published versions (None: the file is the source)
        self.versions = versions
        self.store_version: int | None = None  # the store version in force
        self._store_refused: int | None = None  # a stored version that did not load
        self._store_down = False  # the last poll could not read the store (said once)
        self.events = events
        self.settings = settings
        # copies of the policy in force, handed to new kernels: a policy file deleted or
        # broken at run time must not leave new kernels without the policy in force
        self.kernel_policy_path: str | None = policy_path
        self.policy: Policy | None = None
        self.analyzer: Analyzer | None = None
        self.ref: PolicyRef | None = None  # what analysis workers build the policy from
        # analysis in child processes (settings.analysis_workers); None: in this process
        self.workers: AnalysisWorkers | None = None
        if settings.analysis_workers > 0:
            self.workers = AnalysisWorkers(settings.analysis_workers)
        self._sig: tuple[Any, ...] | None = None
        self._sessions: dict[tuple[str, str, str], Session] = {}
        self._lock = threading.Lock()

    def _file_sig(self) -> tuple[Any, ...] | None:
        if not self.policy_path:
            return None
        return signature(Path(self.policy_path))

    def load_initial(self) -> None:
        """Load at startup. A broken policy leaves the guard without one (fail mode).
        Store mode: the newest published version, else (none yet, or the store cannot
        be read) the file's policy until the store has one."""
        self._sig = self._file_sig()
        if self.versions is not None:
            if self.poll_store():
                return
            log.warning(
                "colab-guard: policy_source is store but no stored policy is in force; "
                "the policy %s applies until one is published",
                self.policy_path or "(default)",
            )
        try:
            self._set(*self._read())
            self.events.emit(E.POLICY, self._event("loaded"))
        except (PolicyError, OSError) as err:
            log.error("colab-guard: policy %s refused:\n%s", self.policy_path, err)
            self.events.emit(E.POLICY, self._event("refused", err))
            metrics.policy_refused()

    def poll(self) -> bool | None:
        """Hot reload: None = unchanged, True = new policy in force, False = refused."""
        if self.versions is not None:
            return self.poll_store()
        sig = self._file_sig()
        if sig == self._sig:
            return None
        self._sig = sig
        try:
            policy, text = self._read()
        except (PolicyError, OSError) as err:
            log.error(
                "colab-guard: new policy %s refused, the previous one stays in force:\n%s",
                self.policy_path,
                err,
            )
            self.events.emit(E.POLICY, self._event("refused", err))
            metrics.policy_refused()
            return False
        if self.policy is not None and policy.version == self.policy.version:
            return None
        self._set(policy, text)
        log.info("colab-guard: policy %s reloaded (version %s)", self.policy_path, policy.version)
        self.events.emit(E.POLICY, self._event("reloaded"))
        return True

    def poll_store(self) -> bool | None:
        """Store mode: put the newest published version in force (a cheap ``max`` query
        when nothing changed). None = unchanged, True = new policy, False = refused or the
        store unreadable (the policy in force stays). Runs off the event loop."""
        assert self.versions is not None
        try:
            top = self.versions.latest_number()
            row = None
            if top is not None and top not in (self.store_version, self._store_refused):
                row = self.versions.get(top)
        except Exception as err:  # unreachable, no table, no permission
            if not self._store_down:
                self._store_down = True
                log.error(
                    "colab-guard: the policy store cannot be read, the policy in force "
                    "(%s) stays: %s",
                    self.policy.version if self.policy else "none",
                    str(err).strip().splitlines()[0] if str(err).strip() else repr(err),
                )
                self.events.emit(E.POLICY, self._event("refused", err))
                metrics.policy_refused()
            return False
        if self._store_down:
            self._store_down = False
            log.info("colab-guard: the policy store can be read again")
        if row is None:
            return None
        try:
            policy = self.versions.load(row)
        except PolicyError as err:
            self._store_refused = row.version
            log.error(
                "colab-guard: stored policy version %d refused, the policy in force stays:\n%s",
                row.version,
                err,
            )
            self.events.emit(E.POLICY, {**self._event("refused", err), "store_version": top})
            metrics.policy_refused()
            if self.policy is None:  # at start: the newest older version that loads
                return self._load_older(row.version)
            return False
        if self.policy is not None and policy.version == self.policy.version:
            self.store_version = row.version  # the same text published again
            return None
        first = self.policy is None
        self._set(policy, row.document)
        self.store_version = row.version
        log.info(
            "colab-guard: policy %s store version %d (policy %s, published by %s)",
            "loaded from the" if first else "reloaded from the",
            row.version,
            policy.version,
            row.published_by,
        )
        self.events.emit(E.POLICY, self._event("loaded" if first else "reloaded"))
        return True

    def _load_older(self, refused: int) -> bool:
        """No policy in force yet and the newest stored version does not load: the newest
        older one that does (False: none does, or the store cannot be read)."""
        assert self.versions is not None
        try:
            rows = [r for r in self.versions.history(50) if r.version < refused]
        except Exception as err:
            log.error("colab-guard: older policy versions cannot be read: %s", err)
            return False
        for row in rows:
            try:
                policy = self.versions.load(row)
            except PolicyError:
                continue
            self._set(policy, row.document)
            self.store_version = row.version
            log.warning(
                "colab-guard: store version %d in force (newer version %d refused)",
                row.version,
                refused,
            )
            self.events.emit(E.POLICY, self._event("loaded"))
            return True
        return False

    def _read(self) -> tuple[Policy, str | None]:
        """The policy and the exact text it was built from (None: shipped default)."""
        if not self.policy_path:
            return load_policy(None), None
        if os.path.isdir(self.policy_path):
            # problems are reported against the folder's own files and lines; what is
            # in force (and handed to kernels and workers) is the same policy as one text
            load_policy(self.policy_path)
            text = flatten(Path(self.policy_path))
            return parse_policy(text, self.policy_path), text
        try:
            with open(self.policy_path, encoding="utf-8") as f:
                text = f.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise PolicyError([Problem(self.policy_path, 0, "", f"cannot read: {exc}")]) from None
        return parse_policy(text, self.policy_path), text

    def _set(self, policy: Policy, text: str | None = None) -> None:
        snapshot = self._snapshot(policy, text)
        with self._lock:
            self.policy = policy
            self.analyzer = Analyzer(policy)
            self.ref = PolicyRef(policy.version, self.policy_path, text)
            self._sessions.clear()
            if snapshot:
                self.kernel_policy_path = snapshot
        if self.workers is not None:  # workers build the new policy before the next cell
            threading.Thread(target=self.workers.warm, args=(self.ref,), daemon=True).start()

    def _snapshot(self, policy: Policy, text: str | None) -> str | None:
        """Write the policy text in force to a private file for new kernels."""
        snapshot_dir = self.settings.snapshot_dir
        if text is None or not snapshot_dir:
            return None
        try:
            os.makedirs(snapshot_dir, mode=0o700, exist_ok=True)
            path = os.path.join(snapshot_dir, f"policy-{policy.version}.yaml")
            if not os.path.exists(path):
                tmp = f"{path}.{os.getpid()}.tmp"
                with open(tmp, "w", encoding="utf-8") as f:
                    f.write(text)
                os.replace(tmp, path)
            return path
        except OSError as err:  # kernels then read the operator's file directly
            log.error("colab-guard: cannot write the policy snapshot: %s", err)
            return None

    def _event(self, status: str, err: Exception | None = None) -> dict[str, Any]:
        problems: list[str] = []
        if isinstance(err, PolicyError):
            problems = [str(p) for p in getattr(err, "problems", [])] or [str(err)]
        elif err is not None:
            problems = [str(err)]
        return {
            "status": status,
            "path": self.policy_path,
            "version": self.policy.version if self.policy and status != "refused" else None,
            "problems": problems,
            "source": "store" if self.versions is not None else "file",
            "store_version": self.store_version,
        }

    # -- analysis sessions ------------------------------------------------------------

    def session(self, kernel_id: str, identity: Identity) -> Session:
        """The analysis session of (kernel, user, policy) and the lock that serialises
        its checks (two tabs on one kernel check in two threads)."""
        assert self.analyzer is not None and self.policy is not None
        key = (kernel_id, identity.user or "", self.policy.version)
        with self._lock:
            entry = self._sessions.get(key)
            if entry is None:
                made: Any = (
                    self.workers.session(key[:2], identity)
                    if self.workers is not None
                    else self.analyzer.session(identity=identity)
                )
                entry = self._sessions[key] = (made, threading.Lock())
        return entry

    def check(self, session: Any, code: str) -> list[Finding]:
        """Findings of the next cell of a session, within ``check_budget`` (a worker that
        does not answer in time is restarted: the cell gets ``analysis.timeout``)."""
        analyzer, budget = self.analyzer, self.settings.check_budget
        assert analyzer is not None and self.ref is not None
        if not isinstance(session, RemoteSession):
            return list(session.check(code, budget))
        try:
            timeout = self.settings.worker_timeout
            return self.workers.check(session, analyzer, self.ref, code, budget, timeout)  # type: ignore[union-attr]
        except WorkerTimeout as err:
            log.warning("colab-guard: check of a cell of %s timed out: %s", session.key, err)
            return [analyzer.timeout_finding()]

    def check_expression(self, session: Any, code: str) -> list[Finding]:
        """Findings of one user_expression (no session memory)."""
        analyzer, budget = self.analyzer, self.settings.check_budget
        assert analyzer is not None and self.ref is not None
        if not isinstance(session, RemoteSession):
            return analyzer.check(code, identity=session.identity, budget=budget)
        try:
            timeout = self.settings.worker_timeout
            return self.workers.expression(session, analyzer, self.ref, code, budget, timeout)  # type: ignore[union-attr]
        except WorkerTimeout:
            return [analyzer.timeout_finding()]

    def forget_sessions(self, kernel_id: str) -> None:
        with self._lock:
            for key in [k for k in self._sessions if k[0] == kernel_id]:
                del self._sessions[key]
        if self.workers is not None:
            self.workers.forget(kernel_id)

    def shutdown(self) -> None:
        if self.workers is not None:
            self.workers.shutdown()
