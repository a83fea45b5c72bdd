"""Analysis in child processes: a hostile cell costs a worker, never the server.

The deep analysis (libcst) holds the GIL in long native calls and can only be stopped
between steps, so the server runs it in a few child processes of its own
(``analysis/worker.py``). Each holds the analyzer of the
policy in force and the analysis sessions of the users pinned to it, answers one request
at a time within the cooperative budget (``check_budget``), and is killed and started
anew when it has not answered by ``check_timeout`` (its sessions start again empty).

The server keeps a mirror of each session's memory (the names earlier cells left) and
runs the cheap prefilter itself: a cell no rule can match is answered at once, without a
worker, and reaches the worker's session with the next cell that needs one. So ordinary
cells of other users keep their latency while hostile cells keep a worker busy.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from typing import Any

from ..analysis import Analyzer
from ..analysis.analyzer import imported_modules
from ..analysis.findings import Finding
from ..analysis.pyscan import Memory
from ..analysis.worker import PolicyRef, receive, send
from ..policy import Identity, Policy

log = logging.getLogger(__name__)

MAX_PENDING = 64  # quiet cells a session holds back before sending them on their own
CHILD = "jupyter_colab_guard.analysis.worker"
LOCAL_GATE_MAX = 64 * 1024  # characters: larger cells are prefiltered by the worker


# -- the server's side -------------------------------------------------------------------
class WorkerTimeout(TimeoutError):
    """A worker did not answer in time: it was killed and started again."""


class WorkerProcess:
    """One child process and the lock that gives it one request at a time."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.lock = threading.Lock()
        self.generation = 0  # counts restarts: sessions of an older generation are gone
        self.users: set[str] = set()
        self.gone: set[str] = set()  # kernels shut down: their sessions go with the next call
        self.closed = False
        self._start()

    def _start(self) -> None:
        mine, theirs = socket.socketpair()
        env = dict(os.environ, PYTHONSAFEPATH="1")
        self.process = subprocess.Popen(
            [sys.executable, "-P", "-m", CHILD, str(theirs.fileno())],
            pass_fds=(theirs.fileno(),),
            stdin=subprocess.DEVNULL,
            env=env,
        )
        theirs.close()
        self.sock = mine
        self.generation += 1

    def call(self, request: tuple[Any, ...], timeout: float, wait: float | None = None) -> Any:
        """Send one request and wait ``timeout`` seconds for its answer, after waiting at
        most ``wait`` (default ``timeout``) for the worker's turn. Raises WorkerTimeout
        (a worker that did not answer is restarted) or RuntimeError (it failed)."""
        if not self.lock.acquire(timeout=timeout if wait is None else wait):
            raise WorkerTimeout(f"analysis worker {self.index} stayed busy")
        try:
            try:
                self.sock.settimeout(timeout)
                send(self.sock, request)
                status, value = receive(self.sock)
            except (TimeoutError, OSError, EOFError) as err:
                self._restart(err)
                raise WorkerTimeout(f"analysis worker {self.index}: {err!r}") from None
            finally:
                if self.sock.fileno() != -1:
                    self.sock.settimeout(None)
        finally:
            self.lock.release()
        if status != "ok":
            raise RuntimeError(f"analysis worker {self.index} failed: {value}")
        return value

    def _restart(self, why: BaseException) -> None:
        log.warning(
            "colab-guard: analysis worker %d (pid %d) stopped answering (%r): killed, "
            "started again; the analysis sessions it held start anew",
            self.index,
            self.process.pid,
            why,
        )
        self.stop()
        if not self.closed:  # (not after the server shut the workers down)
            self._start()

    def stop(self) -> None:
        try:
            self.sock.close()
        finally:
            if self.process.poll() is None:
                self.process.kill()
            self.process.wait()


@dataclass
class RemoteSession:
    """The server's side of one analysis session that lives in a worker."""

    key: tuple[str, str]
    worker: WorkerProcess
    identity: Identity
    generation: int
    memory: Memory = field(default_factory=Memory)  # names only (the prefilter's view)
    quiet: list[str] = field(default_factory=list)  # cells the worker has not seen yet


class AnalysisWorkers:
    """The worker processes, the sessions pinned to them and the prefilter in front."""

    def __init__(self, count: int) -> None:
        self.workers = [WorkerProcess(i) for i in range(max(1, count))]
        self._lock = threading.Lock()

    def session(self, key: tuple[str, str], identity: Identity) -> RemoteSession:
        """A new session, on the worker of its user (the least busy one for a new user):
        one user's hostile cells keep one worker busy, not all."""
        user = identity.user or ""
        with self._lock:
            worker = next((w for w in self.workers if user in w.users), None)
            if worker is None:
                worker = min(self.workers, key=lambda w: len(w.users))
                worker.users.add(user)
        return RemoteSession(key, worker, identity, worker.generation)

    def check(
        self,
        session: RemoteSession,
        analyzer: Analyzer,
        ref: PolicyRef,
        cell: str,
        budget: float,
        timeout: float,
    ) -> list[Finding]:
        """Findings of the next cell of a session (already filtered for its identity)."""
        policy: Policy = analyzer.policy
        # the prefilter runs here for ordinary cells; a large one (whose regex scans would
        # hold this process's GIL for tens of ms) goes to the worker as it is
        deep = len(cell) > LOCAL_GATE_MAX or analyzer.gate(cell, session.memory)[0]
        if not deep:  # no rule can match: answered here, the worker learns it later
            session.memory.imports.update(imported_modules(cell))
            session.quiet.append(cell)
            if len(session.quiet) >= MAX_PENDING:
                self._send(session, ref, None, budget, timeout)
            return []
        return policy.filter(self._send(session, ref, cell, budget, timeout), session.identity)

    def _send(
        self,
        session: RemoteSession,
        ref: PolicyRef,
        cell: str | None,
        budget: float,
        timeout: float,
    ) -> list[Finding]:
        quiet, session.quiet = session.quiet, []
        worker = session.worker
        if worker.generation != session.generation:
            log.info("colab-guard: analysis session %s starts anew (worker restarted)", session.key)
            session.generation = worker.generation
        gone, worker.gone = worker.gone, set()
        request = ("check", ref, session.key, quiet, cell, budget, gone)
        findings, names = worker.call(request, timeout)
        session.memory = Memory(**names)
        return findings  # type: ignore[no-any-return]

    def expression(
        self,
        session: RemoteSession,
        analyzer: Analyzer,
        ref: PolicyRef,
        code: str,
        budget: float,
        timeout: float,
    ) -> list[Finding]:
        """A user_expression: checked on its own (no session), on the session's worker."""
        if len(code) <= LOCAL_GATE_MAX and not analyzer.gate(code, Memory())[0]:
            return []
        found = session.worker.call(("expression", ref, code, budget), timeout)
        return analyzer.policy.filter(found, session.identity)

    def warm(self, ref: PolicyRef, timeout: float = 60.0) -> None:
        """Have every worker build the analyzer of a policy now (not at the next cell)."""
        for worker in self.workers:
            try:
                worker.call(("check", ref, ("", ""), [], None, 0.0, set()), timeout)
            except (WorkerTimeout, RuntimeError) as err:
                log.warning(
                    "colab-guard: analysis worker %d cannot load the policy: %s", worker.index, err
                )

    def forget(self, kernel_id: str) -> None:
        """A kernel shut down: its sessions go with each worker's next request."""
        for worker in self.workers:
            worker.gone.add(kernel_id)

    def shutdown(self) -> None:
        for worker in self.workers:
            worker.closed = True
            worker.stop()
