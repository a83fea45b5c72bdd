"""The guard service: policy, analyzer, identity, kernel tokens, strikes and escalation.

One instance per server, created by ``ColabGuardApp``; the websocket connection, the
kernel manager and the handlers all call into it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable
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
        self._sessions: dict[tuple[str, str, str], Any] = {}
        self._kernels: dict[str, KernelInfo] = {}
        self._tokens: dict[str, str] = {}  # sha256(token) -> kernel id
        self._exc_cache: dict[str, tuple[float, list[dict[str, Any]]]] = {}
        self._lock = threading.RLock()
        # set by the app: async callable shutting down a user's kernels
        self.on_suspended: Callable[[str], None] | None = None
        # shown in warnings; set by the app
        self.service_name = "Jupyter"
        self.faq_url = ""
        self.appeal_url = ""
        self.show_evidence = True

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

    def identity(self, user: str, user_obj: Any = None) -> Identity:
        tier = self.user_tiers.get(user, self.default_tier)
        return Identity(user=user, groups=user_groups(user_obj), tier=tier)

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

    def register_kernel(self, kernel_id: str, user: str) -> str:
        """Issue the report token of a kernel; returns the token (kept only hashed)."""
        token = secrets.token_urlsafe(32)
        digest = hashlib.sha256(token.encode()).hexdigest()
        with self._lock:
            old = self._kernels.get(kernel_id)
            if old:
                self._tokens.pop(old.token_digest, None)
            self._kernels[kernel_id] = KernelInfo(kernel_id, user, digest)
            self._tokens[digest] = kernel_id
        return token

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
        hit = self._exc_cache.get(user)
        if hit and hit[0] > time.monotonic():
            return hit[1]
        rows = self.store.exceptions(user=user)
        self._exc_cache[user] = (time.monotonic() + 10.0, rows)
        return rows

    def invalidate_exceptions(self, user: str) -> None:
        self._exc_cache.pop(user, None)

    # -- checking ------------------------------------------------------------------

    def _session(self, kernel_id: str, identity: Identity) -> Any:
        assert self.analyzer is not None and self.policy is not None
        key = (kernel_id, identity.user or "", self.policy.version)
        with self._lock:
            sess = self._sessions.get(key)
            if sess is None:
                sess = self._sessions[key] = self.analyzer.session(identity=identity)
        return sess

    def analyse(
        self, user: str, user_obj: Any, kernel_id: str, code: str, expressions: list[str]
    ) -> list[Finding] | None:
        """Findings for a cell and its user_expressions; None when no policy is loaded."""
        analyzer = self.analyzer
        if analyzer is None:
            return None
        ident = self.identity(user, user_obj)
        findings = list(self._session(kernel_id, ident).check(code)) if code.strip() else []
        for expr in expressions:
            findings += analyzer.check(expr, identity=ident)
        excs = self._admin_exceptions(user)
        if excs:
            findings = [
                f
                for f in findings
                if not any(
                    (x["category"] and x["category"] == f.category)
                    or (x["rule"] and x["rule"] == f.rule)
                    for x in excs
                )
            ]
        return findings

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

    def record(
        self,
        *,
        user: str,
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
    ) -> bool:
        """Commit one event (spooled on failure), emit it, act on a new suspension."""
        try:
            times = self.store.strike_times(user)
        except Exception:  # the store is down: still spool the event below
            log.exception("colab-guard: cannot read strikes of %s", user)
            times = None
        before = evaluate(self.ladder, times, time.time()).level if times is not None else None
        if finding is not None:
            category, rule = finding.category, finding.rule
            action, severity, message = finding.action, finding.severity, finding.message
            if others:
                detail = json.dumps(
                    [{"category": f.category, "rule": f.rule, "action": f.action} for f in others]
                )
        ev = StrikeEvent(
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
        # the level this event leads to, computed before the write so it is stored with it
        if times is not None:
            ev.level = evaluate(
                self.ladder, sorted([*times, *([ev.ts] if strike else [])]), ev.ts
            ).level
        stored = self.store.record(ev)
        self.events.emit(
            E.STRIKE,
            {
                "user": user,
                "kernel_id": kernel_id,
                "path": path,
                "source": source,
                "kind": kind,
                "category": category,
                "rule": rule,
                "action": action,
                "cell_hash": cell_hash,
                "strike": strike,
                "level": ev.level or "unknown",
                "stored": stored,
            },
        )
        if strike and ev.level == "suspended" and before != "suspended" and self.on_suspended:
            self.on_suspended(user)
        return stored

    # -- kernel reports --------------------------------------------------------------

    def _seen(self, kernel_id: str, chash: str, rule: str | None, since: float) -> bool:
        try:
            return self.store.seen_recently(kernel_id, chash, rule, since)
        except Exception as err:  # store down: record it (spooled) rather than lose it
            log.error("colab-guard: dedupe lookup failed: %s", err)
            return False

    def kernel_report(self, info: KernelInfo, body: Any) -> dict[str, int]:
        """Record the events of a kernel report for the kernel's user. Body claims of a
        user or kernel are ignored; only the fields listed in the protocol are read."""
        if not isinstance(body, dict) or not isinstance(body.get("events"), list):
            raise ValueError("body must be {'events': [...]}")
        evs = body["events"][:MAX_REPORT_EVENTS]
        counts = {"recorded": 0, "duplicate": 0, "invalid": 0}
        since = time.time() - self.dedupe_window
        for raw in evs:
            if not isinstance(raw, dict) or raw.get("kind") not in KINDS:
                counts["invalid"] += 1
                continue
            kind = raw["kind"]
            action = raw.get("action") if raw.get("action") in ("log", "warn", "block") else None
            chash = _clip(raw.get("cell_hash"), 64)
            rule = _clip(raw.get("rule"), 128)
            if kind == "finding" and chash and self._seen(info.kernel_id, chash, rule, since):
                counts["duplicate"] += 1
                continue
            strike = kind == "runtime_block" or (kind == "finding" and action in ("warn", "block"))
            detail = raw.get("detail")
            if kind == "consent":
                detail = json.dumps({"choice": raw.get("choice"), "detail": detail})
            self.record(
                user=info.user,
                kind=kind,
                source="kernel",
                kernel_id=info.kernel_id,
                path=info.path,
                category=_clip(raw.get("category"), 128),
                rule=rule,
                action=action,
                severity=_clip(raw.get("severity"), 16),
                message=raw.get("message"),
                cell_hash=chash,
                detail=_clip(detail),
                strike=strike,
            )
            counts["recorded"] += 1
        return counts
