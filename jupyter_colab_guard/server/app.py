"""``ColabGuardApp``: the server extension and its traitlets configuration."""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

from jupyter_server.extension.application import ExtensionApp
from jupyter_server.utils import url_path_join
from tornado import web
from tornado.ioloop import PeriodicCallback
from traitlets import Bool, Dict, Enum, Float, Int, List, Set, Unicode, default, validate

from ..store import StrikeStore
from ..store.policies import PolicyVersions
from . import events as E
from . import managers
from .escalation import DEFAULT_LADDER, parse_ladder
from .handlers import handlers
from .identity import default_owner
from .kernelmanager import PRIVATE_ENV, STORE_URL_ENV, guarded_kernel_class, install
from .managers import TERMINALS_DISABLED, GuardMappingMixin, GuardTerminalMixin
from .policy_api import policy_handlers
from .runtime import RuntimeEnforcer
from .service import GuardService
from .settings import DEFAULT_MESSAGE, GuardSettings
from .webhook import Webhook
from .websocket import SETTINGS_KEY, guarded_connection_class

PACKAGE = "jupyter_colab_guard"
# set in the environment of a single-user server JupyterHub spawned
HUB_ENV = ("JUPYTERHUB_API_TOKEN", "JUPYTERHUB_SERVICE_PREFIX", "JUPYTERHUB_USER")


def under_hub() -> bool:
    """Whether this server was spawned by JupyterHub."""
    return any(os.environ.get(name) for name in HUB_ENV)


