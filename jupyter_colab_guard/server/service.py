"""The guard service: one instance per server, created by ``ColabGuardApp``; the websocket
connection, the kernel manager and the handlers all call into it.

A thin facade over parts with one job each: ``settings.py`` (shared settings),
``users.py`` (who a request counts for), ``standing.py`` (strike level, admin exceptions),
``policy_holder.py`` (the policy in force), ``kernels.py`` (tokens, armed state, identity
files), ``recorder.py`` (recording), ``reports.py`` (kernel reports), ``pool.py`` (the check
pool), ``checker.py`` (the check of one execution) and ``metrics.py`` (Prometheus series).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any, Generic, TypeVar, overload

from ..analysis import Analyzer
from ..policy import Policy
from ..store import StrikeStore
from ..store.policies import PolicyVersions
from . import events as E
from . import metrics
from .checker import Checker, Decision
from .consent import ConsentBook
from .escalation import Step
from .kernels import KernelInfo, KernelRegistry
from .notices import Notices
from .policy_holder import PolicyHolder
from .pool import CheckPool
from .recorder import Recorder
from .reports import KernelReports, ReportRejected
from .settings import DEFAULT_MESSAGE, GuardSettings
from .standing import UserStanding, excepted
from .users import UserResolver
from .webhook import Webhook

# kept importable from here
__all__ = [
    "DEFAULT_MESSAGE",
    "Decision",
    "GuardService",
    "GuardSettings",
    "KernelInfo",
    "ReportRejected",
]

T = TypeVar("T")


class Via(Generic[T]):
    """An attribute of the facade kept on one of its parts: reads and writes go there."""

    def __init__(self, part: str, name: str = "") -> None:
        self.part, self.name = part, name  # name: the part's attribute (default: the same)

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = self.name or name

    @overload
    def __get__(self, obj: None, objtype: type | None = None) -> Via[T]: ...
    @overload
    def __get__(self, obj: object, objtype: type | None = None) -> T: ...
    def __get__(self, obj: object | None, objtype: type | None = None) -> Via[T] | T:
        if obj is None:
            return self
        return getattr(getattr(obj, self.part), self.name)  # type: ignore[no-any-return]

    def __set__(self, obj: object, value: T) -> None:
        setattr(getattr(obj, self.part), self.name, value)


class GuardService:
    # settings, shared by the parts (a change applies at once)
    fail_mode = Via[str]("settings")
    store_cell_text = Via[bool]("settings")
    dedupe_window = Via[float]("settings")
    snapshot_dir = Via[str | None]("settings")
    service_name = Via[str]("settings")
    message = Via[str]("settings")
    faq_url = Via[str]("settings")
    appeal_url = Via[str]("settings")
    show_evidence = Via[bool]("settings")
    check_timeout = Via[float]("settings")
    max_cell_size = Via[int]("settings")
    max_report_bytes = Via[int]("settings")
    report_rate = Via[tuple[int, float]]("settings")
    report_strikes = Via[tuple[int, float]]("settings")
    arm_timeout = Via[float]("settings")
    require_kernel_guard = Via[bool]("settings")
    # identity
    owner = Via[str]("users")
    owner_mode = Via[bool]("users")
    admin_users = Via[set[str]]("users")
    user_tiers = Via[dict[str, str]]("users")
    default_tier = Via[str | None]("users")
    hub_admins = Via[bool]("users")
    owner_admin = Via[bool]("users")
    # the policy in force
    policy_path = Via[str | None]("policies")
    kernel_policy_path = Via[str | None]("policies")
    policy = Via[Policy | None]("policies")
    store_version = Via[int | None]("policies")  # store mode: the version in force
    policy_versions = Via[PolicyVersions | None]("policies", "versions")
    analyzer = Via[Analyzer | None]("policies")
    # shuts down a user's kernels (thread-safe); set by the app
    on_suspended = Via[Callable[[str], None] | None]("recorder")
    # the check pool and the server's event loop
    pool = Via[ThreadPoolExecutor]("check_pool", "executor")
    loop = Via[asyncio.AbstractEventLoop | None]("check_pool")

    excepted = staticmethod(excepted)

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
        owner_admin: bool = False,
        check_workers: int = 4,
        settings: GuardSettings | None = None,
        on_suspended: Callable[[str], None] | None = None,
        policy_versions: PolicyVersions | None = None,
    ) -> None:
        """``settings``: the other settings (defaults: ``GuardSettings()``).
        ``policy_versions``: store mode (the newest published policy is in force)."""
        # shared by the parts; not meant to be replaced
        self.store = store
        self.ladder = ladder
        self.events = events
        # the operator's webhook (suspensions, appeals); set by the app, None: off
        self.webhook: Webhook | None = None
        self.settings = replace(
            settings or GuardSettings(),
            fail_mode=fail_mode,
            store_cell_text=store_cell_text,
            dedupe_window=dedupe_window,
            snapshot_dir=snapshot_dir,
        )
        self.users = UserResolver(
            owner=owner,
            identity_mode=identity_mode,
            identity_provider=identity_provider,
            admin_users=admin_users,
            user_tiers=user_tiers,
            default_tier=default_tier,
            hub_admins=hub_admins,
            owner_admin=owner_admin,
        )
        self.standing = UserStanding(store, ladder)
        self.policies = PolicyHolder(policy_path, events, self.settings, policy_versions)
        self.kernels = KernelRegistry(self.users, self.standing, self.settings)
        self.recorder = Recorder(store, ladder, events, self.settings, on_suspended)
        self.reports = KernelReports(
            store=store,
            recorder=self.recorder,
            standing=self.standing,
            kernels=self.kernels,
            settings=self.settings,
        )
        self.check_pool = CheckPool(events, self.settings, check_workers)
        self.notices = Notices()  # open websockets per kernel, for the watcher's notices
        # warn cells held for the user's answer to the consent dialog
        self.consents = ConsentBook(self.settings)
        self.checker = Checker(
            settings=self.settings,
            users=self.users,
            standing=self.standing,
            policies=self.policies,
            kernels=self.kernels,
            recorder=self.recorder,
            pool=self.check_pool,
        )

        # the public methods, each done by one part
        self.load_initial_policy = self.policies.load_initial
        self.poll_policy = self.policies.poll
        self.resolve_user = self.users.resolve_user
        self.tier_of = self.users.tier_of
        self.identity = self.users.identity
        self.is_admin = self.users.is_admin
        self.status = self.standing.status
        self.safe_status = self.standing.safe_status
        self.invalidate_exceptions = self.standing.invalidate_exceptions
        self.drop_excepted = self.standing.drop_excepted
        self.register_kernel = self.kernels.register
        self.kernel = self.kernels.get
        self.kernel_for_token = self.kernels.for_token
        self.kernels_of = self.kernels.kernels_of
        self.kernel_identity = self.kernels.identity
        self.write_kernel_identity = self.kernels.write_identity
        self.refresh_kernel_identities = self.kernels.refresh_identities
        self.kernel_armed = self.kernels.armed
        self.check_armed = self.kernels.check_armed
        self.wait_armed = self.kernels.wait_armed
        self.record = self.recorder.record
        self.record_many = self.recorder.record_many
        self.record_unarmed = self.recorder.record_unarmed
        self.kernel_report = self.reports.kernel_report
        self.run_in_pool = self.check_pool.run
        self.decide = self.checker.decide
        self.check_execute = self.checker.check_execute
        self.analyse = self.checker.analyse
        metrics.install(self)  # /metrics reports this guard (the last built in the process)

    def policy_mark(self) -> str | None:
        """The version marked on forwarded execute_requests (server/policymark.py)."""
        policy = self.policies.policy
        return policy.version if policy is not None else None

    def forget_kernel(self, kernel_id: str) -> None:
        """A kernel shut down: its token, identity file and analysis sessions go."""
        self.kernels.forget(kernel_id)
        self.policies.forget_sessions(kernel_id)
