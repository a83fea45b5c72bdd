"""Per-kernel manager: every Python kernel starts with the kernel-side guard.

Appends ``--ext=jupyter_colab_guard`` and the ``KernelGuard`` options to the kernel
command line (see docs/kernel-server-protocol.md) and sets the report URL and a per-kernel
token in that kernel's environment only. The kernel's user is whoever made the request
that started it (jupyter_server's CallContext holds the handler); without a request (a
kernel started by the server itself) it is the owner.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from jupyter_core.paths import jupyter_data_dir
from jupyter_server.base.call_context import CallContext
from tornado import web

from .identity import user_groups
from .launch import (
    CHECKED_LANGUAGES,
    USER_STARTUP_ENV,
    carries_guard,
    drop_profile,
    private_profile_env,
    profile_root,
)
from .service import GuardService

log = logging.getLogger(__name__)

REPORT_URL_ENV = "COLAB_GUARD_REPORT_URL"
REPORT_TOKEN_ENV = "COLAB_GUARD_REPORT_TOKEN"
# never passed on to kernels: the store's credentials are the server's only
STORE_URL_ENV = "COLAB_GUARD_STORE_URL"
PRIVATE_ENV = (STORE_URL_ENV, "COLAB_GUARD_ADMIN_STORE_URL")


def users_own(path: str) -> bool:
    """Whether a kernelspec folder lies in the user's own Jupyter data directory."""
    if not path:
        return False
    mine = os.path.realpath(jupyter_data_dir())
    return os.path.realpath(path).startswith(mine + os.sep)


def safe_path(cmd: list[str]) -> list[str]:
    """``python -P -m ipykernel_launcher ...``: nothing in the kernel's working directory
    can stand in for ipykernel, IPython or the guard while the kernel starts (``-m`` puts
    the working directory first on sys.path otherwise). The guard puts the directory back
    once it is armed, for the user's own imports."""
    if cmd and os.path.basename(cmd[0]).startswith("python") and "-P" not in cmd[1:2]:
        return [cmd[0], "-P", *cmd[1:]]
    return cmd


def _request_user(guard: GuardService) -> tuple[str, tuple[str, ...]]:
    """(user, groups) of the request starting the kernel; the owner without one."""
    handler = CallContext.get(CallContext.JUPYTER_HANDLER)
    user_obj = getattr(handler, "current_user", None) if handler is not None else None
    if user_obj is None:
        return guard.owner, ()
    return guard.resolve_user(user_obj), user_groups(user_obj)