class ColabGuardApp(ExtensionApp):
    """Acceptable-use guard: authoritative check, strikes, escalation, FAQ and admin API."""

    name = "jupyter_colab_guard"
    load_other_extensions = True

    policy_path = Unicode(
        None,
        allow_none=True,
        config=True,
        help="Policy YAML file (None: the shipped default). Watched and hot reloaded.",
    )
    policy_poll_interval = Float(
        2.0,
        config=True,
        help="Seconds between checks of the policy file (or, with policy_source = store, "
        "of the shared store) for a new policy.",
    )
    policy_source = Enum(
        ["file", "store"],
        "file",
        config=True,
        help="Where the policy in force comes from. file: policy_path (or the shipped "
        "default), hot reloaded. store: the newest version published in the strike store "
        "(`colab-guard policy publish`, the admin API), polled every policy_poll_interval "
        "seconds; until a version is published, policy_path applies. Running kernels "
        "take a new policy before their next cell in both modes.",
    )
    identity = Enum(
        ["auto", "provider", "owner"],
        "auto",
        config=True,
        help="Who strikes land on. provider: the identity provider's username. owner: "
        "always `owner`. auto: owner with jupyter_server's built-in token/password "
        "providers (they name each login randomly), provider otherwise (e.g. JupyterHub).",
    )
    owner = Unicode(
        config=True, help="The server's owner (default: $JUPYTERHUB_USER or the OS user)."
    )

    @default("owner")
    def _default_owner(self) -> str:
        return default_owner()

    admin_users = Set(Unicode(), config=True, help="Users allowed to use the admin API.")
    hub_admins = Bool(
        True,
        config=True,
        help="Under JupyterHub: Hub admins (the Hub's user model says admin) are guard "
        "admins too, in addition to admin_users.",
    )
    owner_is_admin = Bool(
        True,
        config=True,
        help="On a single-user server (jupyter_server's token/password login, identity "
        "'owner'), the server's owner is a guard admin: the admin console and API. Never "
        "under JupyterHub (there hub_admins and admin_users decide). False: only "
        "admin_users.",
    )
    webhook_url = Unicode(
        "",
        config=True,
        help="URL the guard POSTs a JSON notification to on a suspension and on appeals "
        "(new, accepted, rejected); empty: off. Sent from a thread of its own, retried.",
    )

    @validate("webhook_url")
    def _validate_webhook_url(self, proposal: Any) -> Any:
        url = proposal["value"]
        if url and not url.lower().startswith(("http://", "https://")):
            raise ValueError(f"webhook_url must be an http:// or https:// URL, not {url!r}")
        return url

    webhook_secret = Unicode(
        "",
        config=True,
        help="Shared secret: each webhook body is signed (HMAC-SHA256) in the header "
        "X-Colab-Guard-Signature: sha256=<hex>.",
    )
    webhook_retries = Int(5, config=True, help="Webhook attempts after the first failed one.")
    webhook_backoff = Float(
        2.0, config=True, help="Seconds before the first webhook retry; doubled at each retry."
    )
    webhook_timeout = Float(10.0, config=True, help="Seconds one webhook attempt may take.")
    store_url = Unicode(
        "",
        config=True,
        help="SQLAlchemy URL of the strike store (default: $COLAB_GUARD_STORE_URL, else a "
        "SQLite file in the server's data dir). Use postgresql+psycopg://... for "
        "deployments with many servers. $COLAB_GUARD_STORE_URL is removed from the "
        "server's environment at start, so kernels and terminals do not inherit it.",
    )
    sqlite_synchronous = Enum(
        ["FULL", "NORMAL", "EXTRA"],
        "FULL",
        config=True,
        help="SQLite synchronous mode (WAL). FULL survives a power loss; NORMAL only a crash.",
    )
    store_retry_interval = Float(
        10.0, config=True, help="Seconds between retries of spooled events."
    )
    store_cell_text = Bool(False, config=True, help="Store the text of flagged cells.")
    escalation = List(
        Dict(),
        default_value=DEFAULT_LADDER,
        config=True,
        help="Escalation ladder: list of {level: warning|restricted|suspended, strikes: N, "
        "window: seconds (0 = since the last reset), cooldown: seconds}.",
    )

    @validate("escalation")
    def _validate_escalation(self, proposal: Any) -> Any:
        parse_ladder(proposal["value"])
        return proposal["value"]

    fail_mode = Enum(
        ["closed", "open"],
        "closed",
        config=True,
        help="Without a usable policy or when the check fails: refuse (closed) or run (open).",
    )
    service_name = Unicode(
        "Colab",
        config=True,
        help="Name of the service in messages (passed on to kernels as well).",
    )
    message = Unicode(
        DEFAULT_MESSAGE,
        config=True,
        help="The warning's text, in the server's refusals and in kernels' warnings; "
        "'{service}' is replaced by service_name.",
    )
    faq_url = Unicode("", config=True, help="FAQ link (default: {base_url}colab-guard/faq).")
    appeal_url = Unicode(
        "", config=True, help="Appeal link (default: {base_url}colab-guard/#appeal)."
    )
    show_evidence = Bool(
        False,
        config=True,
        help="Show the matched text to users: in warnings, on /colab-guard/ and in "
        "/colab-guard/api/strikes/me (admin views always show it). Hiding it slows evaders.",
    )
    check_timeout = Float(
        10.0,
        config=True,
        help="Seconds the check of one execution may take (it runs in a thread pool); "
        "longer: fail_mode decides (closed: refused).",
    )
    check_workers = Int(
        16,
        config=True,
        help="Threads that run checks and kernel reports (a check waiting for an analysis "
        "worker holds one).",
    )
    check_budget = Float(
        3.0,
        config=True,
        help="Seconds of deep analysis per cell. Past it the rest of the cell is read by the "
        "linear pass and the cell gets the policy's on_timeout action (default: refused, "
        "no strike).",
    )
    analysis_workers = Int(
        2,
        config=True,
        help="Child processes that analyse cells (0: in the server's own threads). A worker "
        "that has not answered within min(0.8 * check_timeout, 2 * check_budget + 2) "
        "seconds is killed and started again.",
    )
    watch_processes = Bool(
        True,
        config=True,
        help="Watch every process below the guarded kernels and terminals (and orphans "
        "they leave: the server becomes a child subreaper) and judge it by the policy: "
        "its command line, the script an interpreter runs, its executable's content. "
        "block kills its process tree and counts a strike of kind runtime.",
    )
    watch_interval = Float(1.0, config=True, help="Seconds between two process-watcher polls.")
    watch_connector = Bool(
        True,
        config=True,
        help="Where the server runs as root, also take exec events from the Linux process "
        "connector, so a process is judged as it starts (about 10 ms) instead of at the "
        "next poll.",
    )
    watch_uid = Bool(
        False,
        config=True,
        help="Also watch every other process of the server's uid (containers and "
        "JupyterHub, where that uid holds only the user's session). Off by default so a "
        "laptop's other programs are never touched.",
    )
    checks_per_user = Int(
        1, config=True, help="Checks of one user that run at once; the others wait their turn."
    )
    max_cell_size = Int(
        1_000_000,
        config=True,
        help="Largest cell (characters of code plus user_expressions) the server checks; "
        "larger cells are refused with a message saying so.",
    )
    max_report_bytes = Int(256 * 1024, config=True, help="Largest kernel report body (413).")
    report_rate_limit = Int(
        30, config=True, help="Kernel reports accepted per kernel per report_rate_window (429)."
    )
    report_rate_window = Float(60.0, config=True, help="Window of report_rate_limit (s).")
    report_strike_limit = Int(
        3,
        config=True,
        help="Strikes one kernel's reports can add per report_strike_window; more are "
        "recorded but do not count (reports are weaker evidence than the server's check).",
    )
    report_strike_window = Float(3600.0, config=True, help="Window of report_strike_limit (s).")
    arm_timeout = Float(
        30.0,
        config=True,
        help="Seconds a kernel started with the kernel-side guard has to announce it; "
        "kernels that do not are logged and recorded.",
    )
    consent_timeout = Float(
        300.0,
        config=True,
        help="Seconds a warn cell is held for the user's answer to the consent dialog "
        "(JupyterLab extension); unanswered, it is cancelled.",
    )
    require_kernel_guard = Bool(
        True,
        config=True,
        help="A Python kernel must carry the kernel-side guard: a kernelspec whose argv "
        "cannot carry it is refused (403); executions wait until the guard arms and are "
        "refused (and the kernel shut down, with an unguarded_kernel event) if it has not "
        "armed arm_timeout seconds after the kernel's start. False: such kernels run, "
        "checked by the server alone, and are logged.",
    )
    trust_user_profile = Bool(
        False,
        config=True,
        help="Let kernels read the user's own IPython profile (~/.ipython: config files are "
        "Python run before the guard loads; startup files run unchecked) and PYTHONSTARTUP. "
        "Off: each kernel start gets a fresh private profile folder (operator config in "
        "sys.prefix/etc/ipython and /etc/ipython still applies).",
    )
    refuse_unchecked_languages = Bool(
        False,
        config=True,
        help="Refuse kernels whose language the check cannot read (anything but Python and "
        "shell kernels); off: their code is checked by the language-independent rules.",
    )
    trust_user_kernelspecs = Bool(
        False,
        config=True,
        help="Start kernelspecs found in the user's own Jupyter data directory (which "
        "code in a kernel can write: a kernelspec there could drop the guard). Off: such "
        "kernels are refused (403); kernelspecs the operator installed start as usual.",
    )
    disable_terminals = Bool(
        True,
        config=True,
        help="Refuse new terminals (they bypass kernels and so the guard). False keeps "
        "jupyter_server's terminals (a warning is logged at start).",
    )
    user_tiers = Dict(Unicode(), config=True, help="Policy tier per user.")
    default_tier = Unicode(None, allow_none=True, config=True, help="Tier of other users.")
    report_url = Unicode(
        "",
        config=True,
        help="URL kernels post reports to (default: the server's connection URL).",
    )
    kernel_extension = Bool(
        True, config=True, help="Start Python kernels with the kernel-side guard."
    )
    shutdown_on_suspend = Bool(True, config=True, help="Shut down a user's kernels on suspension.")

    guard: GuardService | None = None
    _started = False
    # the guard's manager classes the server was configured with at link time (managers.py)
    _km_class: type | None = None
    _tm_class: type | None = None
    _callbacks: list[PeriodicCallback]
    runtime: RuntimeEnforcer | None = None  # the process watcher
    _store_poll: asyncio.Future[Any] | None = None  # store mode: the poll running now

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._tasks: set[asyncio.Future[Any]] = set()

    # -- setup ----------------------------------------------------------------------

    def _default_store_url(self) -> str:
        path = os.path.join(self.serverapp.data_dir, "colab_guard", "strikes.sqlite")
        return f"sqlite:///{path}"

    def _link_jupyter_server_extension(self, serverapp: Any) -> None:
        """Linking (jupyter_server's step before the server builds its managers): the
        server is configured to build the guard's kernel and terminal manager classes
        (managers.py)."""
        super()._link_jupyter_server_extension(serverapp)
        self._km_class, self._tm_class = managers.link(serverapp, self.disable_terminals)

    def initialize_settings(self) -> None:
        self._route_logs()
        try:
            self._initialize_guard()
        except BaseException as err:
            # never leave the server running unguarded: no kernel can start
            self._lockdown(err)
            raise

    def _route_logs(self) -> None:
        """Every module of the package logs through ``logging.getLogger(__name__)``: send
        those lines through the server's own handlers, so its format and ``--log-level``
        apply (they would otherwise reach Python's last-resort handler, unformatted)."""
        server_log = self.serverapp.log
        package = logging.getLogger(PACKAGE)
        package.handlers = list(server_log.handlers)
        package.setLevel(server_log.getEffectiveLevel())
        package.propagate = not package.handlers

    def _lockdown(self, err: BaseException) -> None:
        """The guard could not be set up: refuse every kernel start (503) so nothing runs
        unchecked, and say so loudly. With ``ServerApp.reraise_server_extension_failures``
        the server does not start at all (recommended)."""
        self.log.critical(
            "colab-guard: the guard could not be set up (%r); kernels are refused on this "
            "server until it is fixed",
            err,
        )
        mkm = self.serverapp.kernel_manager
        message = f"colab-guard: the acceptable-use guard is not working ({type(err).__name__})"
        if isinstance(mkm, GuardMappingMixin):
            mkm.guard_refusal = message
        else:  # a manager class the guard could not subclass at link time
            self._refuse_starts_of(mkm, message)
        if self._tm_class is not None:  # the terminal manager is built after this
            self._tm_class.guard_refusal = TERMINALS_DISABLED  # type: ignore[attr-defined]
        self._disable_terminals()

    @staticmethod
    def _refuse_starts_of(mkm: Any, message: str) -> None:
        """Last resort for a kernel manager that is not the guard's subclass (another
        extension replaced ServerApp.kernel_manager_class after linking): its start
        methods are replaced so that nothing starts unchecked."""

        async def refuse_start(*args: Any, **kwargs: Any) -> Any:
            raise web.HTTPError(503, message)

        mkm.start_kernel = refuse_start
        if hasattr(mkm, "kernel_manager_factory"):

            def refuse_factory(*args: Any, **kwargs: Any) -> Any:
                raise web.HTTPError(503, message)

            mkm.kernel_manager_factory = refuse_factory

    def _disable_terminals(self) -> None:
        """Terminals bypass kernels: new ones are refused (managers.py; the class the
        server built at link time already refuses them)."""
        tm = self.settings.get("terminal_manager") or getattr(
            self.serverapp.web_app, "settings", {}
        ).get("terminal_manager")
        if tm is None or getattr(tm, "_colab_guard_disabled", False):
            return
        tm._colab_guard_disabled = True
        self.log.info("colab-guard: terminals are disabled (ColabGuardApp.disable_terminals)")
        if isinstance(tm, GuardTerminalMixin):
            tm.guard_refusal = tm.guard_refusal or TERMINALS_DISABLED
            return
        # last resort: a terminal manager the guard could not subclass at link time
        self.log.warning(
            "colab-guard: terminal manager %s refused by replacing its methods",
            type(tm).__name__,
        )

        def refuse(*args: Any, **kwargs: Any) -> Any:
            raise web.HTTPError(403, TERMINALS_DISABLED)

        for name in ("create", "new_terminal", "new_named_terminal"):
            if hasattr(tm, name):
                setattr(tm, name, refuse)

    def _initialize_guard(self) -> None:
        sa = self.serverapp
        base = sa.base_url
        url = self.store_url or os.environ.get(STORE_URL_ENV) or self._default_store_url()
        spool = os.path.join(sa.data_dir, "colab_guard", "spool.jsonl")
        guard_events = E.GuardEvents(getattr(sa, "event_logger", None))

        def store_error(op: str, err: Exception, pending: int) -> None:
            guard_events.emit(
                E.STORE, {"operation": op, "error": str(err)[:2000], "pending": pending}
            )

        # keep the store's credentials out of every child process (kernels, terminals)
        for name in PRIVATE_ENV:
            os.environ.pop(name, None)
        store = StrikeStore(
            url, spool_path=spool, sqlite_synchronous=self.sqlite_synchronous, on_error=store_error
        )
        # a database that cannot be reached now is "down" (spooled, retried, fail_mode)
        store.open(tolerate_down=True)
        guard = GuardService(
            store=store,
            ladder=parse_ladder(self.escalation),
            policy_path=os.path.abspath(self.policy_path) if self.policy_path else None,
            owner=self.owner,
            identity_mode=self.identity,
            identity_provider=sa.identity_provider,
            admin_users=set(self.admin_users),
            store_cell_text=self.store_cell_text,
            fail_mode=self.fail_mode,
            user_tiers=dict(self.user_tiers),
            default_tier=self.default_tier,
            events=guard_events,
            snapshot_dir=os.path.join(sa.runtime_dir, "colab_guard"),
            hub_admins=self.hub_admins,
            owner_admin=self.owner_is_admin and not under_hub(),
            check_workers=self.check_workers,
            settings=GuardSettings(
                service_name=self.service_name,
                message=self.message,
                faq_url=self.faq_url or url_path_join(base, "colab-guard/faq"),
                appeal_url=self.appeal_url or url_path_join(base, "colab-guard/") + "#appeal",
                show_evidence=self.show_evidence,
                check_timeout=self.check_timeout,
                check_budget=self.check_budget,
                analysis_workers=self.analysis_workers,
                checks_per_user=self.checks_per_user,
                max_cell_size=self.max_cell_size,
                max_report_bytes=self.max_report_bytes,
                report_rate=(self.report_rate_limit, self.report_rate_window),
                report_strikes=(self.report_strike_limit, self.report_strike_window),
                arm_timeout=self.arm_timeout,
                require_kernel_guard=self.require_kernel_guard,
                consent_timeout=self.consent_timeout,
                trust_user_kernelspecs=self.trust_user_kernelspecs,
                trust_user_profile=self.trust_user_profile,
                refuse_unchecked_languages=self.refuse_unchecked_languages,
            ),
            on_suspended=self._on_suspended,
            policy_versions=PolicyVersions(store.engine) if self.policy_source == "store" else None,
        )
        guard.load_initial_policy()
        if self.webhook_url:
            guard.webhook = Webhook(
                self.webhook_url,
                secret=self.webhook_secret,
                service=self.service_name,
                retries=self.webhook_retries,
                backoff=self.webhook_backoff,
                timeout=self.webhook_timeout,
                log=self.log,
            )
        self.guard = guard

        # authoritative check on the kernel websocket
        # (self.settings is copied into the web app's settings after this method)
        ws = self.settings.get("kernel_websocket_connection_class") or (
            sa.kernel_websocket_connection_class
        )
        self.settings["kernel_websocket_connection_class"] = guarded_connection_class(ws)
        self.settings[SETTINGS_KEY] = guard

        # every kernel gets the kernel-side guard and a report token
        mkm = sa.kernel_manager
        if hasattr(mkm, "kernel_manager_factory"):
            from traitlets.utils.importstring import import_item

            base_cls = import_item(mkm.kernel_manager_class)
            install(
                mkm, guarded_kernel_class(base_cls, guard, self._kernel_args(), self._report_url())
            )
            if not isinstance(mkm, GuardMappingMixin):
                self.log.warning(
                    "colab-guard: kernel manager %s is not the guard's subclass (its class "
                    "was replaced after linking); refused kernel starts may stay pending",
                    type(mkm).__name__,
                )
        else:
            self.log.error("colab-guard: kernel manager %s cannot be guarded", type(mkm).__name__)
        self.log.info(
            "colab-guard: store %s, identity %s, policy %s",
            store.engine.url.render_as_string(hide_password=True),
            f"owner ({guard.owner})" if guard.owner_mode else "identity provider",
            f"store version {guard.store_version}"
            if guard.store_version is not None
            else guard.policy_path or "(default)",
        )

    def _report_url(self) -> str:
        if self.report_url:
            return self.report_url
        return url_path_join(self.serverapp.connection_url, "colab-guard/api/kernel/reports")

    def _kernel_args(self) -> list[str]:
        if not self.kernel_extension:
            return []
        assert self.guard is not None
        args = [
            "--ext=jupyter_colab_guard",
            f"--KernelGuard.service_name={self.service_name}",
            f"--KernelGuard.message={self.message}",
            f"--KernelGuard.faq_url={self.guard.faq_url}",
            f"--KernelGuard.appeal_url={self.guard.appeal_url}",
            f"--KernelGuard.show_evidence={self.show_evidence}",
            f"--KernelGuard.fail_closed={self.fail_mode == 'closed'}",
            "--KernelGuard.allow_unload=False",
        ]
        return args

    def initialize_handlers(self) -> None:
        self.handlers.extend(handlers())
        self.handlers.extend(policy_handlers())

    # -- running ----------------------------------------------------------------------

    def _start_timers(self) -> None:
        assert self.guard is not None
        guard = self.guard
        self._callbacks = []
        if self.policy_poll_interval > 0 and guard.policy_versions is not None:
            # the store is read in the pool, never on the event loop; one poll at a time
            self._callbacks.append(
                PeriodicCallback(self._poll_store, self.policy_poll_interval * 1000)
            )
        elif guard.policy_path and self.policy_poll_interval > 0:
            self._callbacks.append(
                PeriodicCallback(guard.poll_policy, self.policy_poll_interval * 1000)
            )
        self._callbacks.append(
            PeriodicCallback(self._flush_store, self.store_retry_interval * 1000)
        )
        if self.kernel_extension:
            interval = max(1.0, min(self.arm_timeout / 2, 10.0))
            self._callbacks.append(PeriodicCallback(self._check_armed, interval * 1000))
        for cb in self._callbacks:
            cb.start()
        if self.watch_processes and self.runtime is None:
            self.runtime = RuntimeEnforcer(
                guard,
                self.serverapp.kernel_manager,
                lambda: self.serverapp.web_app.settings.get("terminal_manager"),
                guard.users.owner,
                interval=self.watch_interval,
                watch_uid=self.watch_uid,
                connector=self.watch_connector,
            )
            self.runtime.start()

    def _background(self, fn: Any) -> None:
        """Run ``fn`` in the guard's pool (store I/O stays off the event loop)."""
        assert self.guard is not None
        task = asyncio.ensure_future(self.guard.run_in_pool(fn, timeout=300))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _poll_store(self) -> None:
        """Store mode: look for a newly published policy (skipped while one look runs)."""
        task = self._store_poll
        if self.guard is None or (task is not None and not task.done()):
            return
        self._store_poll = asyncio.ensure_future(
            self.guard.run_in_pool(self.guard.poll_policy, timeout=60)
        )
        self._tasks.add(self._store_poll)
        self._store_poll.add_done_callback(self._poll_done)

    def _poll_done(self, task: asyncio.Future[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.log.error("colab-guard: the policy store poll failed: %r", task.exception())

    def _flush_store(self) -> None:
        if self.guard is not None:
            self._background(self.guard.store.flush_pending)

    def _check_armed(self) -> None:
        if self.guard is None:
            return
        for info in self.guard.check_armed():
            self._background(lambda info=info: self.guard.record_unarmed(info))  # type: ignore[union-attr]
            if self.guard.settings.require_kernel_guard:
                task = asyncio.ensure_future(self._shutdown_unguarded(info.kernel_id))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _shutdown_unguarded(self, kernel_id: str) -> None:
        """require_kernel_guard: a kernel whose guard never armed does not stay up."""
        try:
            await self.serverapp.kernel_manager.shutdown_kernel(kernel_id, now=True)
        except Exception as err:
            self.log.error("colab-guard: could not shut down kernel %s: %r", kernel_id, err)

    async def _start_jupyter_server_extension(self, serverapp: Any) -> None:
        """jupyter_server's hook for an extension's tasks, run once the server's loop
        runs and every extension is loaded: timers, the process watcher, terminals."""
        if self.guard is None or self._started:
            return
        self._started = True
        self._start_timers()
        if self.disable_terminals:
            self._disable_terminals()
        elif getattr(serverapp, "terminals_enabled", False):
            self.log.warning(
                "colab-guard: terminals are enabled; their processes are watched "
                "(watch_processes) but their commands are not checked as cells "
                "(ColabGuardApp.disable_terminals)"
            )

    def _on_suspended(self, user: str) -> None:
        """Called from a check thread or the loop: tell the webhook, shut the user's
        kernels down."""
        if self.guard is not None and self.guard.webhook is not None:
            self.guard.webhook.send("suspended", user, level="suspended")
        loop = self.guard.loop if self.guard is not None else None
        if loop is not None and loop.is_running():
            try:
                asyncio.get_running_loop()
                in_loop = True
            except RuntimeError:
                in_loop = False
            if not in_loop:
                loop.call_soon_threadsafe(self._shutdown_user, user)
                return
        self._shutdown_user(user)

    def _shutdown_user(self, user: str) -> None:
        if not self.shutdown_on_suspend or self.guard is None:
            return
        mkm = self.serverapp.kernel_manager
        kids = self.guard.kernels_of(user)
        self.log.warning(
            "colab-guard: user %s suspended, shutting down %d kernels", user, len(kids)
        )
        for kid in kids:
            if kid in mkm:
                task = asyncio.ensure_future(mkm.shutdown_kernel(kid))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def stop_extension(self) -> None:
        for cb in getattr(self, "_callbacks", []):
            cb.stop()
        if self.runtime is not None:
            self.runtime.stop()
        if self.guard is not None:
            if self.guard.webhook is not None:
                self.guard.webhook.stop()
            self.guard.pool.shutdown(wait=False, cancel_futures=True)
            self.guard.policies.shutdown()
            try:
                self.guard.store.flush_pending()
            finally:
                self.guard.store.close()
