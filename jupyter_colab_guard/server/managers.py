"""The guard's subclasses of the server's kernel manager and terminal manager.

They are put in place when the extension is linked, before the server builds its
managers, through jupyter_server's own configuration: ``ServerApp.kernel_manager_class``
and ``TerminalsExtensionApp.terminal_manager_class`` (each a subclass of whatever class
is configured there). So nothing is replaced on a live object:

- the kernel manager forgets a kernel start the guard refused (403 suspended, 503 store
  down): jupyter_client would keep it pending and the server's shutdown fail on it;
  and, when the guard could not be set up, refuses every start (503);
- the terminal manager refuses new terminals (403) while ``guard_refusal`` is set
  (``ColabGuardApp.disable_terminals``, or the guard could not be set up).
"""

from __future__ import annotations

import os
from typing import Any

from jupyter_server.services.kernels.kernelmanager import AsyncMappingKernelManager
from tornado import web
from traitlets.utils.importstring import import_item

TERMINALS_DISABLED = "colab-guard: terminals are disabled on this server"


class GuardMappingMixin:
    """Mixed into the server's MappingKernelManager class."""

    guard_refusal: str | None = None  # set: every kernel start is refused (503)

    async def start_kernel(self, *args: Any, **kwargs: Any) -> Any:
        if self.guard_refusal is not None:
            raise web.HTTPError(503, self.guard_refusal)
        try:
            return await super().start_kernel(*args, **kwargs)  # type: ignore[misc]
        except Exception:
            forget_failed_starts(self)
            raise


def forget_failed_starts(mkm: Any) -> None:
    """Drop starts that failed from jupyter_client's pending kernels."""
    pending = getattr(mkm, "_pending_kernels", {})
    for kid, task in list(pending.items()):
        if task.done() and kid not in mkm._kernels:
            pending.pop(kid, None)


class GuardTerminalMixin:
    """Mixed into the terminals extension's TerminalManager class."""

    guard_refusal: str | None = None  # set: new terminals are refused (403)

    def _guard_refuse(self) -> None:
        if self.guard_refusal is not None:
            raise web.HTTPError(403, self.guard_refusal)

    def create(self, **kwargs: Any) -> Any:
        self._guard_refuse()
        return super().create(**kwargs)  # type: ignore[misc]

    def new_terminal(self, **kwargs: Any) -> Any:
        self._guard_refuse()
        return super().new_terminal(**kwargs)  # type: ignore[misc]

    def new_named_terminal(self, **kwargs: Any) -> Any:
        self._guard_refuse()
        return super().new_named_terminal(**kwargs)  # type: ignore[misc]


def _subclass(mixin: type, base: Any) -> type:
    """A new subclass (its ``guard_refusal`` belongs to this server alone)."""
    cls = import_item(base) if isinstance(base, str) else base
    bases = (cls,) if issubclass(cls, mixin) else (mixin, cls)
    return type(f"Guarded{cls.__name__}", bases, {})


def _gateway(serverapp: Any) -> bool:
    """Kernels run on a gateway: the server's own manager class stays (not guardable)."""
    url = serverapp.config.get("GatewayClient", {}).get("url")
    return bool(url or os.environ.get("JUPYTER_GATEWAY_URL"))


def link(serverapp: Any, disable_terminals: bool) -> tuple[type | None, type | None]:
    """Configure the server to build the guard's subclasses. Returns (kernel manager
    class, terminal manager class), None where the server's own class stays."""
    km_class: type | None = None
    configured = serverapp.config.get("ServerApp", {}).get("kernel_manager_class")
    if configured is not None or not _gateway(serverapp):
        km_class = _subclass(GuardMappingMixin, configured or AsyncMappingKernelManager)
        serverapp.kernel_manager_class = km_class
    tm_class: type | None = None
    try:
        from jupyter_server_terminals.terminalmanager import TerminalManager
    except ImportError:  # no terminals extension: nothing to configure
        return km_class, None
    section = serverapp.config.TerminalsExtensionApp
    tm_class = _subclass(GuardTerminalMixin, section.get("terminal_manager_class", TerminalManager))
    tm_class.guard_refusal = TERMINALS_DISABLED if disable_terminals else None  # type: ignore[attr-defined]
    section.terminal_manager_class = tm_class
    return km_class, tm_class