class GuardKernelMixin:
    """Mixed into the server's per-kernel manager class by ``guarded_kernel_class``."""

    guard: GuardService  # set on the generated class
    kernel_args: list[str] = []  # set on the generated class
    report_url: str = ""
    _profile_root: str | None = None  # this start's private IPython profile folder

    async def _async_pre_start_kernel(self, **kw: Any) -> tuple[list[str], dict[str, Any]]:
        guard = self.guard
        spec_dir = getattr(getattr(self, "kernel_spec", None), "resource_dir", "") or ""
        if not guard.settings.trust_user_kernelspecs and users_own(spec_dir):
            raise web.HTTPError(
                403,
                f"colab-guard: the kernelspec in {spec_dir} is in the user's own files; only "
                "kernelspecs the operator installed start here",
            )
        cmd, kw = await super()._async_pre_start_kernel(**kw)  # type: ignore[misc]
        kid: str = self.kernel_id  # type: ignore[attr-defined]
        info = guard.kernel(kid)
        # a restart keeps the user and groups
        user, groups = (info.user, info.groups) if info else _request_user(guard)
        # the store is read in the guard's pool, never on the server's event loop
        try:
            status = await guard.run_in_pool(
                lambda: guard.safe_status(user), timeout=30, user=user, lane="store"
            )
        except Exception:  # a store that does not answer: as if unavailable
            status = None
        if status is None and guard.fail_mode == "closed":
            raise web.HTTPError(503, "colab-guard: the strike store is unavailable")
        if status is not None and status.level == "suspended":
            raise web.HTTPError(403, f"colab-guard: user {user} is suspended")
        spec = getattr(self, "kernel_spec", None)
        language = (getattr(spec, "language", "") or "").lower()
        settings = guard.settings
        if settings.refuse_unchecked_languages and language not in CHECKED_LANGUAGES:
            raise web.HTTPError(
                403,
                f"colab-guard: kernels of language {language or '(none)'} are not offered here "
                "(the acceptable-use guard cannot check their code)",
            )
        guarded = language == "python" and bool(self.kernel_args)
        token = guard.register_kernel(kid, user, groups, expects_guard=guarded, language=language)
        env = {k: v for k, v in (kw.get("env") or {}).items() if k not in PRIVATE_ENV}
        if guarded:
            options = list(self.kernel_args)
            if guard.kernel_policy_path:
                # the copy of the policy in force (survives the file being deleted)
                options.append(f"--KernelGuard.policy_path={guard.kernel_policy_path}")
            if settings.snapshot_dir:
                # where the kernel finds the versions marked on execute_requests
                options.append(f"--KernelGuard.policy_dir={settings.snapshot_dir}")
            # the user's tier, groups and admin exceptions (rewritten when they change)
            ident = guard.write_kernel_identity(kid)
            if ident:
                options.append(f"--KernelGuard.identity_file={ident}")
            tier = guard.tier_of(user)
            if tier:
                options.append(f"--KernelGuard.tier={tier}")
            cmd = [*safe_path(cmd), *options]
            if not carries_guard(cmd, options):
                self._refuse_unguardable(cmd)
            if not settings.trust_user_profile:
                drop_profile(self._profile_root)
                self._profile_root = profile_root(settings.snapshot_dir, kid)
                env.update(private_profile_env(self._profile_root))
                for name in USER_STARTUP_ENV:
                    env.pop(name, None)
        env[REPORT_URL_ENV] = self.report_url
        env[REPORT_TOKEN_ENV] = token
        kw["env"] = env
        return cmd, kw

    def _refuse_unguardable(self, cmd: list[str]) -> None:
        """A Python kernelspec whose argv would not start ipykernel with the guard's
        options (a shell wrapper, another program, a script before ``-m``)."""
        shown = " ".join(cmd[:4])
        if self.guard.settings.require_kernel_guard:
            self.guard.forget_kernel(self.kernel_id)  # type: ignore[attr-defined]
            raise web.HTTPError(
                403,
                f"colab-guard: this kernelspec ({shown} ...) does not start ipykernel with "
                "Python, so the acceptable-use guard cannot be put in the kernel",
            )
        log.warning("colab-guard: kernel argv %r may not carry the kernel guard", shown)

    async def shutdown_kernel(self, now: bool = False, restart: bool = False) -> None:
        await super().shutdown_kernel(now=now, restart=restart)  # type: ignore[misc]
        if not restart:
            self.guard.forget_kernel(self.kernel_id)  # type: ignore[attr-defined]
            drop_profile(self._profile_root)
            self._profile_root = None


def guarded_kernel_class(
    base: type, guard: GuardService, kernel_args: list[str], report_url: str
) -> type:
    """A subclass of the configured kernel manager class bound to this server's guard."""
    return type(
        f"Guarded{base.__name__}",
        (GuardKernelMixin, base),
        {"guard": guard, "kernel_args": list(kernel_args), "report_url": report_url},
    )


def install(mkm: Any, kernel_class: type) -> None:
    """Make the server's MultiKernelManager build kernels from ``kernel_class``."""

    def factory(*args: Any, **kwargs: Any) -> Any:
        if mkm.shared_context:
            if mkm.context.closed:
                mkm.context = mkm._context_default()
            kwargs.setdefault("context", mkm.context)
        return kernel_class(*args, **kwargs)

    mkm.kernel_manager_factory = factory  # a trait of MultiKernelManager
