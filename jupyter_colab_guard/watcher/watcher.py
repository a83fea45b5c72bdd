"""The process watcher: every process below the guarded kernels (and terminals), and
every other process ``watched`` accepts (a uid, the users of a machine), judged by the
policy in force; `block` kills its tree, every verdict is handed on with its reason.
Polls /proc (psutil) every ``interval`` seconds in a thread of its own."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..analysis.findings import Finding, strongest_action, top_finding
from ..policy import Identity
from .judge import ProcessJudge
from .netlink import ExecEvents
from .procs import Proc, ProcTable, age, ancestry, descendants, kill_tree, read, same_uid
from .sockets import holders, listening

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Owner:
    """Whose process it is: the kernel (None: a terminal or unknown) and its user;
    ``via``: how the user was found, when not from a kernel (logged and recorded)."""

    kernel_id: str | None
    user: str
    via: str = ""


@dataclass
class Verdict:
    proc: Proc
    owner: Owner
    findings: list[Finding]
    killed: list[int]
    seen_after: float  # seconds from the process's start to the verdict

    def detail(self) -> str:
        """One line for the strike store: the process, what was done and why."""
        top = top_finding(self.findings)
        rules = ", ".join(sorted({f.rule for f in self.findings}))
        via = f"; {self.owner.via}" if self.owner.via else ""
        return (
            f"pid {self.proc.pid} {'killed' if self.killed else top.action} ({rules}); "
            f"argv: {' '.join(self.proc.argv)[:500]}; exe: {self.proc.exe}{via}"
        )


@dataclass
class Counters:
    polls: int = 0
    judged: int = 0
    kills: int = 0
    last_poll_seconds: float = 0.0
    connector: bool = False  # exec events from the process connector in use
    by_rule: dict[str, int] = field(default_factory=dict)


class ProcessWatcher:
    def __init__(
        self,
        judge: ProcessJudge,
        roots: Callable[[], dict[int, Owner]],
        *,
        owner_of_token: Callable[[str], Owner | None] = lambda token: None,
        identity_of: Callable[[Owner], Identity | None] = lambda owner: None,
        excepted: Callable[[Owner, list[Finding]], list[Finding]] = lambda owner, found: found,
        act: Callable[[Verdict], None] = lambda verdict: None,
        notify: Callable[[Verdict], None] = lambda verdict: None,
        exclude: Callable[[], set[int]] = set,
        fallback: Owner | None = None,
        interval: float = 1.0,
        watch_uid: bool = False,
        watched: Callable[[int], bool] | None = None,
        owner_of: Callable[[Proc], Owner | None] = lambda proc: None,
        connector: bool = True,
    ) -> None:
        """``watched``: which processes outside the trees of ``roots`` are watched too
        (``watch_uid``: those of our uid); ``owner_of``: whose such a process is, when
        no kernel's token says (before ``fallback``)."""
        self.judge = judge
        self.roots = roots  # pid -> owner of each guarded kernel and terminal
        self.owner_of_token = owner_of_token
        self.identity_of = identity_of
        self.excepted = excepted  # drops what an admin allowed this user
        self.act = act  # after the kill: record it
        self.notify = notify  # before the kill: tell the user (the running cell still runs)
        self.exclude = exclude  # the server's own helpers (analysis workers)
        self.fallback = fallback  # owner of orphans nothing else attributes
        self.owner_of = owner_of
        self.interval = interval
        self.connector = connector  # exec events from the kernel where it allows (root)
        self.uid = os.getuid() if watch_uid else None
        self.watched = watched or (same_uid(self.uid) if self.uid is not None else None)
        self.me = os.getpid()
        self.counters = Counters()
        self._seen: set[tuple[int, float]] = set()
        self._table = ProcTable()
        self._sockets: set[int] = set()  # listening sockets already judged (inodes)
        self._marks: dict[tuple[int, float], bool] = {}  # what ``watched`` said of each
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- running --------------------------------------------------------------------
    def start(self) -> None:
        """Subscribe to exec events (when ``connector`` and allowed), then watch in a
        thread: ``counters.connector`` is known when this returns."""
        events = ExecEvents.open() if self.connector else None
        self.counters.connector = events is not None
        self._thread = threading.Thread(
            target=self._run, args=(events,), name="colab-guard-watcher", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self, events: ExecEvents | None) -> None:
        next_poll = time.monotonic() + self.interval
        try:
            while not self._stop.is_set():
                try:
                    if events is None:
                        self._stop.wait(max(0.0, next_poll - time.monotonic()))
                    else:  # exec events as they come, a full poll every interval
                        pids = events.read(max(0.0, min(0.25, next_poll - time.monotonic())))
                        if pids:
                            self.on_exec(pids)
                    if time.monotonic() >= next_poll or (events and events.overflowed):
                        self.poll()
                        next_poll = time.monotonic() + self.interval
                except Exception:  # the watcher must outlive any one bad pass
                    log.exception("colab-guard: process watcher pass failed")
        finally:
            if events is not None:
                events.close()

    def on_exec(self, pids: list[int]) -> list[Verdict]:
        """Judge processes that just exec'd, if they are in the watched tree (a process
        judged before is judged again: it may have exec'd into another program)."""
        roots = self.roots()
        skip = self._skip(roots)
        tops = set(roots) | {self.me}
        # no kernels: only what ``watched`` accepts can be ours (our own children are of
        # our uid), so that cheap test spares the walk up the tree for every other exec
        first = self.watched if not roots else None
        verdicts = []
        for pid in pids:
            if pid in skip or (first is not None and not first(pid)):
                continue
            found = ancestry(pid, tops, self.watched)
            if found is None:
                continue
            started, top = found
            self._seen.add((pid, started))
            verdict = self._judge(pid, started, roots.get(top))
            if verdict is not None:
                verdicts.append(verdict)
        return verdicts

    # -- one pass -------------------------------------------------------------------
    def poll(self) -> list[Verdict]:
        start = time.perf_counter()
        table = self._table.refresh()
        roots = self.roots()
        # kernels first: what descends from one is its; then orphans the server reaped
        below = descendants([*roots, self.me], table)
        skip = self._skip(roots)
        candidates = {pid: root for pid, root in below.items() if pid not in skip}
        if self.watched is not None:
            for pid in self._watched(table):
                if pid not in skip:
                    candidates.setdefault(pid, self.me)
        verdicts = []
        for pid, root in candidates.items():
            key = (pid, table[pid][1])
            if key in self._seen:
                continue
            self._seen.add(key)
            verdict = self._judge(pid, key[1], roots.get(root))
            if verdict is not None:
                verdicts.append(verdict)
        verdicts += self._listeners(candidates, roots, table)
        alive = {(pid, started) for pid, (_, started) in table.items()}
        self._seen &= alive  # forget what ended
        self._marks = {key: mark for key, mark in self._marks.items() if key in alive}
        self.counters.polls += 1
        self.counters.last_poll_seconds = time.perf_counter() - start
        return verdicts

    def _skip(self, roots: dict[int, Owner]) -> set[int]:
        """Never judged: the kernels and shells themselves, the server and its helpers."""
        return set(roots) | self.exclude() | {self.me}

    def _watched(self, table: dict[int, tuple[int, float]]) -> list[int]:
        """Processes ``watched`` accepts (each process asked about once)."""
        assert self.watched is not None
        out = []
        for pid, (_, started) in table.items():
            mark = self._marks.get((pid, started))
            if mark is None:
                mark = self._marks[(pid, started)] = self.watched(pid)
            if mark:
                out.append(pid)
        return out

    def _listeners(
        self,
        candidates: dict[int, int],
        roots: dict[int, Owner],
        table: dict[int, tuple[int, float]],
    ) -> list[Verdict]:
        """Listening sockets opened since the last poll by a watched process."""
        sockets = listening()
        fresh = set(sockets) - self._sockets
        self._sockets = set(sockets)
        if not fresh:
            return []
        verdicts = []
        for pid, inodes in holders(fresh, list(candidates)).items():
            proc = read(pid, table[pid][1]) if pid in table else None
            owner = self._owner(proc, roots.get(candidates[pid])) if proc else None
            if proc is None or owner is None:
                continue
            identity = self.identity_of(owner)
            found = [f for i in inodes for f in self.judge.judge_listen(*sockets[i], identity)]
            verdict = self._verdict(proc, owner, self.excepted(owner, found))
            if verdict is not None:
                verdicts.append(verdict)
        return verdicts

    def _owner(self, proc: Proc, owner: Owner | None) -> Owner | None:
        if proc.token:  # the environment a guarded kernel gave it (orphans keep it)
            owner = self.owner_of_token(proc.token) or owner
        return owner or self.owner_of(proc) or self.fallback

    def _judge(self, pid: int, started: float, owner: Owner | None) -> Verdict | None:
        proc = read(pid, started)
        owner = self._owner(proc, owner) if proc is not None else None
        if proc is None or owner is None:
            return None
        self.counters.judged += 1
        findings = self.excepted(owner, self.judge.judge(proc, self.identity_of(owner)))
        return self._verdict(proc, owner, findings)

    def _verdict(self, proc: Proc, owner: Owner, findings: list[Finding]) -> Verdict | None:
        """Act on the findings of one process: block kills its tree; all are handed on."""
        pid, started = proc.pid, proc.started
        action = strongest_action(findings)
        if action is None:
            return None
        verdict = Verdict(proc, owner, findings, [], age(started))
        self.notify(verdict)
        if action == "block":
            verdict.killed = kill_tree(pid, started)
        killed = verdict.killed
        if killed:
            self.counters.kills += 1
        for f in findings:
            self.counters.by_rule[f.rule] = self.counters.by_rule.get(f.rule, 0) + 1
        log.warning(
            "colab-guard: process %d of %s (%s) %s after %.0f ms: %s [%s] argv=%s",
            pid,
            owner.user,
            f"kernel {owner.kernel_id}" if owner.kernel_id else owner.via or "no kernel",
            "killed" if killed else action,
            verdict.seen_after * 1000,
            findings[0].message if findings else "",
            ",".join(sorted({f"{f.category}/{f.rule}" for f in findings})),
            " ".join(proc.argv)[:300],
        )
        self.act(verdict)
        return verdict
