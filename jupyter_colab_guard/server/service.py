"""The guard service: policy, analyzer, identity, kernel tokens, strikes and escalation.

One instance per server, created by ``ColabGuardApp``; the websocket connection, the
kernel manager and the handlers all call into it.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import hashlib
import hmac
import json
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from ..analysis import Analyzer
from ..analysis.findings import Finding, strongest_action
from ..policy import Identity, Policy, PolicyError, Problem, load_policy, parse_policy
from ..store import StrikeEvent, StrikeStore
from . import events as E
from .escalation import Status, Step, evaluate
from .identity import user_groups, user_name, uses_owner

log = logging.getLogger(__name__)

# where a user stands when the store cannot be read (the store is down)
UNKNOWN = Status(level="unknown", strikes=0)

KINDS = ("finding", "consent", "runtime_block", "tamper")
MAX_REPORT_EVENTS = 100
MAX_FIELD = 4000
DEFAULT_MESSAGE = (
    "You may be executing code that is disallowed, and this may restrict your ability to "
    "use {service} in the future. Please note the prohibited actions specified in our FAQ."
)


def cell_hash(code: str) -> str:
    return hashlib.sha256(code.encode("utf-8", "surrogatepass")).hexdigest()


def _clip(value: Any, limit: int = MAX_FIELD) -> str | None:
    if value is None:
        return None
    return str(value)[:limit]


@dataclass
class KernelInfo:
    kernel_id: str
    user: str
    token_digest: str
    path: str | None = None
    started: float = field(default_factory=time.time)
    groups: tuple[str, ...] = ()
    # the kernel-side guard: expected (a Python kernel started with it), its "armed"
    # hello (time, policy version), and whether it was found missing
    expects_guard: bool = False
    armed_at: float | None = None
    armed_policy: str | None = None
    unarmed: bool = False
    identity_file: str | None = None
    # report abuse limits: times of recent reports and of strikes taken from reports
    report_times: collections.deque[float] = field(default_factory=collections.deque)
    strike_times: collections.deque[float] = field(default_factory=collections.deque)


class ReportRejected(Exception):
    """A kernel report refused as a whole (HTTP status, reason)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


@dataclass
class Decision:
    """What to do with one execute_request."""

    refuse: bool
    reason: str  # "" (allowed) | block | restricted | suspended | unavailable
    user: str
    findings: list[Finding]
    status: Status
    stored: bool = True


