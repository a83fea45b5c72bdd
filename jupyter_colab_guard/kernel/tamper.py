"""Installing the guard's hooks, and finding (and undoing) changes to them.

``Installation.ensure()`` installs every hook and, called again, repairs whatever
user code removed or replaced, returning what it had to repair. It runs before each
execution (deep), inside the cell transformer and on every ``exec`` audit event
(quick). Everything here lives in the user's process: this detects and deters,
the server-side check is the authority.
"""

from __future__ import annotations

import sys
import types
from typing import Any

from .guard import Guard
from .hook import check_magic_call, make_transformers, wrap_do_execute, wrap_user_expressions
from .magics import RUNTIME_CELL_MAGICS, RUNTIME_LINE_MAGICS, wrap_magic

PACKAGE = "jupyter_colab_guard"
# shell methods a cell could replace to skip the transformers or the magic checks
SHELL_METHODS = (
    "transform_cell", "run_cell", "run_cell_async", "should_run_async", "run_code",
    "run_ast_nodes", "run_line_magic", "run_cell_magic", "system", "system_piped",
    "system_raw", "getoutput", "find_line_magic", "find_cell_magic", "find_magic",
)  # fmt: skip
GUARD_ATTRS = ("shell", "settings", "kernel", "reporter", "analyzer", "session", "integrity")
SETTINGS = (
    "policy_path", "policy_dir", "service_name", "message", "faq_url", "appeal_url",
    "show_evidence", "fail_closed", "warn_default_headless", "audit_log", "tier", "allow_unload",
)  # fmt: skip


