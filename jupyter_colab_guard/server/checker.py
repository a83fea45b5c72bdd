"""The server's authoritative check of one execution: decide, check_execute, analyse."""

from __future__ import annotations

import functools
import hashlib
import logging
from dataclasses import dataclass
from typing import Any

from ..analysis.analyzer import TIMEOUT_RULE
from ..analysis.findings import Finding, strongest_action, top_finding
from . import metrics
from .escalation import Status
from .kernels import KernelRegistry
from .policy_holder import PolicyHolder
from .pool import CheckPool
from .recorder import Recorder
from .settings import GuardSettings
from .standing import UNKNOWN, UserStanding
from .users import UserResolver

log = logging.getLogger(__name__)


SHELL_LANGUAGES = frozenset({"bash", "sh", "shell", "zsh"})


def as_python(code: str, language: str) -> str:
    """The cell as the analyzer reads it, by the language of the kernelspec the server
    launched: a shell kernel's cell is a %%bash cell; another language's (R, Julia, ...)
    is read for its strings and URLs, as one string literal."""
    if not code.strip() or language in ("python", ""):
        return code
    if language in SHELL_LANGUAGES:
        return "%%bash\n" + code
    return f"_ = {code!r}\n"


def cell_hash(code: str) -> str:
    return hashlib.sha256(code.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass
class Decision:
    """What to do with one execute_request."""

    refuse: bool
    # "" (allowed) | block | restricted | suspended | unavailable | timeout | too_large
    # | unguarded
    reason: str
    user: str
    findings: list[Finding]
    status: Status
    stored: bool = True
    # let through, but a warn rule matched: the user must consent first (the strike
    # counts only then: see server/consent.py)
    warn: bool = False
    cell_hash: str = ""

    @property
    def warn_rules(self) -> tuple[str, ...]:
        return tuple(sorted({f.rule for f in self.findings if f.action == "warn"}))


class Checker:
    def __init__(
        self,
        *,
        settings: GuardSettings,
        users: UserResolver,
        standing: UserStanding,
        policies: PolicyHolder,
        kernels: KernelRegistry,
        recorder: Recorder,
        pool: CheckPool,
    ) -> None:
        self.settings = settings
        self.users = users
        self.standing = standing
        self.policies = policies
        self.kernels = kernels
        self.recorder = recorder
        self.pool = pool

    def _unavailable(self, user: str, status: Status) -> Decision:
        """No check could be made: ``fail_mode`` decides (closed: refused)."""
        refuse = self.settings.fail_mode == "closed"
        return Decision(refuse, "unavailable" if refuse else "", user, [], status)

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
        decision = await self._decide(user_obj, kernel_id, code, expressions, path)
        if decision.refuse:
            metrics.refusal(decision.reason)
        return decision

    async def _decide(
        self,
        user_obj: Any,
        kernel_id: str,
        code: str,
        expressions: list[str] | None,
        path: str | None,
    ) -> Decision:
        expressions = expressions or []
        size = len(code) + sum(len(e) for e in expressions)
        max_size = self.settings.max_cell_size
        if size > max_size:
            user = self.users.resolve_user(user_obj)
            log.warning(
                "colab-guard: cell of %d characters refused (max_cell_size %d), kernel %s",
                size,
                max_size,
                kernel_id,
            )
            return Decision(True, "too_large", user, [], UNKNOWN)
        if self.settings.require_kernel_guard and not await self.kernels.wait_armed(kernel_id):
            return Decision(True, "unguarded", self.users.resolve_user(user_obj), [], UNKNOWN)
        check = functools.partial(
            self.check_execute,
            user_obj=user_obj,
            kernel_id=kernel_id,
            code=code,
            expressions=expressions,
            path=path,
        )
        user = self.users.resolve_user(user_obj)
        series = metrics.series()
        try:
            with series.checks_in_progress.track_inprogress(), series.check_seconds.time():
                return await self.pool.run(check, user=user)  # type: ignore[no-any-return]
        except Exception as err:
            what = "timed out" if isinstance(err, TimeoutError) else f"failed ({err!r})"
            log.error(
                "colab-guard: the check of a cell in kernel %s %s; fail_mode=%s",
                kernel_id,
                what,
                self.settings.fail_mode,
                exc_info=not isinstance(err, TimeoutError),
            )
            return self._unavailable(user, UNKNOWN)

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
        user = self.users.resolve_user(user_obj)
        expressions = expressions or []
        findings = self.analyse(user, user_obj, kernel_id, code, expressions)
        if findings is None:  # no usable policy
            return self._unavailable(user, self.standing.safe_status(user) or UNKNOWN)
        action = strongest_action(findings)
        stored = True
        full = code if not expressions else code + "\n" + "\n".join(expressions)
        chash = cell_hash(full)
        if action is not None:
            top = top_finding(findings)
            stored = self.recorder.record(
                user=user,
                # a warn cell counts only once the user consents (``warned``: asked)
                kind="warned" if action == "warn" else "finding",
                source="server",
                kernel_id=kernel_id,
                path=path,
                finding=top,
                others=[f for f in findings if f is not top],
                cell_hash=chash,
                cell_text=full,
                # a cell too large or complex to check is refused, not held against anyone
                strike=action == "block" and top.category != "analysis",
            )
        known = self.standing.safe_status(user)
        status = known or UNKNOWN
        if action == "block":
            # refused only because the check ran out of time (not held against anyone)
            timeout = all(f.rule == TIMEOUT_RULE for f in findings if f.action == "block")
            return Decision(True, "timeout" if timeout else "block", user, findings, status, stored)
        if known is None and self.settings.fail_mode == "closed":
            # the store is down: where the user stands is unknown (strikes are spooled)
            return Decision(True, "unavailable", user, findings, status, stored)
        if status.refuses:
            self.recorder.record(
                user=user,
                kind=status.level,
                source="server",
                kernel_id=kernel_id,
                path=path,
                cell_hash=chash,
                strike=False,
                action="refuse",
            )
            return Decision(True, status.level, user, findings, status, stored)
        return Decision(False, "", user, findings, status, stored, action == "warn", chash)

    def analyse(
        self, user: str, user_obj: Any, kernel_id: str, code: str, expressions: list[str]
    ) -> list[Finding] | None:
        """Findings for a cell and its user_expressions; None when no policy is loaded."""
        analyzer = self.policies.analyzer
        if analyzer is None:
            return None
        ident = self.users.identity(user, user_obj)
        findings: list[Finding] = []
        sess, lock = self.policies.session(kernel_id, ident)
        info = self.kernels.get(kernel_id)
        code = as_python(code, info.language if info is not None else "python")
        if code.strip():
            with lock:
                findings = self.policies.check(sess, code)
        for expr in expressions:
            findings += self.policies.check_expression(sess, expr)
        return self.standing.drop_excepted(user, findings)