class GuardService:
    def __init__(
        self,
        *,
        store: StrikeStore,
        ladder: list[Step],
        policy_path: str | None,
        owner: str,
        identity_mode: str,
        identity_provider: Any,
        admin_users: set[str],
        store_cell_text: bool,
        fail_mode: str,
        user_tiers: dict[str, str],
        default_tier: str | None,
        events: E.GuardEvents,
        dedupe_window: float = 300.0,
        snapshot_dir: str | None = None,
        hub_admins: bool = False,
        check_workers: int = 4,
    ) -> None:
        self.store = store
        self.ladder = ladder
        self.policy_path = policy_path
        self.owner = owner
        self.owner_mode = uses_owner(identity_mode, identity_provider)
        self.admin_users = admin_users
        self.store_cell_text = store_cell_text
        self.fail_mode = fail_mode
        self.user_tiers = user_tiers
        self.default_tier = default_tier
        self.events = events
        self.dedupe_window = dedupe_window
        # copies of the policy in force, handed to new kernels: a policy file deleted or
        # broken at run time must not leave new kernels without the policy in force
        self.snapshot_dir = snapshot_dir
        self.kernel_policy_path: str | None = policy_path
        # JupyterHub: the Hub's admin flag (hub_user["admin"]) makes a guard admin
        self.hub_admins = hub_admins
        self.policy: Policy | None = None
        self.analyzer: Analyzer | None = None
        self._policy_sig: tuple[Any, ...] | None = None
        self._sessions: dict[tuple[str, str, str], tuple[Any, threading.Lock]] = {}
        self._kernels: dict[str, KernelInfo] = {}
        self._tokens: dict[str, str] = {}  # sha256(token) -> kernel id
        self._exc_cache: dict[str, tuple[float, list[dict[str, Any]]]] = {}
        self._lock = threading.RLock()
        # set by the app: shuts down a user's kernels (thread-safe)
        self.on_suspended: Callable[[str], None] | None = None
        self.loop: asyncio.AbstractEventLoop | None = None  # the server's event loop
        # shown in warnings; set by the app
        self.service_name = "Colab"
        self.message = DEFAULT_MESSAGE
        self.faq_url = ""
        self.appeal_url = ""
        self.show_evidence = False
        # checks run here, off the event loop (analysis, store queries, fsync)
        self.pool = ThreadPoolExecutor(
            max_workers=max(1, check_workers), thread_name_prefix="colab-guard-check"
        )
        self.check_timeout = 10.0  # seconds; a check that takes longer: fail_mode decides
        self.max_cell_size = 1_000_000  # characters of code + user_expressions
        # kernel reports (anyone with code in the kernel can post them): limits
        self.max_report_bytes = 256 * 1024
        self.report_rate = (30, 60.0)  # at most 30 reports per kernel per 60 s
        self.report_strikes = (3, 3600.0)  # at most 3 strikes from one kernel's reports/h
        # the kernel-side guard announces itself; kernels that do not within arm_timeout
        # are logged (and, with require_kernel_guard, refused)
        self.arm_timeout = 30.0
        self.require_kernel_guard = False

    # -- policy ------------------------------------------------------------------

    def _file_sig(self) -> tuple[Any, ...] | None:
        if not self.policy_path:
            return None
        try:
            st = os.stat(self.policy_path)
        except OSError:
            return ("missing",)
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def load_initial_policy(self) -> None:
        """Load at startup. A broken policy leaves the guard without one (fail mode)."""
        self._policy_sig = self._file_sig()
        try:
            self._set_policy(*self._read_policy())
            self.events.emit(E.POLICY, self._policy_event("loaded"))
        except (PolicyError, OSError) as err:
            log.error("colab-guard: policy %s refused:\n%s", self.policy_path, err)
            self.events.emit(E.POLICY, self._policy_event("refused", err))

    def poll_policy(self) -> bool | None:
        """Hot reload: None = unchanged, True = new policy in force, False = refused."""
        sig = self._file_sig()
        if sig == self._policy_sig:
            return None
        self._policy_sig = sig
        try:
            policy, text = self._read_policy()
        except (PolicyError, OSError) as err:
            log.error(
                "colab-guard: new policy %s refused, the previous one stays in force:\n%s",
                self.policy_path,
                err,
            )
            self.events.emit(E.POLICY, self._policy_event("refused", err))
            return False
        if self.policy is not None and policy.version == self.policy.version:
            return None
        self._set_policy(policy, text)
        log.info("colab-guard: policy %s reloaded (version %s)", self.policy_path, policy.version)
        self.events.emit(E.POLICY, self._policy_event("reloaded"))
        return True

    def _read_policy(self) -> tuple[Policy, str | None]:
        """The policy and the exact text it was built from (None: shipped default)."""
        if not self.policy_path:
            return load_policy(None), None
        try:
            with open(self.policy_path, encoding="utf-8") as f:
                text = f.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise PolicyError([Problem(self.policy_path, 0, "", f"cannot read: {exc}")]) from None
        return parse_policy(text, self.policy_path), text

    def _set_policy(self, policy: Policy, text: str | None = None) -> None:
        snapshot = self._snapshot(policy, text)
        with self._lock:
            self.policy = policy
            self.analyzer = Analyzer(policy)
            self._sessions.clear()
            if snapshot:
                self.kernel_policy_path = snapshot

    def _snapshot(self, policy: Policy, text: str | None) -> str | None:
        """Write the policy text in force to a private file for new kernels."""
        if text is None or not self.snapshot_dir:
            return None
        try:
            os.makedirs(self.snapshot_dir, mode=0o700, exist_ok=True)
            path = os.path.join(self.snapshot_dir, f"policy-{policy.version}.yaml")
            if not os.path.exists(path):
                tmp = f"{path}.{os.getpid()}.tmp"
                with open(tmp, "w", encoding="utf-8") as f:
                    f.write(text)
                os.replace(tmp, path)
            return path
        except OSError as err:  # kernels then read the operator's file directly
            log.error("colab-guard: cannot write the policy snapshot: %s", err)
            return None

    def _policy_event(self, status: str, err: Exception | None = None) -> dict[str, Any]:
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
        }

    # -- identity ------------------------------------------------------------------

    def resolve_user(self, user_obj: Any) -> str:
        """The user strikes land on (see identity.py)."""
        if self.owner_mode:
            return self.owner
        return user_name(user_obj) or self.owner

    def tier_of(self, user: str) -> str | None:
        return self.user_tiers.get(user, self.default_tier)

    def identity(self, user: str, user_obj: Any = None) -> Identity:
        return Identity(user=user, groups=user_groups(user_obj), tier=self.tier_of(user))

    def is_admin(self, user: str, user_obj: Any = None) -> bool:
        """In ``admin_users``, or (``hub_admins``) a JupyterHub admin according to the
        Hub's own user model of this request (never a claim of the client)."""
        if user in self.admin_users:
            return True
        if self.hub_admins and not self.owner_mode:
            hub_user = getattr(user_obj, "hub_user", None)
            return isinstance(hub_user, dict) and hub_user.get("admin") is True
        return False

    # -- kernels -------------------------------------------------------------------

    def register_kernel(
        self,
        kernel_id: str,
        user: str,
        groups: tuple[str, ...] = (),
        expects_guard: bool = False,
    ) -> str:
        """Issue the report token of a kernel; returns the token (kept only hashed).
        A restart keeps the user and groups; the guard must announce itself again."""
        token = secrets.token_urlsafe(32)
        digest = hashlib.sha256(token.encode()).hexdigest()
        with self._lock:
            old = self._kernels.get(kernel_id)
            if old:
                self._tokens.pop(old.token_digest, None)
            info = KernelInfo(kernel_id, user, digest, groups=groups, expects_guard=expects_guard)
            if old:
                info.path = old.path
                info.strike_times = old.strike_times  # a restart does not reset the caps
                info.identity_file = old.identity_file
            self._kernels[kernel_id] = info
            self._tokens[digest] = kernel_id
        return token

    # -- the kernel's identity file (tier, groups, admin exceptions) -------------------

    def kernel_identity(self, info: KernelInfo) -> dict[str, Any]:
        return {
            "user": info.user,
            "groups": list(info.groups),
            "tier": self.tier_of(info.user),
            "exceptions": [
                {"category": x.get("category"), "rule": x.get("rule")}
                for x in self._admin_exceptions(info.user)
            ],
        }

    def write_kernel_identity(self, kernel_id: str) -> str | None:
        """Write (0600, atomically) what the kernel-side guard must know about its user:
        tier, groups and active admin exceptions. Returns the path (None: not written)."""
        info = self._kernels.get(kernel_id)
        if info is None or not self.snapshot_dir:
            return None
        path = os.path.join(self.snapshot_dir, f"kernel-{kernel_id}.json")
        try:
            os.makedirs(self.snapshot_dir, mode=0o700, exist_ok=True)
            tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(self.kernel_identity(info), f)
            os.replace(tmp, path)
        except OSError as err:
            log.error("colab-guard: cannot write the identity file of %s: %s", kernel_id, err)
            return None
        info.identity_file = path
        return path

    def refresh_kernel_identities(self, user: str) -> None:
        """After an admin granted or revoked an exception: running kernels pick it up at
        their next cell."""
        self.invalidate_exceptions(user)
        for kid in self.kernels_of(user):
            info = self._kernels.get(kid)
            if info is not None and info.identity_file:
                self.write_kernel_identity(kid)

    # -- the kernel-side guard's hello ---------------------------------------------

    def kernel_armed(self, info: KernelInfo, policy_version: str | None) -> None:
        info.armed_at = time.time()
        info.armed_policy = policy_version
        if info.unarmed:
            log.warning("colab-guard: kernel %s armed late", info.kernel_id)
        info.unarmed = False

    def check_armed(self, now: float | None = None) -> list[KernelInfo]:
        """Kernels whose guard did not announce itself within ``arm_timeout``: logged
        and recorded once (non-strike event); returns the newly found ones."""
        now = time.time() if now is None else now
        found = []
        for info in list(self._kernels.values()):
            if (
                info.expects_guard
                and info.armed_at is None
                and not info.unarmed
                and now - info.started > self.arm_timeout
            ):
                info.unarmed = True
                found.append(info)
                log.error(
                    "colab-guard: the kernel-side guard of kernel %s (user %s) did not arm "
                    "within %.0f s; the kernel runs without it (the server check still "
                    "applies%s)",
                    info.kernel_id,
                    info.user,
                    self.arm_timeout,
                    "; its executions are refused" if self.require_kernel_guard else "",
                )
        return found

    def record_unarmed(self, info: KernelInfo) -> None:
        self.record(
            user=info.user,
            kind="unguarded_kernel",
            source="server",
            kernel_id=info.kernel_id,
            path=info.path,
            detail=f"the kernel-side guard did not arm within {self.arm_timeout:.0f} s",
        )

    async def wait_armed(self, kernel_id: str) -> bool:
        """With ``require_kernel_guard``: whether the kernel's guard armed (waits until
        ``arm_timeout`` after the kernel's start at most)."""
        info = self._kernels.get(kernel_id)
        if info is None or not info.expects_guard:
            return True
        while info.armed_at is None and not info.unarmed:
            if time.time() - info.started > self.arm_timeout:
                self.check_armed()  # marks (and logs) it now rather than at the next timer
                return False
            await asyncio.sleep(0.05)
        return info.armed_at is not None

    def kernel(self, kernel_id: str) -> KernelInfo | None:
        return self._kernels.get(kernel_id)

    def kernel_for_token(self, token: str) -> KernelInfo | None:
        digest = hashlib.sha256(token.encode()).hexdigest()
        kid = self._tokens.get(digest)
        info = self._kernels.get(kid) if kid else None
        if info is None or not hmac.compare_digest(info.token_digest, digest):
            return None
        return info

    def forget_kernel(self, kernel_id: str) -> None:
        with self._lock:
            info = self._kernels.pop(kernel_id, None)
            if info:
                self._tokens.pop(info.token_digest, None)
                if info.identity_file:
                    try:
                        os.unlink(info.identity_file)
                    except OSError:
                        pass
            for key in [k for k in self._sessions if k[0] == kernel_id]:
                del self._sessions[key]

    def kernels_of(self, user: str) -> list[str]:
        return [k.kernel_id for k in self._kernels.values() if k.user == user]

    # -- status --------------------------------------------------------------------

    def status(self, user: str, now: float | None = None) -> Status:
        now = time.time() if now is None else now
        return evaluate(self.ladder, self.store.strike_times(user), now)

    def safe_status(self, user: str) -> Status | None:
        """The user's status, or None when the store cannot be read."""
        try:
            return self.status(user)
        except Exception as err:
            log.error("colab-guard: cannot read the status of %s: %s", user, err)
            return None

    def _admin_exceptions(self, user: str) -> list[dict[str, Any]]:
        """Active admin exceptions of a user (cached 10 s). When the store cannot be read
        the last known list is used, else none: a store failure never lets a check
        fail open (and never grants anything)."""
        hit = self._exc_cache.get(user)
        if hit and hit[0] > time.monotonic():
            return hit[1]
        try:
            rows = self.store.exceptions(user=user)
        except Exception as err:
            log.error("colab-guard: cannot read the exceptions of %s: %s", user, err)
            return hit[1] if hit else []
        self._exc_cache[user] = (time.monotonic() + 10.0, rows)
        return rows

    def invalidate_exceptions(self, user: str) -> None:
        self._exc_cache.pop(user, None)

    # -- checking ------------------------------------------------------------------

    def _session(self, kernel_id: str, identity: Identity) -> tuple[Any, threading.Lock]:
        """The analysis session of (kernel, user, policy) and the lock that serialises
        its checks (two tabs on one kernel check in two threads)."""
        assert self.analyzer is not None and self.policy is not None
        key = (kernel_id, identity.user or "", self.policy.version)
        with self._lock:
            entry = self._sessions.get(key)
            if entry is None:
                entry = self._sessions[key] = (
                    self.analyzer.session(identity=identity),
                    threading.Lock(),
                )
        return entry

    def analyse(
        self, user: str, user_obj: Any, kernel_id: str, code: str, expressions: list[str]
    ) -> list[Finding] | None:
        """Findings for a cell and its user_expressions; None when no policy is loaded."""
        analyzer = self.analyzer
        if analyzer is None:
            return None
        ident = self.identity(user, user_obj)
        findings: list[Finding] = []
        if code.strip():
            sess, lock = self._session(kernel_id, ident)
            with lock:
                findings = list(sess.check(code))
        for expr in expressions:
            findings += analyzer.check(expr, identity=ident)
        return self.drop_excepted(user, findings)

    def drop_excepted(self, user: str, findings: list[Any]) -> list[Any]:
        """Findings without those an admin-granted exception of ``user`` covers."""
        excs = self._admin_exceptions(user)
        if not excs:
            return findings
        return [f for f in findings if not self.excepted(excs, f.category, f.rule)]

    @staticmethod
    def excepted(excs: list[dict[str, Any]], category: str | None, rule: str | None) -> bool:
        return any(
            (x.get("category") and x["category"] == category)
            or (x.get("rule") and x["rule"] == rule)
            for x in excs
        )

    async def run_in_pool(self, fn: Callable[[], Any], timeout: float | None = None) -> Any:
        """Run ``fn`` in the check pool (off the event loop), within ``timeout``
        (default ``check_timeout``; raises TimeoutError)."""
        loop = asyncio.get_running_loop()
        if self.loop is not loop:  # events and suspensions from the pool go to this loop
            self.loop = loop
            self.events.bind_loop(loop, threading.get_ident())
        fut = loop.run_in_executor(self.pool, fn)
        return await asyncio.wait_for(fut, self.check_timeout if timeout is None else timeout)

    async def decide(
        self,
        *,
        user_obj: Any,
        kernel_id: str,
        code: str,
        expressions: list[str] | None = None,
        path: str | None = None,
    ) -> Decision:
        """The websocket's decision on one execution: the size cap, the kernel guard
        requirement, then ``check_execute`` in the pool within ``check_timeout``. A check
        that fails or times out follows ``fail_mode`` (closed: refused)."""
        expressions = expressions or []
        size = len(code) + sum(len(e) for e in expressions)
        if size > self.max_cell_size:
            user = self.resolve_user(user_obj)
            log.warning(
                "colab-guard: cell of %d characters refused (max_cell_size %d), kernel %s",
                size,
                self.max_cell_size,
                kernel_id,
            )
            return Decision(True, "too_large", user, [], UNKNOWN)
        if self.require_kernel_guard and not await self.wait_armed(kernel_id):
            return Decision(True, "unguarded", self.resolve_user(user_obj), [], UNKNOWN)
        check = functools.partial(
            self.check_execute,
            user_obj=user_obj,
            kernel_id=kernel_id,
            code=code,
            expressions=expressions,
            path=path,
        )
        try:
            return await self.run_in_pool(check)  # type: ignore[no-any-return]
        except Exception as err:
            what = "timed out" if isinstance(err, TimeoutError) else f"failed ({err!r})"
            user = self.resolve_user(user_obj)
            log.error(
                "colab-guard: the check of a cell in kernel %s %s; fail_mode=%s",
                kernel_id,
                what,
                self.fail_mode,
                exc_info=not isinstance(err, TimeoutError),
            )
            refuse = self.fail_mode == "closed"
            return Decision(refuse, "unavailable" if refuse else "", user, [], UNKNOWN)

    def check_execute(
        self,
        *,
        user_obj: Any,
        kernel_id: str,
        code: str,
        expressions: list[str] | None = None,
        path: str | None = None,
    ) -> Decision:
        """The authoritative check of one execute_request. Records before returning."""
        user = self.resolve_user(user_obj)
        expressions = expressions or []
        findings = self.analyse(user, user_obj, kernel_id, code, expressions)
        if findings is None:  # no usable policy
            status = self.safe_status(user) or UNKNOWN
            refuse = self.fail_mode == "closed"
            return Decision(refuse, "unavailable" if refuse else "", user, [], status)
        action = strongest_action(findings)
        stored = True
        full = code if not expressions else code + "\n" + "\n".join(expressions)
        if action is not None:
            top = max(findings, key=lambda f: ("log", "warn", "block").index(f.action))
            stored = self.record(
                user=user,
                kind="finding",
                source="server",
                kernel_id=kernel_id,
                path=path,
                finding=top,
                others=[f for f in findings if f is not top],
                cell_hash=cell_hash(full),
                cell_text=full,
                strike=action in ("block", "warn"),
            )
        known = self.safe_status(user)
        status = known or UNKNOWN
        if action == "block":
            return Decision(True, "block", user, findings, status, stored)
        if known is None and self.fail_mode == "closed":
            # the store is down: where the user stands is unknown (strikes are spooled)
            return Decision(True, "unavailable", user, findings, status, stored)
        if status.refuses:
            self.record(
                user=user,
                kind=status.level,
                source="server",
                kernel_id=kernel_id,
                path=path,
                cell_hash=cell_hash(full),
                strike=False,
                action="refuse",
            )
            return Decision(True, status.level, user, findings, status, stored)
        return Decision(False, "", user, findings, status, stored)

    def record(self, *, user: str, **spec: Any) -> bool:
        """Commit one event (spooled on failure), emit it, act on a new suspension.
        ``spec``: the keyword arguments of ``_event``."""
        return self.record_many(user, [spec])

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
            message=_clip(message),
            evidence=_clip(finding.evidence if finding else None, 500),
            cell_hash=cell_hash,
            cell_text=_clip(cell_text, 100_000) if self.store_cell_text else None,
            detail=_clip(detail),
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
        stored = self.store.record_many(evs)
        for ev in evs:
            self.events.emit(
                E.STRIKE,
                {
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
                },
            )
        new_strike = any(ev.strike for ev in evs)
        if new_strike and after == "suspended" and before != "suspended" and self.on_suspended:
            self.on_suspended(user)
        return stored

    # -- kernel reports --------------------------------------------------------------

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
        if size > self.max_report_bytes:
            raise ReportRejected(413, f"report larger than {self.max_report_bytes} bytes")
        now = time.time()
        limit, per = self.report_rate
        with self._lock:
            while info.report_times and info.report_times[0] < now - per:
                info.report_times.popleft()
            if len(info.report_times) >= limit:
                raise ReportRejected(429, "too many reports from this kernel")
            info.report_times.append(now)
        if not isinstance(body, dict) or not isinstance(body.get("events"), list):
            raise ValueError("body must be {'events': [...]}")
        evs = body["events"][:MAX_REPORT_EVENTS]
        counts = {"recorded": 0, "duplicate": 0, "invalid": 0, "excepted": 0, "capped": 0}
        since = now - self.dedupe_window
        excs = self._admin_exceptions(info.user)
        cap, window = self.report_strikes
        specs: list[dict[str, Any]] = []
        for raw in evs:
            if isinstance(raw, dict) and raw.get("kind") == "armed":
                self.kernel_armed(info, _clip(raw.get("policy_version"), 64))
                continue
            if not isinstance(raw, dict) or raw.get("kind") not in KINDS:
                counts["invalid"] += 1
                continue
            kind = raw["kind"]
            action = raw.get("action") if raw.get("action") in ("log", "warn", "block") else None
            chash = _clip(raw.get("cell_hash"), 64)
            rule = _clip(raw.get("rule"), 128)
            category = _clip(raw.get("category"), 128)
            if kind != "tamper" and self.excepted(excs, category, rule):
                counts["excepted"] += 1
                continue
            if kind == "finding" and chash and self._seen(info.kernel_id, chash, rule, since):
                counts["duplicate"] += 1
                continue
            strike = kind == "runtime_block" or (kind == "finding" and action in ("warn", "block"))
            extra: dict[str, Any] = {}
            if isinstance(raw.get("execution_count"), int):
                extra["execution_count"] = raw["execution_count"]
            if kind == "consent":
                extra["choice"] = raw.get("choice")
            if strike:
                with self._lock:
                    while info.strike_times and info.strike_times[0] < now - window:
                        info.strike_times.popleft()
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
                    "severity": _clip(raw.get("severity"), 16),
                    "message": raw.get("message"),
                    "cell_hash": chash,
                    "detail": _clip(detail),
                    "strike": strike,
                }
            )
        if specs:
            self.record_many(info.user, specs)
        counts["recorded"] = len(specs)
        return counts