class Installation:
    """The guard's hooks in one shell, plus the snapshot used to spot changes."""

    def __init__(self, guard: Guard) -> None:
        self.guard = guard
        shell = guard.shell
        self.stash, self.check_tf = make_transformers(guard)
        self.user_expressions = wrap_user_expressions(guard, shell.user_expressions)
        kernel = guard.kernel
        self.do_execute = wrap_do_execute(guard, kernel.do_execute) if kernel is not None else None
        self.magics: dict[tuple[str, str], Any] = {}  # (kind, name) -> wrapper

        def check(kind: str, name: str, line: str, cell: str | None) -> None:
            check_magic_call(guard, kind, name, line, cell)

        manager = shell.magics_manager
        for kind, names in (("line", RUNTIME_LINE_MAGICS), ("cell", RUNTIME_CELL_MAGICS)):
            for name in names:
                if name not in manager.magics[kind]:
                    continue
                try:  # IPython 9 registers placeholders: load the real magic first
                    fn = manager.find(kind, name) if hasattr(manager, "find") else None
                except Exception:
                    fn = None
                fn = fn or manager.magics[kind].get(name)
                if fn is not None:
                    self.magics[(kind, name)] = wrap_magic(check, kind, name, fn)
        self.extra_functions: list[Any] = []  # closures made elsewhere (audit hook)
        self.runtime: Any = None  # audit.Runtime serving this guard
        self._baseline: tuple[int, ...] = ()
        self._methods: dict[str, Any] = {}
        self._globals: list[tuple[dict[str, Any], dict[str, Any]]] = []
        self._classes: list[tuple[type, dict[str, Any]]] = []
        self._codes: list[tuple[Any, types.CodeType]] = []
        self._attrs: dict[str, Any] = {}
        self._settings: dict[str, Any] = {}
        self._reported: set[str] = set()
        self.active = False  # installed and not (allowed to be) unloaded
        self._class_names: frozenset[str] = frozenset()

    # -- install / repair -----------------------------------------------------
    def _hooks(self) -> list[tuple[str, str]]:
        """Install missing hooks. Returns (what, detail) for each one repaired."""
        shell, out = self.guard.shell, []
        if not self.guard.armed:
            self.guard.armed = True
            out.append(("settings-changed", "guard disarmed"))
        cleanup = shell.input_transformer_manager.cleanup_transforms
        if not cleanup or cleanup[0] is not self.stash:
            if self.stash in cleanup:
                cleanup.remove(self.stash)
            cleanup.insert(0, self.stash)
            out.append(("transformer-removed", "cleanup stash transformer missing or moved"))
        post = shell.input_transformers_post
        if not post or post[-1] is not self.check_tf:
            if self.check_tf in post:
                post.remove(self.check_tf)
            post.append(self.check_tf)
            out.append(("transformer-removed", "check transformer missing or not last"))
        if shell.__dict__.get("user_expressions") is not self.user_expressions:
            shell.user_expressions = self.user_expressions
            out.append(("function-replaced", "shell.user_expressions"))
        kernel = self.guard.kernel
        if self.do_execute is not None and kernel.__dict__.get("do_execute") is not self.do_execute:
            kernel.do_execute = self.do_execute
            out.append(("function-replaced", "kernel.do_execute"))
        return out

    def _deep(self) -> list[tuple[str, str]]:
        shell, out = self.guard.shell, []
        registry = shell.magics_manager.magics
        for (kind, name), wrapper in self.magics.items():
            if registry[kind].get(name) is not wrapper:
                registry[kind][name] = wrapper
                out.append(("function-replaced", f"magic {kind}:{name}"))
        for name, fn in self._methods.items():
            if name in shell.__dict__:
                del shell.__dict__[name]
                out.append(("function-replaced", f"shell.{name} overridden"))
            if getattr(type(shell), name, None) is not fn:
                setattr(type(shell), name, fn)
                out.append(("function-replaced", f"{type(shell).__name__}.{name}"))
        for ns, snap in self._globals:
            for name, obj in snap.items():
                if ns.get(name) is not obj:
                    ns[name] = obj
                    out.append(("function-replaced", f"module global {name}"))
        for cls, snap in self._classes:
            for name, obj in snap.items():
                if cls.__dict__.get(name) is not obj:
                    setattr(cls, name, obj)
                    out.append(("function-replaced", f"{cls.__name__}.{name}"))
        for fn, code in self._codes:
            if fn.__code__ is not code:
                fn.__code__ = code
                out.append(("function-replaced", f"code of {fn.__qualname__}"))
        g = self.guard
        if self.runtime is not None and self.runtime.guard is not g:
            self.runtime.guard = g
            out.append(("function-replaced", "runtime hook target"))
        for name, obj in self._attrs.items():
            if g.__dict__.get(name) is not obj:
                g.__dict__[name] = obj
                out.append(("function-replaced", f"guard.{name}"))
        for name in self._class_names.intersection(g.__dict__):
            del g.__dict__[name]
            out.append(("function-replaced", f"guard.{name} shadowed"))
        for name, value in self._settings.items():
            if getattr(g.settings, name) != value:
                setattr(g.settings, name, value)
                out.append(("settings-changed", f"KernelGuard.{name}"))
        return out

    def _foreign(self) -> list[tuple[str, str]]:
        """Transformers added after the guard loaded: check the transformed text too."""
        shape = self._shape()
        foreign = shape != self._baseline
        self.guard.foreign = foreign
        if foreign and "transformers-added" not in self._reported:
            self._reported.add("transformers-added")
            return [("transformer-added", f"transformer counts {self._baseline} -> {shape}")]
        return []

    def _shape(self) -> tuple[int, ...]:
        shell = self.guard.shell
        m = shell.input_transformer_manager
        return (
            len(m.cleanup_transforms),
            len(m.line_transforms),
            len(getattr(m, "token_transformers", ())),
            len(shell.input_transformers_post),
            len(shell.ast_transformers),
        )

    # -- public ---------------------------------------------------------------
    def intact(self) -> bool:
        """Fast test of the hooks (run on every exec audit event)."""
        g = self.guard
        shell = g.shell
        post = shell.input_transformers_post
        cleanup = shell.input_transformer_manager.cleanup_transforms
        return bool(
            g.armed
            and post
            and post[-1] is self.check_tf
            and cleanup
            and cleanup[0] is self.stash
            and (self.do_execute is None or g.kernel.__dict__.get("do_execute") is self.do_execute)
        )

    def install(self) -> None:
        """Install the hooks and take the snapshot; the guard is armed afterwards."""
        self._hooks()
        registry = self.guard.shell.magics_manager.magics
        for (kind, name), wrapper in self.magics.items():
            registry[kind][name] = wrapper
        self._deep_snapshot()
        self._baseline = self._shape()
        self.guard.integrity = self
        self._attrs["integrity"] = self
        self.guard.armed = self.active = True

    def check(self, deep: bool) -> list[tuple[str, str]]:
        """Repair and report changes. Never raises."""
        if not self.active:
            return []
        try:
            problems = self._hooks()
            if deep:
                problems += self._deep() + self._foreign()
        except Exception as err:  # a half-broken shell: report, keep the kernel alive
            problems = [("check-failed", f"{type(err).__name__}: {err}")]
        for what, detail in problems:
            self.guard.report_tamper(what, detail)
        return problems

    def uninstall(self) -> None:
        shell = self.guard.shell
        self.guard.armed = self.active = False
        for lst in (
            shell.input_transformer_manager.cleanup_transforms,
            shell.input_transformers_post,
        ):
            for fn in (self.stash, self.check_tf):
                while fn in lst:
                    lst.remove(fn)
        if shell.__dict__.get("user_expressions") is self.user_expressions:
            del shell.__dict__["user_expressions"]
        kernel = self.guard.kernel
        if kernel is not None and kernel.__dict__.get("do_execute") is self.do_execute:
            del kernel.__dict__["do_execute"]
        registry = shell.magics_manager.magics
        for (kind, name), wrapper in self.magics.items():
            if registry[kind].get(name) is wrapper:
                registry[kind][name] = wrapper.__colab_guard_original__

    # -- snapshot ---------------------------------------------------------------
    def _deep_snapshot(self) -> None:
        shell = self.guard.shell
        self._methods = {n: getattr(type(shell), n) for n in SHELL_METHODS if hasattr(shell, n)}
        functions: list[Any] = [
            self.stash, self.check_tf, self.user_expressions, *self.magics.values(),
            *self.extra_functions,
        ]  # fmt: skip
        if self.do_execute is not None:
            functions.append(self.do_execute)
        for name, mod in list(sys.modules.items()):
            if mod is None or not (name == PACKAGE or name.startswith(PACKAGE + ".kernel")):
                continue
            ns = vars(mod)
            keep = (
                ("load_ipython_extension", "unload_ipython_extension")
                if name == PACKAGE
                else [k for k in ns if not k.startswith("__")]
            )
            snap = {k: ns[k] for k in keep if k in ns and not isinstance(ns[k], types.ModuleType)}
            self._globals.append((ns, snap))
            for obj in snap.values():
                if isinstance(obj, types.FunctionType):
                    functions.append(obj)
                elif isinstance(obj, type) and obj.__module__.startswith(PACKAGE + ".kernel"):
                    cls_snap = {
                        k: v for k, v in vars(obj).items() if isinstance(v, types.FunctionType)
                    }
                    self._classes.append((obj, cls_snap))
                    functions.extend(cls_snap.values())
        self._codes = [(fn, fn.__code__) for fn in dict.fromkeys(functions)]
        g = self.guard
        self._attrs = {n: g.__dict__[n] for n in GUARD_ATTRS if n in g.__dict__}
        self._settings = {n: getattr(g.settings, n) for n in SETTINGS}
        self._class_names = frozenset(dir(type(g)))

    def adopt(self, names: tuple[str, ...]) -> None:
        """The guard replaced these attributes itself (a new policy): they are the ones
        to keep from now on."""
        g = self.guard
        for name in names:
            if name in g.__dict__:
                self._attrs[name] = g.__dict__[name]

    def protected_ids(self) -> frozenset[int]:
        """Objects whose attributes may not be set (checked by the audit hook)."""
        ids = {id(fn) for fn, _ in self._codes}
        ids |= {id(cls) for cls, _ in self._classes if not _is_traitlets(cls)}
        return frozenset(ids)


def _is_traitlets(cls: type) -> bool:
    return any(c.__module__.startswith("traitlets") for c in cls.__mro__[1:])
