"""The decision core: findings -> run, block, or ask; reports each finding once."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import consent
from .config import KernelGuard
from .errors import ProhibitedCodeError
from .follow import follow
from .reports import Reporter
from .warning import Notice, build_notice

_RANK = {"log": 0, "warn": 1, "block": 2}
_CACHE_MAX = 2048


@dataclass(frozen=True)
class GuardFinding:
    """A finding made by the guard itself (same fields as analysis.Finding)."""

    category: str
    rule: str
    action: str
    severity: str
    message: str
    line: int = 0
    column: int = 0
    evidence: str = ""
    title: str = ""


@dataclass
class Decision:
    outcome: str  # "run" | "block" | "cancel"
    summary: str = ""
    notice: Notice | None = None


@dataclass
class ExecState:
    """What the guard remembers during one execution (one execute_request)."""

    key: str
    execution_count: int = 0  # the cell's number (In[n]), taken before IPython counts up
    cell_hash: str = ""  # hash of the cell this execution runs
    decisions: dict[str, Decision] = field(default_factory=dict)
    reported: set[tuple[str, int, str]] = field(default_factory=set)
    reported_rules: set[str] = field(default_factory=set)
    approved: set[str] = field(default_factory=set)  # warn rules the user let run


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def strongest(findings: list[Any]) -> str | None:
    if not findings:
        return None
    return max((f.action for f in findings), key=lambda a: _RANK.get(a, 2))


def kernel_id_of_process() -> str:
    """The kernel id, from the connection file name (kernel-<id>.json)."""
    try:
        from ipykernel.kernelapp import IPKernelApp

        if IPKernelApp.initialized():
            name = os.path.basename(IPKernelApp.instance().connection_file or "")
            m = re.match(r"kernel-(.+)\.json$", name)
            return m.group(1) if m else os.path.splitext(name)[0]
    except Exception:
        pass
    return ""


class Guard:
    """Per-shell state: settings, analyzer session, reporter, execution memory."""

    def __init__(self, shell: Any, settings: KernelGuard) -> None:
        self.shell = shell
        self.settings = settings
        self.kernel: Any = getattr(shell, "kernel", None)
        self.pid = os.getpid()
        self.reporter = Reporter(
            settings.audit_log_path(),
            url=os.environ.get("COLAB_GUARD_REPORT_URL", ""),
            token=os.environ.get("COLAB_GUARD_REPORT_TOKEN", ""),
            kernel_id=kernel_id_of_process(),
        )
        self.analyzer: Any = None
        self.session: Any = None
        self.policy_version = ""
        self.load_error = ""
        self.armed = False
        self.integrity: Any = None  # tamper.Installation, set by the extension
        self.foreign = False  # transformers were added after the guard: check both texts
        self.local = threading.local()  # raw cell stash, hook re-entry flag
        self._lock = threading.RLock()
        self._exec = ExecState("")
        self._cmd_cache: dict[Any, list[Any]] = {}
        # from KernelGuard.identity_file: who the server says the user is
        self.ident: dict[str, Any] = {}
        self.exceptions: list[dict[str, Any]] = []
        self._ident_sig: tuple[Any, ...] | None = None
        self.refused_versions: set[str] = set()  # marked versions that did not load
        self.refresh_identity()
        self._load()

    # -- setup ----------------------------------------------------------------
    def _load(self) -> None:
        try:
            from jupyter_colab_guard.analysis import Analyzer
            from jupyter_colab_guard.policy import load_policy

            policy = load_policy(self.settings.policy_path or None)
            self.analyzer = Analyzer(policy)
            self.policy_version = str(getattr(policy, "version", ""))
            self.session = self.analyzer.session(identity=self._identity())
        except Exception as err:  # a broken guard: fail_closed decides
            self.analyzer = self.session = None
            self.load_error = f"{type(err).__name__}: {err}"

    def use_policy(self, policy: Any) -> None:
        """Put a new policy in force (the version the server marked: kernel/follow.py).
        A new analysis session starts, as the server's does for a new version."""
        from jupyter_colab_guard.analysis import Analyzer

        analyzer = Analyzer(policy)
        session = analyzer.session(identity=self._identity())
        with self._lock:
            self.analyzer, self.session = analyzer, session
            self.policy_version = str(getattr(policy, "version", ""))
            self.load_error = ""
            self._cmd_cache.clear()
        if self.integrity is not None:
            self.integrity.adopt(("analyzer", "session"))
        self.report("armed", detail="policy reloaded")

    def follow_policy(self) -> None:
        """Before a cell: the policy version the server marked on it (kernel/follow.py)."""
        follow(self)

    def _identity(self) -> Any:
        user = str(self.ident.get("user") or os.environ.get("JUPYTERHUB_USER", ""))
        tier = self.ident.get("tier") or self.settings.tier or None
        groups = tuple(str(g) for g in self.ident.get("groups") or () if isinstance(g, str))
        if not user and not tier and not groups:
            return None
        try:
            from jupyter_colab_guard.policy import Identity

            return Identity(user=user, groups=groups, tier=tier)
        except Exception:
            return None

    def refresh_identity(self) -> None:
        """(Re-)read ``identity_file`` when it changed (one stat per cell): the server
        rewrites it when an admin grants or revokes an exception. Tier and groups are
        read at start; exceptions whenever the file changes."""
        path = self.settings.identity_file
        if not path:
            return
        try:
            st = os.stat(path)
            sig: tuple[Any, ...] = (st.st_mtime_ns, st.st_size, st.st_ino)
        except OSError:
            sig = ("missing",)
        if sig == self._ident_sig:
            return
        self._ident_sig = sig
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except (OSError, ValueError):
            return  # keep what was known (none at start: nothing is excepted)
        if not isinstance(data, dict):
            return
        if not self.ident:
            self.ident = data
        excs = data.get("exceptions")
        self.exceptions = [x for x in excs if isinstance(x, dict)] if isinstance(excs, list) else []

    def excepted(self, finding: Any) -> bool:
        """Whether an admin-granted exception of this kernel's user covers a finding."""
        now = time.time()
        for x in self.exceptions:
            expires = x.get("expires_at")
            if isinstance(expires, (int, float)) and expires <= now:
                continue  # expired: applies no more
            if (x.get("category") and x["category"] == finding.category) or (
                x.get("rule") and x["rule"] == finding.rule
            ):
                return True
        return False

    # -- execution memory -----------------------------------------------------
    def exec_key(self) -> str:
        msg_id = ""
        if self.kernel is not None:
            try:
                msg_id = self.kernel.get_parent("shell").get("header", {}).get("msg_id", "")
            except Exception:
                msg_id = ""
        # the request's msg_id; the count only without one (IPython counts up mid-cell)
        return msg_id or f"count:{self._count()}"

    def state(self) -> ExecState:
        key = self.exec_key()
        with self._lock:
            if self._exec.key != key:
                self._exec = ExecState(key, execution_count=self._count())
            return self._exec

    def _count(self) -> int:
        return int(getattr(self.shell, "execution_count", 0) or 0)

    def execution_count(self) -> int:
        return self.state().execution_count

    # -- analysis -------------------------------------------------------------
    def failure(self, detail: str) -> list[Any]:
        """The finding that stands for "the guard could not check this"."""
        action = "block" if self.settings.fail_closed else "log"
        return [
            GuardFinding(
                category="analysis",
                rule="guard.unavailable",
                action=action,
                severity="high",
                message=f"The acceptable-use check could not run: {detail}",
                title="Code that could not be checked",
            )
        ]

    def analyse(self, text: str) -> list[Any]:
        """Findings of one cell-like text through the session (memory of earlier cells)."""
        if self.session is None:
            return self.failure(self.load_error or "no analyzer")
        try:
            findings = list(self.session.check(text, self.settings.check_budget))
        except Exception as err:
            return self.failure(f"{type(err).__name__}: {err}")
        return [self._on_error(f) for f in findings]

    def _on_error(self, f: Any) -> Any:
        """The analyzer failed on (part of) a cell: ``fail_closed`` decides."""
        if f.rule != "analysis.error" or not self.settings.fail_closed or f.action == "block":
            return f
        try:
            return dataclasses.replace(f, action="block")
        except TypeError:
            return f

    def check_command(self, argv: Any) -> list[Any]:
        key = ("cmd", argv if isinstance(argv, str) else tuple(argv))
        return self.not_excepted(self._cached(key, lambda: self.analyzer.check_command(argv)))

    def check_connect(self, host: str, port: int | None) -> list[Any]:
        return self.not_excepted(
            self._cached(("net", host, port), lambda: self.analyzer.check_connect(host, port))
        )

    def not_excepted(self, findings: list[Any]) -> list[Any]:
        if not self.exceptions:
            return findings
        return [f for f in findings if not self.excepted(f)]

    def _cached(self, key: Any, fn: Callable[[], Any]) -> list[Any]:
        if self.analyzer is None:
            return self.failure(self.load_error or "no analyzer")
        try:
            hit = self._cmd_cache.get(key)
        except TypeError:  # unhashable argv
            key, hit = None, None
        if hit is not None:
            return hit
        try:
            result = list(fn())
        except Exception as err:
            return self.failure(f"{type(err).__name__}: {err}")
        if key is not None:
            if len(self._cmd_cache) > _CACHE_MAX:
                self._cmd_cache.clear()
            self._cmd_cache[key] = result
        return result

    # -- reporting ------------------------------------------------------------
    def report(self, kind: str, *, finding: Any = None, cell_hash: str = "", **extra: Any) -> None:
        event: dict[str, Any] = {
            "kind": kind,
            "cell_hash": cell_hash,
            "execution_count": self.execution_count(),
            "choice": None,
            "detail": "",
            "policy_version": self.policy_version,
            "pid": os.getpid(),
        }
        if finding is not None:
            event.update(
                category=finding.category,
                rule=finding.rule,
                action=finding.action,
                severity=finding.severity,
                message=finding.message,
                title=finding.title,
                line=finding.line,
                evidence=finding.evidence,
            )
        event.update(extra)
        try:
            self.reporter.emit(event)
        except Exception:
            pass

    def _report_findings(
        self, st: ExecState, findings: list[Any], cell_hash: str, loose: bool, detail: str
    ) -> None:
        for f in findings:
            full = (f.rule, f.line, f.evidence)
            if full in st.reported or (loose and f.rule in st.reported_rules):
                continue
            st.reported.add(full)
            st.reported_rules.add(f.rule)
            self.report("finding", finding=f, cell_hash=cell_hash, detail=detail)

    # -- decisions ------------------------------------------------------------
    def enforce(
        self,
        key: str,
        findings_fn: Callable[[], list[Any]],
        *,
        cell_hash: str,
        interactive: bool = True,
        loose: bool = False,
        detail: str = "",
        kind: str = "cell",
    ) -> None:
        """Decide once per (execution, key); raise ProhibitedCodeError unless it may run.

        ``findings_fn`` runs only on a cache miss (ipykernel transforms a cell twice).
        ``loose``: findings already reported for the same rule in this execution are
        not reported again (runtime and magic checks repeat the cell's findings).
        """
        st = self.state()
        decision = st.decisions.get(key)
        if decision is None:
            findings = findings_fn()
            decision = self._decide(st, findings, cell_hash, interactive, loose, detail, kind)
            with self._lock:
                decision = st.decisions.setdefault(key, decision)
        if decision.outcome != "run":
            raise ProhibitedCodeError(decision.summary, decision.notice)

    def _decide(
        self,
        st: ExecState,
        findings: list[Any],
        cell_hash: str,
        interactive: bool,
        loose: bool,
        detail: str,
        kind: str,
    ) -> Decision:
        findings = self.not_excepted(findings)
        action = strongest(findings)
        if action is None:
            return Decision("run")
        # a runtime block is reported as runtime_block, not also as a finding
        plain = [f for f in findings if kind != "runtime" or f.action != "block"]
        self._report_findings(st, plain, cell_hash, loose, detail)
        shown = [f for f in findings if f.action in ("warn", "block")]
        titles = ", ".join(dict.fromkeys(f.title or f.category for f in shown))
        if action == "block":
            if kind == "runtime":
                for f in findings:
                    if f.action == "block":
                        self.report("runtime_block", finding=f, cell_hash=cell_hash, detail=detail)
            what = "This code was not run" if kind != "runtime" else "This was refused"
            notice = build_notice(shown, self.settings, note=f"{what}.")
            return Decision("block", f"{what}: {titles} (acceptable-use policy)", notice)
        if action == "warn":
            return self._consent(st, findings, shown, titles, cell_hash, interactive, detail)
        return Decision("run")

    def _consent(
        self,
        st: ExecState,
        findings: list[Any],
        shown: list[Any],
        titles: str,
        cell_hash: str,
        interactive: bool,
        detail: str,
    ) -> Decision:
        warn_rules = {f.rule for f in findings if f.action == "warn"}
        if warn_rules <= st.approved:
            return Decision("run")  # already allowed in this execution
        default = self.settings.warn_default_headless
        notice = build_notice(
            shown,
            self.settings,
            note="The cell has not run yet. Running it anyway counts as a strike; "
            "cancelling it does not.",
        )
        if warn_rules <= consent.server_granted(self.kernel):
            # the user chose "Run anyway" in the server's dialog; its warning is shown
            choice, how = "run", "dialog"
        elif interactive:
            choice, how = consent.ask(self.kernel, notice, default)
        else:
            choice, how = default, "headless"
        if how == "headless":
            note = (
                "Run anyway: this frontend cannot ask, and the configured default is to run."
                if choice == "run"
                else "Not run: this frontend cannot ask, and the configured default is to cancel."
            )
            notice = build_notice(shown, self.settings, note=note)
            if choice == "run" and interactive:
                notice.show()
        first = next(f for f in findings if f.action == "warn")
        self.report(
            "consent",
            finding=first,
            cell_hash=cell_hash,
            choice=choice,
            detail=(
                f"{how}; rules: {', '.join(sorted(warn_rules))}" + (f"; {detail}" if detail else "")
            ),
        )
        if choice == "run":
            st.approved |= warn_rules
            return Decision("run")
        return Decision("cancel", f"Cancelled: {titles} (acceptable-use policy)", notice)

    def report_armed(self) -> None:
        """Tell the server the kernel-side guard is in place (and which policy)."""
        self.report("armed", detail="kernel guard installed")

    # -- tamper ---------------------------------------------------------------
    def tamper_quick(self) -> None:
        if self.integrity is not None:
            self.integrity.check(deep=False)

    def tamper_full(self) -> None:
        if self.integrity is not None:
            self.integrity.check(deep=True)

    def report_tamper(self, what: str, detail: str, action: str = "log") -> None:
        self.report(
            "tamper",
            finding=GuardFinding(
                category="tamper",
                rule=f"tamper.{what}",
                action=action,
                severity="high",
                message="The kernel guard was modified by code in the kernel.",
                title="Tampering with the acceptable-use guard",
            ),
            detail=detail,
        )
